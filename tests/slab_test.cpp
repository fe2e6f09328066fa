#include "slabd/pool/slab.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

using slabd::pool::free_result;
using slabd::pool::slab;

namespace {

[[maybe_unused]] long resident_pages() {
    long size = 0;
    long resident = 0;
    std::ifstream("/proc/self/statm") >> size >> resident;
    return resident;
}

std::vector<std::uint32_t> head_of_free_list(const slab& s, std::size_t n) {
    auto list = s.free_list();
    list.resize(std::min(n, list.size()));
    return list;
}

}  // namespace

TEST_CASE("the worked example from docs/design.md, step by step") {
    slab s(64, 16);
    REQUIRE(s.check_invariants() == "");
    CHECK(head_of_free_list(s, 4) == std::vector<std::uint32_t>{0, 1, 2, 3});

    void* a = s.alloc();
    void* b = s.alloc();
    void* c = s.alloc();
    void* d = s.alloc();
    CHECK(s.index_of(a) == 0);
    CHECK(s.index_of(b) == 1);
    CHECK(s.index_of(c) == 2);
    CHECK(s.index_of(d) == 3);
    CHECK(head_of_free_list(s, 1) == std::vector<std::uint32_t>{4});

    REQUIRE(s.free(b) == free_result::ok);  // next[1] = 4, head = 1
    CHECK(head_of_free_list(s, 3) == std::vector<std::uint32_t>{1, 4, 5});
    REQUIRE(s.free(d) == free_result::ok);  // next[3] = 1, head = 3
    CHECK(head_of_free_list(s, 4) == std::vector<std::uint32_t>{3, 1, 4, 5});
    CHECK(s.check_invariants() == "");

    void* e = s.alloc();  // the most recently freed block comes back first
    CHECK(s.index_of(e) == 3);
    CHECK(e == d);
    CHECK(s.in_use() == 3);
    CHECK(s.check_invariants() == "");
}

TEST_CASE("exhaustion at exactly capacity, then recovery") {
    constexpr std::size_t n = 100;
    slab s(48, n);
    std::set<void*> seen;
    for (std::size_t i = 0; i < n; ++i) {
        void* p = s.alloc();
        REQUIRE(p != nullptr);
        CHECK(seen.insert(p).second);
    }
    CHECK(s.alloc() == nullptr);
    CHECK(s.alloc() == nullptr);
    CHECK(s.stats().failed_allocs == 2);
    CHECK(s.available() == 0);
    CHECK(s.check_invariants() == "");

    void* back = *seen.begin();
    REQUIRE(s.free(back) == free_result::ok);
    CHECK(s.alloc() == back);
    CHECK(s.stats().high_water == n);
}

TEST_CASE("LIFO reuse: blocks come back in reverse order of their frees") {
    slab s(32, 8);
    std::vector<void*> blocks;
    for (int i = 0; i < 8; ++i) blocks.push_back(s.alloc());
    for (void* p : blocks) REQUIRE(s.free(p) == free_result::ok);
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) CHECK(s.alloc() == *it);
}

TEST_CASE("the map shows in-use, free and never-carved blocks, and the free list's head") {
    slab s(32, 10);
    auto fresh = s.map(100);
    CHECK(fresh.capacity == 10);
    CHECK(fresh.blocks_per_cell == 1);
    CHECK(fresh.carved == 0);
    CHECK(fresh.head == 0);
    CHECK(fresh.in_use == std::vector<std::uint32_t>(10, 0));

    std::vector<void*> blocks;
    for (int i = 0; i < 6; ++i) blocks.push_back(s.alloc());
    REQUIRE(s.free(blocks[1]) == free_result::ok);
    REQUIRE(s.free(blocks[4]) == free_result::ok);
    const auto m = s.map(100);
    CHECK(m.carved == 6);
    CHECK(m.head == 4);  // LIFO: the last block freed is the next one handed out
    CHECK(m.in_use == std::vector<std::uint32_t>{1, 0, 1, 1, 0, 1, 0, 0, 0, 0});
    CHECK(s.alloc() == blocks[4]);

    // Aggregated: 10 blocks into at most 4 cells of 3 (the last cell holds one).
    const auto cells = s.map(4);
    CHECK(cells.blocks_per_cell == 3);
    CHECK(cells.in_use == std::vector<std::uint32_t>{2, 3, 0, 0});
    CHECK(s.map(0).in_use == std::vector<std::uint32_t>{5});

    // Every block in use: no head.
    while (s.alloc() != nullptr) {
    }
    CHECK(s.map(100).head == slabd::pool::slab_map::none);
}

