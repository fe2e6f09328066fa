// slabd-load's command line: what the user asked for, checked, before anything touches a socket.
// Parsing never exits the process: it returns what to print and the exit code (2: bad usage).
#pragma once

#include <asio/ip/address.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slabd::load {

/// What each connection does: closed loop, open loop at a fixed rate, connect-per-message,
/// open-and-hold, or a byte stream.
enum class mode { rr, rate, churn, hold, bulk };
/// Which way bulk mode moves bytes: "up" sends (the echo is checked but not required), "down"
/// only reads, "both" sends and requires the whole echo back.
enum class direction { up, down, both };

std::string_view to_string(mode m) noexcept;
std::string_view to_string(direction d) noexcept;

/// A validated command line.
struct options {
    mode run_mode = mode::rr;
    std::string target_host;
    std::uint16_t target_port = 0;
    std::uint32_t connections = 1;
    std::size_t size = 64;
    double duration_s = 10;
    double rate =
        0;  // in total, per second: rate mode's messages, churn's connections; 0: closed loop
    unsigned threads = 1;
    std::vector<asio::ip::address> sources;
    std::string json_path;
    std::string hgrm_path;
    std::uint64_t messages = 0;  // 0: run for duration_s instead
    double warmup_s = 0;
    double connect_rate = 0;  // connections per second; 0: all at once
    std::uint64_t max_errors = 0;
    double timeout_s = 5;
    double progress_s = 0;  // between progress lines; 0: 1 s on a terminal, 5 s otherwise
    direction bulk_direction = direction::both;

    [[nodiscard]] std::string target() const;
};

/// What parse_command_line decided: run with `opts`, or print `output` and exit with `exit_code`.
struct command_line {
    std::optional<options> opts;
    int exit_code = 0;
    std::string output;  // for stdout when exit_code is 0, else for stderr
};

/// Parses and checks argv. --help and --version give exit code 0, anything malformed 2.
command_line parse_command_line(int argc, const char* const* argv);

}  // namespace slabd::load
