#include "proxy_protocol.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <string>
#include <string_view>

namespace pp = slabd::server::proxy_protocol;
using pp::parse_error;
using status = pp::parse_result::status;
using namespace std::string_literals;

namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

pp::parse_result parse(std::string_view s) {
    return pp::parse(bytes_of(s));
}

/// "1.2.3.4:80" or "[2001:db8::1]:443", as the address was parsed.
std::string text_of(const sockaddr_storage& ss) {
    char text[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        sockaddr_in a;
        std::memcpy(&a, &ss, sizeof a);
        inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
        return std::string(text) + ":" + std::to_string(ntohs(a.sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        sockaddr_in6 a;
        std::memcpy(&a, &ss, sizeof a);
        inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(a.sin6_port));
    }
    return "family " + std::to_string(ss.ss_family);
}

/// The header alone parses, every prefix of it needs more, and with bytes after it the length
/// stays the header's: parse() sees every split a peeking caller can see.
pp::header parses_whole(const std::string& header,
                        const std::string& after = "GET / HTTP/1.1\r\n\r\n") {
    const std::string input = header + after;
    for (std::size_t k = 0; k < header.size(); ++k) {
        const auto r = parse(std::string_view(input).substr(0, k));
        if (r.state != status::need_more) {
            FAIL_CHECK("decided after " << k << " of " << header.size() << " bytes");
            break;
        }
    }
    for (std::size_t k = header.size(); k <= input.size(); ++k) {
        const auto r = parse(std::string_view(input).substr(0, k));
        REQUIRE(r.state == status::done);
        CHECK(r.length == header.size());
    }
    return parse(input).value;
}

/// Rejected as `error` once `at` bytes have come, and not a byte sooner: every shorter prefix
/// needs more, every longer one gives the same error.
void rejected(const std::string& input, std::size_t at, parse_error error) {
    REQUIRE(at <= input.size());
    for (std::size_t k = 0; k <= input.size(); ++k) {
        const auto r = parse(std::string_view(input).substr(0, k));
        if (k < at) {
            CHECK_MESSAGE(r.state == status::need_more, "prefix " << k << " of " << input.size());
        } else {
            REQUIRE_MESSAGE(r.state == status::error, "prefix " << k << " of " << input.size());
            CHECK_MESSAGE(r.error == error, "prefix " << k << ": " << pp::to_string(r.error));
        }
    }
}

/// `marked` without its '^' is rejected as `error` at the byte after the mark: the mark stands
/// where the input stops fitting. (No input here holds a '^' of its own.)
void rejected_at_mark(std::string marked, parse_error error) {
    const std::size_t mark = marked.find('^');
    REQUIRE(mark != std::string::npos);
    marked.erase(mark, 1);
    CAPTURE(marked);
    rejected(marked, mark + 1, error);
}

void each_rejected(parse_error error, std::initializer_list<std::string> marked) {
    for (const auto& m : marked) rejected_at_mark(m, error);
}

const std::string v2_signature("\r\n\r\n\0\r\nQUIT\n", 12);

/// A v2 header: signature, version/command, family, the block's length and the block.
std::string v2(unsigned char ver_cmd, unsigned char family, const std::string& block) {
    return v2_signature + static_cast<char>(ver_cmd) + static_cast<char>(family) +
           static_cast<char>(block.size() >> 8) + static_cast<char>(block.size() & 0xff) + block;
}

/// A v2 header with a length field that need not match the block.
std::string v2_len(unsigned char ver_cmd, unsigned char family, std::size_t length) {
    return v2_signature + static_cast<char>(ver_cmd) + static_cast<char>(family) +
           static_cast<char>(length >> 8) + static_cast<char>(length & 0xff);
}

std::string hex(std::string_view h) {
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
        out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
    return out;
}

sockaddr_storage endpoint(const char* address, std::uint16_t port) {
    sockaddr_storage ss{};
    if (std::strchr(address, ':') != nullptr) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        REQUIRE(inet_pton(AF_INET6, address, &a.sin6_addr) == 1);
        std::memcpy(&ss, &a, sizeof a);
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        REQUIRE(inet_pton(AF_INET, address, &a.sin_addr) == 1);
        std::memcpy(&ss, &a, sizeof a);
    }
    return ss;
}

const sockaddr* as_sockaddr(const sockaddr_storage& ss) {
    return reinterpret_cast<const sockaddr*>(&ss);
}

std::string built(pp::version v, const sockaddr* source, const sockaddr* destination) {
    std::array<std::byte, pp::max_built_size> out{};
    const std::size_t n = pp::build(v, source, destination, out);
    REQUIRE(n > 0);
    REQUIRE(n <= out.size());
    return {reinterpret_cast<const char*>(out.data()), n};
}

