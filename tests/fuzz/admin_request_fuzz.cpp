// libFuzzer target for the admin request assembly: the input is a byte stream as a client would
// send it, and its first two bytes choose where the stream is cut into chunks. Whole, cut as the
// input says, and one byte at a time must give the same requests and the same ending, and every
// outcome must keep the assembler's promises (need-more uses every byte, errors are 400 or 431 and
// final, no request is over the limit).
#include "admin_request.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using slabd::server::admin_limits;
using slabd::server::request_assembler;

void require(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "admin_request invariant broken: %s\n", what);
    std::abort();
}

struct owned_request {
    std::string method, target, authorization;
    bool keep_alive = false, head = false;
    bool operator==(const owned_request&) const = default;
};

struct transcript {
    std::vector<owned_request> requests;
    int error_status = 0;
    std::size_t pending = 0;
    bool operator==(const transcript&) const = default;
};

transcript run(const std::vector<std::string_view>& chunks) {
    request_assembler assembler;
    transcript t;
    std::size_t before = 0;  // bytes taken by earlier requests of the stream
    std::size_t offered = 0;
    for (std::string_view chunk : chunks) {
        offered += chunk.size();
        for (;;) {
            const std::size_t left = chunk.size();
            const auto got = assembler.feed(chunk);
            require(chunk.size() <= left, "feed grew its input");
            if (got == request_assembler::outcome::error) {
                t.error_status = assembler.error_status();
                require(t.error_status == 400 || t.error_status == 431,
                        "an error status other than 400 or 431");
                std::string_view more = "GET / HTTP/1.1\r\n\r\n";
                require(assembler.feed(more) == request_assembler::outcome::error,
                        "an error that did not stay");
                return t;
            }
            if (got == request_assembler::outcome::need_more) {
                require(chunk.empty(), "need-more with bytes left over");
                require(assembler.pending_bytes() <= admin_limits::max_request_bytes,
                        "pending past the limit");
                break;
            }
            const std::size_t used_so_far = offered - chunk.size();
            require(used_so_far - before <= admin_limits::max_request_bytes,
                    "a request over the limit");
            before = used_so_far;
            const auto& r = assembler.request();
            require(!r.method.empty(), "a request without a method");
            require(r.head == (r.method == "HEAD"), "head disagrees with the method");
            require(assembler.pending_bytes() == 0, "bytes pending right after a whole request");
            t.requests.push_back({std::string(r.method), std::string(r.target),
                                  std::string(r.authorization), r.keep_alive, r.head});
        }
    }
    t.pending = assembler.pending_bytes();
    return t;
}

/// Chunk lengths from a small PRNG seeded by the input: mostly short, sometimes long, sometimes 0.
std::vector<std::string_view> cut(std::string_view stream, std::uint16_t seed) {
    std::vector<std::string_view> chunks;
    std::uint32_t x = seed * 2654435761u + 1u;
    while (!stream.empty()) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        const std::size_t n = (x & 7) == 0 ? (x >> 8) % 9000 : (x >> 8) % 17;
        chunks.push_back(stream.substr(0, n));
        stream.remove_prefix(std::min(n, stream.size()));
    }
    return chunks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const auto seed = static_cast<std::uint16_t>(data[0] | (data[1] << 8));
    const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

    const transcript whole = run({stream});
    require(run(cut(stream, seed)) == whole, "cut as the input says differs from whole");
    std::vector<std::string_view> bytes;
    for (std::size_t i = 0; i < stream.size(); ++i) bytes.push_back(stream.substr(i, 1));
    require(run(bytes) == whole, "one byte at a time differs from whole");
    return 0;
}
