// A wait for readability that costs no system call to start, reused for every message of a
// connection, and the read that makes it safe. Asio 1.22's async_read_some first tries a recv,
// which on a drained socket fails with EAGAIN (a system call per message that a plain epoll
// client does not make), and its async_wait re-arms the descriptor with epoll_ctl. The
// descriptor is registered edge-triggered for reads once, when the socket opens, so after a
// drain a queued operation is enough. "Drained" must include the FIN: a read can return the last
// bytes with the FIN already queued behind them, and then no edge follows; TCP_INQ tells.
// (The server has its own version; the two programs share no code.)
#pragma once

#include <asio/basic_stream_socket.hpp>
#include <asio/detail/reactor.hpp>
#include <asio/detail/reactor_op.hpp>
#include <asio/error.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace slabd::load {

/// The reactor an io_context's sockets are registered with; looked up once, not per wait.
using reactor_type = asio::detail::reactor;

/// Asks the kernel to report, with each read on `fd`, what is left to read (TCP_INQ). Without
/// it (an older kernel) every read reports "maybe more", which costs one read more per burst.
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
    ssize_t n = 0;
    do n = ::recvmsg(fd, &message, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        ec = n == 0 ? asio::error_code(asio::error::eof)
                    : asio::error_code(errno, asio::error::get_system_category());
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

/// One reusable readiness wait that calls `(owner.*Callback)(ec)`: at the first read event (or
/// error, or cancellation) after start().
template <typename Owner, void (Owner::*Callback)(const asio::error_code&) noexcept>
class ready_wait : public asio::detail::reactor_op {
  public:
    explicit ready_wait(Owner& owner) noexcept
        : reactor_op(asio::error_code(), &perform, &complete), owner_(owner) {}
    ready_wait(const ready_wait&) = delete;
    ready_wait& operator=(const ready_wait&) = delete;

    /// Only for a socket just drained, FIN included (read_noting_rest said so, or a read returned
    /// EAGAIN), and one wait at a time: readiness that came before the wait raises no new edge.
    template <typename Socket>
    void start(reactor_type& reactor, Socket& socket) noexcept {
        ec_ = asio::error_code();
        starting_ = true;
        reactor.start_op(reactor_type::read_op, socket.native_handle(),
                         internals<Socket>::reactor_data(socket), this, false, true);
        starting_ = false;
    }

  private:
    /// The socket's reactor state, which basic_socket keeps protected.
    template <typename Socket>
    struct internals : Socket {
        static reactor_type::per_descriptor_data& reactor_data(Socket& s) noexcept {
            return (s.*(&internals::impl_)).get_implementation().reactor_data_;
        }
    };

    // start_op's speculative attempt is told "not yet", so the wait is queued without a
    // system call; an event performs it at once.
    static status perform(reactor_op* base) noexcept {
        return static_cast<ready_wait*>(base)->starting_ ? not_done : done;
    }
    // owner is null when the io_context is destroyed with the wait pending: nothing to call.
    static void complete(void* owner, asio::detail::operation* base, const asio::error_code&,
                         std::size_t) noexcept {
        auto* self = static_cast<ready_wait*>(base);
        if (owner != nullptr) (self->owner_.*Callback)(self->ec_);
    }

    Owner& owner_;
    bool starting_ = false;
};

}  // namespace slabd::load