std::string built(pp::version v, const sockaddr_storage& source,
                  const sockaddr_storage& destination) {
    return built(v, as_sockaddr(source), as_sockaddr(destination));
}

}  // namespace

TEST_CASE("error names come from the one list") {
    CHECK(pp::parse_errors == 4);
    CHECK(pp::to_string(parse_error::not_proxy) == "not_proxy");
    CHECK(pp::to_string(parse_error::malformed) == "malformed");
    CHECK(pp::to_string(parse_error::oversized) == "oversized");
    CHECK(pp::to_string(parse_error::unsupported) == "unsupported");
}

TEST_CASE("nothing received needs more") {
    CHECK(pp::parse({}).state == status::need_more);
}

TEST_CASE("v1 TCP4: the spec's example") {
    const auto h = parses_whole("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
                                "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
    CHECK_FALSE(h.local);
    CHECK(text_of(h.source) == "192.168.0.1:56324");
    CHECK(text_of(h.destination) == "192.168.0.11:443");
}

TEST_CASE("v1 TCP4: the spec's longest line and the smallest values") {
    auto h = parses_whole("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
    CHECK(text_of(h.source) == "255.255.255.255:65535");
    h = parses_whole("PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n", "");
    CHECK(text_of(h.source) == "0.0.0.0:0");
    CHECK(text_of(h.destination) == "10.0.0.1:1");
}

TEST_CASE("v1 TCP6: compressed, upper case, full width and IPv4-mapped addresses") {
    auto h = parses_whole("PROXY TCP6 2001:db8::1 2001:DB8::2 51234 443\r\n");
    CHECK_FALSE(h.local);
    CHECK(text_of(h.source) == "[2001:db8::1]:51234");
    CHECK(text_of(h.destination) == "[2001:db8::2]:443");
    const std::string all_f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const std::string longest = "PROXY TCP6 " + all_f + " " + all_f + " 65535 65535\r\n";
    CHECK(longest.size() == 104);  // the spec's longest TCP6 line
    h = parses_whole(longest);
    CHECK(text_of(h.source) == "[" + all_f + "]:65535");
    h = parses_whole("PROXY TCP6 ::ffff:192.0.2.1 ::1 80 8080\r\n");
    CHECK(text_of(h.source) == "[::ffff:192.0.2.1]:80");
    CHECK(text_of(h.destination) == "[::1]:8080");
}

TEST_CASE("v1 UNKNOWN: the short form, and anything up to CRLF, is local") {
    CHECK(parses_whole("PROXY UNKNOWN\r\n").local);
    CHECK(parses_whole("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n").local);
    CHECK(parses_whole("PROXY UNKNOWN whatever \x01\x7f\r\n").local);
    const std::string all_f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const std::string worst = "PROXY UNKNOWN " + all_f + " " + all_f + " 65535 65535\r\n";
    CHECK(worst.size() == 107);  // the spec's worst case: the longest line a receiver must take
    CHECK(parses_whole(worst).local);
}

TEST_CASE("v1: not PROXY at all is not_proxy at the first byte that differs") {
    each_rejected(parse_error::not_proxy, {"^GET / HTTP/1.1\r\n\r\n", "^\x16\x03\x01\x02" /* TLS */,
                                           "^\0PROXY"s, "PROX^Z TCP4", "P^OST / HTTP/1.1"});
    // "PROXY" says v1 (spec 2.2); what follows it is right or malformed.
    rejected_at_mark("PROXY^TCP4", parse_error::malformed);
}

TEST_CASE("v1: the protocol word") {
    each_rejected(parse_error::malformed,
                  {"PROXY TCP^5 1.2.3.4", "PROXY ^tcp4 1.2.3.4", "PROXY TCP4^\r\n",
                   "PROXY U^DP4 1.2.3.4", "PROXY UNKNOWN^X\r\n", "PROXY UNKNOWN^\n",
                   "PROXY UNKNOWN 1.2.3.4^\n", "PROXY UNKNOWN\r^X", "PROXY ^\r\n"});
}

TEST_CASE("v1: exactly one space between fields") {
    each_rejected(parse_error::malformed,
                  {"PROXY ^ TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 ^ 1.2.3.4 5.6.7.8 1 2\r\n",
                   "PROXY TCP4 1.2.3.4 ^ 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 ^ 1 2\r\n",
                   "PROXY TCP4 1.2.3.4 5.6.7.8 1 ^ 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2^ \r\n",
                   "PROXY TCP4^\t1.2.3.4", "PROXY TCP4 1.2.3.4 5.6.7.8 1^\r\n"});
}

TEST_CASE("v1: ports are 0..65535 in plain decimal") {
    each_rejected(
        parse_error::malformed,
        {"PROXY TCP4 1.2.3.4 5.6.7.8 80 6553^6\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 80 9999^9\r\n",
         "PROXY TCP4 1.2.3.4 5.6.7.8 80 12345^6\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 80 ^+443\r\n",
         "PROXY TCP4 1.2.3.4 5.6.7.8 80 ^-1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 80 0^443\r\n",
         "PROXY TCP4 1.2.3.4 5.6.7.8 80 44^a\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 0^0 1\r\n"});
    CHECK(text_of(parses_whole("PROXY TCP4 1.2.3.4 5.6.7.8 80 65535\r\n").destination) ==
          "5.6.7.8:65535");
}

TEST_CASE("v1: addresses are checked as they arrive, and whole with inet_pton") {
    each_rejected(parse_error::malformed,
                  {"PROXY TCP4 25^6.0.0.1 5.6.7.8 1 2\r\n", "PROXY TCP4 0^1.2.3.4 5.6.7.8 1 2\r\n",
                   "PROXY TCP4 1.^.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4^.5 5.6.7.8 1 2\r\n",
                   "PROXY TCP4 1.2.3^ 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.^ 5.6.7.8 1 2\r\n",
                   "PROXY TCP4 ^::1 ::1 1 2\r\n", "PROXY TCP6 1.2.3.4^ 5.6.7.8 1 2\r\n",
                   "PROXY TCP6 2001:db8:::1^ ::1 1 2\r\n", "PROXY TCP6 fe80::1^%eth0 ::1 1 2\r\n",
                   "PROXY TCP6 2001:db8::^g ::1 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8^\r\n"});
}

TEST_CASE("v1: a line ends with CRLF, not a lone CR or LF") {
    each_rejected(parse_error::malformed,
                  {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2^\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r^X",
                   "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r^\r\n"});
}

TEST_CASE("v1: no CRLF within 107 bytes is oversized, at the 107th byte") {
    const std::string long_unknown = "PROXY UNKNOWN " + std::string(93, 'a');
    REQUIRE(long_unknown.size() == 107);
    rejected(long_unknown + "\r\n", 107, parse_error::oversized);
    rejected(long_unknown.substr(0, 106) + "\r\n", 107,
             parse_error::oversized);                                 // CR at 107, LF past it
    CHECK(parses_whole(long_unknown.substr(0, 105) + "\r\n").local);  // 107 with CRLF is fine
    // IPv6 text can be longer than the spec's 39 characters and still valid; the line may not.
    const std::string a = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
    REQUIRE(a.size() == 45);
    rejected("PROXY TCP6 " + a + " " + a + " 65535 65535\r\n", 107, parse_error::oversized);
}

TEST_CASE("v2 TCP4: HAProxy's own header, with the request after it") {
    const std::string header =
        hex("0d0a0d0a000d0a515549540a"
            "2111000c"
            "ac130001ac130003a6520050");
    const auto h = parses_whole(header);
    CHECK_FALSE(h.local);
    CHECK(text_of(h.source) == "172.19.0.1:42578");
    CHECK(text_of(h.destination) == "172.19.0.3:80");
}

TEST_CASE("v2 TCP6") {
    const std::string block =
        hex("20010db8000000000000000000000001"  // source
            "20010db8000000000000000000000002"  // destination
            "c822"
            "01bb");
    const auto h = parses_whole(v2(0x21, 0x21, block));
    CHECK_FALSE(h.local);
    CHECK(text_of(h.source) == "[2001:db8::1]:51234");
    CHECK(text_of(h.destination) == "[2001:db8::2]:443");
}

TEST_CASE("v2 TLVs after the addresses are part of the header, skipped") {
    const std::string addresses =
        hex("c0000201c0000202"
            "04d2"
            "0050");
    const std::string tlvs =
        hex("040003000000") + "\x02" + hex("000b") + "example.com" + hex("0500021234");
    const auto h = parses_whole(v2(0x21, 0x11, addresses + tlvs));
    CHECK(text_of(h.source) == "192.0.2.1:1234");
    CHECK(text_of(h.destination) == "192.0.2.2:80");
    // The longest accepted: 216 bytes of block.
    const std::string big = addresses + std::string(216 - addresses.size(), '\x04');
    CHECK(v2(0x21, 0x11, big).size() == pp::max_header_size);
    CHECK(text_of(parses_whole(v2(0x21, 0x11, big)).source) == "192.0.2.1:1234");
}

TEST_CASE("v2 LOCAL: no addresses, and its length is skipped whatever the family says") {
    CHECK(parses_whole(v2(0x20, 0x00, "")).local);
    CHECK(parses_whole(v2(0x20, 0x11, hex("c0000201c000020204d20050"))).local);
    CHECK(parses_whole(v2(0x20, 0xff, "abc")).local);  // LOCAL ignores the family byte (spec 2.2)
    CHECK(parses_whole(v2(0x20, 0x12, std::string(216, 'x'))).local);
}

TEST_CASE("v2 PROXY over AF_UNSPEC or AF_UNIX is local: nothing a TCP peer can use") {
    CHECK(parses_whole(v2(0x21, 0x00, "")).local);
    CHECK(parses_whole(v2(0x21, 0x00, "ignored")).local);
    std::string unix_block(216, '\0');
    unix_block.replace(0, 9, "/run/a.so");
    CHECK(parses_whole(v2(0x21, 0x31, unix_block)).local);
}

TEST_CASE("v2: a wrong signature is not_proxy at the first byte that differs") {
    each_rejected(parse_error::not_proxy, {"\r\n\r\n\0\r\nQUI^X\n"s, "\r\n^GET", "\r\n\r\n^\r\n"});
}

TEST_CASE("v2: version and command are judged at the 13th byte") {
    rejected(v2_len(0x11, 0x11, 12), 13, parse_error::unsupported);  // version 1
    rejected(v2_len(0x31, 0x11, 12), 13, parse_error::unsupported);  // version 3
    rejected(v2_len(0x01, 0x11, 12), 13, parse_error::unsupported);
    rejected(v2_len(0x22, 0x11, 12), 13, parse_error::unsupported);  // command 2
    rejected(v2_len(0x2f, 0x11, 12), 13, parse_error::unsupported);
}

TEST_CASE("v2: the family is judged at the 14th byte") {
    rejected(v2_len(0x21, 0x12, 12), 14, parse_error::unsupported);   // UDP over IPv4
    rejected(v2_len(0x21, 0x22, 36), 14, parse_error::unsupported);   // UDP over IPv6
    rejected(v2_len(0x21, 0x32, 216), 14, parse_error::unsupported);  // UNIX datagram
    rejected(v2_len(0x21, 0x41, 12), 14, parse_error::malformed);     // no family 4
    rejected(v2_len(0x21, 0x13, 12), 14, parse_error::malformed);     // no transport 3
    rejected(v2_len(0x21, 0x10, 12), 14, parse_error::malformed);     // IPv4 with no transport
    rejected(v2_len(0x21, 0x01, 0), 14, parse_error::malformed);      // a transport with no family
}

TEST_CASE("v2: the length is judged at the 16th byte") {
    rejected(v2_len(0x21, 0x11, 300), 16, parse_error::oversized);
    rejected(v2_len(0x21, 0x11, 217), 16, parse_error::oversized);
    rejected(v2_len(0x20, 0x00, 0xffff), 16, parse_error::oversized);
    rejected(v2_len(0x21, 0x11, 11) + std::string(11, 'x'), 16, parse_error::malformed);
    rejected(v2_len(0x21, 0x21, 35) + std::string(35, 'x'), 16, parse_error::malformed);
    rejected(v2_len(0x21, 0x21, 12) + std::string(12, 'x'), 16, parse_error::malformed);
    rejected(v2_len(0x21, 0x31, 215) + std::string(215, 'x'), 16, parse_error::malformed);
}

TEST_CASE("build v1: TCP4, TCP6, and UNKNOWN without usable addresses") {
    const auto v4a = endpoint("192.0.2.1", 56324), v4b = endpoint("192.0.2.11", 443);
    CHECK(built(pp::version::v1, v4a, v4b) == "PROXY TCP4 192.0.2.1 192.0.2.11 56324 443\r\n");
    const auto v6a = endpoint("2001:db8::1", 1), v6b = endpoint("2001:db8::2", 65535);
    CHECK(built(pp::version::v1, v6a, v6b) == "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n");
    CHECK(built(pp::version::v1, nullptr, as_sockaddr(v4b)) == "PROXY UNKNOWN\r\n");
    CHECK(built(pp::version::v1, as_sockaddr(v4a), nullptr) == "PROXY UNKNOWN\r\n");
    sockaddr_storage unix_socket{};
    unix_socket.ss_family = AF_UNIX;
    CHECK(built(pp::version::v1, unix_socket, v4b) == "PROXY UNKNOWN\r\n");
    const auto all_f = endpoint("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    CHECK(built(pp::version::v1, all_f, all_f).size() == 104);
}

TEST_CASE("build: IPv4-mapped on both sides is TCP4, mixed families are TCP6 with IPv4 mapped") {
    const auto mapped_a = endpoint("::ffff:192.0.2.1", 1000),
               mapped_b = endpoint("::ffff:192.0.2.2", 80);
    const auto v4 = endpoint("192.0.2.3", 81), v6 = endpoint("2001:db8::9", 82);
    CHECK(built(pp::version::v1, mapped_a, mapped_b) ==
          "PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n");
    CHECK(built(pp::version::v1, mapped_a, v4) == "PROXY TCP4 192.0.2.1 192.0.2.3 1000 81\r\n");
    CHECK(built(pp::version::v1, v4, v6) == "PROXY TCP6 ::ffff:192.0.2.3 2001:db8::9 81 82\r\n");
    CHECK(built(pp::version::v1, v6, mapped_b) ==
          "PROXY TCP6 2001:db8::9 ::ffff:192.0.2.2 82 80\r\n");
    CHECK(built(pp::version::v2, mapped_a, mapped_b) == v2(0x21, 0x11,
                                                           hex("c0000201c0000202"
                                                               "03e8"
                                                               "0050")));
    CHECK(built(pp::version::v2, v4, v6) ==
          v2(0x21, 0x21,
             hex("00000000000000000000ffffc0000203"  // 192.0.2.3, mapped
                 "20010db8000000000000000000000009"
                 "0051"
                 "0052")));
}

TEST_CASE("build v2: PROXY TCP4/TCP6, LOCAL UNSPEC without usable addresses") {
    CHECK(built(pp::version::v2, endpoint("172.19.0.1", 42578), endpoint("172.19.0.3", 80)) ==
          hex("0d0a0d0a000d0a515549540a"
              "2111000c"
              "ac130001ac130003a6520050"));
    CHECK(built(pp::version::v2, nullptr, nullptr) == v2(0x20, 0x00, ""));
    sockaddr_storage unspec{};
    CHECK(built(pp::version::v2, unspec, endpoint("::1", 1)) == v2(0x20, 0x00, ""));
    CHECK(built(pp::version::v2, endpoint("::1", 1), endpoint("::2", 2)).size() == 52);
}

TEST_CASE("round trips: what build writes, parse reads back with the same addresses") {
    struct example {
        const char *source, *destination;
        std::uint16_t source_port, destination_port;
        const char *parsed_source, *parsed_destination;
    };
    const example examples[] = {
        {"192.0.2.1", "198.51.100.7", 1, 65535, "192.0.2.1:1", "198.51.100.7:65535"},
        {"0.0.0.0", "255.255.255.255", 0, 0, "0.0.0.0:0", "255.255.255.255:0"},
        {"2001:db8::1", "2001:db8:0:0:1::2", 40000, 443, "[2001:db8::1]:40000",
         "[2001:db8::1:0:0:2]:443"},
        {"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 9, 10, "[::]:9",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:10"},
        {"::ffff:10.0.0.1", "::ffff:10.0.0.2", 5, 6, "10.0.0.1:5", "10.0.0.2:6"},
        {"10.0.0.1", "::ffff:10.0.0.2", 5, 6, "10.0.0.1:5", "10.0.0.2:6"},
        {"10.0.0.1", "2001:db8::2", 5, 6, "[::ffff:10.0.0.1]:5", "[2001:db8::2]:6"},
        {"fe80::1", "10.0.0.2", 7, 8, "[fe80::1]:7", "[::ffff:10.0.0.2]:8"},
    };
    for (const auto& e : examples) {
        for (const auto v : {pp::version::v1, pp::version::v2}) {
            CAPTURE(e.source);
            CAPTURE(e.destination);
            CAPTURE(static_cast<int>(v));
            const std::string header = built(v, endpoint(e.source, e.source_port),
                                             endpoint(e.destination, e.destination_port));
            const auto h = parses_whole(header);
            CHECK_FALSE(h.local);
            CHECK(text_of(h.source) == e.parsed_source);
            CHECK(text_of(h.destination) == e.parsed_destination);
        }
    }
    for (const auto v : {pp::version::v1, pp::version::v2}) {
        CHECK(parses_whole(built(v, nullptr, nullptr)).local);
        sockaddr_storage unix_socket{};
        unix_socket.ss_family = AF_UNIX;
        CHECK(parses_whole(built(v, unix_socket, unix_socket)).local);
    }
}
