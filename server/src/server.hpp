// The daemon's data plane and its lifetime: the connection pool (exact capacity across all
// shards), the shards and their threads, the admin listener, and the stop signals.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/signal_set.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "connection.hpp"
#include "slabd/config/config.hpp"
#include "slabd/pool/object_pool.hpp"
#include "slabd/server/stats.hpp"
#include "upstreams.hpp"

namespace slabd::server {

class shard;
class admin;

class server {
public:
    using connection_pool = pool::object_pool<connection, pool::shared_slab>;
    using leg_pool = pool::object_pool<upstream_leg, pool::shared_slab>;

    /// Builds the pools and binds every listener; throws std::system_error when a bind fails.
    explicit server(const config::Config& settings);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Serves until SIGINT/SIGTERM (or request_stop()) and the drain finish.
    void run();
    /// Thread-safe: begin the graceful drain.
    void request_stop();
    /// Runs `handler` on the control thread for each SIGHUP; set it before run().
    void on_hangup(std::function<void()> handler) { on_hangup_ = std::move(handler); }
    /// On the control thread (the SIGHUP handler): adopts what can change at run time from
    /// `next`, logs each change, and names the changed settings that need a restart.
    void reload(const config::Config& next);
    /// Passes a fork (daemonize) on to every io_context; before run() only.
    void notify_fork(asio::execution_context::fork_event event);

    [[nodiscard]] asio::ip::tcp::endpoint data_endpoint() const;
    [[nodiscard]] asio::ip::tcp::endpoint admin_endpoint() const;
    [[nodiscard]] server_snapshot snapshot() const;
    /// The settings as started, with reloads applied; read them on the control thread, or only
    /// those that reload() never changes.
    [[nodiscard]] const config::Config& settings() const noexcept { return settings_; }

    // Used by shards.
    [[nodiscard]] connection_pool& connections() noexcept { return connections_; }
    [[nodiscard]] leg_pool* legs() noexcept { return legs_.get(); }
    [[nodiscard]] upstreams* upstream_list() noexcept { return upstreams_.get(); }
    void note_refusal() noexcept;
    void note_accept_error(const asio::error_code& ec) noexcept;
    // Sequentially consistent on both sides: see shard::admit for the race these orderings close.
    void note_paused(int delta) noexcept { paused_shards_.fetch_add(delta); }
    void on_block_freed() noexcept {
        if (paused_shards_.load() > 0) [[unlikely]]
            wake_paused_shards();
    }

private:
    void warn_if_pipes_shrunk() const;
    void wake_paused_shards() noexcept;
    void log_refusals_if_due() noexcept;
    void watch_hangups();

    config::Config settings_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    connection_pool connections_;
    std::unique_ptr<leg_pool> legs_;
    std::unique_ptr<upstreams> upstreams_;
    std::vector<std::unique_ptr<shard>> shards_;
    asio::io_context control_{1};  // admin endpoint and signals, on the thread that calls run()
    asio::signal_set signals_;
    asio::signal_set hangups_;  // from construction, so an early SIGHUP cannot kill the process
    std::function<void()> on_hangup_;
    std::unique_ptr<admin> admin_;
    std::atomic<bool> draining_{false};
    std::atomic<int> paused_shards_{0};
    std::atomic<std::uint64_t> refusals_unlogged_{0};
    std::atomic<std::int64_t> next_refusal_log_{0};
    std::atomic<std::int64_t> next_accept_error_log_{0};
};

}  // namespace slabd::server
