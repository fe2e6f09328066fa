#include "slabd/config/config.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace slabd::config;
using namespace std::chrono_literals;

namespace {

std::string load_error(std::string_view toml) {
    try {
        (void)load_string(toml, "slabd.toml");
    } catch (const config_error& e) {
        return e.what();
    }
    return "(loaded without error)";
}

command_line parse(std::vector<std::string> args) {
    args.insert(args.begin(), "slabd");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

// A TOML file that exists for one test case.
class temp_file {
  public:
    explicit temp_file(std::string_view text)
        : path_{std::filesystem::temp_directory_path() /
                ("slabd_config_test_" + std::to_string(::getpid()) + ".toml")} {
        std::ofstream{path_} << text;
    }
    ~temp_file() { std::filesystem::remove(path_); }
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;
    std::string path() const { return path_.string(); }

  private:
    std::filesystem::path path_;
};

// Every setting differs from its default and from the sample in deploy/.
Config unusual() {
    Config c;
    c.mode = server_mode::proxy;
    c.listen = {"::1", 7100};
    c.admin = {"0.0.0.0", 0};
    c.upstreams = {{"127.0.0.1", 8000}, {"2001:db8::5", 8001}};
    c.balance = balance_policy::least_connections;
    c.max_connections = 1234;
    c.pool_reserve = 50000;
    c.threads = 3;
    c.accept_proxy = true;
    c.trusted_sources = {"10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"};
    c.on_exhausted = exhausted_policy::pause;
    c.evict_idle_after = 90s;
    c.busy_message = "busy \"now\" \\ caf\u00e9";
    c.buffer_count = 77;
    c.buffer_size = 4096;
    c.max_per_source = 9;
    c.source_prefix_v4 = 24;
    c.source_prefix_v6 = 48;
    c.accept_rate = 500;
    c.accept_burst = 50;
    c.idle_timeout = 1500ms;
    c.connect_timeout = 2min;
    c.shutdown_grace = 0s;
    c.proxy_header_timeout = 750ms;
    c.upstream_fail_timeout = 1h;
    c.resolve_interval = 0s;
    c.splice_pipes = 0;
    c.send_proxy = proxy_header_version::v2;
    c.check_interval = 3s;
    c.check_timeout = 500ms;
    c.check_rise = 4;
    c.check_fall = 5;
    c.check_send = "PING\r\n";
    c.check_expect = "+PONG";
    c.admin_token = "s3cret-t0ken";
    c.ready_headroom = 12;
    c.log_level = "debug";
    c.log_file = "/var/log/slabd.log";
    c.log_fmt = log_format::json;
    c.daemonize = true;
    c.pidfile = "/run/slabd.pid";
    c.handover_socket = "/run/slabd/handover.sock";
    return c;
}

}  // namespace

TEST_CASE("defaults run out of the box") {
    const Config c;
    CHECK(c.mode == server_mode::echo);
    CHECK(to_string(c.listen) == "127.0.0.1:7000");
    CHECK(to_string(c.admin) == "127.0.0.1:9100");
    CHECK(c.upstreams.empty());
    CHECK(c.balance == balance_policy::round_robin);
    CHECK(c.max_connections == 10'000);
    CHECK(c.threads == std::max(1U, std::thread::hardware_concurrency()));
    CHECK(c.on_exhausted == exhausted_policy::refuse);
    CHECK(c.busy_message.empty());
    CHECK(c.buffer_count == 1024);
    CHECK(c.buffer_size == 16384);
    CHECK(c.idle_timeout == 300s);
    CHECK(c.connect_timeout == 5s);
    CHECK(c.shutdown_grace == 10s);
    CHECK(c.upstream_fail_timeout == 10s);
    CHECK(c.splice_pipes == 64);
    CHECK(c.admin_token.empty());
    CHECK(c.ready_headroom == 0);
    CHECK(c.log_level == "info");
    CHECK(c.log_file.empty());
    CHECK(c.log_fmt == log_format::text);
    CHECK_FALSE(c.daemonize);
    CHECK(c.pidfile.empty());
    CHECK(c.source_file.empty());

    CHECK(load_string("", "empty.toml") == c);
    const auto cl = parse({});
    CHECK(cl.what == action::run);
    CHECK(cl.exit_code == 0);
    CHECK(cl.config == c);
}

TEST_CASE("every key is read from the file") {
    const Config c = load_string(R"(
        [server]
        mode = "proxy"
        listen = "[::1]:7100"
        threads = 3
        accept_proxy = true
        trusted_sources = ["10.1.2.3/8", "2001:db8::1/32", "192.0.2.7"]
        [pool]
        max_connections = 1234
        reserve = 50000
        on_exhausted = "pause"
        evict_idle_after = "90s"
        busy_message = "busy \"now\" \\ café"
        buffer_count = 77
        buffer_size = 4096
        [limits]
        max_per_source = 9
        source_prefix_v4 = 24
        source_prefix_v6 = 48
        accept_rate = 500
        accept_burst = 50
        [timeouts]
        idle = "1500ms"
        connect = "2m"
        shutdown_grace = 0
        proxy_header = "750ms"
        [proxy]
        upstreams = ["127.0.0.1:8000", "[2001:db8::5]:8001"]
        balance = "least-connections"
        fail_timeout = "1h"
        resolve_interval = 0
        splice_pipes = 0
        send_proxy = "v2"
        [health_check]
        interval = "3s"
        timeout = "500ms"
        rise = 4
        fall = 5
        send = "PING\r\n"
        expect = "+PONG"
        [admin]
        listen = "0.0.0.0:0"
        token = "s3cret-t0ken"
        ready_headroom = 12
        [log]
        level = "debug"
        file = "/var/log/slabd.log"
        format = "json"
        [daemon]
        daemonize = true
        pidfile = "/run/slabd.pid"
        handover_socket = "/run/slabd/handover.sock"
    )",
                                 "all.toml");
    CHECK(c == unusual());
}

TEST_CASE("a file sets only what it names") {
    const Config c = load_string("[pool]\nmax_connections = 5\n", "slabd.toml");
    Config expected;
    expected.max_connections = 5;
    CHECK(c == expected);

    Config base;
    base.log_level = "warn";
    CHECK(load_string("[server]\nthreads = 2\n", "slabd.toml", base).log_level == "warn");
}

TEST_CASE("threads = 0 means one per core") {
    CHECK(load_string("server.threads = 0", "slabd.toml").threads == default_threads());
    CHECK(default_threads() >= 1);
}

TEST_CASE("durations") {
    const auto idle = [](std::string_view value) {
        return load_string("timeouts.idle = " + std::string{value}, "slabd.toml").idle_timeout;
    };
    CHECK(idle(R"("500ms")") == 500ms);
    CHECK(idle(R"("30s")") == 30s);
    CHECK(idle(R"("2m")") == 2min);
    CHECK(idle(R"("1h")") == 1h);
    CHECK(idle(R"("24h")") == 24h);
    CHECK(idle(R"("45")") == 45s);
    CHECK(idle("45") == 45s);
    CHECK(idle("0") == 0ms);
    CHECK(idle(R"("0s")") == 0ms);

    constexpr std::string_view syntax =
        R"(slabd.toml:1: timeouts.idle: expected a duration such as "500ms", "30s", "2m" or "1h", )"
        "or a whole number of seconds, got ";
    for (const std::string_view bad :
         {R"("5 mins")", R"("1.5s")", R"("")", R"("-1s")", R"("s")", R"("10d")", "-1", "1.5"}) {
        CAPTURE(bad);
        CHECK(load_error("timeouts.idle = " + std::string{bad}) ==
              std::string{syntax} + std::string{bad});
    }
    CHECK(load_error(R"(timeouts.idle = "25h")") ==
          R"(slabd.toml:1: timeouts.idle: expected a duration 0s..24h, got "25h")");
    CHECK(load_error(R"(timeouts.connect = "0ms")") ==
          R"(slabd.toml:1: timeouts.connect: expected a duration 1ms..5m, got "0ms")");
    CHECK(
        load_error(R"(timeouts.idle = "99999999999999999999h")") ==
        R"(slabd.toml:1: timeouts.idle: expected a duration 0s..24h, got "99999999999999999999h")");
    CHECK(load_error("timeouts.idle = 9223372036854775807") ==
          "slabd.toml:1: timeouts.idle: expected a duration 0s..24h, got 9223372036854775807");
}

TEST_CASE("endpoints") {
    const auto listen = [](std::string_view value) {
        return load_string("server.listen = \"" + std::string{value} + "\"", "slabd.toml").listen;
    };
    CHECK(listen("127.0.0.1:7000") == endpoint{"127.0.0.1", 7000});
    CHECK(listen("localhost:7000") == endpoint{"127.0.0.1", 7000});
    CHECK(listen("0.0.0.0:0") == endpoint{"0.0.0.0", 0});
    CHECK(listen("[::1]:65535") == endpoint{"::1", 65535});
    CHECK(listen("[0:0:0:0:0:0:0:1]:7000") == endpoint{"::1", 7000});
    CHECK(listen("[::]:7000") == endpoint{"::", 7000});
    CHECK(to_string(endpoint{"::1", 7000}) == "[::1]:7000");
    CHECK(to_string(endpoint{"10.0.0.1", 80}) == "10.0.0.1:80");

    const std::string at = "slabd.toml:1: server.listen: expected ";
    const std::string shape = R"("HOST:PORT", such as "127.0.0.1:7000" or "[::1]:7000", got )";
    const std::string host =
        R"(an IP address or "localhost" as HOST (names are not looked up), got )";
    const auto error = [](std::string_view value) {
        return load_error("server.listen = \"" + std::string{value} + "\"");
    };
    CHECK(error("127.0.0.1") == at + shape + R"("127.0.0.1")");
    CHECK(error("[::1]7000") == at + shape + R"("[::1]7000")");
    CHECK(error("example.com:80") == at + host + R"("example.com:80")");
    CHECK(error("256.0.0.1:80") == at + host + R"("256.0.0.1:80")");
    CHECK(error("127.1:80") == at + host + R"("127.1:80")");
    CHECK(error("[127.0.0.1]:80") == at + host + R"("[127.0.0.1]:80")");
    CHECK(error(":80") == at + host + R"(":80")");
    CHECK(error("::1:80") ==
          at + R"(an IPv6 address in brackets, such as "[::1]:7000", got "::1:80")");
    CHECK(error("127.0.0.1:65536") ==
          at + R"(a port 0..65535 after the host, got "127.0.0.1:65536")");
    CHECK(error("127.0.0.1:") == at + R"(a port 0..65535 after the host, got "127.0.0.1:")");
    CHECK(error("127.0.0.1:+80") == at + R"(a port 0..65535 after the host, got "127.0.0.1:+80")");
    CHECK(
        load_error(R"(proxy.upstreams = ["127.0.0.1:0"])") ==
        R"(slabd.toml:1: proxy.upstreams[0]: expected a port 1..65535 after the host, got "127.0.0.1:0")");

    // Upstreams may be names, looked up by the server; listeners may not.
    const auto upstreams = [](std::string_view list) {
        return load_string("proxy.upstreams = " + std::string{list}, "slabd.toml").upstreams;
    };
    CHECK(upstreams(R"(["Backend-1.Example:8000", "localhost:80", "[::1]:81", "10.0.0.1:82"])") ==
          std::vector<endpoint>{
              {"backend-1.example", 8000}, {"localhost", 80}, {"::1", 81}, {"10.0.0.1", 82}});
    const std::string name_error =
        R"(slabd.toml:1: proxy.upstreams[0]: expected a host name (letters, digits, '-' and '.') or an IP address as HOST, got )";
    CHECK(load_error(R"(proxy.upstreams = ["-bad.example:80"])") ==
          name_error + R"("-bad.example:80")");
    CHECK(load_error(R"(proxy.upstreams = ["a..b:80"])") == name_error + R"("a..b:80")");
    CHECK(load_error(R"(proxy.upstreams = ["under_score:80"])") ==
          name_error + R"("under_score:80")");
    CHECK(
        load_error(R"(proxy.upstreams = ["name:0"])") ==
        R"(slabd.toml:1: proxy.upstreams[0]: expected a port 1..65535 after the host, got "name:0")");
    CHECK(load_error(R"(proxy.upstreams = ["256.1.1.1:80"])") == name_error + R"("256.1.1.1:80")");
}

TEST_CASE("trusted networks") {
    const auto networks = [](std::string_view list) {
        return load_string("server.trusted_sources = " + std::string{list}, "slabd.toml")
            .trusted_sources;
    };
    CHECK(networks(R"(["127.0.0.1"])") == std::vector<std::string>{"127.0.0.1/32"});
    CHECK(networks(R"(["::1", "fe80::1/10"])") == std::vector<std::string>{"::1/128", "fe80::/10"});
    CHECK(networks(R"(["10.9.8.7/0", "192.168.1.255/23"])") ==
          std::vector<std::string>{"0.0.0.0/0", "192.168.0.0/23"});
    // IPv4-mapped networks are IPv4 networks, as the server counts mapped clients as IPv4.
    CHECK(networks(R"(["::ffff:10.1.2.3/104", "::ffff:192.0.2.7"])") ==
          std::vector<std::string>{"10.0.0.0/8", "192.0.2.7/32"});
    const std::string at = "slabd.toml:1: server.trusted_sources[0]: expected ";
    const std::string shape =
        R"("ADDRESS" or "ADDRESS/PREFIX", such as "10.0.0.0/8" or "::1", got )";
    const auto error = [](std::string_view value) {
        return load_error("server.trusted_sources = [\"" + std::string{value} + "\"]");
    };
    CHECK(error("localhost") == at + shape + R"("localhost")");
    CHECK(error("10.0.0.0/") == at + R"(a prefix length 0..32 after the '/', got "10.0.0.0/")");
    CHECK(error("10.0.0.0/33") == at + R"(a prefix length 0..32 after the '/', got "10.0.0.0/33")");
    CHECK(error("::/129") == at + R"(a prefix length 0..128 after the '/', got "::/129")");
    CHECK(error("::ffff:0.0.0.0/95") ==
          at + R"(a prefix of 96 or more for an IPv4-mapped network, got "::ffff:0.0.0.0/95")");
    CHECK(error("10.0.0.0/+8") == at + R"(a prefix length 0..32 after the '/', got "10.0.0.0/+8")");
    CHECK(
        load_error(R"(server.trusted_sources = ["10.0.0.1/8", "10.2.3.4/8"])") ==
        R"(slabd.toml:1: server.trusted_sources[1]: expected each network once, got "10.2.3.4/8")");
}

TEST_CASE("file errors name file and line and key and say what was expected") {
    SUBCASE("wrong type and out of range") {
        CHECK(load_error("[server]\n\n[pool]\nmax_connections = \"lots\"\n") ==
              R"(slabd.toml:4: pool.max_connections: expected an integer 1..10000000, got "lots")");
        CHECK(load_error("[pool]\nmax_connections = 0") ==
              "slabd.toml:2: pool.max_connections: expected an integer 1..10000000, got 0");
        CHECK(load_error("[pool]\nmax_connections = -3") ==
              "slabd.toml:2: pool.max_connections: expected an integer 1..10000000, got -3");
        CHECK(load_error("[pool]\nmax_connections = 1.5") ==
              "slabd.toml:2: pool.max_connections: expected an integer 1..10000000, got 1.5");
        CHECK(load_error("[pool]\nmax_connections = [1]") ==
              "slabd.toml:2: pool.max_connections: expected an integer 1..10000000, got an array");
        CHECK(load_error("[pool]\nbuffer_size = 512") ==
              "slabd.toml:2: pool.buffer_size: expected an integer 1024..1048576, got 512");
        CHECK(load_error("[server]\nthreads = 1025") ==
              "slabd.toml:2: server.threads: expected an integer 0..1024, got 1025");
        CHECK(load_error("[daemon]\ndaemonize = \"yes\"") ==
              R"(slabd.toml:2: daemon.daemonize: expected true or false, got "yes")");
        CHECK(load_error("[log]\nfile = 7") == "slabd.toml:2: log.file: expected a string, got 7");
        CHECK(
            load_error("[pool]\nbusy_message = \"two\\nlines\"") ==
            R"(slabd.toml:2: pool.busy_message: expected one line of UTF-8 text without control characters, got "two\nlines")");
        CHECK(
            load_error("[proxy]\nupstreams = \"127.0.0.1:8000\"") ==
            R"(slabd.toml:2: proxy.upstreams: expected an array of "HOST:PORT" strings, got "127.0.0.1:8000")");
        CHECK(
            load_error("[proxy]\nupstreams = [\n  \"127.0.0.1:8000\",\n  \"127.0.0.1:8000\",\n]") ==
            R"(slabd.toml:4: proxy.upstreams[1]: expected each upstream once, got "127.0.0.1:8000")");
        CHECK(load_error("server = 5") == "slabd.toml:1: server: expected a table, got 5");
        CHECK(load_error("[[server]]\nmode = \"echo\"") ==
              "slabd.toml:1: server: expected a table, got an array");
    }
    SUBCASE("the first error in the file is the one reported") {
        CHECK(load_error("[server]\nmode = \"x\"\n[admin]\nlisten = \"x\"")
                  .starts_with("slabd.toml:2: server.mode:"));
        CHECK(load_error("[pool]\non_exhausted = 1\nbuffer_count = 0")
                  .starts_with("slabd.toml:2: pool.on_exhausted:"));
    }
    SUBCASE("bad enum") {
        CHECK(load_error("[server]\nmode = \"prox\"") ==
              R"(slabd.toml:2: server.mode: expected "echo" or "proxy", got "prox")");
        CHECK(
            load_error("[log]\nlevel = \"loud\"") ==
            R"(slabd.toml:2: log.level: expected one of "trace", "debug", "info", "warn", "error", "critical", "off", got "loud")");
        CHECK(
            load_error("[proxy]\nbalance = \"round_robin\"") ==
            R"(slabd.toml:2: proxy.balance: expected "round-robin" or "least-connections", got "round_robin")");
    }
    SUBCASE("unknown keys and tables") {
        CHECK(load_error("[pool]\nmax_conections = 5") ==
              "slabd.toml:2: pool.max_conections: unknown key (the keys of [pool] are "
              "max_connections, reserve, on_exhausted, evict_idle_after, busy_message, "
              "buffer_count, buffer_size)");
        CHECK(load_error("[pool.extra]\nx = 1") ==
              "slabd.toml:1: pool.extra: unknown key (the keys of [pool] are "
              "max_connections, reserve, on_exhausted, evict_idle_after, busy_message, "
              "buffer_count, buffer_size)");
        CHECK(load_error("\n[servre]\nmode = \"echo\"") ==
              "slabd.toml:2: [servre]: unknown table "
              "(the tables are server, pool, limits, timeouts, proxy, health_check, admin, log, "
              "daemon)");
        CHECK(load_error("mode = \"echo\"") ==
              "slabd.toml:1: mode: unknown key at the top level (did you mean server.mode?)");
        CHECK(load_error("colour = 1") ==
              "slabd.toml:1: colour: unknown key at the top level (settings go in the tables "
              "server, pool, limits, timeouts, proxy, health_check, admin, log, daemon)");
    }
    SUBCASE("syntax errors give line and column and the toml++ description") {
        const std::string e = load_error("[server]\nmode = \"echo\"\nlisten = \n");
        CHECK(e.starts_with("slabd.toml:3:10: "));
        CHECK(e.size() > std::string_view{"slabd.toml:3:10: "}.size());
        CHECK(load_error("[server\n").starts_with("slabd.toml:1:8: "));
        CHECK(load_error("a = 1\na = 2\n").starts_with("slabd.toml:2:"));
    }
    SUBCASE("the token is never echoed") {
        const std::string e = load_error("[admin]\ntoken = \"hunter 2\"");
        CHECK(e ==
              "slabd.toml:2: admin.token: expected a string of at most 256 visible ASCII "
              "characters, no spaces (the value is not shown)");
        CHECK(e.find("hunter") == std::string::npos);
        CHECK(load_error("[admin]\ntoken = 1234").find("1234") == std::string::npos);
    }
}

TEST_CASE("checks across settings name where the culprit was set") {
    CHECK(load_error("[server]\n\nmode = \"proxy\"") ==
          "slabd.toml:3: server.mode: proxy mode needs at least one upstream "
          "(proxy.upstreams or --upstream)");
    CHECK(load_error("server.mode = \"proxy\"\nproxy.upstreams = []")
              .starts_with("slabd.toml:1: server.mode: proxy mode needs"));
    CHECK(
        load_string("server.mode = \"proxy\"\nproxy.upstreams = [\"127.0.0.1:8000\"]", "x").mode ==
        server_mode::proxy);

    CHECK(
        load_error("[server]\nlisten = \"127.0.0.1:7000\"\n[admin]\nlisten = \"127.0.0.1:7000\"") ==
        "slabd.toml:4: admin.listen: expected an endpoint apart from the data listener "
        R"("127.0.0.1:7000" (slabd.toml:2: server.listen), got "127.0.0.1:7000")");
    CHECK(load_error("server.listen = \"0.0.0.0:9100\"") ==
          R"(admin.listen: expected an endpoint apart from the data listener "0.0.0.0:9100" )"
          R"((slabd.toml:1: server.listen), got "127.0.0.1:9100")");
    CHECK(load_error("server.listen = \"[::]:9100\"").starts_with("admin.listen: expected"));
    CHECK(load_error("server.listen = \"localhost:9100\"").starts_with("admin.listen: expected"));
    // Port 0 means any free port, so two of them never collide; other addresses or families don't.
    CHECK_NOTHROW(
        load_string("server.listen = \"127.0.0.1:0\"\nadmin.listen = \"127.0.0.1:0\"", "x"));
    CHECK_NOTHROW(load_string("server.listen = \"127.0.0.2:9100\"", "x"));
    CHECK_NOTHROW(load_string("server.listen = \"[::1]:9100\"", "x"));
    CHECK_NOTHROW(
        load_string("server.listen = \"0.0.0.0:9100\"\nadmin.listen = \"[::1]:9100\"", "x"));

    CHECK(load_error("pool.max_connections = 10\nadmin.ready_headroom = 11") ==
          "slabd.toml:2: admin.ready_headroom: expected at most pool.max_connections (10), got 11");
    CHECK(load_error("[pool]\nmax_connections = 10\nreserve = 9") ==
          "slabd.toml:3: pool.reserve: expected at least pool.max_connections (10, slabd.toml:2: "
          "pool.max_connections), got 9");
    CHECK(effective_pool_reserve(load_string("pool.max_connections = 10", "x")) == 40);
    CHECK(effective_pool_reserve(
              load_string("pool.max_connections = 10\npool.reserve = 10", "x")) == 10);
    CHECK(effective_pool_reserve(load_string("pool.max_connections = 9000000", "x")) == 10'000'000);
    CHECK(load_error("[daemon]\ndaemonize = true") ==
          "slabd.toml:2: daemon.daemonize: daemon mode needs a pidfile (daemon.pidfile or "
          "--pidfile)");
    CHECK(
        load_error("[daemon]\ndaemonize = true\npidfile = \"slabd.pid\"") ==
        R"(slabd.toml:3: daemon.pidfile: expected an absolute path in daemon mode (the daemon runs in /), got "slabd.pid")");
    CHECK(
        load_error(
            "daemon.daemonize = true\ndaemon.pidfile = \"/run/s.pid\"\nlog.file = \"s.log\"") ==
        R"(slabd.toml:3: log.file: expected an absolute path in daemon mode (the daemon runs in /), got "s.log")");
    CHECK_NOTHROW(load_string("daemon.pidfile = \"slabd.pid\"\nlog.file = \"s.log\"", "x"));
    CHECK(load_error("[server]\naccept_proxy = true") ==
          "slabd.toml:2: server.accept_proxy: accept_proxy needs server.trusted_sources (or "
          "--trusted-source), the load balancers allowed to say who the client is");
    CHECK(load_error("proxy.send_proxy = \"v1\"") ==
          "slabd.toml:1: proxy.send_proxy: send_proxy applies to proxy mode only");
}

TEST_CASE("effective_ready_headroom") {
    Config c;
    CHECK(effective_ready_headroom(c) == 100);
    c.max_connections = 50;
    CHECK(effective_ready_headroom(c) == 1);
    c.ready_headroom = 7;
    CHECK(effective_ready_headroom(c) == 7);
}

TEST_CASE("to_toml round-trips through load_string") {
    for (const Config& c : {Config{}, unusual()}) {
        CHECK(load_string(to_toml(c, false), "printed.toml") == c);
    }
}

TEST_CASE("to_toml redacts the token") {
    const Config c = unusual();
    const std::string printed = to_toml(c);
    CHECK(printed.find("s3cret") == std::string::npos);
    CHECK(printed.find("token = \"<redacted>\"") != std::string::npos);
    CHECK(to_toml(c, false).find("token = \"s3cret-t0ken\"") != std::string::npos);
    // Deploying a printed config must not quietly set the token to the placeholder.
    CHECK(load_error(printed).ends_with(
        R"(admin.token: expected the secret itself, got the "<redacted>" placeholder of a printed configuration)"));
    CHECK(to_toml(Config{}).find("token = \"\"") != std::string::npos);
}

TEST_CASE("deploy/slabd.toml sets every key to its default") {
    const std::string path = SLABD_SOURCE_DIR "/deploy/slabd.toml";
    // Starting from values that differ everywhere proves that the sample names every key.
    Config base = unusual();
    base.threads = default_threads() + 1;
    Config expected;
    expected.source_file = path;
    CHECK(load_file(path, base) == expected);
}

TEST_CASE("load_file") {
    const temp_file file{"[pool]\nmax_connections = \"lots\"\n"};
    try {
        (void)load_file(file.path());
        FAIL("no error");
    } catch (const config_error& e) {
        CHECK(std::string{e.what()} ==
              file.path() +
                  R"(:2: pool.max_connections: expected an integer 1..10000000, got "lots")");
    }
    CHECK_THROWS_WITH_AS((void)load_file("/nonexistent/slabd.toml"),
                         "/nonexistent/slabd.toml: cannot open: No such file or directory",
                         config_error);
}

TEST_CASE("characters toml++ 3.3 mishandles are refused before it sees them (found by fuzzing)") {
    // Where toml++ tests for whitespace, U+00A1..U+0499, U+2C5E..U+3057 and U+FB26..U+FEFE reach
    // __builtin_unreachable() in its is_non_ascii_horizontal_whitespace().
    CHECK(load_error("\xef\xbb\x9c# x\n") == "slabd.toml:1:1: unexpected character U+FEDC");
    CHECK(load_error("[server]\nthreads = 1 \xc3\xa9\n") ==
          "slabd.toml:2:13: unexpected character U+00E9");
    CHECK(load_error("[pool]\nbusy_message = \"\"\"a\\\n  \xc3\xa9\"\"\"\n") ==
          "slabd.toml:3:3: unexpected character U+00E9");
    CHECK(load_error("[pool]\nbusy_message = \"\"\"a\"\"\"\" \xc3\xa9\n") ==
          "slabd.toml:2:25: unexpected character U+00E9");
    // toml++ trims its own non-ASCII whitespace (here U+FEFF) after a line-ending backslash, then
    // tests what follows (found by fuzzing).
    CHECK(load_error("[pool]\nbusy_message = \"\"\"a\\\n\xef\xbb\xbf\xc3\xa9\"\"\"\n") ==
          "slabd.toml:3:2: unexpected character U+00E9");
    // Invalid TOML around one of them: toml++'s own error, with no undefined behaviour first
    // (the lexer alone took '2-e=' for a key and the quote for a string).
    CHECK(load_error("e=2-e='\xef\xbb\xae@2-t:\nt:\n") ==
          "slabd.toml:1:4: Error while parsing date: expected 4-digit year, saw '-'");
    // An overlong form of U+00A1 is invalid UTF-8, not a character to stand in for.
    CHECK(load_error("# \xe0\x82\xa1\n") == "slabd.toml:1:2: Encountered invalid utf-8 sequence");
    // In strings and comments they are text like any other.
    CHECK(load_string(
              "# caf\xc3\xa9 \xef\xbb\x9c\n[pool]\nbusy_message = \"caf\xc3\xa9 \xef\xbb\x9c\"\n",
              "x")
              .busy_message == "caf\xc3\xa9 \xef\xbb\x9c");
    CHECK(load_string("[pool]\nbusy_message = '''\xc3\xa9'''\n", "x").busy_message == "\xc3\xa9");
    CHECK(load_string("[pool]\nbusy_message = \"\"\"a\"\"\"\"\n", "x").busy_message == "a\"");
}

std::string load_file_error(const std::string& path) {
    try {
        (void)load_file(path);
    } catch (const config_error& e) {
        return e.what();
    }
    return "(loaded without error)";
}

TEST_CASE("load_file refuses what is not a regular file, without reading or blocking") {
    CHECK(load_file_error("/dev/zero") == "/dev/zero: a character device, not a regular file");
    CHECK(load_file_error("/dev/urandom") ==
          "/dev/urandom: a character device, not a regular file");
    const auto dir = std::filesystem::temp_directory_path();
    CHECK(load_file_error(dir.string()) == dir.string() + ": a directory, not a regular file");

    // A FIFO with no writer: a blocking open would wait for one for ever.
    const auto fifo = dir / ("slabd_config_test_" + std::to_string(::getpid()) + ".fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto started = std::chrono::steady_clock::now();
    CHECK(load_file_error(fifo.string()) == fifo.string() + ": a FIFO, not a regular file");
    CHECK(std::chrono::steady_clock::now() - started < 1s);
    std::filesystem::remove(fifo);
}

TEST_CASE("load_file reads a file up to max_file_bytes and refuses a larger one unread") {
    const std::string comment = "# " + std::string(77, 'x') + "\n";  // 80 bytes a line
    std::string text;
    while (text.size() + comment.size() <= max_file_bytes) text += comment;
    text += std::string(max_file_bytes - text.size() - 1, '#') + "\n";
    REQUIRE(text.size() == max_file_bytes);
    {
        const std::string tail = "[pool]\nmax_connections = 5\n";
        const temp_file file{text + tail};
        CHECK(load_file_error(file.path()) ==
              file.path() + ": " + std::to_string(max_file_bytes + tail.size()) +
                  " bytes, more than the 1048576 bytes a config file may have");
    }
    {
        const temp_file file{text};
        CHECK(load_file_error(file.path()) == "(loaded without error)");
    }
    {
        const temp_file file{text + "#"};
        CHECK(load_file_error(file.path()) ==
              file.path() + ": 1048577 bytes, more than the 1048576 bytes a config file may have");
    }
}

TEST_CASE("load_file stops reading at the limit when the size fstat gives is not the truth") {
    // /proc files say size 0; the read itself is bounded, so such a file loads (or fails on its
    // TOML) without an unbounded read.
    CHECK(load_file_error("/proc/self/status").starts_with("/proc/self/status:1:"));
    // /proc/kallsyms also says 0 but holds megabytes: the read stops one byte past the limit.
    std::ifstream kallsyms{"/proc/kallsyms"};
    kallsyms.ignore(static_cast<std::streamsize>(max_file_bytes) + 1);
    if (kallsyms.gcount() > static_cast<std::streamsize>(max_file_bytes)) {
        CHECK(load_file_error("/proc/kallsyms") ==
              "/proc/kallsyms: more than the 1048576 bytes a config file may have (read past them, "
              "though its size said 0)");
    } else {
        MESSAGE("no /proc/kallsyms over 1 MiB here: the bounded read is not exercised");
    }
}

TEST_CASE("flags override the file") {
    const temp_file file{R"(
        [server]
        mode = "proxy"
        threads = 3
        [pool]
        max_connections = 100
        buffer_count = 64
        [proxy]
        upstreams = ["127.0.0.1:8000"]
    )"};
    const auto cl = parse({"--config",          file.path(),
                           "--max-connections", "200",
                           "--upstream",        "127.0.0.1:8001",
                           "--upstream",        "[::1]:8002",
                           "--listen",          "[::1]:7000",
                           "--admin",           "127.0.0.1:0",
                           "--threads",         "1",
                           "--threads",         "2",
                           "--on-exhausted",    "pause",
                           "--log-level",       "warn",
                           "--balance",         "least-connections",
                           "--idle-timeout",    "90",
                           "--connect-timeout", "250ms",
                           "--busy-message",    "full, sorry",
                           "--log-file",        "/tmp/s.log",
                           "--log-format",      "json",
                           "--daemonize",       "--pidfile",
                           "/tmp/s.pid"});
    REQUIRE_MESSAGE(cl.exit_code == 0, cl.output);
    CHECK(cl.what == action::run);
    const Config& c = cl.config;
    CHECK(c.source_file == file.path());
    CHECK(c.mode == server_mode::proxy);
    CHECK(c.max_connections == 200);
    CHECK(c.buffer_count == 64);  // only in the file
    CHECK(c.upstreams == std::vector<endpoint>{{"127.0.0.1", 8001}, {"::1", 8002}});
    CHECK(c.listen == endpoint{"::1", 7000});
    CHECK(c.admin == endpoint{"127.0.0.1", 0});
    CHECK(c.threads == 2);  // the last of a repeated flag wins
    CHECK(c.on_exhausted == exhausted_policy::pause);
    CHECK(c.log_level == "warn");
    CHECK(c.balance == balance_policy::least_connections);
    CHECK(c.idle_timeout == 90s);
    CHECK(c.connect_timeout == 250ms);
    CHECK(c.busy_message == "full, sorry");
    CHECK(c.log_file == "/tmp/s.log");
    CHECK(c.log_fmt == log_format::json);
    CHECK(c.daemonize);
    CHECK(c.pidfile == "/tmp/s.pid");

    CHECK(parse({"--config", file.path(), "--mode", "echo"}).config.mode == server_mode::echo);
    CHECK(parse({"--daemonize=false"}).config.daemonize == false);
}

TEST_CASE("checks across settings see the file and the flags together") {
    const temp_file file{"[server]\nmode = \"proxy\"\n"};
    CHECK(parse({"--config", file.path(), "--upstream", "127.0.0.1:8000"}).exit_code == 0);
    const auto from_file = parse({"--config", file.path()});
    CHECK(from_file.exit_code == 2);
    CHECK(from_file.output == file.path() +
                                  ":2: server.mode: proxy mode needs at least one "
                                  "upstream (proxy.upstreams or --upstream)\n");
    CHECK(parse({"--mode", "proxy"}).output ==
          "--mode: proxy mode needs at least one upstream (proxy.upstreams or --upstream)\n");
    CHECK(parse({"--listen", "127.0.0.1:9100"}).output ==
          R"(admin.listen: expected an endpoint apart from the data listener "127.0.0.1:9100" )"
          "(--listen), got \"127.0.0.1:9100\"\n");
    CHECK(
        parse({"--daemonize", "--pidfile", "s.pid"}).output ==
        R"(--pidfile: expected an absolute path in daemon mode (the daemon runs in /), got "s.pid")"
        "\n");
}

TEST_CASE("bad flags exit with 2 and say what was expected") {
    const auto check = [](std::vector<std::string> args, std::string_view message) {
        CAPTURE(args);
        const auto cl = parse(std::move(args));
        CHECK(cl.what == action::exit);
        CHECK(cl.exit_code == 2);
        CHECK(cl.output == std::string{message} + "\n");
    };
    check({"--max-connections", "lots"},
          R"(--max-connections: expected an integer 1..10000000, got "lots")");
    check({"--max-connections", "-1"},
          R"(--max-connections: expected an integer 1..10000000, got "-1")");
    check({"--threads", "2000"}, R"(--threads: expected an integer 0..1024, got "2000")");
    check({"--mode", "relay"}, R"(--mode: expected "echo" or "proxy", got "relay")");
    check({"--on-exhausted", "drop"},
          R"(--on-exhausted: expected one of "refuse", "pause", "evict-idle", got "drop")");
    check(
        {"--listen", "localhost"},
        R"(--listen: expected "HOST:PORT", such as "127.0.0.1:7000" or "[::1]:7000", got "localhost")");
    check(
        {"--upstream", "127.0.0.1:8000", "--upstream", "db_1:5432"},
        R"(--upstream: expected a host name (letters, digits, '-' and '.') or an IP address as HOST, got "db_1:5432")");
    check(
        {"--idle-timeout", "10x"},
        R"(--idle-timeout: expected a duration such as "500ms", "30s", "2m" or "1h", or a whole number of seconds, got "10x")");
    check({"--log-format", "xml"}, R"(--log-format: expected "text" or "json", got "xml")");
    check(
        {"--busy-message", "a\tb"},
        R"(--busy-message: expected one line of UTF-8 text without control characters, got "a\tb")");
    check(
        {"--busy-message", "\xff"},
        "--busy-message: expected one line of UTF-8 text without control characters, got \"\xff\"");
    check({"--config", "/nonexistent/slabd.toml"},
          "/nonexistent/slabd.toml: cannot open: No such file or directory");

    // Errors that CLI11 finds itself keep its wording.
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"--bogus"}, {"stray"}, {"--threads"}, {"--upstream", "127.0.0.1:1", "127.0.0.1:2"}}) {
        CAPTURE(args);
        const auto cl = parse(args);
        CHECK(cl.what == action::exit);
        CHECK(cl.exit_code == 2);
        CHECK(cl.output.find("--help") != std::string::npos);
    }
}

