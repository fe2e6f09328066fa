#include "proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace slabd::server::proxy_protocol {

namespace {

using status = parse_result::status;

// "PROXY UNKNOWN" with two full IPv6 addresses and ports, CRLF included: the spec's longest line.
constexpr std::size_t v1_max_line = 107;
// The spec tells v1 by these five bytes; what follows them is the line's to be right or wrong.
constexpr std::string_view v1_signature = "PROXY";
constexpr std::string_view v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr std::size_t v2_fixed = 16;  // signature, version and command, family, block length
constexpr std::size_t v2_max_block = max_header_size - v2_fixed;
constexpr std::array<unsigned char, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

parse_result need_more() noexcept {
    return {};
}

parse_result failure(parse_error error) noexcept {
    parse_result r;
    r.state = status::error;
    r.error = error;
    return r;
}

parse_result done(std::size_t length, const header& value) noexcept {
    parse_result r;
    r.state = status::done;
    r.length = length;
    r.value = value;
    return r;
}

/// Writes an AF_INET (4-byte `address`) or AF_INET6 (16-byte) endpoint; `port` in network order.
void set_endpoint(sockaddr_storage& out, bool v6, const void* address,
                  std::uint16_t port) noexcept {
    out = {};
    if (v6) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = port;
        std::memcpy(&a.sin6_addr, address, sizeof a.sin6_addr);
        std::memcpy(&out, &a, sizeof a);
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = port;
        std::memcpy(&a.sin_addr, address, sizeof a.sin_addr);
        std::memcpy(&out, &a, sizeof a);
    }
}

// ---- v1: one line of text ---------------------------------------------------------------------

// Where reading a piece of the line stands: its bytes so far fit and the rest has not come
// (more), they cannot begin a valid line (bad), or the piece is whole and consumed (ok).
enum class scan : std::uint8_t { more, bad, ok };

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

// Field checks run on every prefix of a field, so a wrong byte fails the line when it arrives.
// Each one rejects every extension of a prefix it rejects, which keeps parse() monotonic.

/// A dotted quad as inet_pton reads it: numbers to 255 with no heading zeros (octal lookalikes).
bool fits_ipv4(std::string_view s) noexcept {
    int dots = 0, digits = 0, value = 0;
    for (char c : s) {
        if (c == '.') {
            if (digits == 0 || ++dots > 3) return false;
            digits = value = 0;
            continue;
        }
        if (!is_digit(c) || (digits == 1 && value == 0)) return false;
        value = value * 10 + (c - '0');
        if (value > 255) return false;
        ++digits;
    }
    return true;
}

/// Hex groups, colons and a trailing dotted quad; inet_pton judges the whole once it ends.
bool fits_ipv6(std::string_view s) noexcept {
    return s.size() < INET6_ADDRSTRLEN && std::ranges::all_of(s, [](char c) {
               const char lower = static_cast<char>(c | 0x20);
               return is_digit(c) || (lower >= 'a' && lower <= 'f') || c == ':' || c == '.';
           });
}

/// A port: decimal to 65535, no sign, no heading zeros.
bool fits_port(std::string_view s) noexcept {
    if (s.size() > 1 && s[0] == '0') return false;
    unsigned value = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
        if (value > 65535) return false;
    }
    return true;
}

class line_reader {
  public:
    explicit line_reader(std::string_view text) noexcept : text_(text) {}
    [[nodiscard]] std::size_t position() const noexcept { return pos_; }
    /// The next byte, or 0 when none has come (0 is wrong wherever it is asked for).
    [[nodiscard]] char peek() const noexcept { return pos_ < text_.size() ? text_[pos_] : '\0'; }
    [[nodiscard]] bool at_end() const noexcept { return pos_ == text_.size(); }

    scan literal(std::string_view word) noexcept {
        const std::string_view got = text_.substr(pos_, word.size());
        if (!word.starts_with(got)) return scan::bad;
        if (got.size() < word.size()) return scan::more;
        pos_ += word.size();
        return scan::ok;
    }

