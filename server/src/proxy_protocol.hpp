// The PROXY protocol (HAProxy's doc/proxy-protocol.txt, v1 text and v2 binary): reads the header a
// load balancer puts before a client's bytes, and writes one for an upstream. No I/O and no Asio,
// so it is tested at every prefix of its input and fuzzed on its own.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace slabd::server::proxy_protocol {

enum class version : std::uint8_t { v1 = 1, v2 = 2 };

/// What a header says about the connection it comes on.
struct header {
    /// v2 LOCAL, v1 UNKNOWN, or a family not relayed (AF_UNSPEC, AF_UNIX): no addresses, the
    /// connection's own addresses stand.
    bool local = false;
    /// When !local: both AF_INET (sockaddr_in) or both AF_INET6 (sockaddr_in6), ports in network
    /// order.
    sockaddr_storage source{}, destination{};
};

// Why a connection's bytes are not a header we take, in the order the server lists them.
// M(X, reason) for each, like SLABD_REFUSAL_REASONS, so a counter list can embed it.
//   not_proxy:   the first bytes match neither signature
//   malformed:   bad syntax, field or address text; a length too short for the family
//   oversized:   longer than max_header_size (v1: no CRLF within 107 bytes)
//   unsupported: v2 version other than 2, a command other than LOCAL/PROXY, or DGRAM for PROXY
#define SLABD_PROXY_HEADER_ERRORS(M, X) \
    M(X, not_proxy) M(X, malformed) M(X, oversized) M(X, unsupported)

enum class parse_error : std::uint8_t {
#define SLABD_ENUMERATOR(X, reason) reason,
    SLABD_PROXY_HEADER_ERRORS(SLABD_ENUMERATOR, )
#undef SLABD_ENUMERATOR
};
#define SLABD_COUNT_ONE(X, reason) +1
inline constexpr std::size_t parse_errors = 0 SLABD_PROXY_HEADER_ERRORS(SLABD_COUNT_ONE, );
#undef SLABD_COUNT_ONE

/// "not_proxy", "malformed"...: the error's label in stats and logs.
std::string_view to_string(parse_error error) noexcept;

/// The longest header parse() accepts: v1 is at most 107 bytes; v2 is 16 plus up to 216 bytes
/// of addresses and TLVs, the bound HAProxy itself receives into.
inline constexpr std::size_t max_header_size = 232;

/// parse()'s verdict on the bytes received so far.
struct parse_result {
    enum class status : std::uint8_t {
        need_more,  ///< a valid header may still follow: peek again when more bytes arrive
        done,       ///< `value` is the header; it takes the first `length` bytes
        error,      ///< `error` says why; no more bytes can make it valid
    } state = status::need_more;
    std::size_t length = 0;  // done: the bytes the header occupies, to consume
    parse_error error{};
    header value;
};

/// Reads a v1 or v2 header from the front of everything received so far (peeked, so the same
/// prefix comes again, longer each time). Decides as early as the bytes allow and never reads
/// past `received`; bytes after the header are not the header's.
parse_result parse(std::span<const std::byte> received) noexcept;

/// Room build() needs: the longest v1 line (104 bytes) with room to spare; v2 is at most 52.
inline constexpr std::size_t max_built_size = 108;

/// Writes a header for `source` -> `destination` into `out` and returns its length. Two IPv4
/// addresses (IPv4-mapped IPv6 counts as IPv4) give TCP4; otherwise two IP addresses give TCP6,
/// the IPv4 one mapped; a null or non-IP address gives v1 "PROXY UNKNOWN" or v2 LOCAL.
std::size_t build(version v, const sockaddr* source, const sockaddr* destination,
                  std::span<std::byte, max_built_size> out) noexcept;

}  // namespace slabd::server::proxy_protocol
