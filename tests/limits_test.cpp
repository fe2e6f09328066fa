// The admission limits: source keys, the per-source table against a model, the rate's bucket.
#include <doctest/doctest.h>

#include <map>
#include <random>

#include "limits.hpp"

using namespace slabd::server;
using asio::ip::make_address;

namespace {

source_key key_of(const char* address, unsigned v4 = 32, unsigned v6 = 64) {
    return make_source_key(make_address(address), v4, v6);
}

}  // namespace

TEST_CASE("a source is the address cut to its prefix; IPv4-mapped IPv6 is the IPv4 client") {
    CHECK(key_of("192.0.2.7") == key_of("::ffff:192.0.2.7"));
    CHECK(!(key_of("192.0.2.7") == key_of("192.0.2.8")));
    CHECK(key_of("192.0.2.7", 24) == key_of("192.0.2.200", 24));
    CHECK(!(key_of("192.0.2.7", 24) == key_of("192.0.3.7", 24)));
    CHECK(key_of("192.0.2.7", 31) == key_of("192.0.2.6", 31));
    CHECK(!(key_of("192.0.2.7", 31) == key_of("192.0.2.8", 31)));
    CHECK(key_of("2001:db8:1:2:aaaa::1") == key_of("2001:db8:1:2:bbbb::9"));  // one /64
    CHECK(!(key_of("2001:db8:1:2::1") == key_of("2001:db8:1:3::1")));
    CHECK(!(key_of("2001:db8::1", 32, 128) == key_of("2001:db8::2", 32, 128)));
    CHECK(!(key_of("::1") == key_of("127.0.0.1")));

    CHECK(to_string(key_of("192.0.2.7"), 32, 64) == "192.0.2.7");
    CHECK(to_string(key_of("::ffff:192.0.2.7", 24), 24, 64) == "192.0.2.0/24");
    CHECK(to_string(key_of("2001:db8:1:2:aaaa::1"), 32, 64) == "2001:db8:1:2::/64");
    CHECK(to_string(key_of("::1", 32, 128), 32, 128) == "::1");
}

TEST_CASE("a socket address gives the key its address gives, prefixes 32 and 128") {
    for (const char* address : {"192.0.2.7", "127.0.0.1", "0.0.0.0", "255.255.255.255", "::1",
                                "2001:db8::1", "::ffff:192.0.2.7", "fe80::1", "::"}) {
        CAPTURE(address);
        const asio::ip::tcp::endpoint client(make_address(address), 4242);
        CHECK(whole_source_key(client) == key_of(address, 32, 128));
    }
}

TEST_CASE("the source table admits up to the limit per source and gives back exactly") {
    source_table table(3, 100);
    const auto a = key_of("10.0.0.1");
    const auto b = key_of("10.0.0.2");
    for (int i = 0; i < 3; ++i) CHECK(table.acquire(a) == source_table::verdict::admitted);
    CHECK(table.acquire(a) == source_table::verdict::over_limit);
    CHECK(table.acquire(b) == source_table::verdict::admitted);
    CHECK(table.sources() == 2);
    table.release(a);
    CHECK(table.acquire(a) == source_table::verdict::admitted);
    CHECK(table.acquire(a) == source_table::verdict::over_limit);
    const auto top = table.top(5);
    REQUIRE(top.size() == 2);
    CHECK(top[0].key == a);
    CHECK(top[0].connections == 3);
    CHECK(top[1].connections == 1);
    for (int i = 0; i < 3; ++i) table.release(a);
    table.release(b);
    CHECK(table.sources() == 0);
    CHECK(table.top(5).empty());
    table.release(b);  // never held: nothing happens
    CHECK(table.sources() == 0);
}

