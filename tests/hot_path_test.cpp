// Proves docs/design.md, decision 5: after warm-up, echo and proxy traffic and accept/close cycles
// make no heap allocation at all. The server runs in this process on its own threads; the clients
// use raw POSIX sockets and fixed buffers so that they allocate nothing either.
#include "server.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <thread>

#include "alloc_counter.hpp"
#include "history.hpp"
#include "logging.hpp"
#include "syscall_counter.hpp"

namespace {

using slabd::test::allocation_count;

slabd::config::Config loopback_config() {
    slabd::config::Config c;
    c.listen = {"127.0.0.1", 0};
    c.admin = {"127.0.0.1", 0};
    c.threads = 1;
    c.max_connections = 256;
    c.buffer_count = 64;
    c.log_level = "warn";
    return c;
}

/// A server running on its own thread for the duration of a test.
class running_server {
  public:
    explicit running_server(const slabd::config::Config& c)
        : server_(c), thread_([this] { server_.run(); }) {}
    ~running_server() {
        server_.request_stop();
        thread_.join();
    }
    running_server(const running_server&) = delete;
    running_server& operator=(const running_server&) = delete;
    std::uint16_t port() const { return server_.data_endpoint().port(); }
    slabd::server::server_snapshot stats() const { return server_.snapshot(); }

