#include "admin.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using slabd::server::route;
using slabd::server::server_snapshot;

namespace {

server_snapshot sample() {
    server_snapshot s;
    s.version = "1.2.3";
    s.mode = "echo";
    s.threads = 2;
    s.pool.block_size = 320;
    s.pool.capacity = 100;
    s.pool.in_use = 40;
    s.pool.free = 60;
    s.pool.high_water = 70;
    s.shards.resize(2);
    s.shards[0].accepted = 30;
    s.shards[1].accepted = 12;
    s.shards[0].refused = 5;
    s.shards[1].active = 7;
    return s;
}

}  // namespace

TEST_CASE("/stats is JSON with the pool and the per-shard counters summed") {
    const auto r = route("GET", "/stats", sample());
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    const auto j = nlohmann::json::parse(r.body);
    CHECK(j["pool"]["block_size"] == 320);
    CHECK(j["pool"]["capacity"] == 100);
    CHECK(j["pool"]["in_use"] == 40);
    CHECK(j["pool"]["free"] == 60);
    CHECK(j["pool"]["high_water"] == 70);
    CHECK(j["connections"]["accepted"] == 42);
    CHECK(j["connections"]["refused"] == 5);
    CHECK(j["connections"]["active"] == 7);
    CHECK(j["shards"].size() == 2);
    CHECK(j["shards"][1]["accepted"] == 12);
    CHECK(j["server"]["version"] == "1.2.3");
}

TEST_CASE("routes answer by path, ignore the query, and refuse other methods") {
    CHECK(route("GET", "/stats?pretty=1", sample()).status == 200);
    CHECK(route("HEAD", "/stats", sample()).status == 200);
    CHECK(route("GET", "/healthz", sample()).status == 200);
    CHECK(route("GET", "/nope", sample()).status == 404);
    CHECK(route("POST", "/stats", sample()).status == 405);
    CHECK(route("DELETE", "/healthz", sample()).status == 405);
}
