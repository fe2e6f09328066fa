// The server's counters and gauges, declared once (Envoy's ALL_*_STATS pattern): the per-shard
// struct, the snapshot, the JSON and the Prometheus text are all generated from the lists below,
// so a new counter cannot be half-wired.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "slabd/pool/slab.hpp"

namespace slabd::server {

// Why a newcomer was turned away before it got a pool block (docs/design.md, decision 12), in
// the order /stats and /metrics list them. M(X, reason) for each; see SLABD_SHARD_COUNTERS.
// proxy_untrusted is refused before a block is taken; a PROXY header that is invalid or late
// (accept_proxy), or a proxy client for whom every upstream is down, is found while the
// connection holds one, which it returns at once.
// clang-format off
#define SLABD_REFUSAL_REASONS(M, X)                                                         \
    M(X, pool_full) M(X, per_source) M(X, rate_limited) M(X, fd_limit) M(X, draining)      \
    M(X, proxy_untrusted) M(X, proxy_invalid) M(X, proxy_timeout) M(X, no_upstream)
// clang-format on
#define SLABD_REFUSAL_COUNTER(X, reason)                                 \
    X(refused_##reason, "connections_refused", "reason=\"" #reason "\"", \
      "/connections/refused_by_reason/" #reason, "Connections refused, by reason")

enum class refusal_reason : std::uint8_t {
#define SLABD_ENUMERATOR(X, reason) reason,
    SLABD_REFUSAL_REASONS(SLABD_ENUMERATOR, )
#undef SLABD_ENUMERATOR
};
#define SLABD_COUNT_ONE(X, reason) +1
inline constexpr std::size_t refusal_reasons = 0 SLABD_REFUSAL_REASONS(SLABD_COUNT_ONE, );
#undef SLABD_COUNT_ONE
/// "pool_full", "per_source"...: the reason's label in /stats, /metrics and the log.
inline constexpr std::array<const char*, refusal_reasons> refusal_names{
#define SLABD_NAME(X, reason) #reason,
    SLABD_REFUSAL_REASONS(SLABD_NAME, )
#undef SLABD_NAME
};

// X(field, metric family, label, JSON pointer of the total in /stats, help). Counters only grow;
// gauges go up and down. Fields of one family stand together, so the Prometheus text writes each
// family's HELP and TYPE once. Each shard's object in /stats "shards" names them by field.
// clang-format off
#define SLABD_SHARD_COUNTERS(X)                                                                   \
    X(accepted, "connections_accepted", "", "/connections/accepted",                             \
      "Connections accepted and given a pool block (under accept_proxy: once their PROXY header " \
      "came)")                                                                                    \
    SLABD_REFUSAL_REASONS(SLABD_REFUSAL_COUNTER, X)                                               \
    X(paused, "accept_pauses", "", "/connections/paused",                                         \
      "Times accepting paused because the connection pool was full")                              \
    X(held_for_closes, "accept_holds_for_closes", "", "/connections/held_for_closes",             \
      "Newcomers that found no room (a block, their source's share) held for one pass of the "    \
      "event loop, so that clients that hung up give theirs back first")                          \
    X(closed_client_eof, "connections_closed", "reason=\"client_eof\"",                           \
      "/connections/closed/client_eof", "Connections closed, by reason")                          \
    X(closed_idle_timeout, "connections_closed", "reason=\"idle_timeout\"",                       \
      "/connections/closed/idle_timeout", "")                                                     \
    X(closed_error, "connections_closed", "reason=\"error\"", "/connections/closed/error", "")    \
    X(closed_upstream_failure, "connections_closed", "reason=\"upstream_failure\"",               \
      "/connections/closed/upstream_failure", "")                                                 \
    X(closed_shutdown, "connections_closed", "reason=\"shutdown\"",                               \
      "/connections/closed/shutdown", "")                                                         \
    X(closed_evicted, "connections_closed", "reason=\"evicted\"", "/connections/closed/evicted",  \
      "")                                                                                         \
    X(bytes_in, "bytes_read", "", "/bytes/in", "Bytes read from clients and upstreams")          \
    X(bytes_out, "bytes_written", "", "/bytes/out", "Bytes written to clients and upstreams")     \
    X(bytes_spliced, "bytes_spliced", "", "/bytes/spliced",                                       \
      "Bytes relayed zero-copy with splice(2), of those written")                                 \
    X(splice_pipes_lost, "splice_pipes_lost", "", "/splice_pipes/lost",                           \
      "Splice pipes dropped because no replacement could be made")                                \
    X(accept_errors, "accept_errors", "", "/connections/accept_errors",                           \
      "accept() failures (EMFILE, ENFILE, ENOBUFS...), each backed off")                          \
    X(upstream_connect_failures, "proxy_connect_failures", "", "/upstream_connect_failures",      \
      "Upstream connects that failed or timed out")                                               \
    X(proxy_headers_received, "proxy_headers_received", "", "/proxy_protocol/headers_received",   \
      "PROXY protocol headers taken from trusted load balancers")                                 \
    X(proxy_headers_sent, "proxy_headers_sent", "", "/proxy_protocol/headers_sent",               \
      "PROXY protocol headers sent to upstreams")                                                 \
    X(buffer_waits, "buffer_waits", "", "/connections/buffer_waits",                              \
      "Times a connection stopped reading because the buffer pool was empty")                     \
    X(linger_timeouts, "linger_timeouts", "", "/linger/timeouts",                                 \
      "Lingering closes cut short: the peer kept sending past the linger time")                   \
    X(linger_overflows, "linger_overflows", "", "/linger/overflows",                              \
      "Closes that could not linger: every slot was taken, or epoll had no room")                 \
    X(connection_log_skipped, "connection_log_skipped", "", "/connection_log/skipped",            \
      "Connection log lines not written: past log.connections_rate, or the writer was behind")

#define SLABD_SHARD_GAUGES(X)                                                                     \
    X(active, "connections_active", "", "/connections/active", "Connections open")                \
    X(splice_pipes_in_use, "splice_pipes_in_use", "", "/splice_pipes/in_use",                     \
      "Splice pipes lent to relays, holding bytes")                                               \
    X(lingering, "lingering_sockets", "", "/linger/active",                                       \
      "Closed clients whose socket lingers until the peer is done sending")
// clang-format on

// Bucket upper bounds of the per-connection histograms, each in its unit; values past the last
// land in +Inf. Durations, in microseconds, step 1-2-5 per decade from 100 us (a loopback
// request-reply) to 5000 s: bounds people read at a glance, three per tenfold. Bytes step by
// four from 64 B to 1 GiB, binary sizes that line up with buffers and pages; 0 stands alone
// because a connection that carried nothing (a health check, a port scan) is its own kind.
// clang-format off
inline constexpr std::array<std::uint64_t, 24> duration_bounds_us{
    100, 200, 500, 1'000, 2'000, 5'000, 10'000, 20'000, 50'000, 100'000, 200'000, 500'000,
    1'000'000, 2'000'000, 5'000'000, 10'000'000, 20'000'000, 50'000'000, 100'000'000,
    200'000'000, 500'000'000, 1'000'000'000, 2'000'000'000, 5'000'000'000};
inline constexpr std::array<std::uint64_t, 14> byte_bounds{
    0, 64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20,
    64 << 20, 256 << 20, 1 << 30};
// clang-format on

// Recorded as each served connection closes (not the refused ones, so that a histogram's count
// is the sum of connections_closed). X(field, metric family, label, help, bounds, units per
// Prometheus unit); fields of one family stand together, as above.
#define SLABD_SHARD_HISTOGRAMS(X)                                                              \
    X(duration, "connection_duration_seconds", "",                                             \
      "How long connections stayed open, from accept to close", duration_bounds_us, 1'000'000) \
    X(bytes_received, "connection_bytes", "direction=\"received\"",                            \
      "Bytes per connection: received from the client, and sent to it", byte_bounds, 1)        \
    X(bytes_sent, "connection_bytes", "direction=\"sent\"", "", byte_bounds, 1)

/// A histogram's buckets, each counting the values up to its bound and above the one before.
template <std::size_t Bounds>
struct histogram_stats {
    std::array<std::atomic<std::uint64_t>, Bounds + 1> buckets{};  // the last: +Inf
    std::atomic<std::uint64_t> sum{0};
};
template <std::size_t Bounds>
struct histogram_snapshot {
    std::array<std::uint64_t, Bounds + 1> buckets{};
    std::uint64_t sum = 0;
    [[nodiscard]] std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (const auto b : buckets) n += b;
        return n;
    }
    histogram_snapshot& operator+=(const histogram_snapshot& other) noexcept {
        for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
        sum += other.sum;
        return *this;
    }
};

// The admin endpoint's own counters and gauges: X(field, metric family, type, help). JSON shows
// them under "admin" by field name; Prometheus as slabd_<family>.
#define SLABD_ADMIN_STATS(X)                                                          \
    X(sessions_active, "admin_sessions_active", gauge, "Admin HTTP connections open") \
    X(sessions_refused, "admin_sessions_refused_total", counter,                      \
      "Admin HTTP connections turned away: every session was answering a request")    \
    X(sessions_evicted, "admin_sessions_evicted_total", counter,                      \
      "Admin sessions closed to make room because they had not completed a request")  \
    X(accept_errors, "admin_accept_errors_total", counter,                            \
      "accept() failures on the admin listener")                                      \
    X(reserve_used, "admin_reserve_used_total", counter,                              \
      "Times the reserved descriptor was given up to answer an admin client at the fd limit")

/// The admin endpoint's statistics, copied at one moment.
struct admin_snapshot {
#define SLABD_DECLARE(name, family, type, help) std::uint64_t name = 0;
    SLABD_ADMIN_STATS(SLABD_DECLARE)
#undef SLABD_DECLARE
};

/// One shard's statistics. Written only by the shard's thread (relaxed load+store, no
/// read-modify-write), read by the admin thread.
struct shard_stats {
#define SLABD_DECLARE(name, family, label, json, help) std::atomic<std::uint64_t> name{0};
    SLABD_SHARD_COUNTERS(SLABD_DECLARE)
    SLABD_SHARD_GAUGES(SLABD_DECLARE)
#undef SLABD_DECLARE
#define SLABD_DECLARE(name, family, label, help, bounds, unit) histogram_stats<bounds.size()> name;
    SLABD_SHARD_HISTOGRAMS(SLABD_DECLARE)
#undef SLABD_DECLARE
};

/// Adds to a counter owned by the calling thread: cheaper than fetch_add, still race-free.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}
inline void drop(std::atomic<std::uint64_t>& gauge) noexcept {
    gauge.store(gauge.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}
/// Counts `value` into the first bucket whose bound holds it; by the owning thread, as bump().
template <std::size_t N>
void record(histogram_stats<N>& h, const std::array<std::uint64_t, N>& bounds,
            std::uint64_t value) noexcept {
    std::size_t i = 0;
    while (i < N && value > bounds[i]) ++i;
    bump(h.buckets[i]);
    bump(h.sum, value);
}

/// A plain copy of one shard's statistics.
struct shard_snapshot {
#define SLABD_DECLARE(name, family, label, json, help) std::uint64_t name = 0;
    SLABD_SHARD_COUNTERS(SLABD_DECLARE)
    SLABD_SHARD_GAUGES(SLABD_DECLARE)
#undef SLABD_DECLARE
#define SLABD_DECLARE(name, family, label, help, bounds, unit) \
    histogram_snapshot<bounds.size()> name;
    SLABD_SHARD_HISTOGRAMS(SLABD_DECLARE)
#undef SLABD_DECLARE
    shard_snapshot& operator+=(const shard_snapshot& other) noexcept;
    /// Newcomers refused, whatever the reason.
    [[nodiscard]] std::uint64_t refused() const noexcept {
#define SLABD_ADD(X, reason) +refused_##reason
        return 0 SLABD_REFUSAL_REASONS(SLABD_ADD, );
#undef SLABD_ADD
    }
    /// The refusal counter for `why`.
    [[nodiscard]] std::uint64_t refused(refusal_reason why) const noexcept;
};
shard_snapshot snapshot(const shard_stats& stats) noexcept;

/// One proxy upstream as /stats and /metrics show it.
struct upstream_snapshot {
    std::string name;
    std::uint64_t active = 0;
    std::uint64_t connect_failures = 0;
    bool down = false;          // passively marked failed and being skipped, or checked down
    bool removed = false;       // removed at a reload: takes no new clients, its relays finish
    bool checked_down = false;  // active health checks hold it down: no new clients at all
    const char* last_check = "none";
    std::uint64_t last_check_us = 0;
    std::uint64_t check_transitions = 0;
    std::uint32_t failures_in_row = 0;
};

// What /stats and /metrics show of each upstream besides its name, state and last check's
// outcome, declared once: X(metric family, type, JSON pointer in the upstream's object, help,
// value), the value an expression of the upstream_snapshot `u`; /metrics labels each by upstream.
// clang-format off
#define SLABD_UPSTREAM_STATS(X)                                                                   \
    X("upstream_active_connections", gauge, "/active", "Clients relayed to this upstream now",    \
      u.active)                                                                                   \
    X("upstream_connect_failures", counter, "/connect_failures",                                  \
      "Failed or timed-out connects to this upstream", u.connect_failures)                        \
    X("upstream_up", gauge, "/up",                                                                \
      "0 while the upstream is held down by health checks or marked failed and skipped", !u.down) \
    X("upstream_removed", gauge, "/removed", "1 while a removed upstream's relays finish",        \
      u.removed)                                                                                  \
    X("upstream_checked_down", gauge, "/health/down",                                             \
      "1 while active health checks hold the upstream down", u.checked_down)                      \
    X("upstream_check_failures_in_row", gauge, "/health/failures_in_row",                         \
      "Failed health checks and client connects since the last success", u.failures_in_row)       \
    X("upstream_check_transitions", counter, "/health/transitions",                               \
      "Times health checks took the upstream down or brought it up", u.check_transitions)         \
    X("upstream_last_check_seconds", gauge, "/health/last_check_seconds",                         \
      "How long the last health check took", static_cast<double>(u.last_check_us) / 1e6)
// clang-format on

/// The outcome of the reloads (SIGHUP) so far, as /stats shows it.
struct reload_snapshot {
    std::uint64_t applied = 0;         // reloads whose config loaded (changed something or not)
    std::uint64_t rejected = 0;        // reloads whose config did not load: nothing changed
    std::string last = "none";         // "none", "applied" or "rejected"
    std::vector<std::string> changed;  // by the last applied reload, "key old -> new"
    std::vector<std::string> needs_restart;  // keys that differ from the running ones
    std::string error;                       // why the last rejected reload was rejected
};

/// The admission limits as /stats shows them: who holds the most connections.
struct limits_snapshot {
    std::uint32_t max_per_source = 0;  // 0: off
    std::uint32_t accept_rate = 0;     // 0: off
    std::size_t sources = 0;           // sources holding a connection now
    struct source {
        std::string name;  // "192.0.2.7", "2001:db8::/64"
        std::uint32_t connections = 0;
    };
    std::vector<source> top_sources;  // most connections first
};

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
    std::uint64_t upstream_resolve_failures =
        0;  // name lookups that failed, keeping the last addresses
    admin_snapshot admin;
    limits_snapshot limits;
    reload_snapshot reload;
    bool draining = false;
    std::size_t ready_headroom = 1;  // free blocks below which the server is not ready
    std::vector<shard_snapshot> shards;
    std::vector<upstream_snapshot> upstreams;
    shard_snapshot total() const noexcept;
};

/// The JSON body of GET /stats.
std::string to_json(const server_snapshot& s);
/// The body of GET /metrics: Prometheus text exposition format 0.0.4.
std::string to_prometheus(const server_snapshot& s);
/// Whether a load balancer should send new clients: enough free blocks and not draining.
bool ready(const server_snapshot& s) noexcept;

}  // namespace slabd::server