TEST_CASE("bad frees are rejected, counted, and corrupt nothing") {
    constexpr std::size_t n = 32;
    slab s(64, n);
    void* a = s.alloc();
    void* b = s.alloc();
    REQUIRE(s.free(a) == free_result::ok);

    SUBCASE("double free") {
        CHECK(s.free(a) == free_result::double_free);
        CHECK(s.stats().rejected_double_frees == 1);
    }
    SUBCASE("a block that was never handed out") {
        void* never = static_cast<std::byte*>(b) + 64 * 5;
        CHECK(s.free(never) == free_result::double_free);
        CHECK(s.stats().rejected_double_frees == 1);
    }
    SUBCASE("foreign pointers: stack, heap, one past the end, below the start") {
        // Block-sized, so that the compiler's bounds analysis of the inlined (never taken) push
        // path has nothing to warn about.
        std::byte local[64]{};
        auto heap = std::make_unique<std::array<std::byte, 64>>();
        CHECK(s.free(local) == free_result::foreign);
        CHECK(s.free(heap.get()) == free_result::foreign);
        CHECK(s.free(static_cast<std::byte*>(a) + 64 * n) == free_result::foreign);
        CHECK(s.free(static_cast<std::byte*>(a) - 1) == free_result::foreign);
        CHECK(s.free(nullptr) == free_result::foreign);
        CHECK(s.stats().rejected_foreign_frees == 5);
    }
    SUBCASE("inside the slab but not a block start") {
        CHECK(s.free(static_cast<std::byte*>(b) + 1) == free_result::misaligned);
        CHECK(s.free(static_cast<std::byte*>(b) + 63) == free_result::misaligned);
        CHECK(s.stats().rejected_misaligned_frees == 2);
        CHECK(s.in_use() == 1);
    }

    CHECK(s.check_invariants() == "");
    REQUIRE(s.free(b) == free_result::ok);
    std::set<void*> distinct;
    for (std::size_t i = 0; i < n; ++i) distinct.insert(s.alloc());
    CHECK(distinct.size() == n);
    CHECK(distinct.count(nullptr) == 0);
    CHECK(s.alloc() == nullptr);
}

TEST_CASE("blocks honour over-alignment and the block size includes the padding") {
    struct alignas(64) cache_line {
        char bytes[40];
    };
    slab s(sizeof(cache_line), 10, alignof(cache_line));
    CHECK(s.block_size() == 64);
    for (int i = 0; i < 10; ++i) {
        void* p = s.alloc();
        REQUIRE(p != nullptr);
        CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    }
    slab page_aligned(100, 3, 8192);
    for (int i = 0; i < 3; ++i)
        CHECK(reinterpret_cast<std::uintptr_t>(page_aligned.alloc()) % 8192 == 0);
}

TEST_CASE("blocks smaller than the link still hold it") {
    slab s(1, 4, 1);
    CHECK(s.block_size() == sizeof(void*));
    void* a = s.alloc();
    void* b = s.alloc();
    CHECK(static_cast<std::byte*>(b) - static_cast<std::byte*>(a) == sizeof(void*));
    CHECK(s.free(static_cast<std::byte*>(a) + 2) == free_result::misaligned);
}

// slab(4, 4096, 4) is object_pool<int>: blocks smaller than the free-list link, aligned to less
// than it. Every block handed out must lie in the slab's own mapping: its pages are mapped while
// the slab lives and gone once it is destroyed (a page that outlives it belongs to a neighbour).
TEST_CASE("blocks under 8 bytes with alignment under 8 lie inside the slab's own mapping") {
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    constexpr std::size_t n = 4096;
    std::vector<std::byte*>
        blocks;  // reserved first: no allocation between the mmap and the checks
    blocks.reserve(n);
    std::uintptr_t first_page = 0;
    std::uintptr_t end_page = 0;
    {
        slab s(4, n, 4);
        CHECK(s.capacity() == n);
        CHECK(s.block_size() == sizeof(std::byte*));
        CHECK(s.stats().slab_bytes == n * sizeof(std::byte*));
        for (std::size_t i = 0; i < n; ++i) {
            auto* p = static_cast<std::byte*>(s.alloc());
            REQUIRE(p != nullptr);
            CHECK(reinterpret_cast<std::uintptr_t>(p) % 4 == 0);
            blocks.push_back(p);
        }
        CHECK(s.alloc() == nullptr);
        std::sort(blocks.begin(), blocks.end());
        for (std::size_t i = 1; i < n; ++i)
            REQUIRE(static_cast<std::size_t>(blocks[i] - blocks[i - 1]) >=
                    s.block_size());  // no overlap
        first_page = reinterpret_cast<std::uintptr_t>(blocks.front()) / page * page;
        end_page = (reinterpret_cast<std::uintptr_t>(blocks.back()) + s.block_size() + page - 1) /
                   page * page;
        unsigned char residency = 0;
        for (std::uintptr_t a = first_page; a < end_page; a += page)
            REQUIRE_MESSAGE(::mincore(reinterpret_cast<void*>(a), page, &residency) == 0,
                            "a block lies on an unmapped page");
        CHECK(s.check_invariants() == "");
    }
    unsigned char residency = 0;
    for (std::uintptr_t a = first_page; a < end_page; a += page) {
        const bool unmapped =
            ::mincore(reinterpret_cast<void*>(a), page, &residency) == -1 && errno == ENOMEM;
        CHECK_MESSAGE(unmapped, "page ", (a - first_page) / page,
                      " of the blocks was not the slab's to map");
    }
}

