// slabd's settings: one Config with defaults that run out of the box, read from a TOML file and
// overridden by command-line flags. Every error names where the bad value came from (file:line: key
// or --flag) and what was expected; the server only ever sees a Config that passed validation.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace slabd::config {

/// What the data listener does with a client: echo its bytes back, or relay them to an upstream.
enum class server_mode { echo, proxy };
/// What a full connection pool does with a newcomer: refuse it, or stop accepting until one frees.
enum class exhausted_policy { refuse, pause, evict_idle };
/// How proxy mode picks the upstream for a new client.
enum class balance_policy { round_robin, least_connections };
/// How log lines are written.
enum class log_format { text, json };
/// Which PROXY protocol header (HAProxy's spec) proxy mode sends an upstream first, if any.
enum class proxy_header_version { off, v1, v2 };

/// A TCP address. `host` is an IP literal in canonical form ("localhost" is stored as
/// "127.0.0.1"), or for an upstream a lowercase DNS name ("localhost" included) to resolve.
struct endpoint {
    std::string host;
    std::uint16_t port = 0;
    friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// "127.0.0.1:7000", or "[::1]:7000" for IPv6: the form the config file and flags accept.
std::string to_string(const endpoint& e);
/// "echo" or "proxy", as the config file spells it.
std::string_view to_string(server_mode m) noexcept;
/// "refuse" or "pause", as the config file spells it.
std::string_view to_string(exhausted_policy p) noexcept;
/// "round-robin" or "least-connections", as the config file spells it.
std::string_view to_string(balance_policy b) noexcept;
/// "text" or "json", as the config file spells it.
std::string_view to_string(log_format f) noexcept;
/// "off", "v1" or "v2", as the config file spells it.
std::string_view to_string(proxy_header_version v) noexcept;

/// Worker threads when none are configured: one per core, at least 1.
unsigned default_threads() noexcept;

/// Every setting, with its default; each comment names the setting's [table] key in the file.
struct Config {
    /// [server] mode
    server_mode mode = server_mode::echo;
    /// [server] listen; port 0 takes any free port
    endpoint listen{"127.0.0.1", 7000};
    /// [admin] listen; port 0 takes any free port
    endpoint admin{"127.0.0.1", 9100};
    /// [proxy] upstreams; proxy mode needs at least one. A host may be a name.
    std::vector<endpoint> upstreams;
    /// [proxy] resolve_interval: upstream names are looked up again this often; 0: at start
    /// and reload only
    std::chrono::milliseconds resolve_interval = std::chrono::seconds{30};
    /// [proxy] balance
    balance_policy balance = balance_policy::round_robin;
    /// [pool] max_connections: with this many clients connected, the next is refused or waits
    std::size_t max_connections = 10'000;
    /// [pool] reserve: the largest max_connections a reload may grow to; use
    /// effective_pool_reserve()
    std::size_t pool_reserve = 0;
    /// [server] threads, one io_context each
    unsigned threads = default_threads();
    /// [server] accept_proxy: each client connection opens with a PROXY protocol header from
    /// one of trusted_sources, and the address it carries is the client's
    bool accept_proxy = false;
    /// [server] trusted_sources: networks as "ADDRESS/PREFIX" (canonical, host bits clear)
    std::vector<std::string> trusted_sources;
    /// [pool] on_exhausted
    exhausted_policy on_exhausted = exhausted_policy::refuse;
    /// [pool] evict_idle_after: under evict_idle, how long a connection must have been silent
    /// to give its block to a newcomer
    std::chrono::milliseconds evict_idle_after = std::chrono::seconds{60};
    /// [pool] busy_message: one line without its "\n", which the server adds; "" sends nothing
    std::string busy_message;
    /// [pool] buffer_count: blocks in the write-buffer slab
    std::size_t buffer_count = 1024;
    /// [pool] buffer_size: bytes per write buffer and per thread's read buffer
    std::size_t buffer_size = 16 * 1024;
    /// [limits] max_per_source: connections one source may hold at once (0: no limit)
    std::uint32_t max_per_source = 0;
    /// [limits] source_prefix_v4: IPv4 clients in one /N count as one source
    unsigned source_prefix_v4 = 32;
    /// [limits] source_prefix_v6: IPv6 clients in one /N count as one source
    unsigned source_prefix_v6 = 64;
    /// [limits] accept_rate: newcomers per second over all threads (0: no limit)
    std::uint32_t accept_rate = 0;
    /// [limits] accept_burst: newcomers accepted at once above the rate (0: accept_rate)
    std::uint32_t accept_burst = 0;
    /// [timeouts] idle; zero: never
    std::chrono::milliseconds idle_timeout = std::chrono::seconds{300};
    /// [timeouts] connect, to an upstream
    std::chrono::milliseconds connect_timeout = std::chrono::seconds{5};
    /// [timeouts] shutdown_grace
    std::chrono::milliseconds shutdown_grace = std::chrono::seconds{10};
    /// [timeouts] proxy_header: how long accept_proxy waits for the header, holding a block
    std::chrono::milliseconds proxy_header_timeout = std::chrono::seconds{5};
    /// [proxy] send_proxy
    proxy_header_version send_proxy = proxy_header_version::off;
    /// [health_check] interval between active checks of each upstream; 0: none
    std::chrono::milliseconds check_interval{0};
    /// [health_check] timeout: a check that has not passed by then failed
    std::chrono::milliseconds check_timeout = std::chrono::seconds{2};
    /// [health_check] rise: checks in a row that bring a down upstream back
    std::uint32_t check_rise = 2;
    /// [health_check] fall: failures in a row that take an upstream down
    std::uint32_t check_fall = 3;
    /// [health_check] send: written once connected ("" connects only)
    std::string check_send;
    /// [health_check] expect: must appear in the answer ("" reads nothing)
    std::string check_expect;
    /// [proxy] fail_timeout: how long a failed upstream is skipped
    std::chrono::milliseconds upstream_fail_timeout = std::chrono::seconds{10};
    /// [proxy] splice_pipes: pipes per worker thread for zero-copy relaying (0: always copy)
    std::size_t splice_pipes = 64;
    /// [admin] token: when set, admin requests need "Authorization: Bearer <token>"
    std::string admin_token;
    /// [admin] ready_headroom; use effective_ready_headroom()
    std::size_t ready_headroom = 0;
    /// [log] level, one of spdlog's names: trace, debug, info, warn, error, critical, off
    std::string log_level = "info";
    /// [log] file; "" logs to stderr
    std::string log_file;
    /// [log] format
    log_format log_fmt = log_format::text;
    /// [log] connections: one line per closed connection
    bool log_connections = false;
    /// [log] connections_rate: connection lines per second at most (0: no limit)
    std::uint32_t log_connections_rate = 1000;
    /// [daemon] daemonize; implies an absolute pidfile
    bool daemonize = false;
    /// [daemon] pidfile; "" writes none
    std::string pidfile;
    /// [daemon] handover_socket: where a new process takes over the listeners; "" for none
    std::string handover_socket;
    /// The --config path, or "": not a setting, to_toml only mentions it
    std::string source_file;

