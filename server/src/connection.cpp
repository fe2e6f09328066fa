#include "connection.hpp"

#include <fcntl.h>
#include <asio/post.hpp>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "new_socket.hpp"
#include "shard.hpp"

namespace slabd::server {

connection_ref::connection_ref(connection& c) noexcept : c_(&c) {
    ++c.refs_;
}

connection_ref::~connection_ref() {
    if (c_ != nullptr && --c_->refs_ == 0) c_->shard_.destroy(*c_);
}

// The yield's handler is a tiny struct rather than a lambda so that its allocator, the relay's
// in-block post_op_memory, is visible to Asio through get_allocator(). It holds a counted
// reference: Asio frees the operation's memory before it calls the handler, and destroys the
// handler (dropping the reference, perhaps the last) only after the call returns.
struct connection::yield_handler {
    connection_ref self;
    relay* r;
    using allocator_type = op_allocator<std::byte, post_op_memory>;
    allocator_type get_allocator() const noexcept { return allocator_type(r->memory); }
    void operator()() const noexcept {
        if (!self->is_closing()) self->pump(*r);
    }
};

namespace {

std::int64_t since_epoch_ns(auto now) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
}

/// The counter a close is counted under, and its name in the connection log.
struct close_counter {
    std::atomic<std::uint64_t> shard_stats::*counter;
    const char* name;
};
close_counter counted_as(close_reason why) noexcept {
    switch (why) {
        case close_reason::idle_timeout:
            return {&shard_stats::closed_idle_timeout, "idle_timeout"};
        case close_reason::error:
            return {&shard_stats::closed_error, "error"};
        case close_reason::upstream_failure:
            return {&shard_stats::closed_upstream_failure, "upstream_failure"};
        case close_reason::shutdown:
            return {&shard_stats::closed_shutdown, "shutdown"};
        case close_reason::evicted:
            return {&shard_stats::closed_evicted, "evicted"};
        case close_reason::refused:  // counted by its refusal reason, never as a close
        case close_reason::client_eof:
        case close_reason::none:
            break;
    }
    return {&shard_stats::closed_client_eof, "client_eof"};
}

}  // namespace

connection::connection(shard& owner, owned_fd&& client, upstream_leg* leg) noexcept
    : shard_(owner), leg_(leg), started_ns_(since_epoch_ns(std::chrono::steady_clock::now())) {
    client_.serve(&on_socket_event, this);
    to_target_.from = &client_;
    to_target_.to = leg_ != nullptr ? &leg_->socket : &client_;
    if (leg_ != nullptr) {
        leg_->socket.serve(&on_socket_event, this);
        leg_->to_client.from = &leg_->socket;
        leg_->to_client.to = &client_;
    }
    bump(shard_.stats().active);
    // A client that cannot be registered fails in start().
    register_socket(client_, client.release());
}

connection::~connection() {
    shard_.forget(*this);
    give_back_lent(to_target_);
    shard_stats& stats = shard_.stats();
    if (leg_ != nullptr) {
        give_back_lent(leg_->to_client);
        shard_.destroy_leg(leg_);
    }
    drop(stats.active);
}

bool connection::register_socket(event_socket& s, int fd) noexcept {
    asio::error_code ec;
    if (!s.open(shard_.reactor(), fd, ec)) [[unlikely]]
        return false;
    [[maybe_unused]] connection* registration = connection_ref(*this).release();
    return true;
}

void connection::close_socket(event_socket& s) noexcept {
    if (!s.is_open()) return;
    // Every caller holds a reference of its own, so the registration's is never the last here.
    if (s.close()) {
        const connection_ref registration = connection_ref::adopt(*this);
    }
}

