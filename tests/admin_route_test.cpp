#include "admin.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <sstream>
#include <string>

using slabd::server::admin_request;
using slabd::server::route;
using slabd::server::server_snapshot;

namespace {

server_snapshot sample() {
    server_snapshot s;
    s.version = "1.2.3";
    s.mode = "proxy";
    s.threads = 2;
    s.pool.block_size = 320;
    s.pool.capacity = 100;
    s.pool.in_use = 40;
    s.pool.free = 60;
    s.pool.high_water = 70;
    s.ready_headroom = 1;
    s.shards.resize(2);
    s.shards[0].accepted = 30;
    s.shards[1].accepted = 12;
    s.shards[0].refused_pool_full = 5;
    s.shards[1].active = 7;
    s.shards[0].closed_idle_timeout = 3;
    s.upstreams.push_back({"127.0.0.1:8000", 4, 2, false});
    s.upstreams.push_back({"[::1]:8001", 0, 9, true});
    return s;
}

slabd::server::admin_response get(std::string_view target, const server_snapshot& s = sample(),
                                  const slabd::config::Config& c = {}, std::string_view auth = {}) {
    return route(admin_request{"GET", target, auth}, s, c);
}

}  // namespace

TEST_CASE("/stats is JSON with the pool, the per-shard counters summed, and the upstreams") {
    const auto r = get("/stats");
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
    CHECK(j["connections"]["closed"]["idle_timeout"] == 3);
    CHECK(j["shards"].size() == 2);
    CHECK(j["shards"][1]["accepted"] == 12);
    CHECK(j["server"]["version"] == "1.2.3");
    CHECK(j["upstreams"][1]["state"] == "down");
    CHECK(j["upstreams"][0]["active"] == 4);
}

TEST_CASE("routes answer by path, ignore the query, and refuse other methods") {
    CHECK(get("/stats?pretty=1").status == 200);
    CHECK(route(admin_request{"HEAD", "/stats", {}}, sample(), {}).status == 200);
    CHECK(get("/healthz").status == 200);
    CHECK(get("/nope").status == 404);
    const auto post = route(admin_request{"POST", "/stats", {}}, sample(), {});
    CHECK(post.status == 405);
    CHECK(post.extra_headers == "Allow: GET, HEAD\r\n");
    CHECK(route(admin_request{"DELETE", "/healthz", {}}, sample(), {}).status == 405);
}

TEST_CASE("/readyz is 503 when free blocks fall below the headroom and while draining") {
    auto s = sample();
    s.ready_headroom = 60;
    CHECK(get("/readyz", s).status == 200);
    s.ready_headroom = 61;
    CHECK(get("/readyz", s).status == 503);
    s.ready_headroom = 1;
    s.draining = true;
    const auto draining = get("/readyz", s);
    CHECK(draining.status == 503);
    CHECK(draining.body == "draining\n");
}

TEST_CASE("with a token, data routes need it and probes do not") {
    slabd::config::Config c;
    c.admin_token = "s3cret";
    CHECK(get("/stats", sample(), c).status == 401);
    CHECK(get("/stats", sample(), c).extra_headers == "WWW-Authenticate: Bearer\r\n");
    CHECK(get("/metrics", sample(), c, "Bearer wrong!").status == 401);
    CHECK(get("/config", sample(), c, "Bearer s3cre").status == 401);
    CHECK(get("/stats", sample(), c, "Basic s3cret").status == 401);
    CHECK(get("/stats", sample(), c, "Bearer s3cret").status == 200);
    CHECK(get("/healthz", sample(), c).status == 200);
    CHECK(get("/readyz", sample(), c).status == 200);
    CHECK(get("/", sample(), c).status == 200);
}

TEST_CASE("/config is the effective configuration as JSON with the token redacted") {
    slabd::config::Config c;
    c.admin_token = "s3cret";
    c.max_connections = 123;
    const auto r = get("/config", sample(), c, "Bearer s3cret");
    CHECK(r.status == 200);
    CHECK(r.body.find("s3cret") == std::string::npos);
    const auto j = nlohmann::json::parse(r.body);
    CHECK(j["pool"]["max_connections"] == 123);
    CHECK(j["admin"]["token"] == "<redacted>");
    CHECK(j["server"]["listen"] == "127.0.0.1:7000");
}

TEST_CASE("/metrics is Prometheus text: one HELP and TYPE per family, counters end in _total") {
    const auto r = get("/metrics");
    CHECK(r.status == 200);
    CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    std::istringstream lines(r.body);
    std::set<std::string> helped;
    std::string line;
    int samples = 0;
    while (std::getline(lines, line)) {
        if (line.rfind("# HELP ", 0) == 0) {
            const std::string family = line.substr(7, line.find(' ', 7) - 7);
            CHECK_MESSAGE(helped.insert(family).second, "family described twice: " << family);
            CHECK(family.rfind("slabd_", 0) == 0);
        } else if (line.rfind("# TYPE ", 0) == 0) {
            if (line.find(" counter") != std::string::npos)
                CHECK(line.find("_total counter") != std::string::npos);
        } else {
            ++samples;
            CHECK(line.rfind("slabd_", 0) == 0);
        }
    }
    CHECK(samples > 30);
    CHECK(r.body.find("slabd_connections_accepted_total{shard=\"0\"} 30\n") != std::string::npos);
    CHECK(r.body.find("slabd_connections_closed_total{shard=\"0\",reason=\"idle_timeout\"} 3\n") !=
          std::string::npos);
    CHECK(r.body.find("slabd_pool_in_use_blocks{pool=\"connections\"} 40\n") != std::string::npos);
    CHECK(r.body.find("slabd_upstream_up{upstream=\"[::1]:8001\"} 0\n") != std::string::npos);
}

TEST_CASE("/ is a self-contained HTML page that polls /stats") {
    const auto r = get("/");
    CHECK(r.status == 200);
    CHECK(r.content_type == "text/html; charset=utf-8");
    CHECK(r.body.find("fetch(\"/stats\"") != std::string::npos);
    CHECK(r.body.find("id=\"pool-in-use\"") != std::string::npos);
    CHECK(r.body.find("http://") == std::string::npos);
    CHECK(r.body.find("https://") == std::string::npos);
}

TEST_CASE("/stats/history and /stats/slab: token-guarded views, a bad query is a 400") {
    const slabd::server::admin_views views{
        [](std::uint64_t since) { return "{\"since\":" + std::to_string(since) + "}"; },
        [] { return std::string("{\"capacity\":4}"); }};
    const auto ask = [&](std::string_view target, std::string_view auth = {}) {
        slabd::config::Config c;
        c.admin_token = "sesame";
        return route(admin_request{"GET", target, auth}, sample(), c, views);
    };
    CHECK(ask("/stats/history").status == 401);
    CHECK(ask("/stats/slab").status == 401);
    CHECK(ask("/stats/history", "Bearer sesame").body == "{\"since\":0}");
    CHECK(ask("/stats/history?since=1234", "Bearer sesame").body == "{\"since\":1234}");
    CHECK(ask("/stats/slab", "Bearer sesame").body == "{\"capacity\":4}");
    for (const char* bad :
         {"/stats/history?since=", "/stats/history?since=x", "/stats/history?since=-5",
          "/stats/history?until=5", "/stats/history?since=5&x=1"})
        CHECK_MESSAGE(ask(bad, "Bearer sesame").status == 400, bad);
    CHECK(get("/stats/history").status == 503);  // no views: nothing kept, said so
}