    /// A non-empty field that `fits`, ended by `end` (consumed). Fields never hold a space, CR
    /// or LF, so the first of those ends the field, rightly or wrongly.
    scan field(bool (*fits)(std::string_view) noexcept, char end, std::string_view& out) noexcept {
        const std::size_t stop = text_.find_first_of(" \r\n", pos_);
        const std::string_view got = text_.substr(pos_, stop - pos_);
        if (!fits(got)) return scan::bad;
        if (stop == std::string_view::npos) return scan::more;
        if (got.empty() || text_[stop] != end) return scan::bad;
        out = got;
        pos_ = stop + 1;
        return scan::ok;
    }

    /// Anything up to CRLF; a lone CR or LF does not end a line (the spec says so).
    scan rest_of_line() noexcept {
        const std::size_t stop = text_.find_first_of("\r\n", pos_);
        if (stop == std::string_view::npos) return scan::more;
        if (text_[stop] == '\n') return scan::bad;
        pos_ = stop;
        return literal("\r\n");
    }

  private:
    std::string_view text_;
    std::size_t pos_ = 0;
};

/// An address field; `out` gets its 4 or 16 bytes as soon as the field ends.
scan read_address(line_reader& line, bool v6, unsigned char* out) noexcept {
    std::string_view text;
    if (const scan s = line.field(v6 ? fits_ipv6 : fits_ipv4, ' ', text); s != scan::ok) return s;
    char z[INET6_ADDRSTRLEN] = {};  // inet_pton wants a terminated string; fits_* bounded the size
    std::memcpy(z, text.data(), text.size());
    return inet_pton(v6 ? AF_INET6 : AF_INET, z, out) == 1 ? scan::ok : scan::bad;
}

/// A port field; `out` in network order.
scan read_port(line_reader& line, char end, std::uint16_t& out) noexcept {
    std::string_view text;
    if (const scan s = line.field(fits_port, end, text); s != scan::ok) return s;
    std::uint16_t port = 0;
    std::from_chars(text.data(), text.data() + text.size(), port);  // fits_port checked it
    out = htons(port);
    return scan::ok;
}

/// "TCP4 " or "TCP6 ", addresses, ports, CRLF.
scan read_tcp(line_reader& line, header& h) noexcept {
    if (const scan s = line.literal("TCP"); s != scan::ok) return s;
    if (line.at_end()) return scan::more;
    const char family = line.peek();
    if (family != '4' && family != '6') return scan::bad;
    const bool v6 = family == '6';
    if (const scan s = line.literal(v6 ? "6 " : "4 "); s != scan::ok) return s;
    std::array<unsigned char, 16> source{}, destination{};
    std::uint16_t source_port = 0, destination_port = 0;
    scan s = read_address(line, v6, source.data());
    if (s == scan::ok) s = read_address(line, v6, destination.data());
    if (s == scan::ok) s = read_port(line, ' ', source_port);
    if (s == scan::ok) s = read_port(line, '\r', destination_port);
    if (s == scan::ok) s = line.literal("\n");
    if (s != scan::ok) return s;
    set_endpoint(h.source, v6, source.data(), source_port);
    set_endpoint(h.destination, v6, destination.data(), destination_port);
    return scan::ok;
}

/// "UNKNOWN", then anything up to CRLF: the receiver ignores it (spec 2.1).
scan read_unknown(line_reader& line, header& h) noexcept {
    h.local = true;
    if (const scan s = line.literal("UNKNOWN"); s != scan::ok) return s;
    if (line.at_end()) return scan::more;
    if (line.peek() != ' ' && line.peek() != '\r') return scan::bad;
    return line.rest_of_line();
}

parse_result parse_v1(std::string_view received) noexcept {
    line_reader line(received.substr(0, v1_max_line));
    scan s = line.literal(v1_signature);
    if (s == scan::bad) return failure(parse_error::not_proxy);
    header h;
    if (s == scan::ok) s = line.literal(" ");
    if (s == scan::ok) s = line.peek() == 'U' ? read_unknown(line, h) : read_tcp(line, h);
    switch (s) {
        case scan::ok:
            return done(line.position(), h);
        case scan::bad:
            return failure(parse_error::malformed);
        case scan::more:
            break;
    }
    return received.size() >= v1_max_line ? failure(parse_error::oversized) : need_more();
}

