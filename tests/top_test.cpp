#include "top.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "slabd/server/stats.hpp"

using nlohmann::json;
using slabd::server::render_top_frame;
using slabd::server::server_snapshot;

namespace {

// Built by the daemon's own to_json, so a renamed /stats field fails here, not on an operator's
// terminal.
server_snapshot sample() {
    server_snapshot s;
    s.version = "1.2.3";
    s.mode = "proxy";
    s.uptime_seconds = 3725;
    s.threads = 2;
    s.pool.capacity = 16;
    s.pool.limit = 8;
    s.pool.in_use = 4;
    s.pool.free = 4;
    s.pool.high_water = 6;
    s.shards.resize(2);
    s.shards[0].accepted = 30;
    s.shards[0].active = 3;
    s.shards[0].refused_pool_full = 5;
    s.shards[0].bytes_in = 4096;
    s.shards[1].accepted = 12;
    s.shards[1].active = 1;
    s.shards[1].refused_per_source = 2;
    s.upstreams.push_back({.name = "backend-a:7000", .active = 3});
    s.upstreams.push_back({.name = "backend-b:7000", .down = true, .checked_down = true});
    s.upstreams.back().last_check = "timeout";
    return s;
}

json stats(const server_snapshot& s) {
    return json::parse(slabd::server::to_json(s));
}

std::vector<std::string> lines(const std::string& frame) {
    std::vector<std::string> out;
    std::istringstream in(frame);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

bool has(const std::string& frame, const std::string& text) {
    return frame.find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("the first frame shows the totals, and '-' for every rate") {
    const auto frame = render_top_frame(json(), stats(sample()), 0, 120);
    CHECK(has(frame, "slabd 1.2.3  proxy mode  up 1h02m05s  2 threads  ready"));
    CHECK(has(frame, "in use 4  limit 8  capacity 16  high water 6  free 4"));
    CHECK(has(frame, "active 4  accepted 42  accepts/s -  refused 7  refused/s -"));
    CHECK(has(frame, "in -  out -  (since start: in 4.0 KiB, out 0 B)"));
    CHECK(has(frame, "  pool_full              5           -"));
    CHECK(has(frame, "  per_source             2           -"));
}

TEST_CASE("rates are the counters' growth over the time between the snapshots") {
    const auto before = sample();
    auto after = before;
    after.shards[0].accepted += 10;
    after.shards[0].refused_pool_full += 4;
    after.shards[0].bytes_in += 2048;
    after.shards[1].accepted += 2;
    const auto frame = render_top_frame(stats(before), stats(after), 2.0, 120);
    CHECK(has(frame, "accepted 54  accepts/s 6.0  refused 11  refused/s 2.0"));
    CHECK(has(frame, "in 1.0 KiB/s  out 0 B/s"));
    CHECK(has(frame, "  pool_full              9         2.0"));
    CHECK(has(frame, "  per_source             2         0.0"));
    // Per shard: shard, active, accepted, accepts/s, refused, refused/s, in/s, out/s.
    CHECK(has(frame,
              "    0         3        40       5.0         9       2.0   1.0 KiB/s       0 B/s"));
    CHECK(has(frame,
              "    1         1        14       1.0         2       0.0       0 B/s       0 B/s"));
}

TEST_CASE("a counter that went down is a restarted daemon: no rate, not a negative one") {
    const auto before = sample();
    auto after = before;
    after.shards[0].accepted = 1;
    const auto frame = render_top_frame(stats(before), stats(after), 1.0, 120);
    CHECK(has(frame, "accepted 13  accepts/s -"));
}

TEST_CASE("the pool bar fills to in use over the limit and marks the high water") {
    const auto frame = lines(render_top_frame(json(), stats(sample()), 0, 40));
    REQUIRE(frame.size() > 2);
    // 20 cells at width 40: 4 of 8 in use fills 10, the high water of 6 is at cell 15.
    CHECK(frame[2] == "          [##########....|.....]  50%");
}

TEST_CASE("upstreams show their activity, state and health") {
    const auto frame = render_top_frame(json(), stats(sample()), 0, 120);
    CHECK(has(frame, "backend-a:7000                       3         0  up        unchecked"));
    CHECK(has(frame,
              "backend-b:7000                       0         0  down      timeout (held down)"));
    CHECK_FALSE(has(render_top_frame(json(), stats(server_snapshot{}), 0, 120), "\nupstream "));
}

TEST_CASE("no line is wider than the terminal, and the reasons take the columns that fit") {
    const auto now = stats(sample());
    for (const std::size_t width : {1U, 20U, 40U, 79U, 80U, 120U, 200U})
        for (const auto& line : lines(render_top_frame(now, now, 1, width)))
            CHECK_MESSAGE(line.size() <= width, width, ": ", line);
    CHECK(has(render_top_frame(now, now, 1, 80),
              "  pool_full              5         0.0     per_source"));
    CHECK(has(render_top_frame(now, now, 1, 120),
              "per_source             2         0.0     rate_limited"));
    CHECK_FALSE(has(render_top_frame(now, now, 1, 60), "pool_full              5         0.0  "));
}

TEST_CASE("missing or mistyped fields show '-' instead of failing") {
    for (
        const auto* text : {
            "null",
            "{}",
            "[]",
            R"({"pool": 3, "connections": [], "shards": {}, "upstreams": 7})",
            R"({"pool": {"in_use": "four", "limit": 0}, "shards": [null, 1, {}]})",
            R"({"server": {"version": 2, "uptime_seconds": -5}, "upstreams": [null, {"health": 1}]})",
            // Out of any count's range: negative, or past what a double holds exactly.
            R"({"pool": {"in_use": -3, "limit": 100, "high_water": -1e6}})",
            R"({"pool": {"in_use": 1e30, "limit": 100, "high_water": 5}, "server": {"uptime_seconds": 1e30}})",
        }) {
        CAPTURE(text);
        const auto now = json::parse(text);
        std::string frame;
        CHECK_NOTHROW(frame = render_top_frame(now, now, 1, 80));
        CHECK_NOTHROW(frame = render_top_frame(json(), now, 0, 80));
        CHECK(has(frame, "in use -"));
    }
    auto partial = stats(sample());
    partial["pool"].erase("high_water");
    partial["connections"]["refused_by_reason"].erase("pool_full");
    const auto frame = render_top_frame(json(), partial, 0, 120);
    CHECK(has(frame, "high water -  free 4"));
    CHECK(has(frame, "  pool_full              -           -"));
}
