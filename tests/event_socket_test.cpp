// A socket slabd registers in Asio's epoll set itself: its readiness, its drain rule, and the
// lifetime of an event queued when the socket closes.
#include "event_socket.hpp"

#include <doctest/doctest.h>
#include <sys/socket.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstring>
#include <vector>

namespace {

using slabd::server::event_socket;

/// What the handler saw, in order: 'e' for an event, a digit for registrations ended.
struct seen {
    std::vector<char> calls;
    bool readable = false;
    bool writable = false;
    bool peer_done = false;
};

void note(event_socket& s, unsigned registrations_ended) noexcept {
    auto& log = *static_cast<seen*>(s.owner());
    log.calls.push_back(registrations_ended == 0 ? 'e'
                                                 : static_cast<char>('0' + registrations_ended));
    log.readable = s.readable;
    log.writable = s.writable;
    log.peer_done = s.peer_done;
}

struct registered_pair {
    asio::io_context context;
    // A socket's registration is no work of the io_context's (run_one would return at once).
    asio::executor_work_guard<asio::io_context::executor_type> work{context.get_executor()};
    event_socket socket;
    int peer = -1;
    seen log;

    registered_pair() {
        int pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
        peer = pair[1];
        socket.serve(&note, &log);
        asio::error_code ec;
        REQUIRE(socket.open(slabd::server::started_reactor(context), pair[0], ec));
    }
    ~registered_pair() {
        if (socket.is_open()) static_cast<void>(socket.close());
        ::close(peer);
    }
    [[nodiscard]] bool send(const char* text) const {
        const auto size = static_cast<ssize_t>(std::strlen(text));
        return ::send(peer, text, static_cast<std::size_t>(size), MSG_NOSIGNAL) == size;
    }
};

}  // namespace

TEST_CASE("a short read drains the socket, and the next byte is an edge") {
    registered_pair p;
    CHECK(p.context.run_one() == 1);  // the registration reports the empty socket writable
    CHECK(p.log.calls == std::vector<char>{'e'});
    CHECK(p.log.writable);
    // What came before the registration is not known: worth a read.
    CHECK(p.socket.readable);

    std::array<std::byte, 16> buffer{};
    asio::error_code ec;
    CHECK(p.socket.read(buffer.data(), buffer.size(), ec) == 0);
    CHECK(ec == asio::error::would_block);
    CHECK_FALSE(p.socket.readable);

    REQUIRE(p.send("hello"));
    CHECK(p.context.run_one() == 1);
    CHECK(p.log.readable);
    CHECK(p.socket.read(buffer.data(), buffer.size(), ec) == 5);
    CHECK_FALSE(ec);
    CHECK_FALSE(p.socket.readable);  // 5 < 16, no hang-up: drained without a read more
    CHECK(p.context.poll() == 0);    // and nothing is pending

    REQUIRE(p.send("again"));
    CHECK(p.context.run_one() == 1);
    CHECK(p.socket.readable);
}

TEST_CASE("after a hang-up, reads go on to the EOF") {
    registered_pair p;
    REQUIRE(p.send("last words"));
    REQUIRE(::shutdown(p.peer, SHUT_WR) == 0);
    CHECK(p.context.run_one() == 1);
    CHECK(p.log.peer_done);
    std::array<std::byte, 64> buffer{};
    asio::error_code ec;
    CHECK(p.socket.read(buffer.data(), buffer.size(), ec) == 10);
    CHECK(p.socket.readable);  // short, but the FIN may have gone with the bytes: read on
    CHECK(p.socket.read(buffer.data(), buffer.size(), ec) == 0);
    CHECK(ec == asio::error::eof);
}

TEST_CASE("a full read leaves the socket readable") {
    registered_pair p;
    REQUIRE(p.send("0123456789"));
    CHECK(p.context.run_one() == 1);
    std::array<std::byte, 4> buffer{};
    asio::error_code ec;
    CHECK(p.socket.read(buffer.data(), buffer.size(), ec) == 4);
    CHECK(p.socket.readable);
}

TEST_CASE("a write that finds the buffer full waits for the write edge") {
    registered_pair p;
    CHECK(p.context.run_one() == 1);
    std::array<std::byte, 4096> chunk{};
    asio::error_code ec;
    std::size_t sent = 0;
    while (!ec) sent += p.socket.write(chunk.data(), chunk.size(), ec);
    CHECK(ec == asio::error::would_block);
    CHECK_FALSE(p.socket.writable);
    CHECK(p.context.poll() == 0);
    std::array<char, 4096> sink{};
    while (::recv(p.peer, sink.data(), sink.size(), 0) > 0) {
    }
    CHECK(p.context.run_one() == 1);
    CHECK(p.socket.writable);
    CHECK(sent > 0);
}

