#include "admin_request.hpp"

#include <doctest/doctest.h>

#include <ostream>
#include <string>
#include <vector>

using slabd::server::admin_limits;
using slabd::server::request_assembler;

namespace {

/// A request with its views copied out, so results of separate runs can be compared.
struct owned_request {
    std::string method, target, authorization;
    bool keep_alive = false, head = false;
    bool operator==(const owned_request&) const = default;
};

/// Everything a stream of bytes produced: the whole requests in order, then how it ended.
struct transcript {
    std::vector<owned_request> requests;
    int error_status = 0;     // 400 or 431 if the stream ended in an error
    std::size_t pending = 0;  // bytes of an unfinished request at the end
    bool operator==(const transcript&) const = default;
};

std::ostream& operator<<(std::ostream& os, const transcript& t) {
    os << "{";
    for (const auto& r : t.requests)
        os << "[" << r.method << " " << r.target << " auth=" << r.authorization
           << " ka=" << r.keep_alive << " head=" << r.head << "] ";
    return os << "error=" << t.error_status << " pending=" << t.pending << "}";
}

/// Feeds the chunks in order, as the socket loop does: each chunk until it is used up.
transcript run(const std::vector<std::string_view>& chunks) {
    request_assembler assembler;
    transcript t;
    for (std::string_view chunk : chunks) {
        while (true) {
            const auto got = assembler.feed(chunk);
            if (got == request_assembler::outcome::error) {
                t.error_status = assembler.error_status();
                return t;
            }
            if (got == request_assembler::outcome::need_more) {
                REQUIRE(chunk.empty());  // need_more means every offered byte was used
                break;
            }
            const auto& r = assembler.request();
            t.requests.push_back({std::string(r.method), std::string(r.target),
                                  std::string(r.authorization), r.keep_alive, r.head});
        }
    }
    t.pending = assembler.pending_bytes();
    return t;
}

transcript whole(std::string_view bytes) {
    return run({bytes});
}

transcript one_byte_at_a_time(std::string_view bytes) {
    std::vector<std::string_view> chunks;
    for (std::size_t i = 0; i < bytes.size(); ++i) chunks.push_back(bytes.substr(i, 1));
    return run(chunks);
}

/// Whole, split in two at every position, and one byte at a time: the same transcript each time.
transcript every_fragmentation(std::string_view bytes) {
    const transcript expected = whole(bytes);
    for (std::size_t i = 0; i <= bytes.size(); ++i) {
        const transcript split = run({bytes.substr(0, i), bytes.substr(i)});
        if (split != expected) {
            FAIL_CHECK("split at " << i << " gives " << split << ", whole gives " << expected);
            break;
        }
    }
    CHECK(one_byte_at_a_time(bytes) == expected);
    return expected;
}

/// Split in three at every pair of positions (short inputs only: quadratic).
void every_three_way_split(std::string_view bytes) {
    const transcript expected = whole(bytes);
    for (std::size_t i = 0; i <= bytes.size(); ++i)
        for (std::size_t j = i; j <= bytes.size(); ++j) {
            const transcript split =
                run({bytes.substr(0, i), bytes.substr(i, j - i), bytes.substr(j)});
            if (split != expected) {
                FAIL_CHECK("split at " << i << " and " << j << " gives " << split);
                return;
            }
        }
}

owned_request get(std::string target, bool keep_alive = true, std::string auth = {}) {
    return {"GET", std::move(target), std::move(auth), keep_alive, false};
}

/// A GET whose total size is exactly `size` bytes, padded with one header.
std::string request_of_size(std::size_t size) {
    const std::string head = "GET /stats HTTP/1.1\r\nX-Pad: ";
    const std::string tail = "\r\n\r\n";
    REQUIRE(size > head.size() + tail.size());
    return head + std::string(size - head.size() - tail.size(), 'a') + tail;
}

}  // namespace

