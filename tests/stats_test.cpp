// Each declared list, walked entry by entry: every counter and gauge is found in /stats at its JSON
// pointer and in /metrics under its family and labels, with the value it was given. A field added
// to a list but left out of a view, or a view written by hand past the list, fails here.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "slabd/server/stats.hpp"

using slabd::server::server_snapshot;
using slabd::server::upstream_snapshot;
using pointer = nlohmann::json::json_pointer;

namespace {

std::string metric_line(std::string_view family, std::string_view type, std::string labels,
                        std::string_view extra_label, double value) {
    if (!extra_label.empty()) labels += (labels.empty() ? "" : ",") + std::string(extra_label);
    std::string name = "slabd_" + std::string(family) + (type == "counter" ? "_total" : "");
    const auto whole = static_cast<std::uint64_t>(value);
    return name + (labels.empty() ? "" : "{" + labels + "}") + " " +
           (static_cast<double>(whole) == value ? std::to_string(whole) : std::to_string(value)) +
           "\n";
}

}  // namespace

TEST_CASE("every shard counter and gauge: its total in /stats, each shard's, and /metrics") {
    server_snapshot s;
    s.shards.resize(2);
    std::uint64_t next = 1;
#define SLABD_SET(name, family, label, json_at, help) \
    s.shards[0].name = next;                          \
    s.shards[1].name = 1000 * next++;
    SLABD_SHARD_COUNTERS(SLABD_SET)
    SLABD_SHARD_GAUGES(SLABD_SET)
#undef SLABD_SET
    const auto j = nlohmann::json::parse(to_json(s));
    const std::string metrics = to_prometheus(s);
    next = 1;
#define SLABD_FIND(name, family, label, json_at, help, type)                                 \
    CHECK_MESSAGE(j.at(pointer(json_at)) == 1001 * next, #name " at " json_at);              \
    CHECK_MESSAGE(j["shards"][1][#name] == 1000 * next, #name " in shards[1]");              \
    CHECK_MESSAGE(metrics.find(metric_line(family, type, "shard=\"0\"", label,               \
                                           static_cast<double>(next))) != std::string::npos, \
                  #name " in /metrics");                                                     \
    ++next;
#define SLABD_COUNTER(name, family, label, json_at, help) \
    SLABD_FIND(name, family, label, json_at, help, "counter")
#define SLABD_GAUGE(name, family, label, json_at, help) \
    SLABD_FIND(name, family, label, json_at, help, "gauge")
    SLABD_SHARD_COUNTERS(SLABD_COUNTER)
    SLABD_SHARD_GAUGES(SLABD_GAUGE)
#undef SLABD_COUNTER
#undef SLABD_GAUGE
#undef SLABD_FIND
}

TEST_CASE("every pool field: in /stats for both pools and in /metrics with its pool label") {
    server_snapshot s;
    std::size_t next = 1;
#define SLABD_SET(field, metric, label, json_at, type, help) \
    s.pool.field = next;                                     \
    s.buffers.field = 100 + next++;
    SLABD_SLAB_STATS(SLABD_SET)
#undef SLABD_SET
    const auto j = nlohmann::json::parse(to_json(s));
    const std::string metrics = to_prometheus(s);
    next = 1;
#define SLABD_FIND(field, metric, label, json_at, type, help)                                      \
    CHECK_MESSAGE(j["pool"].at(pointer(json_at)) == next, #field " in pool");                      \
    CHECK_MESSAGE(j["buffers"].at(pointer(json_at)) == 100 + next, #field " in buffers");          \
    CHECK_MESSAGE(metrics.find(metric_line(metric, #type, "pool=\"connections\"", label,           \
                                           static_cast<double>(next))) != std::string::npos,       \
                  #field " in /metrics");                                                          \
    CHECK_MESSAGE(metrics.find(metric_line(metric, #type, "pool=\"buffers\"", label,               \
                                           static_cast<double>(100 + next))) != std::string::npos, \
                  #field " in /metrics, buffers");                                                 \
    ++next;
    SLABD_SLAB_STATS(SLABD_FIND)
#undef SLABD_FIND
}

TEST_CASE("every upstream field: in /stats and in /metrics labelled by the upstream") {
    server_snapshot s;
    upstream_snapshot u;
    u.name = "backend:8000 (10.0.0.7:8000)";
    u.active = 3;
    u.connect_failures = 5;
    u.down = true;
    u.removed = true;
    u.checked_down = true;
    u.last_check = "timeout";
    u.last_check_us = 1'500'000;
    u.check_transitions = 7;
    u.failures_in_row = 2;
    s.upstreams.push_back(u);
    const auto j = nlohmann::json::parse(to_json(s))["upstreams"][0];
    const std::string metrics = to_prometheus(s);
    CHECK(j["name"] == u.name);
    CHECK(j["state"] == "removed");
    CHECK(j["health"]["last_check"] == "timeout");
#define SLABD_FIND(metric, type, json_at, help, value)                                        \
    CHECK_MESSAGE(j.at(pointer(json_at)) == nlohmann::json(value), metric " at " json_at);    \
    CHECK_MESSAGE(metrics.find(metric_line(metric, #type, "upstream=\"" + u.name + "\"", "",  \
                                           static_cast<double>(value))) != std::string::npos, \
                  metric " in /metrics");
    SLABD_UPSTREAM_STATS(SLABD_FIND)
#undef SLABD_FIND
}

TEST_CASE("every admin counter and every histogram: in /stats and in /metrics") {
    server_snapshot s;
    std::uint64_t next = 1;
#define SLABD_SET(field, family, type, help) s.admin.field = next++;
    SLABD_ADMIN_STATS(SLABD_SET)
#undef SLABD_SET
    s.shards.resize(1);
    const auto j = nlohmann::json::parse(to_json(s));
    const std::string metrics = to_prometheus(s);
    next = 1;
#define SLABD_FIND(field, family, type, help)                                                  \
    CHECK_MESSAGE(j["admin"][#field] == next, #field);                                         \
    CHECK_MESSAGE(metrics.find(std::string("slabd_") + family + " " + std::to_string(next++) + \
                               "\n") != std::string::npos,                                     \
                  #field " in /metrics");
    SLABD_ADMIN_STATS(SLABD_FIND)
#undef SLABD_FIND
#define SLABD_FIND(name, family, label, help, bounds, unit)                                        \
    CHECK_MESSAGE(j["connection_histograms"].contains(#name), #name);                              \
    CHECK_MESSAGE(                                                                                 \
        metrics.find(std::string("# TYPE slabd_") + family + " histogram\n") != std::string::npos, \
        family " in /metrics");
    SLABD_SHARD_HISTOGRAMS(SLABD_FIND)
#undef SLABD_FIND
}
