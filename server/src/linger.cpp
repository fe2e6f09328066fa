#include "linger.hpp"

#include "new_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace slabd::server {

namespace {

/// What close_now reads before closing: enough for a request in flight, bounded per call.
constexpr int drain_reads = 8;

}  // namespace

void close_now(int fd) noexcept {
    ::shutdown(fd, SHUT_WR);
    char sink[2048];
    for (int i = 0; i < drain_reads; ++i)
        if (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0) break;
    ::close(fd);
}

/// A lingering socket: it always has exactly one read wait pending, and the wait's handler is
/// the only code that frees the slot (the lifetime rule of connections, with a count of one).
struct linger_pool::slot {
    slot(asio::io_context& context, std::uint32_t now) noexcept
        : socket(context.get_executor()), since(now) {}
    socket_type socket;
    slot* prev = nullptr;
    slot* next = nullptr;
    std::uint32_t since;
    bool linked = false;
    io_op_memory memory;
};

struct linger_pool::wait_handler {
    linger_pool* self;
    slot* s;
    using allocator_type = op_allocator<std::byte, io_op_memory>;
    allocator_type get_allocator() const noexcept { return allocator_type(s->memory); }
    void operator()(const asio::error_code& ec) const noexcept { self->on_readable(*s, ec); }
};

linger_pool::linger_pool(asio::io_context& context, shard_stats& stats, std::size_t slots,
                         std::uint32_t ticks)
    : context_(context), stats_(stats), ticks_(ticks), slots_(slots) {}

linger_pool::~linger_pool() = default;

void linger_pool::linger(int fd, std::uint32_t now) noexcept {
    if (fd < 0) return;
    slot* s = slots_.create(context_, now);
    if (s == nullptr) [[unlikely]] {
        bump(stats_.linger_overflows);
        return close_now(fd);
    }
    // Lingering never asks the socket for an address, so its protocol's family does not matter.
    asio::error_code ec;
    if (!adopt_nonblocking(s->socket, asio::ip::tcp::v6(), fd, ec)) [[unlikely]] {
        slots_.destroy(s);
        bump(stats_.linger_overflows);
        return close_now(fd);
    }
    bump(stats_.lingering);
    asio::error_code ignored;  // the socket is non-blocking since accept
    s->socket.shutdown(socket_type::shutdown_send, ignored);
    s->prev = tail_;
    (tail_ != nullptr ? tail_->next : head_) = s;
    tail_ = s;
    s->linked = true;
    drain(*s);
}

void linger_pool::drain(slot& s) noexcept {
    char sink[4096];
    for (int i = 0; i < drain_reads; ++i) {
        asio::error_code ec;
        s.socket.read_some(asio::buffer(sink), ec);
        if (ec == asio::error::would_block) {
            s.socket.async_wait(socket_type::wait_read, wait_handler{this, &s});
            return;
        }
        if (ec) return finish(s);  // EOF: the peer has everything and is done; or it is gone
    }
    // A peer that keeps sending: wait for the next readiness rather than hog the shard.
    s.socket.async_wait(socket_type::wait_read, wait_handler{this, &s});
}

void linger_pool::on_readable(slot& s, const asio::error_code& ec) noexcept {
    if (ec || !s.socket.is_open()) return finish(s);
    drain(s);
}

void linger_pool::finish(slot& s) noexcept {
    if (s.linked) {
        (s.prev != nullptr ? s.prev->next : head_) = s.next;
        (s.next != nullptr ? s.next->prev : tail_) = s.prev;
    }
    asio::error_code ignored;
    s.socket.close(ignored);
    slots_.destroy(&s);
    drop(stats_.lingering);
}

void linger_pool::expire(std::uint32_t now) noexcept {
    while (head_ != nullptr && now - head_->since >= ticks_) {
        bump(stats_.linger_timeouts);
        close_oldest();
    }
}

void linger_pool::close_all() noexcept {
    while (head_ != nullptr) close_oldest();
}

void linger_pool::close_oldest() noexcept {
    slot& s = *head_;
    head_ = s.next;
    (head_ != nullptr ? head_->prev : tail_) = nullptr;
    s.linked = false;
    // Cancels the pending wait; its handler frees the slot.
    asio::error_code ignored;
    s.socket.close(ignored);
}

}  // namespace slabd::server