TEST_CASE("closed with an event queued: the event releases the registration, and no more") {
    registered_pair p;
    CHECK(p.context.run_one() == 1);  // the registration's own event
    p.log.calls.clear();
    bool ended_at_close = true;
    // Posted first, so it runs after the reactor has queued the socket's event, before it.
    asio::post(p.context, [&] { ended_at_close = p.socket.close(); });
    REQUIRE(p.send("late"));
    CHECK(p.context.run_one() == 1);  // the close
    CHECK_FALSE(ended_at_close);
    CHECK(p.log.calls.empty());
    CHECK(p.context.run_one() == 1);  // the queued event
    CHECK(p.log.calls == std::vector<char>{'1'});
    CHECK(p.context.poll() == 0);
}

TEST_CASE("a socket reopened and closed again while one event is queued: that event ends both") {
    registered_pair p;
    CHECK(p.context.run_one() == 1);
    p.log.calls.clear();
    bool first_ended = true;
    bool second_ended = true;
    int other[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, other) == 0);
    asio::post(p.context, [&] {
        first_ended = p.socket.close();
        asio::error_code ec;
        REQUIRE(p.socket.open(slabd::server::started_reactor(p.context), other[0], ec));
        second_ended = p.socket.close();
    });
    REQUIRE(p.send("late"));
    CHECK(p.context.run_one() == 1);
    CHECK_FALSE(first_ended);
    CHECK_FALSE(second_ended);
    CHECK(p.context.run_one() == 1);
    CHECK(p.log.calls == std::vector<char>{'2'});
    ::close(other[1]);
}

TEST_CASE("urgent data: reads go on past its mark, to EAGAIN") {
    asio::io_context context;
    asio::executor_work_guard<asio::io_context::executor_type> work{context.get_executor()};
    asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket client(context);
    client.connect(acceptor.local_endpoint());
    asio::ip::tcp::socket accepted = acceptor.accept();
    accepted.non_blocking(true);
    seen log;
    event_socket socket;
    socket.serve(&note, &log);
    asio::error_code ec;
    REQUIRE(socket.open(slabd::server::started_reactor(context), accepted.release(), ec));
    const int fd = client.native_handle();
    REQUIRE(::send(fd, "abc", 3, 0) == 3);
    REQUIRE(::send(fd, "!", 1, MSG_OOB) == 1);
    REQUIRE(::send(fd, "def", 3, 0) == 3);
    // Loopback has it all queued once the last send returns; the event says urgent.
    CHECK(context.run_one() == 1);
    std::array<std::byte, 64> buffer{};
    // The read stops at the urgent mark, short, with "def" queued behind it and no edge to come.
    CHECK(socket.read(buffer.data(), buffer.size(), ec) == 3);
    CHECK(socket.readable);
    CHECK(socket.read(buffer.data(), buffer.size(), ec) == 3);
    CHECK(std::memcmp(buffer.data(), "def", 3) == 0);
    CHECK(socket.read(buffer.data(), buffer.size(), ec) == 0);
    CHECK(ec == asio::error::would_block);
    CHECK_FALSE(socket.readable);
    static_cast<void>(socket.close());
}

TEST_CASE("closed with nothing queued: the registration ends at once") {
    registered_pair p;
    CHECK(p.context.run_one() == 1);
    CHECK(p.socket.close());
    CHECK_FALSE(p.send("late"));  // the pair's other end is gone
    CHECK(p.context.poll() == 0);
    CHECK(p.log.calls == std::vector<char>{'e'});
}

TEST_CASE("with more than one closing thread, a close leaves epoll even if a copy lives on") {
    // A successor's spawn holds a copy of every descriptor for a moment, as `copy` does here.
    registered_pair p;
    CHECK(p.context.run_one() == 1);
    p.log.calls.clear();
    slabd::server::socket_closing_threads = 2;
    const int copy = ::dup(p.socket.fd());
    CHECK(p.socket.close());
    REQUIRE(p.send("late"));
    CHECK(p.context.poll() == 0);  // nothing names the closed socket
    CHECK(p.log.calls.empty());
    ::close(copy);
    slabd::server::socket_closing_threads = 0;
}

TEST_CASE("with one closing thread a copy elsewhere keeps the registration: why the count") {
    registered_pair p;
    CHECK(p.context.run_one() == 1);
    p.log.calls.clear();
    const int copy = ::dup(p.socket.fd());
    CHECK(p.socket.close());
    REQUIRE(p.send("late"));
    CHECK(p.context.run_one() == 1);  // an event for a socket its owner has closed
    CHECK(p.log.calls == std::vector<char>{'e'});
    ::close(copy);
}

TEST_CASE("a socket's event leaves the io_context's count of work as it was") {
    registered_pair p;
    p.work.reset();  // which stops the io_context: it had no work left
    p.context.restart();
    asio::steady_timer timer(p.context, std::chrono::milliseconds(50));
    bool fired = false;
    timer.async_wait([&](const asio::error_code&) { fired = true; });
    REQUIRE(p.send("x"));
    // Without the compensation each event would count as work finished, the timer's, and
    // run() would stop before it fires.
    p.context.run();
    CHECK(fired);
    CHECK(p.log.calls.size() >= 1);
}