  private:
    slabd::server::server server_;
    std::thread thread_;
};

int connect_to(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/// Sends `n` bytes and reads them back; false on any short or failed transfer.
bool round_trip(int fd, std::size_t n) {
    static std::array<char, 4096> out{}, in{};
    std::memset(out.data(), 'x', n);
    if (::send(fd, out.data(), n, 0) != static_cast<ssize_t>(n)) return false;
    std::size_t got = 0;
    while (got < n) {
        const ssize_t r = ::recv(fd, in.data() + got, n - got, 0);
        if (r <= 0) return false;
        got += static_cast<std::size_t>(r);
    }
    return std::memcmp(in.data(), out.data(), n) == 0;
}

struct traffic_result {
    std::uint64_t allocations = 0;
    int failures = 0;
};

/// Echo messages over `conns` open connections: warm-up first, then the counted run.
traffic_result messages(std::uint16_t port, int conns, int warmup, int counted) {
    std::array<int, 128> fds{};
    for (int i = 0; i < conns; ++i) fds[static_cast<std::size_t>(i)] = connect_to(port);
    traffic_result r;
    for (int round = 0; round < warmup; ++round)
        for (int i = 0; i < conns; ++i)
            r.failures += round_trip(fds[static_cast<std::size_t>(i)], 64) ? 0 : 1;
    const std::uint64_t before = allocation_count();
    for (int round = 0; round < counted; ++round)
        for (int i = 0; i < conns; ++i)
            r.failures += round_trip(fds[static_cast<std::size_t>(i)],
                                     1 + static_cast<std::size_t>(round) % 2000)
                              ? 0
                              : 1;
    r.allocations = allocation_count() - before;
    for (int i = 0; i < conns; ++i) ::close(fds[static_cast<std::size_t>(i)]);
    return r;
}

/// Connect, one message, close: warm-up cycles first, then the counted ones.
traffic_result cycles(std::uint16_t port, int warmup, int counted) {
    traffic_result r;
    auto one_cycle = [&] {
        const int fd = connect_to(port);
        r.failures += (fd >= 0 && round_trip(fd, 32)) ? 0 : 1;
        ::close(fd);
    };
    for (int i = 0; i < warmup; ++i) one_cycle();
    const std::uint64_t before = allocation_count();
    for (int i = 0; i < counted; ++i) one_cycle();
    r.allocations = allocation_count() - before;
    return r;
}

// Asio keeps a record per registered socket and reuses it, so a warm-up must open as many
// sockets at once as the counted part ever has. Serial cycles can have many: the shard accepts
// up to 64 newcomers in a row before it hears of the closes behind them, and a fast client gets
// its echo and closes within that run.
constexpr int warm_up_connections = 96;

/// Messages over open connections, then accept/close cycles: neither allocates.
void check_no_allocations(running_server& server) {
    CHECK(messages(server.port(), warm_up_connections, 1, 0).failures == 0);
    const auto traffic = messages(server.port(), 32, 50, 500);
    CHECK(traffic.failures == 0);
    CHECK(traffic.allocations == 0);

    const auto churn = cycles(server.port(), 200, 1000);
    CHECK(churn.failures == 0);
    CHECK(churn.allocations == 0);
    CHECK(server.stats().op_memory_overflows == 0);
}

}  // namespace

// The pointers escape through an empty asm: at -O2 GCC would otherwise remove each allocation
// with its free (allocation elision), and the counter would rightly see nothing.
namespace {
void escape(void* p) {
    asm volatile("" : : "g"(p) : "memory");
}
}  // namespace

TEST_CASE("the allocation counter sees operator new and aligned_alloc") {
    const std::uint64_t before = allocation_count();
    int* number = new int(1);
    escape(number);
    delete number;
    void* aligned = std::aligned_alloc(64, 64);
    escape(aligned);
    std::free(aligned);
    CHECK(allocation_count() - before == 2);
}

TEST_CASE("echo: zero heap allocations per message and per accept/close cycle") {
    running_server echo(loopback_config());
    check_no_allocations(echo);
}

TEST_CASE("proxy: zero heap allocations per message and per accept/connect/close cycle") {
    running_server upstream(loopback_config());
    auto proxy_config = loopback_config();
    proxy_config.mode = slabd::config::server_mode::proxy;
    proxy_config.upstreams = {{"127.0.0.1", upstream.port()}};
    running_server proxy(proxy_config);
    check_no_allocations(proxy);
}

TEST_CASE("with every admission limit on: still zero heap allocations per message and per cycle") {
    auto config = loopback_config();
    config.max_per_source = 128;     // the table is looked up and counted on every accept
    config.accept_rate = 1'000'000;  // the bucket is consulted, never empty
    config.source_prefix_v4 = 24;
    running_server echo(config);
    check_no_allocations(echo);
    const auto s = echo.stats();
    CHECK(s.total().refused() == 0);
    CHECK(s.limits.sources <= 1);
}

TEST_CASE("PROXY protocol both ways: zero heap allocations per message and per cycle") {
    // The proxy sends a v2 header on each upstream connection; the echo behind it reads it.
    auto echo_config = loopback_config();
    echo_config.accept_proxy = true;
    echo_config.trusted_sources = {"127.0.0.1/32"};
    running_server upstream(echo_config);
    auto proxy_config = loopback_config();
    proxy_config.mode = slabd::config::server_mode::proxy;
    proxy_config.upstreams = {{"127.0.0.1", upstream.port()}};
    proxy_config.send_proxy = slabd::config::proxy_header_version::v2;
    running_server proxy(proxy_config);
    check_no_allocations(proxy);
    const auto sent = proxy.stats().total().proxy_headers_sent;
    CHECK(sent == warm_up_connections + 32 + 200 + 1000);
    CHECK(upstream.stats().total().proxy_headers_received == sent);
    CHECK(upstream.stats().total().refused() == 0);
}

namespace {

/// Lines in the file at `path`, read without a heap allocation.
std::uint64_t count_lines(const char* path) {
    static std::array<char, 1 << 16> chunk{};
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    std::uint64_t lines = 0;
    for (ssize_t n; fd >= 0 && (n = ::read(fd, chunk.data(), chunk.size())) > 0;)
        lines += static_cast<std::uint64_t>(std::count(chunk.begin(), chunk.begin() + n, '\n'));
    if (fd >= 0) ::close(fd);
    return lines;
}

}  // namespace

TEST_CASE("connection log on: logged closes allocate nothing, the writer's lines included") {
    // The whole process is counted: the shard's record, the writer's formatting and its write.
    // Fewer closes than a ring holds, so none is skipped whenever the writer drains.
    char path[] = "/tmp/slabd-hot-path-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    auto config = loopback_config();
    config.log_file = path;
    config.log_connections = true;
    config.log_connections_rate = 0;
    slabd::server::logging::setup(config);
    {
        running_server echo(config);
        CHECK(messages(echo.port(), warm_up_connections, 1, 0).failures == 0);
        CHECK(cycles(echo.port(), 168, 0).failures == 0);
        while (count_lines(path) < 200) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        const std::uint64_t before = allocation_count();
        CHECK(cycles(echo.port(), 0, 500).failures == 0);
        // Until the writer has written them all: its work is inside the count.
        while (count_lines(path) < 700) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        CHECK(allocation_count() - before == 0);
        CHECK(echo.stats().total().connection_log_skipped == 0);
    }
    ::unlink(path);
}

namespace {

/// Until every connection `server` accepted is closed and done lingering (30 s at most).
void wait_until_all_closed(const running_server& server) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
        const auto total = server.stats().total();
        if (total.active == 0 && total.lingering == 0) return;
        if (std::chrono::steady_clock::now() > deadline) FAIL("connections still open after 30 s");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

constexpr int echo_cycles_counted = 200;

/// The socket calls `echo_cycles_counted` accept/echo/close cycles cost `server`, counted after
/// 50 that warm it up, and once every one of them has closed.
slabd::test::socket_call_counts socket_calls_of_echo_cycles(const running_server& server) {
    CHECK(cycles(server.port(), 50, 0).failures == 0);
    wait_until_all_closed(server);
    const auto before = slabd::test::socket_calls();
    CHECK(cycles(server.port(), 0, echo_cycles_counted).failures == 0);
    wait_until_all_closed(server);
    const auto after = slabd::test::socket_calls();
    return {after.epoll_add - before.epoll_add, after.epoll_mod - before.epoll_mod,
            after.epoll_del - before.epoll_del, after.ioctl - before.ioctl,
            after.setsockopt - before.setsockopt};
}

}  // namespace

TEST_CASE("an accept/echo/close cycle configures nothing but the socket's epoll registration") {
    // A client socket lives in epoll from its accept to its close, and that costs one epoll_ctl:
    // non-blocking and TCP_NODELAY come with accept4 and from the listener, and close takes the
    // descriptor out of epoll by itself.
    slabd::test::not_counted_here();
    running_server echo(loopback_config());
    const auto calls = socket_calls_of_echo_cycles(echo);
    CHECK(calls.epoll_add == echo_cycles_counted);
    CHECK(calls.epoll_mod == 0);
    CHECK(calls.epoll_del == 0);
    CHECK(calls.ioctl == 0);
    CHECK(calls.setsockopt == 0);
    CHECK(echo.stats().total().closed_client_eof == 50 + echo_cycles_counted);
}

TEST_CASE("with two shards every close also takes the socket out of epoll") {
    // Another thread may be spawning a successor, whose copy of the descriptor would keep the
    // registration, and its events, alive past the close (event_socket.hpp).
    slabd::test::not_counted_here();
    auto config = loopback_config();
    config.threads = 2;
    running_server echo(config);
    const auto calls = socket_calls_of_echo_cycles(echo);
    CHECK(calls.epoll_add == echo_cycles_counted);
    CHECK(calls.epoll_del == echo_cycles_counted);
    CHECK(calls.epoll_mod == 0);
}

TEST_CASE(
    "a proxied cycle sets TCP_NODELAY on its upstream socket, registers each socket once, and "
    "configures nothing else") {
    slabd::test::not_counted_here();
    running_server upstream(loopback_config());
    auto proxy_config = loopback_config();
    proxy_config.mode = slabd::config::server_mode::proxy;
    proxy_config.upstreams = {{"127.0.0.1", upstream.port()}};
    running_server proxy(proxy_config);
    CHECK(cycles(proxy.port(), 50, 0).failures == 0);
    wait_until_all_closed(proxy);
    wait_until_all_closed(upstream);
    const auto before = slabd::test::socket_calls();
    constexpr int counted = 200;
    CHECK(cycles(proxy.port(), 0, counted).failures == 0);
    wait_until_all_closed(proxy);
    wait_until_all_closed(upstream);
    const auto after = slabd::test::socket_calls();
    // Registered: the proxy's client and upstream sockets, and the upstream's client socket.
    CHECK(after.epoll_add - before.epoll_add == 3 * counted);
    // Each registration is for reads, writes and hang-ups at once, so neither the connect nor
    // any wait changes it.
    CHECK(after.epoll_mod - before.epoll_mod == 0);
    // Two servers in one process are two threads that close sockets, so each close leaves epoll
    // first (event_socket.hpp); a lone one-shard server does not (the echo cycle above).
    CHECK(after.epoll_del - before.epoll_del == 3 * counted);
    CHECK(after.ioctl - before.ioctl == 0);
    CHECK(after.setsockopt - before.setsockopt == counted);

    // Messages of 1 to 250 bytes over open connections: nothing re-arms.
    constexpr int conns = 8;
    const auto quiet = slabd::test::socket_calls();
    CHECK(messages(proxy.port(), conns, 10, 250).failures == 0);
    wait_until_all_closed(proxy);
    CHECK(slabd::test::socket_calls().epoll_mod - quiet.epoll_mod == 0);
}

TEST_CASE("recording a history sample allocates nothing, the ring's wrap included") {
    slabd::server::history ring(4);
    const std::array<slabd::server::history::shard_sample, 4> shards{};
    const std::array<slabd::server::history::upstream_sample, 3> upstreams{};
    const std::uint64_t before = allocation_count();
    for (std::int64_t t = 1; t <= 2 * static_cast<std::int64_t>(slabd::server::history::depth); ++t)
        ring.record({0, t, 1, 2, 3, 4}, shards, upstreams);
    CHECK(allocation_count() - before == 0);
    CHECK(ring.size() == slabd::server::history::depth);
}
