// A shard: one thread, one io_context, its own SO_REUSEPORT listener, its own buffer slab,
// linger slots and statistics, and the intrusive lists through which it times out idle and
// connecting clients. Connection blocks come from the server-wide pool so that capacity is exact
// across shards; the shard is handed that pool and what else it needs, never the server.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "connection.hpp"
#include "connection_log.hpp"
#include "descriptor_reserve.hpp"
#include "linger.hpp"
#include "op_memory.hpp"
#include "pipes.hpp"
#include "ready_wait.hpp"
#include "slabd/config/config.hpp"
#include "slabd/pool/slab.hpp"
#include "slabd/server/stats.hpp"
#include "upstreams.hpp"

namespace slabd::server {

/// What a shard tells the process around it. Called on the shard's thread.
class shard_events {
  public:
    virtual ~shard_events() = default;
    /// A newcomer was refused (the log line is rate-limited by the receiver).
    virtual void refused(refusal_reason why) noexcept = 0;
    virtual void accept_failed(const asio::error_code& ec) noexcept = 0;
    /// +1 when this shard pauses accepting under the `pause` policy, -1 when it resumes.
    virtual void paused(int delta) noexcept = 0;
    /// A connection block went back to the shared pool.
    virtual void block_freed() noexcept = 0;
    /// Draining, the shard has closed its last connection: once per shard.
    virtual void drained() noexcept = 0;
};

/// The settings a shard reads on its own thread that SIGHUP may change: each shard keeps its own
/// copy, replaced on its thread, so a reload never races the tick or a refusal.
struct live_settings {
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds connect_timeout{0};
    std::string busy_message;
    std::chrono::milliseconds evict_idle_after{0};
    unsigned source_prefix_v4 = 32;
    unsigned source_prefix_v6 = 64;
    bool accept_proxy = false;
    std::vector<network> trusted_sources;
    std::chrono::milliseconds proxy_header_timeout{0};
    config::proxy_header_version send_proxy = config::proxy_header_version::off;
};

/// How a shard's io_context is made. One thread runs it, and only that thread opens, closes and
/// uses the sockets and timers on it (before it runs, the constructors; after, the destructors),
/// so the reactor needs no locks, neither per descriptor nor for registration and timers;
/// post() from other threads (drain, reload, Asio's lookup thread) stays safe with the
/// scheduler's lock.
inline constexpr int shard_concurrency_hint =
    static_cast<int>(ASIO_CONCURRENCY_HINT_ID | ASIO_CONCURRENCY_HINT_LOCKING_SCHEDULER);

/// Everything a shard is built from.
struct shard_setup {
    connection_pool& connections;
    leg_pool* legs;            // proxy mode only
    upstreams* upstream_list;  // proxy mode only
    shard_events& events;
    config::exhausted_policy on_exhausted;
    live_settings live;
    std::size_t buffer_count;
    std::size_t buffer_size;
    std::size_t splice_pipes;
    std::size_t linger_slots;
    source_table& sources;             // counts only while its limit is not 0
    accept_rate_limiter& accept_rate;  // limits only while enabled
    connection_log& log;               // logs only while enabled
};

class shard {
  public:
    /// Shard number `index` of the server's, on `context`: one thread runs it, and nothing else
    /// on it but the server's control work.
    shard(const shard_setup& setup, std::uint16_t index, asio::io_context& context);
    ~shard();
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;

