#include "settings.hpp"

#include <algorithm>
#include <array>
#include <thread>

namespace slabd::config {
namespace {

using namespace std::chrono_literals;

// Each enum's spellings, indexed by its value: the one place they are written down.
constexpr std::array<std::string_view, 2> mode_names{"echo", "proxy"};
constexpr std::array<std::string_view, 3> exhausted_names{"refuse", "pause", "evict-idle"};
constexpr std::array<std::string_view, 2> balance_names{"round-robin", "least-connections"};
constexpr std::array<std::string_view, 2> format_names{"text", "json"};
constexpr std::array<std::string_view, 3> proxy_header_names{"off", "v1", "v2"};
// spdlog's level names.
constexpr std::array<std::string_view, 7> level_names{"trace", "debug",    "info", "warn",
                                                      "error", "critical", "off"};

constexpr unsigned max_threads = 1024;
constexpr std::size_t max_text = 1024;  // a busy message is one short line
constexpr std::size_t max_path = 4096;  // PATH_MAX
constexpr std::size_t max_secret = 256;
// The largest pool a reload may grow to when pool.reserve is left at its default.
constexpr std::size_t max_pool_reserve = 10'000'000;

template <class Enum, std::size_t N>
Enum pick(const detail::given& value, const std::array<std::string_view, N>& names) {
    return static_cast<Enum>(value.choice(names));
}

std::string show_bool(bool b) {
    return b ? "true" : "false";
}
std::string show_duration(std::chrono::milliseconds d) {
    return detail::quote(detail::format_duration(d));
}
std::string show_list(const std::vector<std::string>& texts) {
    std::string out = "[";
    for (const auto& t : texts) out += (out.size() > 1 ? ", " : "") + detail::quote(t);
    return out + "]";
}

using detail::applies;
using detail::flag_kind;
using detail::given;
using detail::quote;

// clang-format off
constexpr detail::setting all_settings[] = {
    {"server", "mode", "echo: send each client's bytes back; proxy: relay them to an upstream",
     flag_kind::value, "--mode", "echo|proxy",
     [](Config& c, const given& v) { c.mode = pick<server_mode>(v, mode_names); },
     [](const Config& c, bool) { return quote(to_string(c.mode)); }},
    {"server", "listen", "data listener, HOST:PORT (port 0: any free port)",
     flag_kind::value, "--listen", "HOST:PORT",
     [](Config& c, const given& v) { c.listen = v.address(0); },
     [](const Config& c, bool) { return quote(to_string(c.listen)); }},
    {"server", "threads",
     "worker threads, one event loop each (0: one per core); a lone one also runs the admin "
     "endpoint, so that slabd is one thread",
     flag_kind::value, "--threads", "N",
     [](Config& c, const given& v) {
         const auto n = static_cast<unsigned>(v.integer(0, max_threads));
         c.threads = n == 0 ? default_threads() : n;
     },
     [](const Config& c, bool) { return std::to_string(c.threads); }},
    {"server", "accept_proxy", "each client connection opens with a PROXY protocol header (v1 or "
                               "v2) from one of trusted_sources; others are refused",
     flag_kind::toggle, "--accept-proxy", "",
     [](Config& c, const given& v) { c.accept_proxy = v.boolean(); },
     [](const Config& c, bool) { return show_bool(c.accept_proxy); },
     applies::at_reload},
    {"server", "trusted_sources", "the load balancers allowed to send a PROXY header, as "
                                  "ADDRESS or ADDRESS/PREFIX",
     flag_kind::repeated, "--trusted-source", "ADDRESS[/PREFIX]",
     [](Config& c, const given& v) {
         std::vector<std::string> networks;
         for (const auto& item : v.items(R"(an array of "ADDRESS/PREFIX" strings)")) {
             auto n = item.network();
             if (std::ranges::find(networks, n) != networks.end()) item.fail("each network once");
             networks.push_back(std::move(n));
         }
         c.trusted_sources = std::move(networks);
     },
     [](const Config& c, bool) { return show_list(c.trusted_sources); },
     applies::at_reload},

    {"pool", "max_connections", "clients served at once; the next is refused or waits (a reload "
                                "may change it up to reserve)",
     flag_kind::value, "--max-connections", "N",
     [](Config& c, const given& v) { c.max_connections = static_cast<std::size_t>(v.integer(1, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.max_connections); },
     applies::at_reload},
    {"pool", "reserve", "the most max_connections a reload may raise it to without a restart; "
                        "address space is reserved for it, memory only as blocks are used "
                        "(0: 4 x max_connections)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.pool_reserve = static_cast<std::size_t>(v.integer(0, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.pool_reserve); }},
    {"pool", "on_exhausted", "when the pool is full: refuse newcomers, pause accepting, or close "
                             "the longest-silent connection past evict_idle_after for the newcomer",
     flag_kind::value, "--on-exhausted", "refuse|pause|evict-idle",
     [](Config& c, const given& v) { c.on_exhausted = pick<exhausted_policy>(v, exhausted_names); },
     [](const Config& c, bool) { return quote(to_string(c.on_exhausted)); }},
    {"pool", "evict_idle_after", "under evict-idle, how long a connection must have been silent "
                                 "before a newcomer may take its block",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.evict_idle_after = v.duration(1ms, 24h); },
     [](const Config& c, bool) { return show_duration(c.evict_idle_after); },
     applies::at_reload},
    {"pool", "busy_message", "line sent to a refused client before closing (empty: none)",
     flag_kind::value, "--busy-message", "TEXT",
     [](Config& c, const given& v) { c.busy_message = v.text(max_text); },
     [](const Config& c, bool) { return quote(c.busy_message); },
     applies::at_reload},
    {"pool", "buffer_count", "write buffers, lent only while a write is blocked (none left: "
                             "reading pauses)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.buffer_count = static_cast<std::size_t>(v.integer(1, 1'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.buffer_count); }},
    {"pool", "buffer_size", "bytes in each write buffer and in each thread's read buffer",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.buffer_size = static_cast<std::size_t>(v.integer(1024, 1024 * 1024)); },
     [](const Config& c, bool) { return std::to_string(c.buffer_size); }},

    {"limits", "max_per_source", "connections one client address (or prefix) may hold at once; "
                                 "the next is refused, before it takes a block (0: no limit)",
     flag_kind::value, "--max-per-source", "N",
     [](Config& c, const given& v) { c.max_per_source = static_cast<std::uint32_t>(v.integer(0, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.max_per_source); },
     applies::at_reload},
    {"limits", "source_prefix_v4", "IPv4 clients in one /N count as one source for max_per_source",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.source_prefix_v4 = static_cast<unsigned>(v.integer(1, 32)); },
     [](const Config& c, bool) { return std::to_string(c.source_prefix_v4); },
     applies::at_reload},
    {"limits", "source_prefix_v6", "IPv6 clients in one /N count as one source for max_per_source "
                                   "(64: one end site)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.source_prefix_v6 = static_cast<unsigned>(v.integer(1, 128)); },
     [](const Config& c, bool) { return std::to_string(c.source_prefix_v6); },
     applies::at_reload},
    {"limits", "accept_rate", "newcomers per second over all threads; past it they are refused "
                              "(on_exhausted = \"pause\": left in the backlog) (0: no limit)",
     flag_kind::value, "--accept-rate", "N",
     [](Config& c, const given& v) { c.accept_rate = static_cast<std::uint32_t>(v.integer(0, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.accept_rate); },
     applies::at_reload},
    {"limits", "accept_burst", "newcomers accepted at once beyond accept_rate (0: accept_rate)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.accept_burst = static_cast<std::uint32_t>(v.integer(0, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.accept_burst); },
     applies::at_reload},

    {"timeouts", "idle", "close a client that has been silent this long (0: never)",
     flag_kind::value, "--idle-timeout", "DURATION",
     [](Config& c, const given& v) { c.idle_timeout = v.duration(0ms, 24h); },
     [](const Config& c, bool) { return show_duration(c.idle_timeout); },
     applies::at_reload},
    {"timeouts", "connect", "give up connecting to an upstream after this long",
     flag_kind::value, "--connect-timeout", "DURATION",
     [](Config& c, const given& v) { c.connect_timeout = v.duration(1ms, 5min); },
     [](const Config& c, bool) { return show_duration(c.connect_timeout); },
     applies::at_reload},
    {"timeouts", "shutdown_grace", "on SIGTERM or SIGINT, how long open connections may finish",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.shutdown_grace = v.duration(0ms, 1h); },
     [](const Config& c, bool) { return show_duration(c.shutdown_grace); }},
    {"timeouts", "proxy_header", "under accept_proxy, close a client whose PROXY header has not "
                                 "arrived after this long",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.proxy_header_timeout = v.duration(1ms, 5min); },
     [](const Config& c, bool) { return show_duration(c.proxy_header_timeout); },
     applies::at_reload},

    {"proxy", "upstreams", "servers to relay to in proxy mode (--upstream replaces the file's list)",
     flag_kind::repeated, "--upstream", "HOST:PORT",
     [](Config& c, const given& v) {
         std::vector<endpoint> upstreams;
         for (const auto& item : v.items(R"(an array of "HOST:PORT" strings)")) {
             auto e = item.upstream();
             if (std::ranges::find(upstreams, e) != upstreams.end()) item.fail("each upstream once");
             upstreams.push_back(std::move(e));
         }
         c.upstreams = std::move(upstreams);
     },
     [](const Config& c, bool) {
         std::vector<std::string> texts;
         for (const auto& e : c.upstreams) texts.push_back(to_string(e));
         return show_list(texts);
     },
     applies::at_reload},
    {"proxy", "resolve_interval", "how often upstream names are looked up again (every address "
                                  "is used; a failed lookup keeps the last ones) (0: at start and "
                                  "reload only)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.resolve_interval = v.duration(0ms, 24h); },
     [](const Config& c, bool) { return show_duration(c.resolve_interval); },
     applies::at_reload},
    {"proxy", "balance", "how a new client picks its upstream",
     flag_kind::value, "--balance", "round-robin|least-connections",
     [](Config& c, const given& v) { c.balance = pick<balance_policy>(v, balance_names); },
     [](const Config& c, bool) { return quote(to_string(c.balance)); },
     applies::at_reload},
    {"proxy", "fail_timeout", "how long an upstream that failed to answer is skipped",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.upstream_fail_timeout = v.duration(0ms, 1h); },
     [](const Config& c, bool) { return show_duration(c.upstream_fail_timeout); },
     applies::at_reload},
    {"proxy", "splice_pipes", "pipes per worker thread that relay bulk transfers zero-copy "
                              "(0: always copy through a buffer)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.splice_pipes = static_cast<std::size_t>(v.integer(0, 4096)); },
     [](const Config& c, bool) { return std::to_string(c.splice_pipes); }},
    {"proxy", "send_proxy", "send each upstream a PROXY protocol header with the client's "
                            "addresses before the first relayed byte",
     flag_kind::value, "--send-proxy", "off|v1|v2",
     [](Config& c, const given& v) { c.send_proxy = pick<proxy_header_version>(v, proxy_header_names); },
     [](const Config& c, bool) { return quote(to_string(c.send_proxy)); },
     applies::at_reload},

