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

/// Byte `b` (0-7) of a word as the stream lays it out: the word's native byte order, as memcpy
/// copies it.
std::byte byte_of(std::uint64_t word, std::size_t b) noexcept {
    std::byte bytes[8];
    std::memcpy(bytes, &word, 8);
    return bytes[b];
}

}  // namespace

std::uint64_t message_key(std::uint64_t conn, std::uint64_t seq) noexcept {
    return mix(mix(conn) + seq);
}

// Both run a whole word at a time where the span covers one (every word of a message but its
// ends): per byte and through memcmp, the check cost more than the rest of a 64-byte exchange.
void fill_pattern(std::uint64_t key, std::size_t offset, std::span<std::byte> out) noexcept {
    std::uint64_t word = key + (offset / 8) * step;
    std::size_t at = 0;
    for (std::size_t b = offset % 8; b != 0 && b < 8 && at < out.size(); ++b) {
        out[at++] = byte_of(word, b);
        if (b == 7) word += step;
    }
    for (; at + 8 <= out.size(); at += 8, word += step) std::memcpy(out.data() + at, &word, 8);
    for (std::size_t b = 0; at < out.size(); ++b) out[at++] = byte_of(word, b);
}

bool matches_pattern(std::uint64_t key, std::size_t offset,
                     std::span<const std::byte> in) noexcept {
    std::uint64_t word = key + (offset / 8) * step;
    std::size_t at = 0;
    for (std::size_t b = offset % 8; b != 0 && b < 8 && at < in.size(); ++b) {
        if (in[at++] != byte_of(word, b)) return false;
        if (b == 7) word += step;
    }
    std::uint64_t differ = 0;
    for (; at + 8 <= in.size(); at += 8, word += step) {
        std::uint64_t got = 0;
        std::memcpy(&got, in.data() + at, 8);
        differ |= got ^ word;
    }
    for (std::size_t b = 0; at < in.size(); ++b)
        if (in[at++] != byte_of(word, b)) return false;
    return differ == 0;
}

}  // namespace slabd::load
