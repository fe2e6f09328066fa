// Sockets slabd opens non-blocking itself: what an accepted socket inherits from its listener
// instead of a setsockopt each, and what Asio then knows of it.
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

    socket_type peer(context);
    asio::ip::tcp::endpoint from;
    asio::error_code ec;
    CHECK_FALSE(slabd::server::accept_into(listener, peer, from, ec));
    CHECK(ec == asio::error::would_block);

    socket_type client(context);
    client.connect(listener.local_endpoint());
    pollfd ready{listener.native_handle(), POLLIN, 0};
    REQUIRE(::poll(&ready, 1, 5000) == 1);  // the handshake's last ACK may still be in flight
    REQUIRE(slabd::server::accept_into(listener, peer, from, ec));
    CHECK(from == client.local_endpoint());
    const int fd = peer.native_handle();
    CHECK(option(fd, IPPROTO_TCP, TCP_NODELAY) == 1);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    // Asio knows: a read on the empty socket says would_block instead of waiting.
    CHECK(peer.non_blocking());
    std::array<char, 8> buffer{};
    peer.read_some(asio::buffer(buffer), ec);
    CHECK(ec == asio::error::would_block);
}

TEST_CASE("an upstream socket opens non-blocking with TCP_NODELAY and connects") {
    asio::io_context context;
    asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
    socket_type upstream(context);
    asio::error_code ec;
    REQUIRE(slabd::server::open_for_connect(upstream, acceptor.local_endpoint(), ec));
    const int fd = upstream.native_handle();
    CHECK(option(fd, IPPROTO_TCP, TCP_NODELAY) == 1);
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK(upstream.non_blocking());
    bool connected = false;
    upstream.async_connect(acceptor.local_endpoint(), [&](const asio::error_code& e) {
        CHECK_FALSE(e);
        connected = true;
    });
    context.run();
    CHECK(connected);
}
