// A client connection: the socket, its state and the memory of its posted handlers, all in
// one block of the connection pool (docs/design.md, decisions 1, 4 and 11). Echo mode relays the
// client to itself; proxy mode joins it to an upstream leg taken from a second pool of the same
// capacity.
#pragma once

#include <cstdint>
#include <utility>

#include "event_socket.hpp"
#include "limits.hpp"
#include "op_memory.hpp"
#include "pipes.hpp"
#include "proxy_protocol.hpp"
#include "slabd/pool/object_pool.hpp"
#include "slabd/pool/shared_slab.hpp"
#include "slabd/server/stats.hpp"
#include "socket.hpp"
#include "upstreams.hpp"

namespace slabd::server {

class shard;
class connection;
class upstream_leg;

using connection_pool = pool::object_pool<connection, pool::shared_slab>;
using leg_pool = pool::object_pool<upstream_leg, pool::shared_slab>;

// refused: turned away after taking a block (its PROXY header was invalid or late), counted as
// a refusal and not as a close.
enum class close_reason : std::uint8_t {
    none,
    client_eof,
    idle_timeout,
    error,
    upstream_failure,
    shutdown,
    evicted,
    refused
};

/// One direction of traffic: read from `from`, write to `to`. Owns a buffer, or a pipe when it
/// splices, only while bytes it read are not yet written; `filled` and `written` count those.
/// It waits for one thing at a time: `from` to be readable, `to` writable, a buffer, or its turn
/// after a yield, whose posted handler `memory` holds.
struct relay {
    event_socket* from;
    event_socket* to;
    std::byte* buffer = nullptr;
    std::uint32_t written = 0;
    std::uint32_t filled = 0;
    std::int32_t pipe = pipe_pool::none;
    bool done = false;  // `from` reached EOF and everything read has been written
    bool waiting_for_buffer = false;
    bool waiting_read = false;
    bool waiting_write = false;
    bool splicing = false;  // a bulk transfer: reads go socket -> pipe, zero-copy
    post_op_memory memory;

    [[nodiscard]] bool holds_bytes() const noexcept { return written < filled; }
};

/// Intrusive links every connection carries so its shard can find it without a side table.
struct shard_links {
    connection* prev = nullptr;
    connection* next = nullptr;
    connection* next_waiter = nullptr;
    enum class on : std::uint8_t { none, idle, connecting, awaiting_header };
    std::uint32_t last_active = 0;    // shard clock tick of the last byte moved
    bool waiting_for_buffer = false;  // on the shard's buffer-wait list, which holds a reference
    on list = on::none;               // which of the shard's timed lists holds it
    bool holds_source = false;        // counted in the shard's source table, as below
    // The source table's key is `source` cut to `source_bits`, the prefix when it was counted:
    // kept whole, it also names the client in the connection log at no extra cost per block.
    std::uint8_t source_bits = 128;
    source_key source;  // the client's whole address: the peer's, or its PROXY header's
};

/// A counted reference to a connection. The lifetime rule: every registered socket
/// (event_socket.hpp), every posted handler, the buffer-wait list and every caller from outside
/// holds one, and whoever drops the last one returns the block. Nothing else ever frees a
/// connection, so no order of events can free it under a frame that still uses it.
class connection_ref {
  public:
    explicit connection_ref(connection& c) noexcept;
    /// Takes over a reference already counted (the buffer-wait list's).
    static connection_ref adopt(connection& c) noexcept { return connection_ref(&c); }
    connection_ref(connection_ref&& other) noexcept : c_(std::exchange(other.c_, nullptr)) {}
    connection_ref& operator=(connection_ref&&) = delete;
    connection_ref(const connection_ref&) = delete;
    connection_ref& operator=(const connection_ref&) = delete;
    ~connection_ref();
    connection* operator->() const noexcept { return c_; }
    /// Hands the counted reference to a holder that is not an object (the buffer-wait list),
    /// which gives it back through adopt().
    connection* release() noexcept { return std::exchange(c_, nullptr); }

