#include "slabd/server/stats.hpp"

#include <nlohmann/json.hpp>

namespace slabd::server {

shard_snapshot& shard_snapshot::operator+=(const shard_snapshot& other) noexcept {
#define SLABD_ADD(name, help) name += other.name;
    SLABD_SHARD_COUNTERS(SLABD_ADD)
    SLABD_SHARD_GAUGES(SLABD_ADD)
#undef SLABD_ADD
    return *this;
}

shard_snapshot snapshot(const shard_stats& stats) noexcept {
    shard_snapshot s;
#define SLABD_COPY(name, help) s.name = stats.name.load(std::memory_order_relaxed);
    SLABD_SHARD_COUNTERS(SLABD_COPY)
    SLABD_SHARD_GAUGES(SLABD_COPY)
#undef SLABD_COPY
    return s;
}

shard_snapshot server_snapshot::total() const noexcept {
    shard_snapshot sum;
    for (const auto& s : shards) sum += s;
    return sum;
}

namespace {

nlohmann::json pool_json(const pool::slab_stats& p) {
    return {{"block_size", p.block_size},
            {"capacity", p.capacity},
            {"in_use", p.in_use},
            {"free", p.free},
            {"high_water", p.high_water},
            {"allocs", p.allocs},
            {"failed_allocs", p.failed_allocs},
            {"rejected_frees",
             {{"double", p.rejected_double_frees},
              {"foreign", p.rejected_foreign_frees},
              {"misaligned", p.rejected_misaligned_frees}}},
            {"slab_bytes", p.slab_bytes}};
}

nlohmann::json shard_json(const shard_snapshot& s) {
    nlohmann::json j;
#define SLABD_FIELD(name, help) j[#name] = s.name;
    SLABD_SHARD_COUNTERS(SLABD_FIELD)
    SLABD_SHARD_GAUGES(SLABD_FIELD)
#undef SLABD_FIELD
    return j;
}

}  // namespace

std::string to_json(const server_snapshot& s) {
    const shard_snapshot t = s.total();
    nlohmann::json shards = nlohmann::json::array();
    for (std::size_t i = 0; i < s.shards.size(); ++i) {
        nlohmann::json one = shard_json(s.shards[i]);
        one["shard"] = i;
        shards.push_back(std::move(one));
    }
    const nlohmann::json j = {
        {"server",
         {{"version", s.version},
          {"mode", s.mode},
          {"uptime_seconds", s.uptime_seconds},
          {"threads", s.threads},
          {"draining", s.draining}}},
        {"pool", pool_json(s.pool)},
        {"buffers", pool_json(s.buffers)},
        {"connections",
         {{"accepted", t.accepted},
          {"refused", t.refused},
          {"paused", t.paused},
          {"active", t.active},
          {"accept_errors", t.accept_errors},
          {"buffer_waits", t.buffer_waits},
          {"closed",
           {{"client_eof", t.closed_client_eof},
            {"idle_timeout", t.closed_idle_timeout},
            {"error", t.closed_error},
            {"upstream_failure", t.closed_upstream_failure},
            {"shutdown", t.closed_shutdown}}}}},
        {"bytes", {{"in", t.bytes_in}, {"out", t.bytes_out}}},
        {"upstream_connect_failures", t.upstream_connect_failures},
        {"op_memory_overflows", s.op_memory_overflows},
        {"shards", std::move(shards)},
    };
    return j.dump();
}

}  // namespace slabd::server
