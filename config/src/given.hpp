// One setting's value as the user gave it, in a TOML file or in command-line flags, and the checks
// that turn it into a typed value. File and flags share these checks, so they share the messages.
#pragma once

#include "slabd/config/config.hpp"

#include <toml++/toml.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slabd::config::detail {

/// A value plus where it was given; every error about it starts with "file:line: key" or "--flag".
class given {
  public:
    /// A value from the TOML document `file`; `key` is its dotted path, e.g. "pool.buffer_size".
    given(const toml::node& node, std::string_view file, std::string key);
    /// The text of a flag; repeatable flags have one text per occurrence, others exactly one.
    given(std::vector<std::string> texts, std::string flag);

    /// "file:line: key" or "--flag", the prefix of every message about this value.
    std::string where() const;
    /// Throws config_error "<where>: expected <expected>, got <the value>".
    [[noreturn]] void fail(std::string_view expected) const;

    /// An integer in lo..hi.
    std::uint64_t integer(std::uint64_t lo, std::uint64_t hi) const;
    /// "500ms", "30s", "2m", "1h", or a whole number of seconds, in lo..hi.
    std::chrono::milliseconds duration(std::chrono::milliseconds lo,
                                       std::chrono::milliseconds hi) const;
    /// "HOST:PORT" with an IP literal or "localhost" as host, and a port of at least min_port.
    endpoint address(std::uint16_t min_port) const;
    /// "HOST:PORT" where HOST may also be a DNS name (kept, lowercased, for the server to
    /// resolve); port 1..65535.
    endpoint upstream() const;
    /// "ADDRESS" or "ADDRESS/PREFIX" (IPv4 or IPv6), as canonical "ADDRESS/PREFIX" with the host
    /// bits cleared.
    std::string network() const;
    /// One line of UTF-8 text, no control characters, at most max_size bytes.
    std::string text(std::size_t max_size) const;
    /// UTF-8 text, control characters allowed (a protocol's "\r\n"), at most max_size bytes.
    std::string bytes(std::size_t max_size) const;
    /// Like text, but visible ASCII only, and never echoed in a message.
    std::string secret(std::size_t max_size) const;
    /// true or false.
    bool boolean() const;
    /// The index in `names` of the value.
    std::size_t choice(std::span<const std::string_view> names) const;
    /// The elements of an array (in a file), or one value per occurrence (of a flag).
    std::vector<given> items(std::string_view expected) const;

  private:
    std::string_view string_or_fail(std::string_view expected) const;
    std::string shown() const;

    const toml::node* node_ = nullptr;  // null for a flag
    std::string file_;
    std::string key_;  // dotted TOML key, or the flag
    std::vector<std::string> texts_;
};

/// What to_toml prints instead of a secret; given::secret() refuses it back.
inline constexpr std::string_view redacted = "<redacted>";

/// s as a TOML basic string; past max_size bytes it is cut at a character boundary, "..." added.
std::string quote(std::string_view s, std::size_t max_size = std::string_view::npos);
/// A duration in the largest unit that is exact: "5m", "1500ms", "0s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace slabd::config::detail
