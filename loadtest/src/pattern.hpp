// The bytes every mode sends: each message is its own stream, keyed by connection and sequence
// number, so an echo that is lost, duplicated, reordered, shifted or crossed with another
// connection's cannot match. Checking works on any fragment, as TCP delivers them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace slabd::load {

/// The key of message `seq` on connection `conn`; neighbouring inputs give unrelated keys.
[[nodiscard]] std::uint64_t message_key(std::uint64_t conn, std::uint64_t seq) noexcept;
/// Writes bytes [offset, offset + out.size()) of the stream of `key` to `out`.
void fill_pattern(std::uint64_t key, std::size_t offset, std::span<std::byte> out) noexcept;
/// Whether `in` is bytes [offset, offset + in.size()) of the stream of `key`.
[[nodiscard]] bool matches_pattern(std::uint64_t key, std::size_t offset,
                                   std::span<const std::byte> in) noexcept;

}  // namespace slabd::load
