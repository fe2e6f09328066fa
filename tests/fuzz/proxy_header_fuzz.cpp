// libFuzzer target for the PROXY protocol parser: the input is what a client's first bytes might
// be. A server peeks and parses again as bytes come, so every prefix must agree with the longer
// ones: need-more until a verdict, then the same verdict and length for good. A header parsed
// with addresses must come back the same through build() and parse(), in v1 and in v2.
#include "proxy_protocol.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>

namespace {

namespace pp = slabd::server::proxy_protocol;
using status = pp::parse_result::status;

void require(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "proxy_header invariant broken: %s\n", what);
    std::abort();
}

bool same(const pp::parse_result& a, const pp::parse_result& b) {
    if (a.state != b.state) return false;
    if (a.state == status::error) return a.error == b.error;
    if (a.state == status::need_more) return true;
    return a.length == b.length && a.value.local == b.value.local &&
           (a.value.local ||
            (std::memcmp(&a.value.source, &b.value.source, sizeof a.value.source) == 0 &&
             std::memcmp(&a.value.destination, &b.value.destination, sizeof a.value.destination) ==
                 0));
}

/// An endpoint as build() treats it: 16 bytes with IPv4 mapped, and the port.
struct canonical {
    std::array<unsigned char, 16> bytes{};
    std::uint16_t port = 0;
    bool operator==(const canonical&) const = default;
};

canonical canonical_of(const sockaddr_storage& ss) {
    canonical c;
    if (ss.ss_family == AF_INET) {
        sockaddr_in a;
        std::memcpy(&a, &ss, sizeof a);
        c.bytes[10] = c.bytes[11] = 0xff;
        std::memcpy(c.bytes.data() + 12, &a.sin_addr, 4);
        c.port = a.sin_port;
    } else {
        require(ss.ss_family == AF_INET6, "an address neither AF_INET nor AF_INET6");
        sockaddr_in6 a;
        std::memcpy(&a, &ss, sizeof a);
        std::memcpy(c.bytes.data(), &a.sin6_addr, 16);
        c.port = a.sin6_port;
    }
    return c;
}

/// build() as `v`, parse back: done, the whole of it, and the same endpoints.
void round_trip(pp::version v, const pp::header& h) {
    std::array<std::byte, pp::max_built_size> out{};
    const sockaddr* source = h.local ? nullptr : reinterpret_cast<const sockaddr*>(&h.source);
    const sockaddr* destination =
        h.local ? nullptr : reinterpret_cast<const sockaddr*>(&h.destination);
    const std::size_t n = pp::build(v, source, destination, out);
    require(n > 0 && n <= out.size(), "build wrote nothing or too much");
    const auto back = pp::parse(std::span<const std::byte>(out).first(n));
    require(back.state == status::done, "a built header does not parse");
    require(back.length == n, "a built header parses to another length");
    require(back.value.local == h.local, "local does not survive a round trip");
    if (h.local) return;
    require(back.value.source.ss_family == back.value.destination.ss_family,
            "mixed families parsed");
    require(canonical_of(back.value.source) == canonical_of(h.source),
            "the source changed in a round trip");
    require(canonical_of(back.value.destination) == canonical_of(h.destination),
            "the destination changed in a round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
    // parse() reads at most max_header_size bytes, so prefixes well past it stand for the rest
    // through the whole input; checking each of them would only slow the search down.
    const std::size_t checked = std::min(size, 2 * pp::max_header_size);
    std::optional<pp::parse_result> verdict;
    std::size_t verdict_at = 0;
    for (std::size_t k = 0; k <= size; k = k < checked ? k + 1 : std::max(k + 1, size)) {
        const auto r = pp::parse(input.first(k));
        if (verdict) {
            require(same(r, *verdict), "a longer prefix changed the verdict");
            continue;
        }
        if (r.state == status::need_more) {
            require(k < pp::max_header_size, "need-more with max_header_size bytes in hand");
            continue;
        }
        verdict = r;
        verdict_at = k;
        if (r.state == status::done) {
            require(r.length == k, "done before or after the header's last byte");
            require(r.length <= pp::max_header_size, "a header over max_header_size");
        }
        require(r.state != status::error || k > 0, "an error on no bytes at all");
    }
    if (!verdict || verdict->state != status::done) return 0;
    require(verdict_at <= size, "a verdict past the input");
    round_trip(pp::version::v1, verdict->value);
    round_trip(pp::version::v2, verdict->value);
    return 0;
}
