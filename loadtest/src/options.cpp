#include "options.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <sstream>
#include <utility>

namespace slabd::load {
namespace {

constexpr std::array mode_names{"rr", "rate", "churn", "hold", "bulk"};
constexpr std::array direction_names{"up", "down", "both"};

template <typename Enum, std::size_t N>
Enum from_name(const std::array<const char*, N>& names, const std::string& text) {
    for (std::size_t i = 0; i < N; ++i)
        if (text == names[i]) return static_cast<Enum>(i);
    return Enum{};  // CLI11's IsMember check has already rejected anything else
}

command_line usage_error(std::string message) {
    return {std::nullopt, 2,
            "slabd-load: " + std::move(message) + "\nRun with --help for more information.\n"};
}

/// "HOST:PORT" or "[IPV6]:PORT"; the host is resolved when the run starts.
bool split_target(const std::string& text, options& o) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    std::string host = text.substr(0, colon);
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') return false;
        host = host.substr(1, host.size() - 2);
    }
    const std::string port = text.substr(colon + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535)
        return false;
    o.target_host = std::move(host);
    o.target_port = static_cast<std::uint16_t>(value);
    return true;
}

struct raw_flags {
    std::string mode_text;
    std::string target;
    std::string direction_text = "both";
    std::vector<std::string> sources;
    CLI::Option* rate = nullptr;
    CLI::Option* direction = nullptr;
    CLI::Option* messages = nullptr;
    CLI::Option* warmup = nullptr;
};

void add_flags(CLI::App& app, options& o, raw_flags& raw) {
    app.add_option(
           "MODE", raw.mode_text,
           "rr: closed loop, send and wait for the echo\n"
           "rate: open loop at --rate messages/s, latency from each message's scheduled time\n"
           "churn: connect, one message, close, again (--rate: that many connections/s)\n"
           "hold: open -c connections, prove each with one echo, hold them for -d seconds\n"
           "bulk: stream -s byte chunks (--direction) for throughput")
        ->required()
        ->check(CLI::IsMember(std::vector<std::string>(mode_names.begin(), mode_names.end())));
    app.add_option("--target", raw.target, "the server, HOST:PORT or [IPV6]:PORT")->required();
    app.add_option("-c,--connections", o.connections, "concurrent connections")
        ->capture_default_str()
        ->check(CLI::Range(1U, 10'000'000U));
    app.add_option("-s,--size", o.size, "bytes per message (bulk: per chunk)")
        ->capture_default_str()
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
    auto* duration = app.add_option("-d,--duration", o.duration_s,
                                    "seconds to measure, after the warm-up (hold: after the ramp)")
                         ->capture_default_str()
                         ->check(CLI::PositiveNumber);
    raw.rate =
        app.add_option("--rate", o.rate,
                       "rate: messages per second; churn: connections per second (open loop); "
                       "all connections together")
            ->check(CLI::PositiveNumber);
    app.add_option("--threads", o.threads, "client threads, one event loop each")
        ->capture_default_str()
        ->check(CLI::Range(1U, 1024U));
    app.add_option("--source", raw.sources,
                   "local addresses to connect from, A,B,...: connection i uses the (i mod n)th")
        ->delimiter(',');
    app.add_option("--json", o.json_path, "write the report as JSON to this file")
        ->type_name("FILE");
    app.add_option("--hgrm", o.hgrm_path,
                   "write the latency distribution in HdrHistogram's .hgrm format")
        ->type_name("FILE");
    raw.messages =
        app.add_option("--messages", o.messages,
                       "measure this many messages in total (churn: connections) instead of -d")
            ->check(CLI::PositiveNumber)
            ->excludes(duration);
    raw.warmup = app.add_option("--warmup", o.warmup_s,
                                "seconds of traffic before measuring, left out of the figures")
                     ->capture_default_str()
                     ->check(CLI::NonNegativeNumber);
    app.add_option("--connect-rate", o.connect_rate,
                   "open connections at this many per second (0: all at once)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--max-errors", o.max_errors,
                   "failed connections (not refusals) tolerated before exit 1")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--timeout", o.timeout_s,
                   "seconds any one operation (connect, write, echo) may take")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--progress", o.progress_s,
                   "seconds between progress lines, 0.001..3600 (0: 1 on a terminal, 5 otherwise)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 3600.0));
    raw.direction = app.add_option("--direction", raw.direction_text, "bulk: up, down or both")
                        ->capture_default_str()
                        ->check(CLI::IsMember(std::vector<std::string>(direction_names.begin(),
                                                                       direction_names.end())));
}

