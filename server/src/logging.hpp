// Logging set-up: spdlog's default logger writing text or JSON lines to stderr or to a file that
// SIGHUP reopens (logrotate moves the old file away and slabd starts a new one at the same path).
#pragma once

#include <chrono>
#include <span>
#include <string_view>
#include <system_error>

#include "slabd/config/config.hpp"

namespace slabd::server::logging {

/// Installs the default logger the settings ask for; throws std::system_error when the log file
/// cannot be opened.
void setup(const config::Config& settings);

/// One member of a structured line: a JSON string when `text`, else a JSON number.
struct field {
    std::string_view key;
    std::string_view value;
    bool text = true;
};

/// Writes `message` and `fields` as one line stamped `time`, whatever the level: text as
/// `message key=value ...`, JSON as members of the line's object. On the calling thread.
void write_fields(std::chrono::system_clock::time_point time, std::string_view message,
                  std::span<const field> fields);

/// Opens the log file at its path again, keeping the old one on failure; no-op on stderr.
std::error_code reopen();

/// Points descriptor 2 at the log file (or /dev/null without one), now and after each reopen, so
/// that what a detached daemon writes to stderr outside spdlog (crashes, sanitizers) is kept.
std::error_code capture_stderr();

}  // namespace slabd::server::logging
