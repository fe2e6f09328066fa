#include "given.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

namespace slabd::config::detail {
namespace {

using std::chrono::milliseconds;

// How much of a bad value a message repeats: enough to recognise it, not a whole paragraph.
constexpr std::size_t shown_bytes = 64;

std::optional<std::uint64_t> parse_unsigned(std::string_view s) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return n;
}

// Too large to represent saturates, so that the caller reports it as out of range.
milliseconds scaled(std::uint64_t n, std::uint64_t ms_per_unit) {
    constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<milliseconds::rep>::max());
    if (n > max / ms_per_unit) return milliseconds::max();
    return milliseconds{static_cast<milliseconds::rep>(n * ms_per_unit)};
}

std::optional<milliseconds> parse_duration(std::string_view s) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (end == s.data()) return std::nullopt;
    if (ec == std::errc::result_out_of_range) return milliseconds::max();
    const std::string_view unit{end, static_cast<std::size_t>(s.data() + s.size() - end)};
    if (unit.empty() || unit == "s") return scaled(n, 1000);
    if (unit == "ms") return scaled(n, 1);
    if (unit == "m") return scaled(n, 60'000);
    if (unit == "h") return scaled(n, 3'600'000);
    return std::nullopt;
}

// Host names other than localhost are refused, not resolved: a DNS lookup at start-up can block or
// fail with the network, and would pin whichever address it happened to return.
std::optional<std::string> canonical_ip(std::string_view host, bool ipv6) {
    if (!ipv6 && host == "localhost") return "127.0.0.1";
    const std::string h{host};
    const int family = ipv6 ? AF_INET6 : AF_INET;
    in6_addr bytes{};  // big enough for either family
    if (inet_pton(family, h.c_str(), &bytes) != 1) return std::nullopt;
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(family, &bytes, text, sizeof text) == nullptr) return std::nullopt;
    return std::string{text};
}

// Strict, as toml++ is when it reads the text back: no overlong forms, surrogates or > U+10FFFF.
bool is_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned lead = static_cast<unsigned char>(s[i]);
        std::size_t size = 0;
        std::uint32_t cp = 0;
        std::uint32_t min = 0;
        if (lead < 0x80u) {
            ++i;
            continue;
        } else if ((lead & 0xE0u) == 0xC0u) {
            size = 2, cp = lead & 0x1Fu, min = 0x80;
        } else if ((lead & 0xF0u) == 0xE0u) {
            size = 3, cp = lead & 0x0Fu, min = 0x800;
        } else if ((lead & 0xF8u) == 0xF0u) {
            size = 4, cp = lead & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (s.size() - i < size) return false;
        for (std::size_t k = 1; k < size; ++k) {
            const unsigned next = static_cast<unsigned char>(s[i + k]);
            if ((next & 0xC0u) != 0x80u) return false;
            cp = (cp << 6) | (next & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += size;
    }
    return true;
}

bool has_control(std::string_view s) {
    for (const char c : s) {
        const unsigned u = static_cast<unsigned char>(c);
        if (u < 0x20u || u == 0x7Fu) return true;
    }
    return false;
}

bool is_visible_ascii(std::string_view s) {
    for (const char c : s) {
        if (c <= ' ' || c > '~') return false;
    }
    return true;
}

std::string alternatives(std::span<const std::string_view> names) {
    std::string out = names.size() > 2 ? "one of " : "";
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) out += names.size() > 2 ? ", " : " or ";
        out += quote(names[i]);
    }
    return out;
}

}  // namespace

given::given(const toml::node& node, std::string_view file, std::string key)
    : node_{&node}, file_{file}, key_{std::move(key)} {}

given::given(std::vector<std::string> texts, std::string flag)
    : key_{std::move(flag)}, texts_{std::move(texts)} {}

std::string given::where() const {
    if (node_ == nullptr) return key_;
    return file_ + ":" + std::to_string(node_->source().begin.line) + ": " + key_;
}

void given::fail(std::string_view expected) const {
    throw config_error(where() + ": expected " + std::string{expected} + ", got " + shown());
}

std::string given::shown() const {
    if (node_ == nullptr) return quote(texts_.back(), shown_bytes);
    switch (node_->type()) {
        case toml::node_type::string:
            return quote(node_->as_string()->get(), shown_bytes);
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        default: {
            std::ostringstream out;
            node_->visit([&out](const auto& value) { out << value; });
            return out.str();
        }
    }
}

std::string_view given::string_or_fail(std::string_view expected) const {
    if (node_ == nullptr) return texts_.back();
    if (!node_->is_string()) fail(expected);
    return node_->as_string()->get();
}