TEST_CASE("--help --version --check-config and --pool-demo") {
    const auto help = parse({"--help"});
    CHECK(help.what == action::exit);
    CHECK(help.exit_code == 0);
    for (const char* flag : {"--mode",         "--listen",          "--admin",
                             "--upstream",     "--max-connections", "--threads",
                             "--on-exhausted", "--log-level",       "--config",
                             "--balance",      "--idle-timeout",    "--connect-timeout",
                             "--busy-message", "--log-file",        "--log-format",
                             "--daemonize",    "--pidfile",         "--pool-demo",
                             "--check-config", "--version"}) {
        CAPTURE(flag);
        CHECK(help.output.find(std::string{flag} + " ") != std::string::npos);
    }

    const auto version = parse({"--version"});
    CHECK(version.what == action::exit);
    CHECK(version.exit_code == 0);
    CHECK(version.output == "slabd " SLABD_VERSION "\n");

    const auto check = parse({"--check-config", "--max-connections", "42"});
    CHECK(check.what == action::check_config);
    CHECK(check.exit_code == 0);
    CHECK(load_string(check.output, "printed.toml") == check.config);
    CHECK(check.config.max_connections == 42);

    const auto bad = parse({"--check-config", "--max-connections", "0"});
    CHECK(bad.what == action::exit);
    CHECK(bad.exit_code == 2);

    CHECK(parse({"--pool-demo"}).what == action::pool_demo);
    CHECK(parse_command_line(0, nullptr).what == action::run);
}