  private:
    explicit connection_ref(connection* c) noexcept : c_(c) {}
    connection* c_;
};

class connection {
  public:
    /// Counts itself into the shard's `active` gauge; `leg` is the proxy's upstream half, or
    /// nullptr in echo mode. The connection owns it from here on.
    connection(shard& owner, owned_fd&& client, upstream_leg* leg) noexcept;
    /// Leaves `active` and returns the leg. Its sockets are closed and its close counted by
    /// then (close_client): each socket's registration held a reference.
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Echo: relay the client to itself. Proxy: connect the leg, then relay both ways.
    void start() noexcept;
    /// Closes from outside (idle sweep, shutdown): its sockets close (or linger) and the block
    /// returns when the last reference goes.
    void abort(close_reason why) noexcept;
    /// The connect timeout ran out: this attempt failed, the next upstream is tried.
    void abort_connect_attempt() noexcept;
    /// The buffer pool has a block again: resume the relays that stopped for lack of one.
    void resume_after_buffer_wait() noexcept;
    /// Turns the client away after all (a bad PROXY header, no upstream up): counted as `why`,
    /// closed lingering, after the busy line if `busy_line`.
    void refuse(refusal_reason why, bool busy_line = false) noexcept;
    /// Who the client is, for the connection log: the peer, or what its PROXY header says.
    void set_client(const asio::ip::address& address, std::uint16_t port) noexcept {
        links.source = make_source_key(address, 32, 128);
        client_port_ = port;
    }
    void set_client(const asio::ip::tcp::endpoint& client) noexcept {
        links.source = whole_source_key(client);
        client_port_ = client.port();
    }
    [[nodiscard]] bool is_closing() const noexcept { return closing_ != close_reason::none; }

    shard_links links;

  private:
    friend class connection_ref;
    struct yield_handler;

    /// event_socket's handler for both of the connection's sockets.
    static void on_socket_event(event_socket& s, unsigned registrations_ended) noexcept;
    void on_event(event_socket& s) noexcept;
    /// Opens `s` on `fd` with the reference its registration holds; false if it could not.
    bool register_socket(event_socket& s, int fd) noexcept;
    /// Closes `s` if open; its registration's reference goes now or with its queued event.
    void close_socket(event_socket& s) noexcept;
    /// Done with the client: counts the close, then closes it after a mutual EOF and lingers
    /// otherwise. Every connection ends here once, before its last reference goes.
    void close_client() noexcept;

    /// Serving starts: echo relays, proxy connects its upstream.
    void begin() noexcept;
    /// accept_proxy: peeks at what has arrived until it holds a whole PROXY header.
    void read_proxy_header() noexcept;
    void await_more_header() noexcept;
    void closed_before_header() noexcept;
    void on_proxy_header(const proxy_protocol::header& h) noexcept;
    /// send_proxy: the header goes out before the first relayed byte; false if it could not.
    [[nodiscard]] bool send_proxy_header() noexcept;
    /// Relays what `r.from` has until it is drained (event_socket.hpp's rule), then waits.
    void pump(relay& r) noexcept;
    void pump_spliced(relay& r) noexcept;
    void on_writable(relay& r) noexcept;
    void on_connected(const asio::error_code& ec) noexcept;
    void connect_next_upstream() noexcept;
    void wait_read(relay& r) noexcept;
    void wait_write(relay& r) noexcept;
    void yield(relay& r) noexcept;
    bool flush(relay& r) noexcept;
    bool flush_pipe(relay& r) noexcept;
    /// A write to `r.to` failed: the client's is an error; the upstream's ends only the upload.
    void write_failed(relay& r) noexcept;
    /// Returns the relay's buffer and pipe, if it holds them, to the shard.
    void give_back_lent(relay& r) noexcept;
    void finish_direction(relay& r) noexcept;
    /// Starts closing: `why` is kept (the first reason wins), the upstream closes, and so does
    /// the client — unless the upstream failed while bytes it sent are still on their way to the
    /// client: those are written first.
    void fail(close_reason why) noexcept;
    [[nodiscard]] close_reason failure_of(const event_socket* s) const noexcept {
        return s == &client_ ? close_reason::error : close_reason::upstream_failure;
    }
    /// Counts the connection into the shard's histograms and, when on, its connection log.
    void record_close(const char* reason) noexcept;

    shard& shard_;
    event_socket client_;
    relay to_target_;  // client -> client (echo) or client -> upstream (proxy)
    upstream_leg* leg_;
    std::int64_t started_ns_;     // steady clock, for the duration
    std::uint64_t received_ = 0;  // bytes read from the client
    std::uint64_t sent_ = 0;      // bytes written to the client
    std::uint16_t client_port_ = 0;
    std::uint16_t refs_ = 0;
    close_reason closing_ = close_reason::none;
    bool upstream_write_failed_ = false;  // the upload ended on a dead upstream, not an EOF
    bool awaiting_header_ = false;        // accept_proxy: the PROXY header came only in part
    bool connecting_ = false;             // the leg's connect is in progress
    bool close_counted_ = false;          // close_client() has run
};

/// The upstream half of a proxied connection, from its own pool block.
class upstream_leg {
  public:
    event_socket socket;
    relay to_client;
    upstream_claim upstream;  // the upstream connected or being connected to
    std::uint64_t tried_mask = 0;
    // The client's addresses as a trusted PROXY header gave them, for send_proxy; family
    // AF_UNSPEC: the connection's own. Here rather than in the connection: only proxy mode
    // sends them on, and echo blocks stay small.
    sockaddr_in6 client_source{};
    sockaddr_in6 client_destination{};
};

}  // namespace slabd::server