// ---- v2: a 16-byte header and a block of addresses and TLVs ------------------------------------

parse_result parse_v2(std::span<const unsigned char> b) noexcept {
    const std::size_t n = b.size();
    if (std::memcmp(b.data(), v2_signature.data(), std::min(n, v2_signature.size())) != 0)
        return failure(parse_error::not_proxy);
    if (n <= 12) return need_more();
    const unsigned command = b[12] & 0xFu;
    if ((b[12] >> 4) != 2 || command > 1) return failure(parse_error::unsupported);
    if (n <= 13) return need_more();
    bool local = command == 0;  // LOCAL: the family is ignored, whatever it says (spec 2.2)
    std::size_t addresses = 0;  // the family's part of the block
    if (!local) {
        switch (b[13]) {
            case 0x00:
                local = true;
                break;
            case 0x11:
                addresses = 12;
                break;
            case 0x21:
                addresses = 36;
                break;
            case 0x31:  // AF_UNIX: a path means nothing to a TCP peer, so the socket's own stand
                addresses = 216;
                local = true;
                break;
            case 0x12:
            case 0x22:
            case 0x32:
                return failure(parse_error::unsupported);  // DGRAM: slabd relays streams
            default:
                return failure(parse_error::malformed);  // values the spec leaves unused
        }
    }
    if (n < v2_fixed) return need_more();
    const std::size_t block = static_cast<std::size_t>(b[14]) << 8 | b[15];
    if (block > v2_max_block) return failure(parse_error::oversized);
    if (block < addresses) return failure(parse_error::malformed);
    if (n < v2_fixed + block) return need_more();
    header h;
    h.local = local;
    if (!local) {
        const bool v6 = addresses == 36;
        const std::size_t size = v6 ? 16 : 4;
        const unsigned char* a = b.data() + v2_fixed;
        std::uint16_t source_port = 0, destination_port = 0;  // both stay in network order
        std::memcpy(&source_port, a + 2 * size, 2);
        std::memcpy(&destination_port, a + 2 * size + 2, 2);
        set_endpoint(h.source, v6, a, source_port);
        set_endpoint(h.destination, v6, a + size, destination_port);
    }
    return done(v2_fixed + block, h);  // TLVs are skipped: nothing here needs them
}

// ---- build ------------------------------------------------------------------------------------

/// An address as build() sends it: 16 bytes with IPv4 as ::ffff:a.b.c.d, port in network order.
struct endpoint {
    std::array<unsigned char, 16> bytes{};
    std::uint16_t port = 0;
    bool v4 = false;
    [[nodiscard]] const unsigned char* address(bool as_v4) const noexcept {
        return bytes.data() + (as_v4 ? 12 : 0);
    }
};

/// Both ends of a relayed connection, as build() sends them.
struct route {
    endpoint source, destination;
    [[nodiscard]] bool v4() const noexcept { return source.v4 && destination.v4; }
};

bool endpoint_of(const sockaddr* sa, endpoint& e) noexcept {
    if (sa == nullptr) return false;
    if (sa->sa_family == AF_INET) {
        sockaddr_in a;
        std::memcpy(&a, sa, sizeof a);
        std::ranges::copy(v4_mapped_prefix, e.bytes.begin());
        std::memcpy(e.bytes.data() + 12, &a.sin_addr, 4);
        e.port = a.sin_port;
        e.v4 = true;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        sockaddr_in6 a;
        std::memcpy(&a, sa, sizeof a);
        std::memcpy(e.bytes.data(), &a.sin6_addr, 16);
        e.port = a.sin6_port;
        // Mapped is how a dual-stack socket sees an IPv4 peer; receivers expect TCP4 for it.
        e.v4 = std::equal(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), e.bytes.begin());
        return true;
    }
    return false;
}

