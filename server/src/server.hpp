// The daemon's data plane and its lifetime: the connection pool (exact capacity across all
// shards), the shards and their threads, the admin listener, and the stop signals.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connection.hpp"
#include "connection_log.hpp"
#include "handover.hpp"
#include "history.hpp"
#include "shard.hpp"
#include "slabd/config/config.hpp"
#include "slabd/pool/object_pool.hpp"
#include "slabd/server/stats.hpp"
#include "upstreams.hpp"

namespace slabd::server {

class admin;
class health_checker;
class upstream_resolver;

/// How this process came by its listeners, and what it gives the process that takes over next.
struct handover_setup {
    std::optional<taken_over> inherited;    // the listeners of the process before; none: bind
    int pidfile = -1;                       // the locked pidfile to pass on; -1: none
    std::function<void()> release_pidfile;  // the next process holds the pidfile now
};

class server final : private shard_events {
  public:
    /// Builds the pools and binds every listener, or adopts those taken over; throws
    /// std::system_error when a bind fails, std::runtime_error when the listeners taken over are
    /// not the ones configured.
    explicit server(const config::Config& settings, handover_setup handover = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Serves until SIGINT/SIGTERM (or request_stop()) and the drain finish.
    void run();
    /// Thread-safe: begin the graceful drain.
    void request_stop();
    /// Runs `handler` on the control thread for each SIGHUP; set it before run().
    void on_hangup(std::function<void()> handler) { on_hangup_ = std::move(handler); }
    /// How to start this program again: SIGUSR2 starts it so, and the new process takes the
    /// listeners over the handover socket (a restart in place, e.g. onto a new binary).
    struct successor {
        std::string program;
        std::vector<std::string> args;
    };
    void on_upgrade(successor how) { successor_ = std::move(how); }
    /// On the control thread (the SIGHUP handler): adopts what can change at run time from
    /// `next`, logs each change, and names the changed settings that need a restart.
    void reload(const config::Config& next);
    /// On the control thread: a reload whose config did not load; nothing changed. For /stats.
    void reload_rejected(const std::string& why);
    /// Passes a fork (daemonize) on to every io_context; before run() only.
    void notify_fork(asio::execution_context::fork_event event);

    [[nodiscard]] asio::ip::tcp::endpoint data_endpoint() const;
    [[nodiscard]] asio::ip::tcp::endpoint admin_endpoint() const;
    /// with_top_sources: also scan the source table for who holds the most (for /stats only:
    /// the scan reads the whole table, too much for every probe and scrape).
    [[nodiscard]] server_snapshot snapshot(bool with_top_sources = false) const;
    /// The settings as started, with reloads applied; read them on the control thread, or only
    /// those that reload() never changes.
    [[nodiscard]] const config::Config& settings() const noexcept { return settings_; }

    [[nodiscard]] const connection_pool& connections() const noexcept { return connections_; }

    /// On the control thread: the body of GET /stats/history (samples numbered after `since`).
    [[nodiscard]] std::string history_json(std::uint64_t since) const;
    /// On the control thread: the body of GET /stats/slab, the connection pool's blocks in at
    /// most slab_map_cells cells. Taken at most once a second: the scan holds the pool's lock,
    /// which every shard takes to accept and close, for a time that grows with the pool.
    [[nodiscard]] std::string slab_map_json();
    static constexpr std::size_t slab_map_cells = 4096;

  private:
    // shard_events, called on the shards' threads.
    void refused(refusal_reason why) noexcept override;
    void accept_failed(const asio::error_code& ec) noexcept override;
    // Sequentially consistent on both sides: see shard::admit for the race these orderings close.
    void paused(int delta) noexcept override { paused_shards_.fetch_add(delta); }
    void block_freed() noexcept override {
        if (paused_shards_.load() > 0) [[unlikely]]
            wake_paused_shards();
    }
    void drained() noexcept override;

    void warn_if_pipes_shrunk() const;
    /// On the control thread once every shard has drained: closes the admin endpoint, the
    /// signal watch and the timers, and ends run().
    void stop_control();
    /// On the control thread once the shards run: confirms a take-over, then serves the next.
    void serve_handovers();
    /// A new process serves the listeners: stop accepting and drain.
    void handed_over(int new_pid);
    /// max_connections to `limit`: grows the pools into their reservations (blocks never move),
    /// or lowers the admission limit (no connection is touched). False past pool.reserve.
    bool resize_pool(std::size_t limit);
    /// After every shard has run a handler posted now, slots of upstreams removed by reload
    /// `reload` may be reused.
    void fence_upstreams(std::uint64_t reload);
    /// On the control thread: makes `targets` the upstreams (a reload or a lookup, named by
    /// `by` in the log), warns of those that found no slot and fences the removed ones.
    upstreams::change replace_upstreams(const std::vector<upstreams::target>& targets,
                                        const char* by);
    /// On the control thread: a periodic lookup changed the addresses of an upstream name.
    void apply_resolved(const std::vector<upstreams::target>& targets);
    void wake_paused_shards() noexcept;
    void log_refusals_if_due() noexcept;
    void watch_operator_signals();
    /// On the control thread, once a second: one history sample, then the next tick.
    void sample_history();
    void start_successor();

    config::Config settings_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    connection_pool connections_;
    std::unique_ptr<leg_pool> legs_;
    std::unique_ptr<upstreams> upstreams_;
    std::unique_ptr<source_table> sources_;
    std::unique_ptr<accept_rate_limiter> accept_rate_;
    std::unique_ptr<connection_log> connection_log_;
    // One io_context per shard, each run by a thread of its own, and one for the control work
    // (the admin endpoint, signals, health checks, lookups, history), run by the thread that
    // calls run(). A lone shard is run by that thread too, on the control work's io_context, so
    // that the process has one thread (decision 29). Before every I/O object: they go first.
    std::vector<std::unique_ptr<asio::io_context>> contexts_;
    asio::io_context& control_;
    std::vector<std::unique_ptr<shard>> shards_;
    std::atomic<std::size_t> undrained_{0};  // shards still draining or serving
    asio::signal_set signals_;
    // SIGHUP and SIGUSR2, from construction, so that an early one cannot kill the process.
    asio::signal_set operator_signals_;
    std::function<void()> on_hangup_;
    successor successor_;
    bool handed_over_ = false;  // control thread
    std::uint64_t reloads_ = 0;
    reload_snapshot last_reloads_;  // control thread only
    std::unique_ptr<admin> admin_;
    // Control thread only. The per-sample scratch is sized here so that sampling allocates nothing.
    std::unique_ptr<history> history_;  // made once the number of shards is known
    std::vector<history::shard_sample> history_shards_;
    std::array<history::upstream_sample, history::upstream_slots> history_upstreams_{};
    asio::steady_timer history_timer_;
    std::string slab_map_;  // the last slab map's JSON and when it was taken
    std::chrono::steady_clock::time_point slab_map_at_{};
    std::unique_ptr<health_checker> health_;       // proxy mode only; runs on control_
    std::unique_ptr<upstream_resolver> resolver_;  // proxy mode only; runs on control_
    std::uint64_t upstream_epoch_ = 0;  // numbers each change of the upstream set, for its fence
    handover_setup handover_;
    std::unique_ptr<handover_listener> handover_listener_;
    std::atomic<bool> draining_{false};
    std::atomic<int> paused_shards_{0};
    std::array<std::atomic<std::uint64_t>, refusal_reasons>
        refusals_unlogged_{};  // by refusal_reason
    std::atomic<std::int64_t> next_refusal_log_{0};
    std::atomic<std::int64_t> next_accept_error_log_{0};
};

}  // namespace slabd::server
