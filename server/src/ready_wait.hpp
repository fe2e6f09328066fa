// A wait for readability that costs no system call to start, and the read that makes it safe.
// Asio 1.22 offers two waits, and each costs one per message: async_wait(wait_read) re-arms the
// descriptor with epoll_ctl(EPOLL_CTL_MOD), and async_read_some first tries a recv that, on a
// drained socket, fails with EAGAIN. The descriptor is registered edge-triggered for reads once,
// when the socket opens, so after a drain a queued operation is enough: the next byte, FIN or
// RST raises an edge. "Drained" must include the FIN: a read can return the last bytes with the
// FIN already queued behind them, and then no edge follows. TCP_INQ tells (read_noting_rest).
// It cannot tell a reset: Linux keeps the bytes queued before a RST readable, and TCP_INQ counts
// none after them. A reset's edge shows in the event that ends this wait (ready_event::hung_up)
// when Asio handles that event with the wait queued; handled while none is, it goes to nobody.
// On a shard's one thread a handler runs to its end before the next epoll_wait's events are
// handled, so an edge that comes while a handler reads is handled after that handler queued its
// wait; only a wake-up that was not this wait (a write, a yield, a connect) may have missed one.
#pragma once

#include <asio/detail/reactor.hpp>
#include <asio/detail/reactor_op.hpp>
#include <asio/error.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

#include "socket.hpp"

// This leans on Asio 1.22's reactor internals (reactor_op, start_op's signature, the socket's
// reactor data) and on its epoll reactor registering sockets edge-triggered: another Asio, or
// another reactor, must be checked against them before this builds.
#include <asio/version.hpp>
#if ASIO_VERSION < 102200 || ASIO_VERSION >= 102300
#error \
    "ready_wait.hpp is written against Asio 1.22's reactor internals: check them for this version"
#endif
#if !defined(ASIO_HAS_EPOLL) || defined(ASIO_HAS_IO_URING_AS_DEFAULT)
#error "ready_wait.hpp needs Asio's epoll reactor (edge-triggered registration)"
#endif

namespace slabd::server {

/// The reactor an io_context's sockets are registered with; looked up once, not per wait.
using reactor_type = asio::detail::reactor;

/// What ended a wait, besides its error code.
struct ready_event {
    /// The event reported an error (a reset) or a hang-up: a read that finds nothing more may
    /// still have an error to report, which no later edge will announce.
    bool hung_up = false;
};

namespace detail {

/// A socket's or a listener's implementation (its reactor data and state bits), which Asio's
/// I/O objects keep protected.
template <typename IoObject>
struct internals : IoObject {
    static auto& of(IoObject& io) noexcept {
        return (io.*(&internals::impl_)).get_implementation();
    }
};

template <typename IoObject>
reactor_type::per_descriptor_data& reactor_data(IoObject& io) noexcept {
    return internals<IoObject>::of(io).reactor_data_;
}

/// The events epoll reported for a descriptor, which Asio keeps in its descriptor state (the
/// operation the scheduler runs) from the epoll_wait that reported them until the next one.
struct reported_events : asio::detail::scheduler_operation {
    static std::uint32_t of(reactor_type::per_descriptor_data descriptor) noexcept {
        // The state derives from the operation privately, and only a C-style cast may name a
        // private base.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
        auto& state = (asio::detail::scheduler_operation&)(*descriptor);
#pragma GCC diagnostic pop
        return state.*(&reported_events::task_result_);
    }
};

/// Completes with the first read event (or error, or cancellation) after it starts; reads
/// nothing. Its memory comes from the handler's allocator, as an Asio operation's would.
template <typename Handler>
class ready_op : public asio::detail::reactor_op {
  public:
    ready_op(Handler&& handler, reactor_type::per_descriptor_data descriptor) noexcept
        : reactor_op(asio::error_code(), &perform, &complete),
          handler_(std::move(handler)),
          descriptor_(descriptor) {}

    /// Set while start_op runs: its speculative attempt is told "not yet" rather than done, so
    /// the operation is queued on the descriptor without a system call.
    bool starting = true;

