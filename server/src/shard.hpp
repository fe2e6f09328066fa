// A shard: one thread, one io_context, its own SO_REUSEPORT listener, its own buffer slab and
// statistics, and the intrusive lists through which it times out idle and connecting clients.
// Connection blocks come from the server-wide pool so that capacity is exact across shards.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "connection.hpp"
#include "op_memory.hpp"
#include "pipes.hpp"
#include "slabd/pool/slab.hpp"
#include "slabd/server/stats.hpp"
#include "upstreams.hpp"

namespace slabd::server {

class server;

/// The settings a shard reads on its own thread that SIGHUP may change: each shard keeps its own
/// copy, replaced on its thread, so a reload never races the tick or a refusal.
struct live_settings {
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds connect_timeout{0};
    std::string busy_message;
};

class shard {
public:
    using acceptor_type = asio::basic_socket_acceptor<asio::ip::tcp, asio::io_context::executor_type>;

    shard(server& owner, std::size_t buffer_count, std::size_t buffer_size, std::size_t splice_pipes);
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;

    /// Binds this shard's listener (SO_REUSEPORT, so every shard binds the same port). Throws.
    void listen(const asio::ip::tcp::endpoint& at);
    [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    /// Starts accepting and the clock, then runs the io_context until the shard has drained.
    void run();
    /// Thread-safe: stop accepting, give open connections `grace`, then close the rest.
    void begin_drain(std::chrono::milliseconds grace);
    /// Thread-safe: the pool may have a free block again; a paused shard tries to resume.
    void notify_block_freed();
    /// Thread-safe: the shard adopts `next` on its own thread.
    void update(live_settings next);

    // Used by connections, on this shard's thread only.
    [[nodiscard]] asio::io_context& context() noexcept { return context_; }
    [[nodiscard]] shard_stats& stats() noexcept { return stats_; }
    [[nodiscard]] const shard_stats& stats() const noexcept { return stats_; }
    [[nodiscard]] upstreams& upstream_list() noexcept;
    [[nodiscard]] std::size_t buffer_size() const noexcept { return buffer_size_; }
    [[nodiscard]] std::byte* take_buffer() noexcept { return static_cast<std::byte*>(buffers_.alloc()); }
    void give_back_buffer(std::byte* buffer) noexcept;
    /// A pipe for splice(2), or pipe_pool::none (none left, or splicing is off).
    [[nodiscard]] std::int32_t take_pipe() noexcept {
        const std::int32_t pipe = pipes_.take();
        if (pipe != pipe_pool::none) bump(stats_.splice_pipes_in_use);
        return pipe;
    }
    void give_back_pipe(std::int32_t pipe, bool holds_bytes) noexcept {
        drop(stats_.splice_pipes_in_use);
        if (!pipes_.give_back(pipe, holds_bytes)) [[unlikely]]
            bump(stats_.splice_pipes_lost);
    }
    [[nodiscard]] const pipe_pool& pipes() const noexcept { return pipes_; }
    void wait_for_buffer(connection& c) noexcept;
    void touch(connection& c) noexcept {
        if (c.links.last_active != now_) [[unlikely]]
            move_to_idle_tail(c);
    }
    void link_idle(connection& c) noexcept;
    void link_connecting(connection& c) noexcept;
    void destroy(connection& c, close_reason why, upstream_leg* leg) noexcept;
    /// Buffer slab statistics; read from the admin thread, so only the snapshot copy is racy-free.
    [[nodiscard]] pool::slab_stats buffer_stats() const noexcept;

private:
    struct accept_handler;
    struct list {
        connection* head = nullptr;
        connection* tail = nullptr;
    };

    void accept() noexcept;
    void on_accept(const asio::error_code& ec, socket_type peer) noexcept;
    void admit(socket_type& peer) noexcept;
    void refuse(socket_type& peer) noexcept;
    void on_accept_error(const asio::error_code& ec) noexcept;
    void resume_accepting() noexcept;
    void tick() noexcept;
    void on_tick(const asio::error_code& ec) noexcept;
    void close_all(close_reason why) noexcept;
    void finish_drain_if_empty() noexcept;
    void move_to_idle_tail(connection& c) noexcept;
    void push_back(list& l, connection& c) noexcept;
    void unlink(connection& c) noexcept;

    server& server_;
    asio::io_context context_{1};  // one thread: Asio can skip its locks
    acceptor_type acceptor_;
    asio::ip::tcp::endpoint listen_at_;
    accept_op_memory accept_memory_;
    asio::steady_timer tick_timer_;
    asio::steady_timer backoff_timer_;
    asio::steady_timer grace_timer_;
    std::chrono::milliseconds backoff_{0};
    std::size_t buffer_size_;
    pool::slab buffers_;
    pipe_pool pipes_;
    mutable std::mutex buffer_stats_mutex_;
    pool::slab_stats buffer_stats_;  // refreshed each tick for the admin thread
    shard_stats stats_;
    live_settings live_;
    std::uint32_t now_ = 1;
    list idle_;
    list connecting_;
    connection* waiters_head_ = nullptr;
    connection* waiters_tail_ = nullptr;
    std::optional<socket_type> parked_;  // pause policy: the newcomer that found the pool full
    bool paused_ = false;
    bool draining_ = false;
    std::atomic<bool> resume_posted_{false};
};

}  // namespace slabd::server