    {"health_check", "interval", "proxy mode: check each upstream this often, off the data threads; "
                                 "a down one gets no new clients (0: no active checks)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.check_interval = v.duration(0ms, 1h); },
     [](const Config& c, bool) { return show_duration(c.check_interval); },
     applies::at_reload},
    {"health_check", "timeout", "a check that has not passed after this long (or the interval, if "
                                "shorter) failed",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.check_timeout = v.duration(1ms, 5min); },
     [](const Config& c, bool) { return show_duration(c.check_timeout); },
     applies::at_reload},
    {"health_check", "rise", "checks in a row that must pass before a down upstream is up again",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.check_rise = static_cast<std::uint32_t>(v.integer(1, 1000)); },
     [](const Config& c, bool) { return std::to_string(c.check_rise); },
     applies::at_reload},
    {"health_check", "fall", "failures in a row that take an upstream down (a client's failed "
                             "connect adds to the count the next failed check completes)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.check_fall = static_cast<std::uint32_t>(v.integer(1, 1000)); },
     [](const Config& c, bool) { return std::to_string(c.check_fall); },
     applies::at_reload},
    {"health_check", "send", "written to the upstream once connected (empty: the connect is the check)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.check_send = v.bytes(max_text); },
     [](const Config& c, bool) { return quote(c.check_send); },
     applies::at_reload},
    {"health_check", "expect", "text the upstream's answer must contain (empty: nothing is read)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.check_expect = v.bytes(max_text); },
     [](const Config& c, bool) { return quote(c.check_expect); },
     applies::at_reload},

    {"admin", "listen", "admin HTTP listener, HOST:PORT (port 0: any free port)",
     flag_kind::value, "--admin", "HOST:PORT",
     [](Config& c, const given& v) { c.admin = v.address(0); },
     [](const Config& c, bool) { return quote(to_string(c.admin)); }},
    {"admin", "token", R"(when set, admin requests need "Authorization: Bearer <token>")",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.admin_token = v.secret(max_secret); },
     [](const Config& c, bool redact) {
         return quote(redact && !c.admin_token.empty() ? detail::redacted : c.admin_token);
     },
     applies::at_reload},
    {"admin", "ready_headroom", "/readyz is 503 below this many free blocks "
                                "(0: 1% of max_connections, at least 1)",
     flag_kind::none, "", "",
     [](Config& c, const given& v) { c.ready_headroom = static_cast<std::size_t>(v.integer(0, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.ready_headroom); }},

    {"log", "level", "trace, debug, info, warn, error, critical or off",
     flag_kind::value, "--log-level", "LEVEL",
     [](Config& c, const given& v) { c.log_level = level_names[v.choice(level_names)]; },
     [](const Config& c, bool) { return quote(c.log_level); },
     applies::at_reload},
    {"log", "file", "append the log to this file, reopened on SIGHUP (empty: stderr)",
     flag_kind::value, "--log-file", "PATH",
     [](Config& c, const given& v) { c.log_file = v.text(max_path); },
     [](const Config& c, bool) { return quote(c.log_file); }},
    {"log", "format", "text, or json with one object per line",
     flag_kind::value, "--log-format", "text|json",
     [](Config& c, const given& v) { c.log_fmt = pick<log_format>(v, format_names); },
     [](const Config& c, bool) { return quote(to_string(c.log_fmt)); }},
    {"log", "connections", "one line per closed connection: client, shard, upstream, duration, "
                           "bytes each way and close reason, whatever the level",
     flag_kind::toggle, "--log-connections", "",
     [](Config& c, const given& v) { c.log_connections = v.boolean(); },
     [](const Config& c, bool) { return show_bool(c.log_connections); },
     applies::at_reload},
    {"log", "connections_rate", "connection lines per second at most; those past it are skipped "
                                "and counted (0: no limit)",
     flag_kind::value, "--log-connections-rate", "N",
     [](Config& c, const given& v) { c.log_connections_rate = static_cast<std::uint32_t>(v.integer(0, 10'000'000)); },
     [](const Config& c, bool) { return std::to_string(c.log_connections_rate); },
     applies::at_reload},

    {"daemon", "daemonize", "detach from the terminal (needs an absolute pidfile)",
     flag_kind::toggle, "--daemonize", "",
     [](Config& c, const given& v) { c.daemonize = v.boolean(); },
     [](const Config& c, bool) { return show_bool(c.daemonize); }},
    {"daemon", "pidfile", "file holding the process id, locked while slabd runs (empty: none)",
     flag_kind::value, "--pidfile", "PATH",
     [](Config& c, const given& v) { c.pidfile = v.text(max_path); },
     [](const Config& c, bool) { return quote(c.pidfile); }},
    {"daemon", "handover_socket", "Unix socket through which a new slabd takes over the listeners "
                                  "of the running one, which then drains: a restart that refuses "
                                  "no one (empty: none)",
     flag_kind::value, "--handover-socket", "PATH",
     [](Config& c, const given& v) { c.handover_socket = v.text(max_path); },
     [](const Config& c, bool) { return quote(c.handover_socket); }},
};
// clang-format on

}  // namespace