/// Appends to `out`; too much and it says so instead of writing past the end.
class writer {
  public:
    explicit writer(std::span<std::byte> out) noexcept : out_(out) {}
    void put(const void* data, std::size_t size) noexcept {
        if (size > out_.size() - size_) {
            overflow_ = true;
            return;
        }
        std::memcpy(out_.data() + size_, data, size);
        size_ += size;
    }
    void put(std::string_view text) noexcept { put(text.data(), text.size()); }
    [[nodiscard]] std::size_t size() const noexcept { return overflow_ ? 0 : size_; }

  private:
    std::span<std::byte> out_;
    std::size_t size_ = 0;
    bool overflow_ = false;
};

void put_address(writer& w, const endpoint& e, bool as_v4) noexcept {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(as_v4 ? AF_INET : AF_INET6, e.address(as_v4), text, sizeof text);
    w.put(std::string_view(text));
}

void put_port(writer& w, std::uint16_t port) noexcept {
    char digits[5];
    const auto end = std::to_chars(digits, digits + sizeof digits, ntohs(port)).ptr;
    w.put(digits, static_cast<std::size_t>(end - digits));
}

std::size_t build_v1(const route* r, std::span<std::byte> out) noexcept {
    if (r != nullptr) {
        const bool v4 = r->v4();
        writer w(out);
        w.put(v4 ? "PROXY TCP4 " : "PROXY TCP6 ");
        put_address(w, r->source, v4);
        w.put(" ");
        put_address(w, r->destination, v4);
        w.put(" ");
        put_port(w, r->source.port);
        w.put(" ");
        put_port(w, r->destination.port);
        w.put("\r\n");
        // inet_ntop writes at most 39 characters for these, so the line fits; were a libc to
        // write more, UNKNOWN is still a valid header.
        if (const std::size_t size = w.size(); size != 0) return size;
    }
    writer w(out);
    w.put("PROXY UNKNOWN\r\n");
    return w.size();
}

std::size_t build_v2(const route* r, std::span<std::byte> out) noexcept {
    writer w(out);
    w.put(v2_signature);
    if (r == nullptr) {
        // LOCAL, AF_UNSPEC, an empty block.
        constexpr std::array<unsigned char, 4> local{0x20, 0x00, 0x00, 0x00};
        w.put(local.data(), local.size());
        return w.size();
    }
    const bool v4 = r->v4();
    const std::size_t size = v4 ? 4 : 16;
    const unsigned char family = v4 ? 0x11 : 0x21;
    const auto block = static_cast<unsigned char>(2 * size + 4);
    const std::array<unsigned char, 4> proxy{0x21, family, 0x00, block};
    w.put(proxy.data(), proxy.size());
    w.put(r->source.address(v4), size);
    w.put(r->destination.address(v4), size);
    w.put(&r->source.port, 2);
    w.put(&r->destination.port, 2);
    return w.size();
}

}  // namespace

std::string_view to_string(parse_error error) noexcept {
    switch (error) {
#define SLABD_CASE(X, reason) \
    case parse_error::reason: \
        return #reason;
        SLABD_PROXY_HEADER_ERRORS(SLABD_CASE, )
#undef SLABD_CASE
    }
    return "unknown";
}

parse_result parse(std::span<const std::byte> received) noexcept {
    if (received.empty()) return need_more();
    const std::span bytes{reinterpret_cast<const unsigned char*>(received.data()), received.size()};
    switch (bytes[0]) {
        case 'P':
            return parse_v1({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
        case '\r':
            return parse_v2(bytes);
        default:
            return failure(parse_error::not_proxy);
    }
}

std::size_t build(version v, const sockaddr* source, const sockaddr* destination,
                  std::span<std::byte, max_built_size> out) noexcept {
    route r;
    const bool usable = endpoint_of(source, r.source) && endpoint_of(destination, r.destination);
    const route* known = usable ? &r : nullptr;
    return v == version::v1 ? build_v1(known, out) : build_v2(known, out);
}

}  // namespace slabd::server::proxy_protocol
