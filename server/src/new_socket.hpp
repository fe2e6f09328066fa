// Sockets born non-blocking. Asio's accept costs three system calls more per connection than
// accept4(2): the new socket is made non-blocking by ioctl(FIONBIO) on its first operation,
// TCP_NODELAY is one setsockopt more, and Asio marks every socket it did not open itself as
// "possibly dup'ed", so closing it runs epoll_ctl(EPOLL_CTL_DEL) first. slabd's data-path
// sockets are not Asio's at all (event_socket.hpp); a socket that lingers becomes one, and is
// told that it is non-blocking and not dup'ed.
#pragma once

#include <asio/error.hpp>
#include <asio/ip/tcp.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "ready_wait.hpp"
#include "socket.hpp"

namespace slabd::server {

/// Sets on a listener what every socket it accepts then inherits from it (Linux copies the
/// listener's TCP state into each one it accepts), so that accepting sets nothing per socket:
/// TCP_NODELAY (slabd writes what it has at once, and Nagle would hold a small echo back for
/// the peer's delayed ACK). Throws.
inline void set_inherited_options(int listener) {
    const int one = 1;
    if (::setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        throw std::system_error(errno, std::generic_category(), "TCP_NODELAY on the listener");
}

/// Gives `socket` the descriptor `fd`, opened non-blocking by slabd; on failure `fd` stays the
/// caller's.
inline bool adopt_nonblocking(socket_type& socket, const asio::ip::tcp& protocol, int fd,
                              asio::error_code& ec) noexcept {
    socket.assign(protocol, fd, ec);
    if (ec) [[unlikely]]
        return false;
    // The descriptor is this socket's alone (slabd never dups a client's), so closing it takes
    // it out of the epoll set: close() may skip EPOLL_CTL_DEL as it does for a socket Asio
    // opened itself. (A successor's spawn may hold a copy for a moment; an event that copy keeps
    // coming names Asio's descriptor state, which Asio recycles but never frees, and at worst
    // wakes an Asio wait that then finds nothing.)
    namespace ops = asio::detail::socket_ops;
    auto& impl = detail::internals<socket_type>::of(socket);
    impl.state_ =
        static_cast<ops::state_type>((impl.state_ & ~ops::possible_dup) |
                                     ops::user_set_non_blocking | ops::internal_non_blocking);
    return true;
}

/// Accepts one newcomer from `listener` into `peer` (closed before the call), its address into
/// `from`. The socket is non-blocking from birth. Fails with would_block on an empty backlog; a
/// newcomer that reset while queued is skipped, as Asio skips it.
inline bool accept_into(socket_type& listener, owned_fd& peer, asio::ip::tcp::endpoint& from,
                        asio::error_code& ec) noexcept {
    long fd = -1;
    socklen_t size = 0;
    // syscall(2), not accept4(3), for the reason event_socket::read gives: glibc's wrapper is a
    // cancellation point, whose bookkeeping is about 36 instructions per accept.
    do {
        size = static_cast<socklen_t>(from.capacity());
        fd = ::syscall(SYS_accept4, listener.native_handle(), from.data(), &size,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED || errno == EPROTO));
    if (fd < 0) {
        ec.assign(errno, asio::error::get_system_category());
        return false;
    }
    from.resize(size);
    peer.reset(static_cast<int>(fd));
    return true;
}

/// A socket for a connect to `to`: non-blocking, with TCP_NODELAY, so that neither the connect
/// nor the relay sets anything later. -1 with `ec` set on failure.
inline int open_for_connect(const asio::ip::tcp::endpoint& to, asio::error_code& ec) noexcept {
    const int fd =
        ::socket(to.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        ec.assign(errno, asio::error::get_system_category());
        return -1;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

}  // namespace slabd::server
