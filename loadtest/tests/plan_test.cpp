#include "plan.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace slabd::load;

namespace {

constexpr std::int64_t t0 = 1'000'000'000'000;  // any point of the steady clock
constexpr std::int64_t s = 1'000'000'000;

options base(mode m) {
    options o;
    o.run_mode = m;
    o.connections = 10;
    o.duration_s = 2;
    return o;
}

plan make(const options& o) {
    return make_plan(o, {asio::ip::make_address("127.0.0.1"), 7000}, t0);
}

}  // namespace

TEST_CASE("the window follows the warm-up; count mode has no end") {
    auto o = base(mode::rr);
    o.warmup_s = 1;
    const plan p = make(o);
    CHECK(p.measure_start_ns == t0 + s);
    CHECK(p.measure_end_ns == t0 + 3 * s);
    CHECK(p.end_ns == p.measure_end_ns);
    CHECK_FALSE(p.in_window(t0 + s - 1));
    CHECK(p.in_window(t0 + s));
    CHECK_FALSE(p.in_window(t0 + 3 * s));

    o.messages = 1000;
    const plan counted = make(o);
    CHECK(counted.by_count());
    CHECK(counted.measure_end_ns == never);
    CHECK(counted.end_ns == never);
}

TEST_CASE("the connect ramp spaces connections evenly; hold holds for -d after it") {
    auto o = base(mode::hold);
    o.connect_rate = 5;  // 200 ms apart
    const plan p = make(o);
    CHECK(p.connect_at(0) == t0);
    CHECK(p.connect_at(1) == t0 + s / 5);
    CHECK(p.connect_at(9) == t0 + 9 * s / 5);
    CHECK(p.measure_start_ns == t0);
    CHECK(p.end_ns == t0 + 9 * s / 5 + 2 * s);

    const plan at_once = make(base(mode::hold));
    CHECK(at_once.connect_at(9) == t0);
}

TEST_CASE("--messages is shared out so that the shares add up") {
    auto o = base(mode::rr);
    o.messages = 1003;
    const plan p = make(o);
    std::uint64_t total = 0;
    for (std::uint32_t c = 0; c < p.connections; ++c) {
        CHECK((p.quota(c) == 100 || p.quota(c) == 101));
        total += p.quota(c);
    }
    CHECK(total == 1003);
}

TEST_CASE("rate mode interleaves every connection's messages into one evenly spaced sequence") {
    auto o = base(mode::rate);
    o.rate = 1000;  // one message every ms, each connection every 10 ms
    const plan p = make(o);
    std::vector<std::int64_t> times;
    for (std::uint64_t k = 0; k < 50; ++k)
        for (std::uint32_t c = 0; c < p.connections; ++c) times.push_back(p.scheduled_ns(c, k));
    for (std::size_t i = 0; i < times.size(); ++i)
        REQUIRE(times[i] == t0 + static_cast<std::int64_t>(i) * 1'000'000);
}

TEST_CASE("the first message due at or after a time, checked against the schedule itself") {
    auto o = base(mode::rate);
    o.connections = 7;
    o.rate = 333.3;  // periods that are not whole nanoseconds
    const plan p = make(o);
    for (std::uint32_t c = 0; c < p.connections; ++c) {
        for (std::int64_t t = t0 - 5; t < t0 + 100'000'000; t += 1'234'567) {
            const std::uint64_t k = p.first_due_at_or_after(c, t);
            REQUIRE(p.scheduled_ns(c, k) >= t);
            if (k > 0) REQUIRE(p.scheduled_ns(c, k - 1) < t);
        }
    }
}

TEST_CASE("rate mode sends what is due in the window, or its quota after the warm-up") {
    auto o = base(mode::rate);
    o.rate = 1000;
    o.warmup_s = 1;
    const plan p = make(o);
    std::uint64_t in_window = 0;
    for (std::uint32_t c = 0; c < p.connections; ++c)
        in_window += p.rate_end(c, 0) - p.first_due_at_or_after(c, p.measure_start_ns);
    CHECK(in_window == 2000);

    o.messages = 500;
    const plan counted = make(o);
    std::uint64_t total = 0;
    for (std::uint32_t c = 0; c < counted.connections; ++c)
        total +=
            counted.rate_end(c, 0) - counted.first_due_at_or_after(c, counted.measure_start_ns);
    CHECK(total == 500);
    // A connection that comes up late still sends its whole quota.
    CHECK(counted.rate_end(3, 5000) == 5000 + counted.quota(3));
}

TEST_CASE("buffers: one message for the closed loops, batches for rate and bulk, bounded") {
    auto o = base(mode::rr);
    o.size = 64;
    CHECK(make(o).tx_capacity == 64);
    CHECK(make(o).rx_capacity == 256);
    o.size = 10 << 20;
    CHECK(make(o).tx_capacity == 64 * 1024);
    CHECK(make(o).rx_capacity == 64 * 1024);
    o.run_mode = mode::rate;
    o.size = 64;
    CHECK(make(o).tx_capacity == 64 * 64);
}