/// The checks that involve more than one flag, and the conversions CLI11 does not do.
command_line finish(options o, const raw_flags& raw) {
    o.run_mode = from_name<mode>(mode_names, raw.mode_text);
    o.bulk_direction = from_name<direction>(direction_names, raw.direction_text);
    if (!split_target(raw.target, o))
        return usage_error(
            fmt::format("--target: '{}' is not HOST:PORT with a port in 1..65535", raw.target));
    for (const auto& text : raw.sources) {
        asio::error_code ec;
        const auto address = asio::ip::make_address(text, ec);
        if (ec) return usage_error(fmt::format("--source: '{}' is not an IP address", text));
        o.sources.push_back(address);
    }
    const bool rate_given = raw.rate->count() > 0;
    if (o.run_mode == mode::rate && !rate_given) return usage_error("rate mode needs --rate");
    if (o.run_mode != mode::rate && o.run_mode != mode::churn && rate_given)
        return usage_error("--rate applies to rate and churn modes only");
    if (o.run_mode == mode::churn && rate_given && o.connect_rate > 0)
        return usage_error(
            "churn with --rate starts connections on its own schedule: --connect-rate does not "
            "apply");
    if (o.run_mode != mode::bulk && raw.direction->count() > 0)
        return usage_error("--direction applies to bulk mode only");
    if (o.run_mode == mode::hold && raw.messages->count() > 0)
        return usage_error("hold mode runs for a duration: --messages does not apply");
    if (o.run_mode == mode::hold && raw.warmup->count() > 0)
        return usage_error("hold mode measures its whole run: --warmup does not apply");
    o.threads = std::min<unsigned>(o.threads, o.connections);  // a thread without connections idles
    return {std::move(o), 0, {}};
}

}  // namespace

std::string_view to_string(mode m) noexcept {
    return mode_names[static_cast<std::size_t>(m)];
}
std::string_view to_string(direction d) noexcept {
    return direction_names[static_cast<std::size_t>(d)];
}

std::string options::target() const {
    return target_host.find(':') == std::string::npos
               ? fmt::format("{}:{}", target_host, target_port)
               : fmt::format("[{}]:{}", target_host, target_port);
}

command_line parse_command_line(int argc, const char* const* argv) {
    CLI::App app{"slabd-load " SLABD_LOAD_VERSION
                 ": load, latency and capacity tests for slabd or any TCP echo server",
                 "slabd-load"};
    app.footer(
        "Every echoed byte is checked. A failed connection is 'refused cleanly' when the server "
        "closed\n"
        "it (FIN, possibly after a busy line) before the first echo, else reset, timeout or "
        "connect\n"
        "error. Exit status: 0 passed, 1 a mismatch or more errors than --max-errors, 2 bad "
        "usage.\n"
        "Examples:\n"
        "  slabd-load rr --target 127.0.0.1:7000 -c 100 -s 64 -d 10\n"
        "  slabd-load rate --target 127.0.0.1:7000 -c 50 --rate 20000 -d 30 --hgrm out.hgrm\n"
        "  slabd-load hold --target 127.0.0.1:7000 -c 50000 --connect-rate 5000 --source "
        "127.0.0.1,127.0.0.2");
    app.set_version_flag("--version", "slabd-load " SLABD_LOAD_VERSION);
    options o;
    raw_flags raw;
    add_flags(app, o, raw);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        std::ostringstream out;
        std::ostringstream err;
        const int code = app.exit(e, out, err);
        if (code == 0) return {std::nullopt, 0, out.str()};
        return {std::nullopt, 2, err.str()};
    }
    return finish(std::move(o), raw);
}

}  // namespace slabd::load