TEST_CASE("a simple GET is one keep-alive request, however it is split") {
    const auto t = every_fragmentation("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(t == transcript{{get("/healthz")}, 0, 0});
    every_three_way_split("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
}

TEST_CASE("HEAD, HTTP/1.0 and Connection: close are reported") {
    auto t = every_fragmentation("HEAD /stats HTTP/1.1\r\n\r\n");
    CHECK(t == transcript{{{"HEAD", "/stats", "", true, true}}, 0, 0});
    t = every_fragmentation("GET /readyz HTTP/1.0\r\n\r\n");
    CHECK(t == transcript{{get("/readyz", false)}, 0, 0});
    t = every_fragmentation("GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(t == transcript{{get("/readyz", true)}, 0, 0});
    t = every_fragmentation("GET /x?a=1 HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK(t == transcript{{get("/x?a=1", false)}, 0, 0});
}

TEST_CASE(
    "Authorization is found whatever its case and its neighbours, and empty values do not confuse "
    "it") {
    auto t = every_fragmentation(
        "GET /stats HTTP/1.1\r\nHost: x\r\naUtHoRiZaTiOn: Bearer s3cret\r\nX-Y: z\r\n\r\n");
    CHECK(t == transcript{{get("/stats", true, "Bearer s3cret")}, 0, 0});
    t = every_fragmentation("GET /stats HTTP/1.1\r\nX-Empty:\r\nAuthorization: Bearer t\r\n\r\n");
    CHECK(t == transcript{{get("/stats", true, "Bearer t")}, 0, 0});
    t = every_fragmentation(
        "GET /stats HTTP/1.1\r\nAuthorization-X: no\r\nXAuthorization: no\r\n\r\n");
    CHECK(t == transcript{{get("/stats")}, 0, 0});
    every_three_way_split("GET / HTTP/1.1\r\nA:\r\nAuthorization: B\r\n\r\n");
}

TEST_CASE("pipelined requests come out one at a time, in order, each with its own headers") {
    const std::string three =
        "GET /healthz HTTP/1.1\r\nAuthorization: one\r\n\r\n"
        "HEAD /readyz HTTP/1.1\r\n\r\n"
        "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n";
    const auto t = every_fragmentation(three);
    CHECK(t == transcript{{get("/healthz", true, "one"),
                           {"HEAD", "/readyz", "", true, true},
                           get("/stats", false)},
                          0,
                          0});
}

TEST_CASE("a body announced by Content-Length is consumed with its request") {
    const auto t = every_fragmentation(
        "POST /stats HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n");
    CHECK(t == transcript{{{"POST", "/stats", "", true, false}, get("/")}, 0, 0});
}

TEST_CASE("an unfinished request needs more and says how much it holds") {
    const std::string part = "GET /stats HTTP/1.1\r\nHost:";
    const auto t = every_fragmentation(part);
    CHECK(t == transcript{{}, 0, part.size()});
    CHECK(every_fragmentation("") == transcript{});
    // After a whole request, nothing is pending: an idle keep-alive is not a half-sent request.
    CHECK(every_fragmentation("GET / HTTP/1.1\r\n\r\n") == transcript{{get("/")}, 0, 0});
}

TEST_CASE("max_request_bytes is the limit: one byte more is 431, at any fragmentation") {
    CHECK(every_fragmentation(request_of_size(admin_limits::max_request_bytes)) ==
          transcript{{get("/stats")}, 0, 0});
    CHECK(every_fragmentation(request_of_size(admin_limits::max_request_bytes + 1)) ==
          transcript{{}, 431, 0});
    CHECK(every_fragmentation(request_of_size(20000)).error_status == 431);
    // Unfinished but already over the limit: 431 without waiting for the rest.
    CHECK(every_fragmentation("GET /stats HTTP/1.1\r\nX-Big: " + std::string(9000, 'b'))
              .error_status == 431);
    // Past the limit, a malformed byte does not turn the 431 into a 400.
    CHECK(every_fragmentation(request_of_size(admin_limits::max_request_bytes + 1) + "\x01")
              .error_status == 431);
}

TEST_CASE("the limit counts each pipelined request on its own") {
    const std::string full = request_of_size(admin_limits::max_request_bytes);
    const auto t =
        every_fragmentation(full + full + request_of_size(admin_limits::max_request_bytes + 1));
    CHECK(t == transcript{{get("/stats"), get("/stats")}, 431, 0});
}

TEST_CASE("malformed requests are 400, after the good ones before them") {
    CHECK(every_fragmentation(std::string("\x00\x01\x02 not http at all\r\n\r\n", 23)) ==
          transcript{{}, 400, 0});
    CHECK(every_fragmentation("BREW /stats HTTP/1.1\r\n\r\n") == transcript{{}, 400, 0});
    CHECK(every_fragmentation("GET /stats HTTP/1.1\r\nContent-Length: x\r\n\r\n").error_status ==
          400);
    CHECK(every_fragmentation("GET /stats HTTP/1.1\r\nBad Header\r\n\r\n").error_status == 400);
    CHECK(every_fragmentation("GET / HTTP/1.1\r\n\r\nGARBAGE\r\n\r\n") ==
          transcript{{get("/")}, 400, 0});
    every_three_way_split("GET / HTTP/1.1\r\n\r\nG\x7f");
}

TEST_CASE("after an error the assembler stays in error") {
    request_assembler a;
    std::string_view bad = "BREW / HTTP/1.1\r\n\r\n";
    CHECK(a.feed(bad) == request_assembler::outcome::error);
    std::string_view good = "GET / HTTP/1.1\r\n\r\n";
    CHECK(a.feed(good) == request_assembler::outcome::error);
    CHECK(a.error_status() == 400);
}

TEST_CASE("an empty chunk is not an end of stream") {
    CHECK(run({"GET / HT", "", "TP/1.1\r\n", "", "\r\n"}) == transcript{{get("/")}, 0, 0});
}
