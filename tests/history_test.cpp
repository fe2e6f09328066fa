#include "history.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <string>

#include "admin.hpp"

using slabd::server::history;

namespace {

history::shard_sample shard(std::uint64_t accepted, std::uint64_t pool_full) {
    history::shard_sample s;
    s.accepted = accepted;
    s.active = accepted / 2;
    s.refused[static_cast<std::size_t>(slabd::server::refusal_reason::pool_full)] = pool_full;
    s.bytes_in = accepted * 10;
    return s;
}

void record(history& h, std::int64_t t, std::uint64_t in_use) {
    const std::array shards{shard(static_cast<std::uint64_t>(t), 1), shard(2, 3)};
    const std::array upstreams{history::upstream_sample{history::upstream_state::up, 1},
                               history::upstream_sample{history::upstream_state::down, 1}};
    h.record({0, t, in_use, 100, 90, 5}, shards, upstreams);
}

const std::array<history::upstream_now, 2> now{history::upstream_now{"a:1", 1},
                                               history::upstream_now{"b:2", 1}};

}  // namespace

TEST_CASE("a sample keeps the pool, each shard, their sum and each upstream's state") {
    history h(2);
    record(h, 1000, 40);
    const auto j = nlohmann::json::parse(h.to_json(0, now));
    CHECK(j["interval_ms"] == 1000);
    CHECK(j["depth"] == history::depth);
    CHECK(j["reasons"][0] == "pool_full");
    CHECK(j["upstreams"] == nlohmann::json{"a:1", "b:2"});
    REQUIRE(j["samples"].size() == 1);
    const auto& s = j["samples"][0];
    CHECK(s["seq"] == 1);
    CHECK(j["last_seq"] == 1);
    CHECK(s["t"] == 1000);
    CHECK(s["pool"]["in_use"] == 40);
    CHECK(s["pool"]["capacity"] == 100);
    CHECK(s["pool"]["limit"] == 90);
    CHECK(s["pool"]["ready_headroom"] == 5);
    CHECK(s["accepted"] == 1002);
    CHECK(s["refused"][0] == 4);
    CHECK(s["bytes_in"] == 10020);
    CHECK(s["shards"].size() == 2);
    CHECK(s["shards"][1]["refused"][0] == 3);
    CHECK(s["upstreams"] == nlohmann::json{"up", "down"});
}

TEST_CASE("the ring keeps the last `depth` samples, oldest first, and `since` skips older ones") {
    history h(2);
    for (std::int64_t t = 1; t <= static_cast<std::int64_t>(history::depth) + 50; ++t)
        record(h, t, static_cast<std::uint64_t>(t));
    CHECK(h.size() == history::depth);
    const auto all = nlohmann::json::parse(h.to_json(0, {}))["samples"];
    REQUIRE(all.size() == history::depth);
    CHECK(all.front()["seq"] == 51);
    CHECK(all.back()["seq"] == history::depth + 50);
    const auto recent = nlohmann::json::parse(h.to_json(history::depth + 47, {}))["samples"];
    REQUIRE(recent.size() == 3);
    CHECK(recent[0]["seq"] == history::depth + 48);
}

TEST_CASE("the cursor is the sample's number, not the wall clock, which may step back") {
    history h(1);
    const std::array<history::shard_sample, 1> shards{};
    h.record({0, 5'000, 1, 1, 1, 0}, shards, {});
    h.record({0, 2'000, 2, 1, 1, 0}, shards, {});  // the clock stepped back 3 s
    const auto after_first = nlohmann::json::parse(h.to_json(1, {}))["samples"];
    REQUIRE(after_first.size() == 1);
    CHECK(after_first[0]["pool"]["in_use"] == 2);
}

TEST_CASE("a slot's history is its current tenant's: a reused slot shows none before it came") {
    history h(1);
    const std::array<history::shard_sample, 1> shards{};
    const std::array old_tenant{history::upstream_sample{history::upstream_state::down, 3}};
    const std::array new_tenant{history::upstream_sample{history::upstream_state::up, 4}};
    h.record({0, 1, 0, 1, 1, 0}, shards, old_tenant);
    h.record({0, 2, 0, 1, 1, 0}, shards, new_tenant);
    const std::array<history::upstream_now, 1> slot{history::upstream_now{"b:2", 4}};
    const auto samples = nlohmann::json::parse(h.to_json(0, slot))["samples"];
    REQUIRE(samples.size() == 2);
    CHECK(samples[0]["upstreams"][0] == "none");
    CHECK(samples[1]["upstreams"][0] == "up");
}

TEST_CASE("the slab map's JSON: cells, the carved mark, the head, the limit") {
    slabd::pool::slab_map m;
    m.capacity = 6;
    m.carved = 3;
    m.head = 1;
    m.in_use = {1, 0, 1, 0, 0, 0};
    const auto j = nlohmann::json::parse(slabd::server::slab_map_json(m, 5));
    CHECK(j["capacity"] == 6);
    CHECK(j["limit"] == 5);
    CHECK(j["blocks_per_cell"] == 1);
    CHECK(j["carved"] == 3);
    CHECK(j["head"] == 1);
    CHECK(j["in_use"] == nlohmann::json{1, 0, 1, 0, 0, 0});
    m.head = slabd::pool::slab_map::none;
    CHECK(nlohmann::json::parse(slabd::server::slab_map_json(m, 5))["head"].is_null());
}
