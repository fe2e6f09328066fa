#include "pattern.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

using namespace slabd::load;

namespace {

std::vector<std::byte> message(std::uint64_t key, std::size_t size) {
    std::vector<std::byte> bytes(size);
    fill_pattern(key, 0, bytes);
    return bytes;
}

}  // namespace

TEST_CASE("a message matches itself in any fragmentation, one byte at a time included") {
    const std::uint64_t key = message_key(3, 17);
    const auto whole = message(key, 203);  // not a multiple of the 8-byte word
    CHECK(matches_pattern(key, 0, whole));
    for (std::size_t split = 0; split <= whole.size(); ++split) {
        const std::span<const std::byte> all(whole);
        REQUIRE(matches_pattern(key, 0, all.first(split)));
        REQUIRE(matches_pattern(key, split, all.subspan(split)));
    }
    for (std::size_t i = 0; i < whole.size(); ++i)
        REQUIRE(matches_pattern(key, i, std::span(whole).subspan(i, 1)));
}

TEST_CASE("filling in fragments gives the same bytes as filling at once") {
    const std::uint64_t key = message_key(1, 2);
    const auto whole = message(key, 100);
    for (std::size_t split = 0; split <= 100; ++split) {
        std::vector<std::byte> pieces(100);
        fill_pattern(key, 0, std::span(pieces).first(split));
        fill_pattern(key, split, std::span(pieces).subspan(split));
        REQUIRE(pieces == whole);
    }
}

TEST_CASE("one changed byte anywhere is a mismatch") {
    const std::uint64_t key = message_key(9, 0);
    auto bytes = message(key, 64);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        bytes[i] ^= std::byte{0x01};
        REQUIRE_FALSE(matches_pattern(key, 0, bytes));
        bytes[i] ^= std::byte{0x01};
    }
    CHECK(matches_pattern(key, 0, bytes));
}

TEST_CASE("another message, another connection, or a shifted stream does not match") {
    const auto bytes = message(message_key(5, 10), 64);
    CHECK_FALSE(matches_pattern(message_key(5, 11), 0, bytes));
    CHECK_FALSE(matches_pattern(message_key(6, 10), 0, bytes));
    CHECK(matches_pattern(message_key(5, 10), 1, std::span(bytes).subspan(1, 32)));
    CHECK_FALSE(matches_pattern(message_key(5, 10), 0, std::span(bytes).subspan(1, 32)));
    CHECK_FALSE(matches_pattern(message_key(5, 10), 2, std::span(bytes).subspan(1, 32)));
    // A busy line is not an echo.
    const char busy[] = "server busy\n";
    std::vector<std::byte> line(sizeof busy - 1);
    std::memcpy(line.data(), busy, line.size());
    CHECK_FALSE(matches_pattern(message_key(0, 0), 0, line));
}

TEST_CASE("keys of neighbouring connections and messages are all distinct") {
    std::vector<std::uint64_t> keys;
    for (std::uint64_t conn = 0; conn < 64; ++conn)
        for (std::uint64_t seq = 0; seq < 64; ++seq) keys.push_back(message_key(conn, seq));
    std::sort(keys.begin(), keys.end());
    CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());
}
