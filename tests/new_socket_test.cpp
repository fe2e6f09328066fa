// Sockets slabd opens non-blocking itself: what an accepted socket inherits from its listener
// instead of a setsockopt each.
#include "new_socket.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>

#include <asio/io_context.hpp>

namespace {

using slabd::server::socket_type;

int option(int fd, int level, int name) {
    int value = 0;
    socklen_t size = sizeof value;
    REQUIRE(::getsockopt(fd, level, name, &value, &size) == 0);
    return value;
}

}  // namespace

TEST_CASE(
    "an accepted socket is non-blocking, close-on-exec and has TCP_NODELAY from the listener") {
    asio::io_context context;
    socket_type listener(context);
    listener.open(asio::ip::tcp::v4());
    listener.bind({asio::ip::make_address("127.0.0.1"), 0});
    REQUIRE(::listen(listener.native_handle(), 8) == 0);
    slabd::server::set_inherited_options(listener.native_handle());
    listener.non_blocking(true);

    slabd::server::owned_fd peer;
    asio::ip::tcp::endpoint from;
    asio::error_code ec;
    CHECK_FALSE(slabd::server::accept_into(listener, peer, from, ec));
    CHECK(ec == asio::error::would_block);
    CHECK_FALSE(peer.is_open());

    socket_type client(context);
    client.connect(listener.local_endpoint());
    pollfd ready{listener.native_handle(), POLLIN, 0};
    REQUIRE(::poll(&ready, 1, 5000) == 1);  // the handshake's last ACK may still be in flight
    REQUIRE(slabd::server::accept_into(listener, peer, from, ec));
    CHECK(from == client.local_endpoint());
    const int fd = peer.get();
    CHECK(option(fd, IPPROTO_TCP, TCP_NODELAY) == 1);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("an upstream socket opens non-blocking with TCP_NODELAY and connects") {
    asio::io_context context;
    asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
    asio::error_code ec;
    const auto to = acceptor.local_endpoint();
    const slabd::server::owned_fd upstream(slabd::server::open_for_connect(to, ec));
    REQUIRE(upstream.is_open());
    const int fd = upstream.get();
    CHECK(option(fd, IPPROTO_TCP, TCP_NODELAY) == 1);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    const int connected = ::connect(fd, to.data(), static_cast<socklen_t>(to.size()));
    CHECK((connected == 0 || errno == EINPROGRESS));
    pollfd done{fd, POLLOUT, 0};
    REQUIRE(::poll(&done, 1, 5000) == 1);
    CHECK(option(fd, SOL_SOCKET, SO_ERROR) == 0);
}

TEST_CASE("a socket lingering in Asio's hands is known to it as non-blocking") {
    asio::io_context context;
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
    const slabd::server::owned_fd other(pair[1]);
    socket_type socket(context);
    asio::error_code ec;
    REQUIRE(slabd::server::adopt_nonblocking(socket, asio::ip::tcp::v4(), pair[0], ec));
    // A wrong bit would make the read below block rather than fail.
    REQUIRE(socket.non_blocking());
    // Not "possibly dup'ed": closing it skips EPOLL_CTL_DEL.
    const auto state = slabd::server::detail::internals<socket_type>::of(socket).state_;
    CHECK((state & asio::detail::socket_ops::possible_dup) == 0);
    std::array<char, 8> buffer{};
    socket.read_some(asio::buffer(buffer), ec);
    CHECK(ec == asio::error::would_block);
}
