#include "pattern.hpp"

#include <algorithm>
#include <cstring>

namespace slabd::load {
namespace {

// Word w of a stream is key + w * step: an odd step never repeats a word within a message, and
// its low byte changes from each word to the next, so even a one-byte shift shows.
constexpr std::uint64_t step = 0x9E3779B97F4A7C15ULL;

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/// Walks the stream of `key` from `offset` over `n` bytes as (word, first byte in it, byte count)
/// pieces; `visit` returns false to stop early.
template <typename Visit>
bool walk(std::uint64_t key, std::size_t offset, std::size_t n, Visit&& visit) noexcept {
    std::uint64_t word = key + (offset / 8) * step;
    std::size_t skip = offset % 8;
    std::size_t done = 0;
    while (done < n) {
        const std::size_t take = std::min<std::size_t>(8 - skip, n - done);
        if (!visit(word, skip, take, done)) return false;
        done += take;
        skip = 0;
        word += step;
    }
    return true;
}

}  // namespace

std::uint64_t message_key(std::uint64_t conn, std::uint64_t seq) noexcept {
    return mix(mix(conn) + seq);
}

void fill_pattern(std::uint64_t key, std::size_t offset, std::span<std::byte> out) noexcept {
    walk(key, offset, out.size(),
         [&](std::uint64_t word, std::size_t skip, std::size_t take, std::size_t at) {
             std::byte bytes[8];
             std::memcpy(bytes, &word, 8);
             std::memcpy(out.data() + at, bytes + skip, take);
             return true;
         });
}

bool matches_pattern(std::uint64_t key, std::size_t offset,
                     std::span<const std::byte> in) noexcept {
    return walk(key, offset, in.size(),
                [&](std::uint64_t word, std::size_t skip, std::size_t take, std::size_t at) {
                    std::byte bytes[8];
                    std::memcpy(bytes, &word, 8);
                    return std::memcmp(in.data() + at, bytes + skip, take) == 0;
                });
}

}  // namespace slabd::load
