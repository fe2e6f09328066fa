// What the run counted: messages, bytes, latencies, mismatches and how each connection ended.
// Each worker thread owns one tally and nothing else writes it; the report merges them.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "histogram.hpp"

namespace slabd::load {

/// How a connection ended. Refused cleanly is the server's promise when it is full (EOF, or a
/// busy line and EOF, before the first echo); closed_early is an EOF after echoes had come back.
enum class outcome : std::uint8_t {
    ok,
    refused_cleanly,
    reset,
    timeout,
    connect_error,
    closed_early,
    other_error
};
inline constexpr std::size_t outcome_count = 7;
inline constexpr std::array<std::string_view, outcome_count> outcome_names{
    "ok", "refused_cleanly", "reset", "timeout", "connect_error", "closed_early", "other_error"};

struct tally {
    histogram latency;                 // ns, messages in the measured window
    std::uint64_t msgs = 0;            // echoes completed in the window (churn: one per connection)
    std::uint64_t msgs_all = 0;        // warm-up included, for the live rate
    std::uint64_t cycles = 0;          // churn: connections completed ok in the window
    std::uint64_t bytes_sent = 0;      // in the window
    std::uint64_t bytes_received = 0;  // in the window
    std::uint64_t mismatches = 0;      // echoed messages whose bytes differ from what was sent
    std::uint64_t busy_lines = 0;      // refusals that sent bytes before their EOF
    std::int64_t last_completion_ns = 0;
    std::array<std::uint64_t, outcome_count> outcomes{};

    /// One more connection that ended with `o`.
    void count(outcome o) noexcept { ++outcomes[static_cast<std::size_t>(o)]; }
    [[nodiscard]] std::uint64_t outcomes_of(outcome o) const noexcept {
        return outcomes[static_cast<std::size_t>(o)];
    }
    /// Failed connections: everything but ok and refused_cleanly.
    [[nodiscard]] std::uint64_t errors() const noexcept;
    /// Adds another thread's tally.
    void merge(const tally& other) noexcept;
};

/// Connections up right now, across threads: those the server has echoed on (bulk without a
/// required echo: those connected). Changed once per connection, never per message.
struct live_gauges {
    std::atomic<std::int64_t> up{0};
    std::atomic<std::int64_t> peak{0};

    void connected() noexcept {
        const std::int64_t now = up.fetch_add(1, std::memory_order_relaxed) + 1;
        std::int64_t seen = peak.load(std::memory_order_relaxed);
        while (now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
        }
    }
    void disconnected() noexcept { up.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace slabd::load