TEST_CASE("a slab over caller-owned memory never writes outside its span") {
    constexpr std::size_t guard = 64;
    constexpr std::size_t span_bytes = 1024;
    constexpr auto pattern = std::byte{0xA5};
    alignas(64) std::array<std::byte, guard + span_bytes + guard> memory{};
    memory.fill(pattern);
    std::byte* const begin = memory.data() + guard;
    std::byte* const end = begin + span_bytes;
    {
        slab s(std::span<std::byte>(begin, span_bytes), 4, 4);
        CHECK(s.block_size() == sizeof(std::byte*));
        CHECK(s.capacity() == span_bytes / sizeof(std::byte*));
        std::vector<std::byte*> blocks;
        while (auto* p = static_cast<std::byte*>(s.alloc())) {
            REQUIRE(p >= begin);
            REQUIRE(p + s.block_size() <= end);
            std::memset(p, 0, 4);
            blocks.push_back(p);
        }
        CHECK(blocks.size() == s.capacity());
        for (std::byte* p : blocks)
            REQUIRE(s.free(p) == free_result::ok);  // each free writes a link
        CHECK(s.check_invariants() == "");
    }
    std::size_t damaged = 0;
    for (std::size_t i = 0; i < guard; ++i) {
        damaged += memory[i] != pattern;
        damaged += memory[guard + span_bytes + i] != pattern;
    }
    CHECK(damaged == 0);
}

TEST_CASE("a slab over caller-owned memory") {
    alignas(64) std::byte region[1000];
    slab s(std::span<std::byte>(region + 8, 992), 128, 64);
    CHECK(s.capacity() == (992 - 56) / 128);
    void* p = s.alloc();
    CHECK(p == region + 64);
    CHECK(s.owns(p));
    CHECK_FALSE(s.owns(region));
}

TEST_CASE("blocks are carved lazily: a large slab costs no memory until used") {
    // 64 MiB of blocks; touching them at construction would show in the high-water mark and RSS.
#if !defined(SLABD_SANITIZED)  // ASan's shadow of the poisoned slab is resident by design
    const long before = resident_pages();
#endif
    slab s(64, 1 << 20);
    CHECK(s.stats().high_water == 0);
#if !defined(SLABD_SANITIZED)
    CHECK(resident_pages() - before < 256);  // well under 1 MiB of the 64 MiB
#endif
    CHECK(s.free_list().size() == 1 << 20);
    void* a = s.alloc();
    CHECK(s.stats().high_water == 1);
    REQUIRE(s.free(a) == free_result::ok);
    CHECK(s.alloc() == a);  // the freed block, not a fresh one
    CHECK(s.stats().high_water == 1);
    CHECK(s.check_invariants() == "");
}

TEST_CASE("construction rejects impossible shapes") {
    CHECK_THROWS_AS(slab(64, 0), std::invalid_argument);
    CHECK_THROWS_AS(slab(64, 10, 3), std::invalid_argument);
    CHECK_THROWS_AS(slab(64, slab::max_capacity + 1), std::invalid_argument);
}

TEST_CASE("moving a slab keeps its blocks and empties the source") {
    slab a(64, 4);
    void* p = a.alloc();
    slab b(std::move(a));
    CHECK(b.in_use() == 1);
    CHECK(b.free(p) == free_result::ok);
    CHECK(b.check_invariants() == "");
}

