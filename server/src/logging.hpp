// Logging set-up: spdlog's default logger writing text or JSON lines to stderr or to a file that
// SIGHUP reopens (logrotate moves the old file away and slabd starts a new one at the same path).
#pragma once

#include <system_error>

#include "slabd/config/config.hpp"

namespace slabd::server::logging {

/// Installs the default logger the settings ask for; throws std::system_error when the log file
/// cannot be opened.
void setup(const config::Config& settings);

/// Opens the log file at its path again, keeping the old one on failure; no-op on stderr.
std::error_code reopen();

/// Points descriptor 2 at the log file (or /dev/null without one), now and after each reopen, so
/// that what a detached daemon writes to stderr outside spdlog (crashes, sanitizers) is kept.
std::error_code capture_stderr();

}  // namespace slabd::server::logging