std::string to_string(const endpoint& e) {
    const bool ipv6 = e.host.find(':') != std::string::npos;
    return (ipv6 ? "[" + e.host + "]" : e.host) + ":" + std::to_string(e.port);
}

std::string_view to_string(server_mode m) noexcept {
    return mode_names[static_cast<std::size_t>(m)];
}
std::string_view to_string(exhausted_policy p) noexcept {
    return exhausted_names[static_cast<std::size_t>(p)];
}
std::string_view to_string(balance_policy b) noexcept {
    return balance_names[static_cast<std::size_t>(b)];
}
std::string_view to_string(log_format f) noexcept {
    return format_names[static_cast<std::size_t>(f)];
}
std::string_view to_string(proxy_header_version v) noexcept {
    return proxy_header_names[static_cast<std::size_t>(v)];
}

unsigned default_threads() noexcept {
    // hardware_concurrency() may be 0 when the count is unknown.
    return std::clamp(std::thread::hardware_concurrency(), 1U, max_threads);
}

std::size_t effective_pool_reserve(const Config& config) noexcept {
    if (config.pool_reserve != 0) return config.pool_reserve;
    return std::min<std::size_t>(4 * config.max_connections, max_pool_reserve);
}

std::size_t effective_ready_headroom(const Config& config) noexcept {
    if (config.ready_headroom != 0) return config.ready_headroom;
    return std::max<std::size_t>(1, config.max_connections / 100);
}

std::span<const detail::setting> detail::settings() noexcept {
    return all_settings;
}

std::string detail::described(const setting& s) {
    std::string text{s.help};
    if (s.when == applies::at_reload) text += " (a reload applies it)";
    return text;
}

const detail::setting* detail::find_setting(std::string_view name) noexcept {
    for (const auto& s : all_settings)
        if (name.size() == s.table.size() + 1 + s.key.size() && name.starts_with(s.table) &&
            name[s.table.size()] == '.' && name.ends_with(s.key))
            return &s;
    return nullptr;
}

bool applies_at_reload(std::string_view name) {
    const detail::setting* s = detail::find_setting(name);
    return s != nullptr && s->when == applies::at_reload;
}

}  // namespace slabd::config
