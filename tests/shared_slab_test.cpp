#include "slabd/pool/shared_slab.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <vector>

using slabd::pool::free_result;
using slabd::pool::shared_slab;

TEST_CASE("shared_slab: threads hammering one pool lose and duplicate no block") {
    constexpr std::size_t capacity = 64;
    constexpr int threads = 4;
    constexpr int rounds = 20'000;
    shared_slab pool(40, capacity);
    std::atomic<int> exclusive_violations{0};
    std::atomic<std::uint64_t> failed{0};

    auto worker = [&](int id) {
        std::vector<void*> mine;
        for (int i = 0; i < rounds; ++i) {
            if (void* p = pool.alloc()) {
                // Writing our id and reading it back later proves no one else was handed the block.
                *static_cast<int*>(p) = id;
                mine.push_back(p);
            } else {
                failed.fetch_add(1, std::memory_order_relaxed);
            }
            if (mine.size() > 10 || (i % 3 == 0 && !mine.empty())) {
                void* p = mine.back();
                mine.pop_back();
                if (*static_cast<int*>(p) != id) exclusive_violations.fetch_add(1);
                if (pool.free(p) != free_result::ok) exclusive_violations.fetch_add(1);
            }
        }
        for (void* p : mine) {
            if (*static_cast<int*>(p) != id) exclusive_violations.fetch_add(1);
            pool.free(p);
        }
    };
    std::vector<std::thread> pool_threads;
    for (int t = 0; t < threads; ++t) pool_threads.emplace_back(worker, t);
    for (auto& t : pool_threads) t.join();

    CHECK(exclusive_violations.load() == 0);
    CHECK(pool.in_use() == 0);
    CHECK(pool.check_invariants() == "");
    const auto stats = pool.stats();
    CHECK(stats.failed_allocs == failed.load());
    CHECK(stats.rejected_double_frees == 0);

    std::set<void*> distinct;
    for (std::size_t i = 0; i < capacity; ++i) distinct.insert(pool.alloc());
    CHECK(distinct.size() == capacity);
    CHECK(distinct.count(nullptr) == 0);
}

TEST_CASE("shared_slab: capacity is exact when threads race for the last blocks") {
    constexpr std::size_t capacity = 100;
    shared_slab pool(16, capacity);
    std::atomic<std::size_t> granted{0};
    std::vector<std::thread> racers;
    for (int t = 0; t < 4; ++t) {
        racers.emplace_back([&] {
            for (int i = 0; i < 50; ++i)
                if (pool.alloc() != nullptr) granted.fetch_add(1);
        });
    }
    for (auto& t : racers) t.join();
    CHECK(granted.load() == capacity);
    CHECK(pool.stats().failed_allocs == 4 * 50 - capacity);
}