TEST_CASE("the source table matches a model through random churn (backward-shift deletion)") {
    // 64 sources on a table sized for 31 (64 slots, of which it fills at most half: 32): long
    // probe chains, wrapping, and deletions from their middles.
    source_table table(4, 31);
    std::map<int, std::uint32_t> model;
    std::mt19937 random(12345);
    const auto key = [](int i) {
        return key_of(("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256)).c_str());
    };
    std::size_t held = 0;
    for (int step = 0; step < 200'000; ++step) {
        const int i = static_cast<int>(random() % 64);
        if (random() % 2 == 0) {
            const auto got = table.acquire(key(i));
            const std::uint32_t before = model.count(i) != 0 ? model[i] : 0;
            if (before == 4) {
                REQUIRE(got == source_table::verdict::over_limit);
            } else if (before == 0 && held == 32) {
                REQUIRE(got == source_table::verdict::table_full);
            } else {
                REQUIRE(got == source_table::verdict::admitted);
                if (before == 0) ++held;
                model[i] = before + 1;
            }
        } else if (model.count(i) != 0) {
            table.release(key(i));
            if (--model[i] == 0) {
                model.erase(i);
                --held;
            }
        }
        REQUIRE(table.sources() == held);
    }
    for (const auto& [i, n] : model) {
        std::uint32_t admitted = 0;
        while (table.acquire(key(i)) == source_table::verdict::admitted) ++admitted;
        CHECK(n + admitted == 4);
    }
}

TEST_CASE("the accept rate: a burst at once, then the rate") {
    using clock = accept_rate_limiter::clock;
    accept_rate_limiter rate(10, 5);  // its bucket starts full
    const clock::time_point start = clock::now();
    int taken = 0;
    while (rate.try_take(start)) ++taken;
    CHECK(taken == 5);
    CHECK(rate.until_next(start) > std::chrono::milliseconds(0));
    CHECK(rate.until_next(start) <= std::chrono::milliseconds(101));
    CHECK(rate.try_take(start + std::chrono::milliseconds(101)));
    CHECK_FALSE(rate.try_take(start + std::chrono::milliseconds(102)));
    // A second takes ten, never more than the burst however long the gap.
    taken = 0;
    for (int ms = 200; ms <= 1200; ++ms)
        taken += rate.try_take(start + std::chrono::milliseconds(ms)) ? 1 : 0;
    CHECK(taken >= 10);
    CHECK(taken <= 11);
    taken = 0;
    while (rate.try_take(start + std::chrono::hours(1))) ++taken;
    CHECK(taken == 5);
}

TEST_CASE("top() reads a table larger than its chunk and finds the largest holders") {
    source_table table(100, 5000);  // 16,384 slots: four chunks
    const auto key = [](int i) {
        return key_of(("10.2." + std::to_string(i / 256) + "." + std::to_string(i % 256)).c_str());
    };
    for (int i = 0; i < 3000; ++i)
        for (int n = 0; n <= i % 7; ++n)
            REQUIRE(table.acquire(key(i)) == source_table::verdict::admitted);
    for (int n = 0; n < 50; ++n)
        REQUIRE(table.acquire(key(1234)) == source_table::verdict::admitted);
    const auto top = table.top(3);
    REQUIRE(top.size() == 3);
    CHECK(top[0].key == key(1234));
    CHECK(top[0].connections == 50 + 1234 % 7 + 1);
    CHECK(top[1].connections == 7);
    CHECK(top[2].connections == 7);
    CHECK(table.top(5000).size() == 3000);
}

TEST_CASE("the table holds as many sources as it was sized for, a power of two included") {
    // With 1,024 blocks and 2 shards the server sizes it for 1,026: every block's source and one
    // newcomer per shard (a table cut at exactly half of 2,048 slots refused the 1,025th).
    source_table table(1, 1024 + 2);
    const auto key = [](int i) {
        return key_of(("10.3." + std::to_string(i / 256) + "." + std::to_string(i % 256)).c_str());
    };
    for (int i = 0; i < 1024 + 2; ++i)
        REQUIRE(table.acquire(key(i)) == source_table::verdict::admitted);
    CHECK(table.sources() == 1026);
}