void connection::close_client() noexcept {
    if (std::exchange(close_counted_, true)) return;
    // Counted before the client can see the close, so that whoever saw it also sees it counted
    // (and logged, or not, by the settings of that moment); before the leg goes, too: its
    // claim keeps the upstream's name readable.
    if (closing_ != close_reason::refused) {
        const close_counter closed = counted_as(closing_);
        bump(shard_.stats().*closed.counter);
        record_close(closed.name);
    }
    if (!client_.is_open()) return;
    // Both ways read to EOF, nothing unread: closing sends the FIN a shutdown would have.
    if (closing_ == close_reason::client_eof) return close_socket(client_);
    bool registration_ended = false;
    shard_.linger(client_.release(registration_ended));
    if (registration_ended) {
        const connection_ref registration = connection_ref::adopt(*this);
    }
}

void connection::on_socket_event(event_socket& s, unsigned registrations_ended) noexcept {
    auto& self = *static_cast<connection*>(s.owner());
    // The event that was queued when the socket closed: the registrations end with it.
    if (registrations_ended != 0) {
        const connection_ref hold(self);
        for (unsigned i = 0; i < registrations_ended; ++i) {
            const connection_ref registration = connection_ref::adopt(self);
        }
        return;
    }
    const connection_ref hold(self);
    self.on_event(s);
}