    /// Binds this shard's listener (SO_REUSEPORT, so every shard binds the same port). Throws.
    void listen(const asio::ip::tcp::endpoint& at);
    /// Accepts on `fd`, a listener taken over from the process before this one. Throws.
    void adopt(int fd);
    [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const {
        return listener_.local_endpoint();
    }
    /// The listener, for a process that takes over.
    [[nodiscard]] int native_listener() noexcept { return listener_.native_handle(); }
    /// Starts accepting and the clock, then runs the io_context until it runs out of work: the
    /// shard's ends when it has drained.
    void run();
    /// Thread-safe: stop accepting, give open connections `grace`, then close the rest.
    void begin_drain(std::chrono::milliseconds grace);
    /// Thread-safe: the pool may have a free block again; a paused shard tries to resume.
    void notify_block_freed();
    /// Thread-safe: the shard adopts `next` on its own thread.
    void update(live_settings next);

    // Used by connections, on this shard's thread only.
    [[nodiscard]] asio::io_context& context() noexcept { return context_; }
    /// The io_context's epoll reactor, for event_socket and async_wait_readable.
    [[nodiscard]] reactor_type& reactor() noexcept { return reactor_; }
    [[nodiscard]] shard_stats& stats() noexcept { return stats_; }
    [[nodiscard]] const shard_stats& stats() const noexcept { return stats_; }
    [[nodiscard]] upstreams& upstream_list() noexcept { return *upstreams_; }
    [[nodiscard]] connection_log& log() noexcept { return log_; }
    [[nodiscard]] std::uint16_t index() const noexcept { return index_; }
    [[nodiscard]] const live_settings& live() const noexcept { return live_; }
    [[nodiscard]] std::size_t buffer_size() const noexcept { return buffer_size_; }
    [[nodiscard]] std::byte* take_buffer() noexcept {
        return static_cast<std::byte*>(buffers_.alloc());
    }
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
    /// Queues `c` until a buffer returns; the queue holds a reference to it.
    void wait_for_buffer(connection& c) noexcept;
    /// Takes `c` off the buffer-wait queue, if it is on it, and drops the queue's reference.
    void leave_buffer_wait(connection& c) noexcept;
    void touch(connection& c) noexcept {
        if (c.links.last_active != now_) [[unlikely]]
            move_to_idle_tail(c);
    }
    void link_idle(connection& c) noexcept;
    void link_connecting(connection& c) noexcept;
    /// accept_proxy: `c` waits for its PROXY header, for proxy_header_timeout at most.
    void link_awaiting_header(connection& c) noexcept;
    /// accept_proxy: `c`'s header named `client`; counts its source, or says why it is refused.
    [[nodiscard]] std::optional<refusal_reason> admit_proxied(
        connection& c, const asio::ip::address& client) noexcept;
    void count_refusal(refusal_reason why) noexcept;
    /// Writes pool.busy_message, if there is one, to a client about to be refused.
    void send_busy_line(int fd) noexcept;
    /// From the connection's destructor: off every list, and no longer counted for its source.
    void forget(connection& c) noexcept {
        unlink(c);
        if (c.links.holds_source)
            sources_.release(cut_source_key(c.links.source, c.links.source_bits));
    }
    /// The last reference to `c` is gone: destroy it and return its block.
    void destroy(connection& c) noexcept;
    void destroy_leg(upstream_leg* leg) noexcept { legs_->destroy(leg); }
    /// A lingering close of a client the shard is done with (docs/design.md, decision 13).
    void linger(int fd) noexcept { lingering_.linger(fd, now_); }
    /// Buffer slab statistics; read from the admin thread, so only the snapshot copy is racy-free.
    [[nodiscard]] pool::slab_stats buffer_stats() const noexcept;

  private:
    struct accept_handler;
    struct resume_handler;
    struct list {
        connection* head = nullptr;
        connection* tail = nullptr;
    };

    void accept() noexcept;
    void admit(owned_fd& peer) noexcept;
    /// The limits checked before a block is taken; false when `peer` was refused or parked.
    /// `counted`: the source was counted in the table and must be given back.
    /// `rate_token_held`: a parked newcomer that took its rate token before it was parked.
    bool within_limits(owned_fd& peer, source_key& source, bool& counted,
                       bool rate_token_held) noexcept;
    /// What a parked newcomer waits for before it goes through admit() again.
    enum class parked_until : std::uint8_t { nothing, block_freed, rate_token, closes_seen };
    void park(owned_fd& peer, parked_until until) noexcept;
    /// Takes the parked newcomer back through admit() and accepts again unless it parks anew.
    void admit_parked() noexcept;
    void wait_for_rate() noexcept;
    /// Refuses `peer` for want of room (a block, its source's share) that a client which has hung
    /// up may still hold. If the shard has admitted someone since its event loop last ran, parks
    /// `peer` and tries it again after one pass; `took_rate_token`: it keeps the token it took
    /// for that try.
    void refuse_for_room(owned_fd& peer, refusal_reason why, bool took_rate_token) noexcept;
    /// evict-idle: closes the longest-silent connection if it has been silent long enough.
    bool evict_idle_connection() noexcept;
    void refuse(owned_fd& peer, refusal_reason why) noexcept;
    void on_accept_error(const asio::error_code& ec) noexcept;
    /// At the descriptor limit: spends the reserved descriptor to accept and refuse the backlog.
    /// True once the backlog is empty; false when no descriptor could be had for that.
    bool refuse_at_fd_limit() noexcept;
    void wait_for_newcomer() noexcept;
    void back_off() noexcept;
    void resume_accepting() noexcept;
    void resume_buffer_waiters() noexcept;
    void tick() noexcept;
    void on_tick(const asio::error_code& ec) noexcept;
    /// Takes the members of `l` silent for `after` off it and runs `act` on each.
    template <class Action>
    void expire(list& l, std::chrono::milliseconds after, Action act) noexcept;
    void close_all(close_reason why) noexcept;
    [[nodiscard]] bool drained() const noexcept;
    void finish_drain_if_empty() noexcept;
    void move_to_idle_tail(connection& c) noexcept;
    void push_back(list& l, connection& c) noexcept;
    void unlink(connection& c) noexcept;
    [[nodiscard]] list& list_of(const connection& c) noexcept;

    connection_pool& connections_;
    leg_pool* legs_;
    upstreams* upstreams_;
    shard_events& events_;
    config::exhausted_policy on_exhausted_;
    source_table& sources_;
    accept_rate_limiter& accept_rate_;
    connection_log& log_;
    std::uint16_t index_;
    asio::io_context& context_;  // made with shard_concurrency_hint
    reactor_type& reactor_ = started_reactor(context_);
    // A socket, not an acceptor: new_socket.hpp accepts on it, and a wait for a newcomer needs the
    // socket's reactor data, which Asio's acceptor keeps private.
    socket_type listener_;
    io_op_memory accept_memory_;
    io_op_memory resume_memory_;
    asio::steady_timer tick_timer_;
    asio::steady_timer backoff_timer_;
    asio::steady_timer grace_timer_;
    asio::steady_timer rate_timer_;  // pause policy over the rate: when the next token is due
    asio::steady_timer closes_seen_timer_;  // already due: fires after one pass of the event loop
    asio::ip::tcp::endpoint peer_;          // the newcomer's address, filled in by accept
    // The descriptor each accept fills. admit() always moves it on (to a connection, the parked
    // slot or the lingering pool) or closes it, so it is closed between accepts.
    owned_fd newcomer_;
    std::chrono::milliseconds backoff_{0};
    bool backlog_may_lack_nodelay_ = false;  // after adopt(), until the backlog is drained
    descriptor_reserve reserve_;  // spent at the descriptor limit so that a newcomer can be refused
    std::size_t buffer_size_;
    pool::slab buffers_;
    pipe_pool pipes_;
    shard_stats stats_;
    linger_pool lingering_;
    mutable std::mutex buffer_stats_mutex_;
    pool::slab_stats buffer_stats_;  // refreshed each tick for the admin thread
    live_settings live_;
    std::uint32_t now_ = 1;
    list idle_;
    list connecting_;
    list awaiting_header_;
    connection* waiters_head_ = nullptr;
    connection* waiters_tail_ = nullptr;
    owned_fd parked_;  // a newcomer held back, accepting paused meanwhile
    parked_until parked_until_ = parked_until::nothing;
    bool rate_token_held_ = false;  // parked_ waits with its rate token taken
    // The event loop has run (refuse_for_room) since the shard last admitted a newcomer: the
    // hang-ups of the clients it served have been seen, in the order the kernel queued them, so
    // a newcomer that finds no room now is refused without a second look.
    bool closes_seen_since_admitting_ = false;
    bool draining_ = false;
    bool drain_reported_ = false;  // events_.drained() was called
    bool resume_posted_ = false;   // resume_buffer_waiters is queued
    std::atomic<bool> wake_posted_{false};
};

}  // namespace slabd::server
