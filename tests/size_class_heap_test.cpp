#include "slabd/pool/size_class_heap.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory_resource>
#include <ostream>
#include <random>
#include <vector>

using slabd::pool::alloc_error;
using slabd::pool::size_class_heap;

namespace {

struct region {
    explicit region(std::size_t bytes) : storage(bytes) {}
    std::byte* data() { return storage.data(); }
    std::size_t size() const { return storage.size(); }
    std::vector<std::byte> storage;
};

std::size_t block_size_of(const size_class_heap& heap, std::size_t size, std::size_t align) {
    return heap.class_stats().at(heap.class_for(size, align)).block_size;
}

}  // namespace

TEST_CASE("requests route to the smallest class that fits size and alignment") {
    size_class_heap heap;
    CHECK(block_size_of(heap, 1, 1) == 64);
    CHECK(block_size_of(heap, 64, 8) == 64);
    CHECK(block_size_of(heap, 65, 8) == 128);
    CHECK(block_size_of(heap, 16, 256) == 256);
    CHECK(block_size_of(heap, 4096, 16) == 4096);
    CHECK(heap.class_for(4097, 8) == size_class_heap::npos);
    CHECK(heap.class_for(0, 8) == size_class_heap::npos);
    CHECK(heap.class_for(8, 3) == size_class_heap::npos);
}

TEST_CASE("alloc returns typed errors, never a crash") {
    size_class_heap heap;
    CHECK(heap.alloc(64, 8).error() == alloc_error::no_memory);  // no memory given yet
    region r(64 * 1024);
    heap.init(r.data(), r.size());
    CHECK(heap.alloc(5000, 8).error() == alloc_error::invalid_param);
    CHECK(heap.alloc(0, 8).error() == alloc_error::invalid_param);
    CHECK(heap.alloc(16, 24).error() == alloc_error::invalid_param);
    CHECK(heap.alloc(16, 24).error().message() == "size or alignment no size class can serve");
}

TEST_CASE("each class is its own budget; add_memory grows it") {
    const std::size_t classes[] = {64, 128};
    size_class_heap heap(classes);
    region first(2 * 64 * 4);  // 4 blocks of each class, both shares 64-aligned
    region second(2 * 128 * 8);
    heap.init(first.data(), first.size());
    const std::size_t small_blocks = heap.class_stats()[0].slabs.capacity;
    CHECK(small_blocks >= 3);

    std::vector<void*> small;
    while (auto r = heap.alloc(32, 8)) {
        small.push_back(r.get());
        CHECK(reinterpret_cast<std::uintptr_t>(r.get()) % 64 == 0);
    }
    CHECK(small.size() == small_blocks);
    CHECK(heap.alloc(32, 8).error() == alloc_error::no_memory);

    const std::size_t total_before = heap.total_bytes();
    heap.add_memory(second.data(), second.size());
    CHECK(heap.total_bytes() > total_before);
    auto more = heap.alloc(32, 8);
    REQUIRE(more);
    CHECK(heap.used_bytes() == (small.size() + 1) * 64);
    heap.dealloc(more.get(), 32, 8);
    for (void* p : small) heap.dealloc(p, 32, 8);
    CHECK(heap.used_bytes() == 0);
    CHECK(heap.check_invariants() == "");
}

TEST_CASE("dealloc of a pointer the class does not own is refused and counted") {
    size_class_heap heap;
    region r(64 * 1024);
    heap.init(r.data(), r.size());
    alignas(64) std::byte local[64]{};
    heap.dealloc(local, sizeof local, alignof(int));
    heap.dealloc(local, 10000, 8);
    CHECK(heap.rejected_deallocs() == 2);
    CHECK(heap.used_bytes() == 0);
}

TEST_CASE("used, available and total follow a model of the classes through a random workload") {
    size_class_heap heap;
    region r(1 << 20);
    heap.init(r.data(), r.size());
    // The model, computed from the region alone: each class gets an equal share and carves as
    // many blocks of its size as fit after aligning the share's start to that size.
    const auto& sizes = size_class_heap::default_classes;
    const std::size_t share = r.size() / sizes.size();
    std::vector<std::size_t> capacity(sizes.size());
    std::size_t expected_total = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const auto start = reinterpret_cast<std::uintptr_t>(r.data() + i * share);
        const std::size_t skip = (sizes[i] - start % sizes[i]) % sizes[i];
        capacity[i] = (share - skip) / sizes[i];
        expected_total += capacity[i] * sizes[i];
    }
    REQUIRE(heap.total_bytes() == expected_total);

    std::mt19937 rng(7);
    std::multimap<std::size_t, void*> live;
    std::vector<std::size_t> live_in(sizes.size(), 0);
    std::size_t expected_used = 0;
    std::size_t refusals = 0;
    const auto class_of = [&](std::size_t size) {
        return static_cast<std::size_t>(
            std::find_if(sizes.begin(), sizes.end(), [&](std::size_t c) { return c >= size; }) -
            sizes.begin());
    };
    for (int op = 0; op < 20'000; ++op) {
        if (rng() % 3 != 0 || live.empty()) {
            const std::size_t size = 1 + rng() % 4096;
            const std::size_t c = class_of(size);
            auto a = heap.alloc(size, 8);
            REQUIRE(a.ok() ==
                    (live_in[c] < capacity[c]));  // refused exactly when its class is full
            if (a) {
                live.emplace(size, a.get());
                ++live_in[c];
                expected_used += sizes[c];
            } else {
                CHECK(a.error() == alloc_error::no_memory);
                ++refusals;
            }
        } else {
            auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
            heap.dealloc(it->second, it->first, 8);
            const std::size_t c = class_of(it->first);
            --live_in[c];
            expected_used -= sizes[c];
            live.erase(it);
        }
        REQUIRE(heap.used_bytes() == expected_used);
        REQUIRE(heap.available_bytes() == expected_total - expected_used);
        REQUIRE(heap.total_bytes() == expected_total);
    }
    CHECK(refusals > 0);  // the workload reached the limits, so the refusal check was exercised
    CHECK(heap.check_invariants() == "");
    for (const auto& [size, p] : live) heap.dealloc(p, size, 8);
    CHECK(heap.used_bytes() == 0);
    CHECK(heap.available_bytes() == expected_total);
}

TEST_CASE("the pmr adapter serves standard containers and throws bad_alloc when full") {
    size_class_heap heap;
    region r(7 * 4096 * 4);
    heap.init(r.data(), r.size());
    slabd::pool::heap_resource resource(heap);
    {
        std::pmr::vector<int> v(&resource);
        for (int i = 0; i < 500; ++i) v.push_back(i);
        CHECK(v[499] == 499);
        CHECK(heap.used_bytes() > 0);
        std::pmr::vector<char> huge(&resource);
        CHECK_THROWS_AS(huge.resize(5000), std::bad_alloc);
    }
    CHECK(heap.used_bytes() == 0);
    CHECK(resource.is_equal(resource));
}