void connection::on_event(event_socket& s) noexcept {
    if (awaiting_header_) {
        if (!s.readable) return;
        awaiting_header_ = false;
        return read_proxy_header();
    }
    if (connecting_ && &s == &leg_->socket) {
        if (!s.writable) return;  // set by the connect's completion, or its failure
        connecting_ = false;
        int error = 0;
        socklen_t size = sizeof error;
        if (::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
        return on_connected(asio::error_code(error, asio::error::get_system_category()));
    }
    // In echo both relays named here are the one; in proxy each socket has one of each.
    relay& writer = to_target_.to == &s ? to_target_ : leg_->to_client;
    relay& reader = to_target_.from == &s ? to_target_ : leg_->to_client;
    if (writer.waiting_write && s.writable) {
        writer.waiting_write = false;
        on_writable(writer);
    }
    if (reader.waiting_read && s.readable && !is_closing()) {
        reader.waiting_read = false;
        pump(reader);
    }
}

void connection::record_close(const char* reason) noexcept {
    const auto duration_us = static_cast<std::uint64_t>(
        (since_epoch_ns(std::chrono::steady_clock::now()) - started_ns_) / 1000);
    shard_stats& stats = shard_.stats();
    record(stats.duration, duration_bounds_us, duration_us);
    record(stats.bytes_received, byte_bounds, received_);
    record(stats.bytes_sent, byte_bounds, sent_);
    connection_log& log = shard_.log();
    if (!log.enabled()) return;
    connection_record r;
    r.closed_at_ns = since_epoch_ns(std::chrono::system_clock::now());
    r.duration_us = duration_us;
    r.received = received_;
    r.sent = sent_;
    r.client = links.source;
    r.client_port = client_port_;
    r.shard = shard_.index();
    r.reason = reason;
    if (leg_ != nullptr && leg_->upstream.get() != nullptr) {
        const std::string& name = leg_->upstream.get()->name;
        const std::size_t n = std::min(name.size(), r.upstream.size() - 1);
        std::memcpy(r.upstream.data(), name.data(), n);
        r.upstream[n] = '\0';
    }
    if (!log.offer(r)) bump(stats.connection_log_skipped);
}

void connection::start() noexcept {
    if (!client_.is_open()) [[unlikely]]
        return fail(close_reason::error);
    // The client is non-blocking and has TCP_NODELAY since accept (new_socket.hpp). Read at once,
    // as pump does: the header usually came with the connection.
    if (shard_.live().accept_proxy) return read_proxy_header();
    begin();
}

void connection::begin() noexcept {
    if (leg_ != nullptr) return connect_next_upstream();
    // Read at once: a client usually speaks first, and a read now saves a trip through epoll.
    pump(to_target_);
}

void connection::read_proxy_header() noexcept {
    // Peeked, not read: the header's length is known only once it is whole, and the bytes after
    // it are the client's, for the relay. The stack, not the heap, holds the copy.
    std::array<std::byte, proxy_protocol::max_header_size> bytes;
    const int fd = client_.fd();
    ssize_t n = 0;
    do n = ::recv(fd, bytes.data(), bytes.size(), MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        client_.note_would_block();
        awaiting_header_ = true;
        return;
    }
    // Every failure before the header is a refusal: the connection was never served.
    if (n < 0) return refuse(refusal_reason::proxy_invalid);
    if (n == 0) return closed_before_header();
    const auto result = proxy_protocol::parse({bytes.data(), static_cast<std::size_t>(n)});
    using status = proxy_protocol::parse_result::status;
    if (result.state == status::need_more) [[unlikely]]
        return await_more_header();
    if (result.state == status::error) return refuse(refusal_reason::proxy_invalid);
    // What was peeked is there to read: this takes exactly the header.
    if (::recv(fd, bytes.data(), result.length, 0) != static_cast<ssize_t>(result.length))
        return refuse(refusal_reason::proxy_invalid);
    on_proxy_header(result.value);
}

void connection::await_more_header() noexcept {
    // A peer done sending will never finish its header. (A hang-up before this peek was
    // reported; one after it raises an edge, and the next peek comes back here.)
    if (client_.peer_done) return refuse(refusal_reason::proxy_invalid);
    // The peeked bytes stay queued, but the socket is edge-triggered: the next byte is an edge.
    client_.note_would_block();
    awaiting_header_ = true;
}

void connection::closed_before_header() noexcept {
    // A balancer's health check, or a client that changed its mind: a clean close of a connection
    // that asked for nothing, not a protocol violation to count and warn about.
    bump(shard_.stats().accepted);
    fail(close_reason::client_eof);
}

void connection::on_proxy_header(const proxy_protocol::header& h) noexcept {
    asio::ip::tcp::endpoint peer;
    socklen_t peer_size = static_cast<socklen_t>(peer.capacity());
    if (::getpeername(client_.fd(), peer.data(), &peer_size) != 0)
        return refuse(refusal_reason::proxy_invalid);
    peer.resize(peer_size);
    asio::ip::address client = peer.address();
    // LOCAL (the balancer's own health check) and UNKNOWN keep the connection's addresses.
    if (!h.local) {
        if (h.source.ss_family == AF_INET) {
            const auto& in = reinterpret_cast<const sockaddr_in&>(h.source);
            client = asio::ip::address_v4(ntohl(in.sin_addr.s_addr));
            set_client(client, ntohs(in.sin_port));
        } else {
            const auto& in6 = reinterpret_cast<const sockaddr_in6&>(h.source);
            asio::ip::address_v6::bytes_type b;
            std::memcpy(b.data(), &in6.sin6_addr, b.size());
            client = asio::ip::address_v6(b);
            set_client(client, ntohs(in6.sin6_port));
        }
        if (leg_ != nullptr) {
            std::memcpy(&leg_->client_source, &h.source, sizeof leg_->client_source);
            std::memcpy(&leg_->client_destination, &h.destination, sizeof leg_->client_destination);
        }
    }
    if (const auto refused = shard_.admit_proxied(*this, client)) return refuse(*refused, true);
    begin();
}

void connection::refuse(refusal_reason why, bool busy_line) noexcept {
    if (is_closing()) return;  // the header's deadline may pass while it is already closing
    shard_.count_refusal(why);
    if (busy_line) shard_.send_busy_line(client_.fd());
    fail(close_reason::refused);
}

bool connection::send_proxy_header() noexcept {
    sockaddr_storage own_source{};
    sockaddr_storage own_destination{};
    const sockaddr* source = reinterpret_cast<const sockaddr*>(&leg_->client_source);
    const sockaddr* destination = reinterpret_cast<const sockaddr*>(&leg_->client_destination);
    if (leg_->client_source.sin6_family == AF_UNSPEC) {
        // No header came in: the client is the peer, and it reached us at our address.
        socklen_t size = sizeof own_source;
        if (::getpeername(client_.fd(), reinterpret_cast<sockaddr*>(&own_source), &size) != 0)
            return false;
        size = sizeof own_destination;
        if (::getsockname(client_.fd(), reinterpret_cast<sockaddr*>(&own_destination), &size) != 0)
            return false;
        source = reinterpret_cast<const sockaddr*>(&own_source);
        destination = reinterpret_cast<const sockaddr*>(&own_destination);
    }
    const auto version = shard_.live().send_proxy == config::proxy_header_version::v1
                             ? proxy_protocol::version::v1
                             : proxy_protocol::version::v2;
    std::array<std::byte, proxy_protocol::max_built_size> header;
    const std::size_t size = proxy_protocol::build(version, source, destination, header);
    // A fresh connection's send buffer is empty, so the whole header goes in one call or the
    // upstream is broken.
    if (::send(leg_->socket.fd(), header.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size))
        return false;
    bump(shard_.stats().proxy_headers_sent);
    return true;
}

void connection::connect_next_upstream() noexcept {
    auto* up = shard_.upstream_list().pick(leg_->tried_mask);
    // None to try at all (every one checked down, or none configured) is a refusal; none left
    // after trying some is the upstreams failing this client.
    if (up == nullptr && leg_->tried_mask == 0) return refuse(refusal_reason::no_upstream, true);
    if (up == nullptr) return fail(close_reason::upstream_failure);
    // A proxied client counts as accepted once it has an upstream to go to.
    if (leg_->tried_mask == 0) bump(shard_.stats().accepted);
    leg_->tried_mask |= std::uint64_t{1} << shard_.upstream_list().index_of(*up);
    leg_->upstream.claim(*up);
    close_socket(leg_->socket);  // the attempt before, if any
    // No descriptor left is this process's failure, not the upstream's: it stays up.
    asio::error_code ec;
    const int fd = open_for_connect(up->endpoint, ec);
    if (fd < 0) [[unlikely]]
        return fail(close_reason::error);
    const int connected =
        ::connect(fd, up->endpoint.data(), static_cast<socklen_t>(up->endpoint.size()));
    const int connect_errno = errno;
    if (!register_socket(leg_->socket, fd)) [[unlikely]]
        return fail(close_reason::error);
    shard_.link_connecting(*this);  // each attempt gets the full connect timeout
    if (connected == 0) return on_connected({});
    if (connect_errno != EINPROGRESS)
        return on_connected(asio::error_code(connect_errno, asio::error::get_system_category()));
    // The connect's completion, or its failure, is the socket's first write edge.
    leg_->socket.writable = false;
    connecting_ = true;
}

void connection::on_connected(const asio::error_code& ec) noexcept {
    upstreams::upstream& up = *leg_->upstream.get();
    if (ec) {
        // Refused, unreachable, or out of time: mark it, try the next one.
        // Marked while still claimed: once released, a reload may give the slot to another.
        shard_.upstream_list().mark_failed(up);
        leg_->upstream.release();
        bump(shard_.stats().upstream_connect_failures);
        return connect_next_upstream();
    }
    shard_.upstream_list().mark_ok(up);
    if (shard_.live().send_proxy != config::proxy_header_version::off && !send_proxy_header())
        [[unlikely]]
        return fail(close_reason::upstream_failure);
    shard_.link_idle(*this);
    pump(to_target_);
    if (!is_closing()) pump(leg_->to_client);
}

namespace {

// A bounded number of rounds per readiness, then yield: one fast sender must not starve the shard.
constexpr int max_rounds = 16;
// The sockets' own O_NONBLOCK governs their side; this flag, the pipe's.
constexpr unsigned splice_flags = SPLICE_F_NONBLOCK;

}  // namespace

void connection::pump(relay& r) noexcept {
    if (r.splicing) [[unlikely]]
        return pump_spliced(r);
    const std::size_t capacity = shard_.buffer_size();
    for (int round = 0; round < max_rounds; ++round) {
        if (r.buffer == nullptr) {
            r.buffer = shard_.take_buffer();
            if (r.buffer == nullptr) [[unlikely]] {
                r.waiting_for_buffer = true;
                shard_.wait_for_buffer(*this);
                return;
            }
        }
        asio::error_code ec;
        const std::size_t n = r.from->read(r.buffer, capacity, ec);
        if (ec) {
            give_back_lent(r);
            if (ec == asio::error::would_block) return wait_read(r);
            if (ec == asio::error::eof) return finish_direction(r);
            return fail(failure_of(r.from));
        }
        bump(shard_.stats().bytes_in, n);
        if (r.from == &client_) received_ += n;
        shard_.touch(*this);
        r.filled = static_cast<std::uint32_t>(n);
        r.written = 0;
        if (!flush(r)) return;
        if (!r.from->readable) {
            give_back_lent(r);
            return wait_read(r);
        }
        if (n == capacity && r.from != r.to && shard_.pipes().enabled()) [[unlikely]] {
            // A full buffer means a bulk transfer; between two sockets the rest of it need not
            // pass through user space. With every pipe lent, this burst goes on copying.
            r.pipe = shard_.take_pipe();
            if (r.pipe != pipe_pool::none) {
                shard_.give_back_buffer(std::exchange(r.buffer, nullptr));
                r.splicing = true;
                return pump_spliced(r);
            }
        }
    }
    yield(r);
}

void connection::pump_spliced(relay& r) noexcept {
    // splice(2) stops at urgent data's mark, short of the bytes behind it; recv(2) steps over it.
    if (r.from->urgent()) [[unlikely]] {
        give_back_lent(r);
        r.splicing = false;
        return pump(r);
    }
    if (r.pipe == pipe_pool::none) {
        r.pipe = shard_.take_pipe();
        if (r.pipe == pipe_pool::none) {
            r.splicing = false;  // all lent: copy, and splice again once a burst fills a buffer
            return pump(r);
        }
    }
    const int from = r.from->fd();
    const int pipe_in = shard_.pipes().write_end(r.pipe);
    const std::size_t pipe_size = shard_.pipes().size(r.pipe);
    std::size_t moved = 0;
    for (int round = 0; round < max_rounds; ++round) {
        // The pipe is empty here (each round drains it), so only the socket can say EAGAIN. A
        // short splice does not mean the socket is drained (a pipe also runs out of slots, one
        // per packet fragment), so only EAGAIN ends the burst.
        const ssize_t n = ::splice(from, nullptr, pipe_in, nullptr, pipe_size, splice_flags);
        if (n <= 0) {
            const int error = errno;
            give_back_lent(r);
            // 0 is the EOF, or urgent data's mark with the FIN behind it: a copying read tells.
            if (n == 0) {
                r.splicing = false;
                return pump(r);
            }
            if (error == EAGAIN) {
                r.from->note_would_block();
                // Less than a buffer's worth since the last wait: no longer a bulk transfer.
                if (moved < shard_.buffer_size()) r.splicing = false;
                return wait_read(r);
            }
            return fail(failure_of(r.from));
        }
        bump(shard_.stats().bytes_in, static_cast<std::uint64_t>(n));
        if (r.from == &client_) received_ += static_cast<std::uint64_t>(n);
        shard_.touch(*this);
        moved += static_cast<std::size_t>(n);
        r.filled = static_cast<std::uint32_t>(n);
        r.written = 0;
        if (!flush_pipe(r)) return;
    }
    yield(r);
}

bool connection::flush_pipe(relay& r) noexcept {
    const int pipe_out = shard_.pipes().read_end(r.pipe);
    const int to = r.to->fd();
    while (r.written < r.filled) {
        const ssize_t n =
            ::splice(pipe_out, nullptr, to, nullptr, r.filled - r.written, splice_flags);
        if (n <= 0) {  // 0 would mean an empty pipe, which holds `filled - written` bytes
            if (n < 0 && errno == EAGAIN) {
                r.to->writable = false;
                wait_write(r);
                return false;
            }
            write_failed(r);
            return false;
        }
        r.written += static_cast<std::uint32_t>(n);
        bump(shard_.stats().bytes_out, static_cast<std::uint64_t>(n));
        if (r.to == &client_) sent_ += static_cast<std::uint64_t>(n);
        bump(shard_.stats().bytes_spliced, static_cast<std::uint64_t>(n));
    }
    return true;
}

bool connection::flush(relay& r) noexcept {
    if (r.pipe != pipe_pool::none) [[unlikely]]
        return flush_pipe(r);
    while (r.written < r.filled) {
        asio::error_code ec;
        const std::size_t n = r.to->write(r.buffer + r.written, r.filled - r.written, ec);
        if (ec == asio::error::would_block) {
            wait_write(r);
            return false;
        }
        if (ec) {
            write_failed(r);
            return false;
        }
        r.written += static_cast<std::uint32_t>(n);
        bump(shard_.stats().bytes_out, n);
        if (r.to == &client_) sent_ += n;
    }
    return true;
}

void connection::on_writable(relay& r) noexcept {
    if (!flush(r)) return;
    give_back_lent(r);
    // While closing, only the bytes an upstream sent before it failed still go to the client:
    // delivered, nothing is owed to it any more.
    if (is_closing()) return close_client();
    // Read at once: bytes may have arrived while we waited to write.
    pump(r);
}

void connection::wait_read(relay& r) noexcept {
    r.waiting_read = true;
}

void connection::wait_write(relay& r) noexcept {
    r.waiting_write = true;
}

void connection::yield(relay& r) noexcept {
    static_assert(sizeof(asio::detail::executor_op<yield_handler, yield_handler::allocator_type,
                                                   asio::detail::scheduler_operation>) <=
                      post_op_memory::capacity,
                  "the yield lives in the relay's operation memory");
    give_back_lent(r);
    asio::post(shard_.context(), yield_handler{connection_ref(*this), &r});
}

void connection::give_back_lent(relay& r) noexcept {
    if (r.buffer != nullptr) shard_.give_back_buffer(std::exchange(r.buffer, nullptr));
    if (r.pipe != pipe_pool::none) [[unlikely]]
        shard_.give_back_pipe(std::exchange(r.pipe, pipe_pool::none), r.holds_bytes());
}

void connection::resume_after_buffer_wait() noexcept {
    for (relay* r : {&to_target_, leg_ != nullptr ? &leg_->to_client : nullptr}) {
        if (is_closing()) return;
        if (r == nullptr || !r->waiting_for_buffer) continue;
        r->waiting_for_buffer = false;
        pump(*r);
    }
}

void connection::write_failed(relay& r) noexcept {
    give_back_lent(r);
    if (r.to == &client_) return fail(close_reason::error);
    // The upstream is gone, but what it sent before it went may still be queued in its socket:
    // the other direction reads that to the end and delivers it before the connection closes.
    upstream_write_failed_ = true;
    r.done = true;
    if (leg_->to_client.done) fail(close_reason::upstream_failure);
}

void connection::finish_direction(relay& r) noexcept {
    r.done = true;
    const bool all_done = leg_ == nullptr || (to_target_.done && leg_->to_client.done);
    if (!all_done) {
        // Half-close travels on: the reader of `to` sees EOF once everything before it arrived.
        ::shutdown(r.to->fd(), SHUT_WR);
        return;
    }
    if (!is_closing())
        closing_ =
            upstream_write_failed_ ? close_reason::upstream_failure : close_reason::client_eof;
    if (leg_ != nullptr) close_socket(leg_->socket);
    close_client();
}

void connection::fail(close_reason why) noexcept {
    if (!is_closing()) closing_ = why;
    shard_.leave_buffer_wait(*this);
    to_target_.waiting_for_buffer = false;
    awaiting_header_ = false;
    if (leg_ != nullptr) {
        leg_->to_client.waiting_for_buffer = false;
        connecting_ = false;
        close_socket(leg_->socket);
        // What the upstream sent before it failed is the client's: its write finishes first.
        if (why == close_reason::upstream_failure && leg_->to_client.holds_bytes()) return;
    }
    close_client();
}

void connection::abort(close_reason why) noexcept {
    fail(why);
}

void connection::abort_connect_attempt() noexcept {
    if (!connecting_) return;
    connecting_ = false;
    on_connected(asio::error::timed_out);
}

}  // namespace slabd::server