    friend bool operator==(const Config&, const Config&) = default;
};

/// A configuration that cannot be used; what() is the complete message for the user.
class config_error : public std::runtime_error {
  public:
    using runtime_error::runtime_error;
};

/// The largest config file load_file reads; a bigger one is refused, not read.
inline constexpr std::size_t max_file_bytes = std::size_t{1} << 20;

/// Reads a TOML file over `base` and validates the result; throws config_error, also for a file
/// that is not a regular file or is larger than max_file_bytes.
Config load_file(const std::string& path, Config base = {});
/// As load_file, from text; `name` stands for the file in messages.
Config load_string(std::string_view toml, std::string_view name, Config base = {});
/// The effective config as commented TOML that load_string reads back; redacted: token hidden.
std::string to_toml(const Config& config, bool redact_secrets = true);

/// One setting's effective value as the file spells it: a TOML literal (a string, integer,
/// boolean or array of strings), which is also valid JSON.
struct setting_value {
    std::string_view table;
    std::string_view key;
    std::string literal;
};
/// Every setting in to_toml's order; redacted: the token hidden.
std::vector<setting_value> setting_values(const Config& config, bool redact_secrets = true);

/// The value of setting `name` ("table.key") as the file spells it, the token redacted; empty
/// for a name that is no setting.
std::string setting_literal(const Config& config, std::string_view name);

/// Whether a reload applies setting `name` ("table.key") to the running server; false for the
/// settings only a restart applies, and for a name that is no setting.
bool applies_at_reload(std::string_view name);

/// The settings whose values differ between `a` and `b`, as "table.key", in the settings' order
/// (secrets compared, never shown: the names only).
std::vector<std::string> differing_settings(const Config& a, const Config& b);

/// What main should do after parsing the command line.
enum class action { run, check_config, pool_demo, probe, top, exit };

/// The outcome of parse_command_line.
struct command_line {
    Config config;
    action what = action::run;
    int exit_code = 0;       ///< for check_config and exit: 0, or 2 for bad usage or config
    std::string output;      ///< help, version, effective config or error text, ending in "\n"
    std::string probe_path;  ///< for probe: the admin route to GET, e.g. "/healthz"
    std::chrono::milliseconds top_interval = std::chrono::seconds{1};  ///< for top: between polls
    bool top_once = false;  ///< for top: one plain frame, then exit
};

/// Parses argv: defaults < --config file < flags. Never exits or prints; errors give action::exit,
/// exit_code 2 and the message in output (for stderr); --help/--version give exit, exit_code 0;
/// --check-config gives check_config, exit_code 0 and the effective config (redacted) in output.
command_line parse_command_line(int argc, const char* const* argv);

/// Free pool blocks below which /readyz answers 503: ready_headroom, or if that is 0, 1% of
/// max_connections and at least 1 block.
std::size_t effective_ready_headroom(const Config& config) noexcept;
/// pool.reserve, or its default: 4 x max_connections (at most 10,000,000).
std::size_t effective_pool_reserve(const Config& config) noexcept;

}  // namespace slabd::config
