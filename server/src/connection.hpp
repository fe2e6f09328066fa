// A client connection: the socket, its state and the memory of its pending operations, all in
// one block of the connection pool (DESIGN decisions 1 and 4). Echo mode relays the client to
// itself; proxy mode joins it to an upstream leg taken from a second pool of the same capacity.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <cstdint>

#include "op_memory.hpp"
#include "pipes.hpp"
#include "slabd/server/stats.hpp"

namespace slabd::server {

class shard;
class upstream_leg;

using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

enum class close_reason : std::uint8_t { none, client_eof, idle_timeout, error, upstream_failure, shutdown };

/// Closes with FIN rather than RST: close() over unread bytes makes the kernel reset the
/// connection, so what the peer already sent is read first (a bounded amount).
void close_cleanly(socket_type& socket) noexcept;

/// One direction of traffic: read from `from`, write to `to`. Owns a buffer, or a pipe when it
/// splices, only while bytes it read are not yet written; `filled` and `written` count those.
struct relay {
    socket_type* from;
    socket_type* to;
    std::byte* buffer = nullptr;
    std::uint32_t written = 0;
    std::uint32_t filled = 0;
    std::int32_t pipe = pipe_pool::none;
    bool op_pending = false;
    bool done = false;  // `from` reached EOF and everything read has been written
    bool waiting_for_buffer = false;
    bool splicing = false;  // a bulk transfer: reads go socket -> pipe, zero-copy
    io_op_memory memory;
};

/// Intrusive links every connection carries so its shard can find it without a side table.
struct shard_links {
    class connection* prev = nullptr;
    class connection* next = nullptr;
    class connection* next_waiter = nullptr;
    std::uint32_t last_active = 0;  // shard clock tick of the last byte moved
    bool waiting_for_buffer = false;
    bool linked = false;          // on the shard's idle or connecting list
    bool connecting = false;      // which of the two lists
};

class connection {
public:
    connection(shard& owner, socket_type&& client) noexcept;
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Echo: start relaying the client to itself.
    void start_echo() noexcept;
    /// Proxy: connect `leg` to an upstream, then relay both ways.
    void start_proxy(upstream_leg* leg) noexcept;
    /// Closes from outside (idle sweep, shutdown): cancels pending operations; the connection
    /// returns its block once their handlers have run.
    void abort(close_reason why) noexcept;
    /// The connect timeout ran out: cancel this attempt so the next upstream is tried.
    void abort_connect_attempt() noexcept;
    /// The buffer pool has a block again: resume the relay that stopped for lack of one.
    void resume_after_buffer_wait() noexcept;

    shard_links links;

private:
    friend class upstream_leg;
    struct ready_handler;
    struct yield_handler;
    struct connect_handler;

    void pump(relay& r) noexcept;
    void pump_spliced(relay& r) noexcept;
    void on_readable(relay& r, const asio::error_code& ec) noexcept;
    void on_writable(relay& r, const asio::error_code& ec) noexcept;
    void on_connected(const asio::error_code& ec) noexcept;
    void connect_next_upstream() noexcept;
    void wait_read(relay& r) noexcept;
    void wait_write(relay& r) noexcept;
    bool flush(relay& r) noexcept;
    bool flush_pipe(relay& r) noexcept;
    /// Returns the relay's buffer and pipe, if it holds them, to the shard.
    void give_back_lent(relay& r) noexcept;
    void finish_direction(relay& r) noexcept;
    void fail(close_reason why) noexcept;
    void maybe_destroy() noexcept;
    bool ops_pending() const noexcept;

    shard& shard_;
    socket_type client_;
    relay to_target_;  // client -> client (echo) or client -> upstream (proxy)
    upstream_leg* leg_ = nullptr;
    close_reason closing_ = close_reason::none;
};

/// The upstream half of a proxied connection, from its own pool block.
class upstream_leg {
public:
    explicit upstream_leg(asio::io_context& context) noexcept : socket(context.get_executor()) {}
    socket_type socket;
    relay to_client;
    void* upstream = nullptr;  // upstreams::upstream*, set while connected or connecting
    std::uint64_t tried_mask = 0;
    bool connecting = false;  // the connect shares to_client's op memory: no relay runs meanwhile
};

}  // namespace slabd::server