TEST_CASE("top is a subcommand that takes the settings' flags after it") {
    const auto plain = parse({"top"});
    CHECK(plain.what == action::top);
    CHECK(plain.top_interval == std::chrono::seconds{1});
    CHECK_FALSE(plain.top_once);

    const auto cl = parse(
        {"--threads", "3", "top", "--admin", "127.0.0.1:9200", "--once", "--interval", "250ms"});
    CHECK(cl.what == action::top);
    CHECK(cl.config.threads == 3);
    CHECK(cl.config.admin.port == 9200);
    CHECK(cl.top_once);
    CHECK(cl.top_interval == std::chrono::milliseconds{250});

    const auto help = parse({"top", "--help"});
    CHECK(help.what == action::exit);
    CHECK(help.exit_code == 0);
    CHECK(help.output.find("--interval DURATION") != std::string::npos);
    CHECK(parse({"--help"}).output.find("top ") != std::string::npos);

    for (const auto* interval : {"10ms", "2h", "soon"}) {
        CAPTURE(interval);
        const auto bad = parse({"top", "--interval", interval});
        CHECK(bad.what == action::exit);
        CHECK(bad.exit_code == 2);
        CHECK(bad.output.starts_with("--interval: expected a duration"));
    }
}

TEST_CASE("differing_settings names every setting that differs, in the settings' order") {
    CHECK(differing_settings(Config{}, Config{}).empty());
    Config changed;
    changed.max_per_source = 3;
    changed.admin_token = "x";
    changed.idle_timeout = 1s;
    CHECK(differing_settings(Config{}, changed) ==
          std::vector<std::string>{"limits.max_per_source", "timeouts.idle", "admin.token"});
    // unusual() changes every setting, and each one is named.
    const auto all = differing_settings(Config{}, unusual());
    CHECK(all.size() == 42);
    CHECK(std::set<std::string>(all.begin(), all.end()).size() == all.size());
}

TEST_CASE("setting_literal: one setting's value as the file spells it, the token redacted") {
    slabd::config::Config c;
    c.idle_timeout = std::chrono::seconds(90);
    c.admin_token = "sesame";
    CHECK(slabd::config::setting_literal(c, "timeouts.idle") == "\"90s\"");
    CHECK(slabd::config::setting_literal(c, "pool.max_connections") == "10000");
    CHECK(slabd::config::setting_literal(c, "admin.token").find("sesame") == std::string::npos);
    CHECK(slabd::config::setting_literal(c, "timeouts.idl").empty());
    CHECK(slabd::config::setting_literal(c, "timeouts").empty());
}