std::uint64_t given::integer(std::uint64_t lo, std::uint64_t hi) const {
    std::optional<std::uint64_t> n;
    if (node_ == nullptr) {
        n = parse_unsigned(texts_.back());
    } else if (const auto* i = node_->as_integer(); i != nullptr && i->get() >= 0) {
        n = static_cast<std::uint64_t>(i->get());
    }
    if (!n || *n < lo || *n > hi) {
        fail("an integer " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    return *n;
}

milliseconds given::duration(milliseconds lo, milliseconds hi) const {
    constexpr std::string_view syntax =
        R"(a duration such as "500ms", "30s", "2m" or "1h", or a whole number of seconds)";
    std::optional<milliseconds> d;
    if (node_ != nullptr && node_->is_integer()) {
        if (const auto n = node_->as_integer()->get(); n >= 0) {
            d = scaled(static_cast<std::uint64_t>(n), 1000);
        }
    } else {
        d = parse_duration(string_or_fail(syntax));
    }
    if (!d) fail(syntax);
    if (*d < lo || *d > hi) fail("a duration " + format_duration(lo) + ".." + format_duration(hi));
    return *d;
}

endpoint given::address(std::uint16_t min_port) const {
    constexpr std::string_view shape = R"("HOST:PORT", such as "127.0.0.1:7000" or "[::1]:7000")";
    const std::string_view s = string_or_fail(shape);
    const bool ipv6 = s.starts_with('[');
    const std::size_t colon = ipv6 ? s.find("]:") : s.rfind(':');
    if (colon == std::string_view::npos) fail(shape);
    const std::string_view host = ipv6 ? s.substr(1, colon - 1) : s.substr(0, colon);
    const std::string_view port = s.substr(colon + (ipv6 ? 2 : 1));
    if (!ipv6 && host.find(':') != std::string_view::npos) {
        fail(R"(an IPv6 address in brackets, such as "[::1]:7000")");
    }
    auto ip = canonical_ip(host, ipv6);
    if (!ip) fail(R"(an IP address or "localhost" as HOST (names are not looked up))");
    const auto n = parse_unsigned(port);
    if (!n || *n < min_port || *n > 65535) {
        fail("a port " + std::to_string(min_port) + "..65535 after the host");
    }
    return endpoint{std::move(*ip), static_cast<std::uint16_t>(*n)};
}

namespace {

/// "ADDRESS/PREFIX" with the bits past the prefix cleared.
std::string network_text(bool ipv6, std::array<unsigned char, 16> bytes, unsigned prefix) {
    const unsigned bits = ipv6 ? 128 : 32;
    for (unsigned i = 0; i < bits / 8; ++i) {
        const unsigned keep = std::min(8U, prefix > i * 8 ? prefix - i * 8 : 0U);
        bytes[i] &= static_cast<unsigned char>(0xFFU << (8 - keep));
    }
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(ipv6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof text);
    return std::string{text} + "/" + std::to_string(prefix);
}

}  // namespace

endpoint given::upstream() const {
    const std::string_view s = string_or_fail(
        R"("HOST:PORT", such as "127.0.0.1:8000", "[::1]:8000" or "backend.example:8000")");
    const std::size_t colon = s.rfind(':');
    const std::string_view host = colon == std::string_view::npos ? s : s.substr(0, colon);
    constexpr std::string_view host_shape =
        R"(a host name (letters, digits, '-' and '.') or an IP address as HOST)";
    const bool numeric =
        std::ranges::all_of(host, [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
    if (numeric && !host.empty() && !canonical_ip(host, false)) fail(host_shape);
    if (s.starts_with('[') || colon == std::string_view::npos ||
        host.find(':') != std::string_view::npos || numeric)
        return address(1);
    // A name: RFC 1123 labels, looked up by the server at start, on reload and every
    // proxy.resolve_interval.
    const auto label_ok = [](std::string_view label) {
        return !label.empty() && label.size() <= 63 && label.front() != '-' &&
               label.back() != '-' && std::ranges::all_of(label, [](char c) {
                   return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '-';
               });
    };
    bool ok = !host.empty() && host.size() <= 253;
    for (std::size_t start = 0; ok && start <= host.size();) {
        const std::size_t dot = std::min(host.find('.', start), host.size());
        ok = label_ok(host.substr(start, dot - start));
        start = dot + 1;
    }
    if (!ok) fail(host_shape);
    const auto port = parse_unsigned(s.substr(colon + 1));
    if (!port || *port < 1 || *port > 65535) fail("a port 1..65535 after the host");
    std::string name{host};
    std::ranges::transform(name, name.begin(), [](char c) {
        return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    return endpoint{std::move(name), static_cast<std::uint16_t>(*port)};
}

std::string given::network() const {
    constexpr std::string_view shape =
        R"("ADDRESS" or "ADDRESS/PREFIX", such as "10.0.0.0/8" or "::1")";
    const std::string_view s = string_or_fail(shape);
    const std::size_t slash = s.find('/');
    const std::string host{s.substr(0, slash)};
    const bool ipv6 = host.find(':') != std::string::npos;
    std::array<unsigned char, 16> bytes{};
    if (inet_pton(ipv6 ? AF_INET6 : AF_INET, host.c_str(), bytes.data()) != 1) fail(shape);
    const unsigned bits = ipv6 ? 128 : 32;
    unsigned prefix = bits;
    if (slash != std::string_view::npos) {
        const auto n = parse_unsigned(s.substr(slash + 1));
        if (!n || *n > bits) fail("a prefix length 0.." + std::to_string(bits) + " after the '/'");
        prefix = static_cast<unsigned>(*n);
    }
    constexpr std::array<unsigned char, 12> v4_mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (ipv6 && std::equal(v4_mapped.begin(), v4_mapped.end(), bytes.begin())) {
        // The server counts IPv4-mapped clients as IPv4: so must a network of them be written.
        if (prefix < 96) fail("a prefix of 96 or more for an IPv4-mapped network");
        std::copy(bytes.begin() + 12, bytes.end(), bytes.begin());
        return network_text(false, bytes, prefix - 96);
    }
    return network_text(ipv6, bytes, prefix);
}

std::string given::text(std::size_t max_size) const {
    const std::string_view s = string_or_fail("a string");
    if (!is_utf8(s) || has_control(s)) fail("one line of UTF-8 text without control characters");
    if (s.size() > max_size) fail("at most " + std::to_string(max_size) + " bytes");
    return std::string{s};
}

std::string given::bytes(std::size_t max_size) const {
    const std::string_view s = string_or_fail("a string");
    if (!is_utf8(s)) fail("UTF-8 text");
    if (s.size() > max_size) fail("at most " + std::to_string(max_size) + " bytes");
    return std::string{s};
}

std::string given::secret(std::size_t max_size) const {
    // A secret is never repeated in a message: messages end up in terminals, logs and CI output.
    const bool is_string = node_ == nullptr || node_->is_string();
    std::string_view s;
    if (node_ == nullptr) {
        s = texts_.back();
    } else if (is_string) {
        s = node_->as_string()->get();
    }
    if (s == redacted) {
        throw config_error(where() + ": expected the secret itself, got the " + quote(redacted) +
                           " placeholder of a printed configuration");
    }
    if (!is_string || !is_visible_ascii(s) || s.size() > max_size) {
        throw config_error(where() + ": expected a string of at most " + std::to_string(max_size) +
                           " visible ASCII characters, no spaces (the value is not shown)");
    }
    return std::string{s};
}

bool given::boolean() const {
    if (node_ != nullptr) {
        if (!node_->is_boolean()) fail("true or false");
        return node_->as_boolean()->get();
    }
    if (texts_.back() != "true" && texts_.back() != "false") fail("true or false");
    return texts_.back() == "true";
}

std::size_t given::choice(std::span<const std::string_view> names) const {
    const std::string expected = alternatives(names);
    const std::string_view s = string_or_fail(expected);
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == s) return i;
    }
    fail(expected);
}

std::vector<given> given::items(std::string_view expected) const {
    std::vector<given> out;
    if (node_ == nullptr) {
        for (const auto& text : texts_) out.emplace_back(std::vector{text}, key_);
        return out;
    }
    const auto* array = node_->as_array();
    if (array == nullptr) fail(expected);
    for (std::size_t i = 0; i < array->size(); ++i) {
        out.emplace_back(*array->get(i), file_, key_ + "[" + std::to_string(i) + "]");
    }
    return out;
}

std::string quote(std::string_view s, std::size_t max_size) {
    std::size_t cut = std::min(s.size(), max_size);
    while (cut < s.size() && cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0u) == 0x80u) {
        --cut;
    }
    std::string out = "\"";
    for (const char c : s.substr(0, cut)) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (const unsigned u = static_cast<unsigned char>(c); u < 0x20u || u == 0x7Fu) {
                    constexpr std::string_view hex = "0123456789ABCDEF";
                    out += "\\u00";
                    out += hex[u >> 4];
                    out += hex[u & 0xFu];
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    if (cut < s.size()) out += "...";
    return out;
}

std::string format_duration(milliseconds d) {
    const auto ms = d.count();
    if (ms == 0) return "0s";
    if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

}  // namespace slabd::config::detail