TEST_CASE("randomised: 100,000 operations against a model, invariant checked as it goes") {
    constexpr std::size_t n = 257;
    slab s(24, n, 8);
    std::vector<void*> live;         // the model: what the slab should consider in use
    std::vector<void*> freed_order;  // the model of LIFO: last freed, first reused
    std::mt19937_64 rng(20261125);
    std::uint64_t expected_rejections = 0;
    for (int op = 0; op < 100'000; ++op) {
        const auto dice = rng() % 10;
        if (dice < 5) {
            void* p = s.alloc();
            if (live.size() == n) {
                CHECK(p == nullptr);
            } else {
                REQUIRE(p != nullptr);
                if (!freed_order.empty()) {
                    CHECK(p == freed_order.back());
                    freed_order.pop_back();
                }
                CHECK(std::find(live.begin(), live.end(), p) == live.end());
                live.push_back(p);
            }
        } else if (dice < 9 && !live.empty()) {
            const std::size_t i = rng() % live.size();
            void* p = live[i];
            live[i] = live.back();
            live.pop_back();
            REQUIRE(s.free(p) == free_result::ok);
            freed_order.push_back(p);
        } else if (!freed_order.empty()) {
            CHECK(s.free(freed_order[rng() % freed_order.size()]) == free_result::double_free);
            ++expected_rejections;
        }
        REQUIRE(s.in_use() == live.size());
        if (op % 97 == 0) REQUIRE(s.check_invariants() == "");
    }
    CHECK(s.check_invariants() == "");
    CHECK(s.stats().rejected_double_frees == expected_rejections);
}

TEST_CASE("add_memory grows the slab in place: no block moves, the new blocks are owned") {
    slab s(48, 4, 16, 10);
    CHECK(s.capacity() == 4);
    CHECK(s.reserved() == 10);
    std::vector<void*> held;
    for (int i = 0; i < 4; ++i) held.push_back(s.alloc());
    CHECK(s.alloc() == nullptr);
    const std::vector<void*> before = held;

    REQUIRE(s.add_memory(6));
    CHECK(s.capacity() == 10);
    CHECK(s.limit() == 10);
    for (int i = 0; i < 6; ++i) {
        void* p = s.alloc();
        REQUIRE(p != nullptr);
        CHECK(s.owns(p));
        CHECK(s.index_of(p) == 4 + static_cast<std::size_t>(i));
        held.push_back(p);
    }
    CHECK(s.alloc() == nullptr);
    CHECK(std::equal(before.begin(), before.end(), held.begin()));  // the first four never moved
    CHECK_FALSE(s.add_memory(1));                                   // the reservation is spent
    CHECK(s.capacity() == 10);
    for (void* p : held) REQUIRE(s.free(p) == free_result::ok);
    CHECK(s.free(held.back()) == free_result::double_free);
    CHECK(s.check_invariants() == "");
}

TEST_CASE("a block past the capacity but inside the reservation is foreign until added") {
    slab s(64, 2, 64, 8);
    void* first = s.alloc();
    auto* beyond = static_cast<std::byte*>(first) + 2 * s.block_size();
    CHECK_FALSE(s.owns(beyond));
    CHECK(s.free(beyond) == free_result::foreign);
    REQUIRE(s.add_memory(1));
    CHECK(s.owns(beyond));
    CHECK(s.free(beyond) == free_result::double_free);  // owned now, but never handed out
    CHECK(s.check_invariants() == "");
}

TEST_CASE("a lowered limit refuses newcomers until in_use falls under it, and touches no block") {
    slab s(32, 8);
    std::vector<void*> held;
    for (int i = 0; i < 6; ++i) held.push_back(s.alloc());
    s.set_limit(3);
    CHECK(s.limit() == 3);
    CHECK(s.capacity() == 8);
    CHECK(s.in_use() == 6);
    CHECK(s.available() == 0);
    CHECK(s.alloc() == nullptr);
    CHECK(s.stats().failed_allocs == 1);
    // Frees go on working and in_use falls; only at 2 in use is there room under the limit.
    for (int i = 0; i < 3; ++i)
        REQUIRE(s.free(held[static_cast<std::size_t>(5 - i)]) == free_result::ok);
    CHECK(s.alloc() == nullptr);
    REQUIRE(s.free(held[2]) == free_result::ok);
    CHECK(s.available() == 1);
    void* again = s.alloc();
    CHECK(again == held[2]);  // LIFO: the block freed last
    CHECK(s.alloc() == nullptr);
    s.set_limit(100);  // capped at the capacity
    CHECK(s.limit() == 8);
    CHECK(s.stats().free == 5);
    CHECK(s.check_invariants() == "");
}

TEST_CASE("the reservation costs no memory: a slab reserved for a million blocks") {
#if !defined(SLABD_SANITIZED)
    const long before = resident_pages();
#endif
    slab s(288, 100, 16, 1 << 20);
    CHECK(s.reserved() == 1 << 20);
    REQUIRE(s.add_memory(900));
    for (int i = 0; i < 1000; ++i) REQUIRE(s.alloc() != nullptr);
#if !defined(SLABD_SANITIZED)
    CHECK(resident_pages() - before < 256);  // ~300 KiB of blocks touched, not the 288 MiB reserved
#endif
    CHECK(s.check_invariants() == "");
}