  private:
    std::uint32_t events_ = 0;  // the mask of the event that completed the wait

    // Past start_op, only the descriptor's event handling calls this, with the event's mask in
    // the descriptor state.
    static status perform(reactor_op* base) noexcept {
        auto* op = static_cast<ready_op*>(base);
        if (op->starting) return not_done;
        op->events_ = reported_events::of(op->descriptor_);
        return done;
    }

    // owner is null when the io_context is destroyed with the operation pending: the handler is
    // destroyed, not called.
    static void complete(void* owner, asio::detail::operation* base, const asio::error_code&,
                         std::size_t) noexcept {
        auto* op = static_cast<ready_op*>(base);
        Handler handler(std::move(op->handler_));
        const asio::error_code ec = op->ec_;
        const ready_event event{(op->events_ & (EPOLLERR | EPOLLHUP)) != 0};
        auto allocator = handler.get_allocator();
        op->~ready_op();
        allocator.deallocate(reinterpret_cast<std::byte*>(op), sizeof(ready_op));
        if (owner != nullptr) handler(ec, event);
    }

    Handler handler_;
    reactor_type::per_descriptor_data descriptor_;
};

}  // namespace detail

/// Asks the kernel to report, with each read on `fd`, what is left to read (TCP_INQ). Set on a
/// listener, every socket it accepts inherits it. Without it (an older kernel) every read
/// reports "maybe more", which costs one read more per burst and nothing else.
inline void note_unread_bytes(int fd) noexcept {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof one);
}

/// recv(2) into `buffer` that also sets `drained`: true only if the kernel said that nothing is
/// left, neither bytes nor a FIN (it reports a FIN as one byte more to read).
inline std::size_t read_noting_rest(int fd, std::byte* buffer, std::size_t capacity,
                                    asio::error_code& ec, bool& drained) noexcept {
    iovec iov{buffer, capacity};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    drained = false;
    // syscall(2), not recvmsg(3): glibc's wrapper is a cancellation point, whose bookkeeping
    // cost as much as the rest of the wrapper per message, and slabd never cancels a thread.
    long n = 0;
    do n = ::syscall(SYS_recvmsg, fd, &message, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        ec = n == 0 ? asio::error_code(asio::error::eof)
                    : asio::error_code(errno, asio::error::get_system_category());
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) drained = true;
        return 0;
    }
    ec.clear();
    const cmsghdr* c = CMSG_FIRSTHDR(&message);
    if (c != nullptr && c->cmsg_level == IPPROTO_TCP && c->cmsg_type == TCP_CM_INQ) {
        int unread = 0;
        std::memcpy(&unread, CMSG_DATA(c), sizeof unread);
        drained = unread == 0;
    }
    return static_cast<std::size_t>(n);
}

/// send(2) of `size` bytes with MSG_NOSIGNAL, through syscall(2) for the same reason as the read.
inline std::size_t write_now(int fd, const std::byte* data, std::size_t size,
                             asio::error_code& ec) noexcept {
    long n = 0;
    do n = ::syscall(SYS_sendto, fd, data, size, MSG_NOSIGNAL, nullptr, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        ec.assign(errno, asio::error::get_system_category());
        return 0;
    }
    ec.clear();
    return static_cast<std::size_t>(n);
}

/// Calls `handler(ec, ready_event)` once `socket` (or a listener) is readable. Only for a socket
/// just drained, FIN included (read_noting_rest said so, or a read returned EAGAIN), or a
/// listener whose accept returned EAGAIN: readiness that came before the wait raises no new edge.
/// A reset is the caller's to rule out, as the header's comment says.
template <typename IoObject, typename Handler>
void async_wait_readable(reactor_type& reactor, IoObject& socket, Handler handler) noexcept {
    using op_type = detail::ready_op<Handler>;
    auto allocator = handler.get_allocator();
    auto& descriptor = detail::reactor_data(socket);
    auto* op = new (allocator.allocate(sizeof(op_type))) op_type(std::move(handler), descriptor);
    reactor.start_op(reactor_type::read_op, socket.native_handle(), descriptor, op, false, true);
    op->starting = false;
}

}  // namespace slabd::server
