#include "slabd/pool/object_pool.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using slabd::pool::object_pool;

namespace {

struct tracked {
    static inline int constructed = 0;
    static inline int destroyed = 0;
    explicit tracked(std::string name) : name_(std::move(name)) { ++constructed; }
    ~tracked() { ++destroyed; }
    tracked(const tracked&) = delete;
    tracked& operator=(const tracked&) = delete;
    std::string name_;
};

struct throws_on_construction {
    explicit throws_on_construction(bool fail) {
        if (fail) throw std::runtime_error("no");
    }
};

}  // namespace

TEST_CASE("object_pool constructs in place and the handle destroys and returns the block") {
    tracked::constructed = tracked::destroyed = 0;
    object_pool<tracked> pool(3);
    CHECK(pool.block_size() == sizeof(tracked));
    {
        auto a = pool.make("a");
        auto b = pool.make("b");
        REQUIRE(a);
        CHECK(a->name_ == "a");
        CHECK(pool.in_use() == 2);
        CHECK(tracked::constructed == 2);
        auto moved = std::move(a);
        CHECK_FALSE(a);
        CHECK(moved->name_ == "a");
        b.reset();
        CHECK(tracked::destroyed == 1);
        CHECK(pool.in_use() == 1);
    }
    CHECK(tracked::destroyed == 2);
    CHECK(pool.in_use() == 0);
    CHECK(pool.check_invariants() == "");
}

TEST_CASE("object_pool returns an empty handle when exhausted and constructs nothing") {
    tracked::constructed = tracked::destroyed = 0;
    object_pool<tracked> pool(2);
    auto a = pool.make("a");
    auto b = pool.make("b");
    auto c = pool.make("c");
    CHECK_FALSE(c);
    CHECK(tracked::constructed == 2);
    CHECK(pool.stats().failed_allocs == 1);
    // The right-hand side runs first, while "a" and "b" still fill the pool, so make() fails;
    // only then does the move-assignment destroy "a", leaving an empty handle and a free block.
    a = pool.make("d");
    CHECK_FALSE(a);
    CHECK(tracked::constructed == 2);
    CHECK(tracked::destroyed == 1);
    CHECK(pool.in_use() == 1);
    a = pool.make("d");
    REQUIRE(a);
    CHECK(a->name_ == "d");
}

TEST_CASE("object_pool gives the block back when the constructor throws") {
    object_pool<throws_on_construction> pool(1);
    CHECK_THROWS_AS(static_cast<void>(pool.make(true)), std::runtime_error);
    CHECK(pool.in_use() == 0);
    CHECK(pool.make(false));
}

TEST_CASE("object_pool honours alignas(64) and reports the padded block size") {
    struct alignas(64) line {
        int value;
    };
    object_pool<line> pool(5);
    CHECK(pool.block_size() == 64);
    std::vector<object_pool<line>::handle> handles;
    for (int i = 0; i < 5; ++i) {
        handles.push_back(pool.make(line{i}));
        CHECK(reinterpret_cast<std::uintptr_t>(handles.back().get()) % 64 == 0);
    }
}

TEST_CASE("object_pool<int> pays for the free-list link, not for sizeof(int)") {
    object_pool<int> pool(4096);
    CHECK(pool.block_size() == sizeof(void*));
    CHECK(pool.capacity() == 4096);
    std::vector<object_pool<int>::handle> handles;
    for (int i = 0; i < 4096; ++i) {
        handles.push_back(pool.make(i));
        REQUIRE(handles.back());
    }
    for (int i = 0; i < 4096; ++i) CHECK(*handles[static_cast<std::size_t>(i)] == i);
    CHECK_FALSE(pool.make(0));
    handles.clear();
    CHECK(pool.check_invariants() == "");
}

TEST_CASE("create/destroy serve objects that manage their own lifetime") {
    tracked::constructed = tracked::destroyed = 0;
    object_pool<tracked, slabd::pool::shared_slab> pool(2);
    tracked* t = pool.create("self-owned");
    REQUIRE(t != nullptr);
    CHECK(pool.owns(t));
    pool.destroy(t);
    CHECK(tracked::destroyed == 1);
    tracked* again = pool.create("again");
    CHECK(again == t);
    pool.destroy(again);
}
