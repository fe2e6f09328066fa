#include "tally.hpp"

#include <algorithm>

namespace slabd::load {

std::uint64_t tally::errors() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < outcome_count; ++i)
        if (i != static_cast<std::size_t>(outcome::ok) &&
            i != static_cast<std::size_t>(outcome::refused_cleanly))
            n += outcomes[i];
    return n;
}

void tally::merge(const tally& other) noexcept {
    latency.merge(other.latency);
    msgs += other.msgs;
    msgs_all += other.msgs_all;
    cycles += other.cycles;
    bytes_sent += other.bytes_sent;
    bytes_received += other.bytes_received;
    mismatches += other.mismatches;
    busy_lines += other.busy_lines;
    last_completion_ns = std::max(last_completion_ns, other.last_completion_ns);
    for (std::size_t i = 0; i < outcome_count; ++i) outcomes[i] += other.outcomes[i];
}

}  // namespace slabd::load
