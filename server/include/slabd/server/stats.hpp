// The server's counters and gauges, declared once (Envoy's ALL_*_STATS pattern): the per-shard
// struct, the snapshot, the JSON and (later) the Prometheus text are all generated from the lists
// below, so a new counter cannot be half-wired.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "slabd/pool/slab.hpp"

namespace slabd::server {

// X(name, help). Counters only grow; gauges go up and down.
#define SLABD_SHARD_COUNTERS(X)                                                          \
    X(accepted, "Connections accepted and given a pool block")                           \
    X(refused, "Connections refused because the connection pool was exhausted")          \
    X(paused, "Times accepting paused because the connection pool was exhausted")        \
    X(closed_client_eof, "Connections closed after the client finished")                 \
    X(closed_idle_timeout, "Connections closed by the idle timeout")                     \
    X(closed_error, "Connections closed by a socket error or reset")                     \
    X(closed_upstream_failure, "Proxy connections closed because no upstream answered")  \
    X(closed_shutdown, "Connections closed when the shutdown grace period ran out")      \
    X(bytes_in, "Bytes read from clients and upstreams")                                 \
    X(bytes_out, "Bytes written to clients and upstreams")                               \
    X(accept_errors, "accept() failures (EMFILE, ENFILE, ENOBUFS, ...), each backed off") \
    X(upstream_connect_failures, "Upstream connection attempts that failed or timed out") \
    X(buffer_waits, "Times a connection stopped reading because the buffer pool was empty")

#define SLABD_SHARD_GAUGES(X) X(active, "Connections open on this shard")

/// One shard's statistics. Written only by the shard's thread (relaxed load+store, no
/// read-modify-write), read by the admin thread.
struct shard_stats {
#define SLABD_DECLARE(name, help) std::atomic<std::uint64_t> name{0};
    SLABD_SHARD_COUNTERS(SLABD_DECLARE)
    SLABD_SHARD_GAUGES(SLABD_DECLARE)
#undef SLABD_DECLARE
};

/// Adds to a counter owned by the calling thread: cheaper than fetch_add, still race-free.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}
inline void drop(std::atomic<std::uint64_t>& gauge) noexcept {
    gauge.store(gauge.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

/// A plain copy of one shard's statistics.
struct shard_snapshot {
#define SLABD_DECLARE(name, help) std::uint64_t name = 0;
    SLABD_SHARD_COUNTERS(SLABD_DECLARE)
    SLABD_SHARD_GAUGES(SLABD_DECLARE)
#undef SLABD_DECLARE
    shard_snapshot& operator+=(const shard_snapshot& other) noexcept;
};
shard_snapshot snapshot(const shard_stats& stats) noexcept;

/// Everything /stats reports, taken at one moment.
struct server_snapshot {
    std::string version;
    std::string mode;
    double uptime_seconds = 0;
    unsigned threads = 0;
    pool::slab_stats pool;
    pool::slab_stats buffers;
    std::size_t buffer_size = 0;
    std::uint64_t op_memory_overflows = 0;
    bool draining = false;
    std::vector<shard_snapshot> shards;
    shard_snapshot total() const noexcept;
};

/// The JSON body of GET /stats.
std::string to_json(const server_snapshot& s);

}  // namespace slabd::server
