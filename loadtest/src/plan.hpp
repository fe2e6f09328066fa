// The run worked out from the options: the target, when each connection starts, the measured
// window, each connection's share of a --messages count, and rate mode's send schedule.
// Pure arithmetic on a steady-clock nanosecond timeline, so it is tested without sockets.
#pragma once

#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <vector>

#include "options.hpp"

namespace slabd::load {

/// Nanoseconds on the steady clock: the one timeline every figure is measured on.
inline std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// No deadline, no end: the far future of the timeline.
inline constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();

struct plan {
    mode run_mode = mode::rr;
    direction bulk_direction = direction::both;
    asio::ip::tcp::endpoint target;
    std::vector<asio::ip::address> sources;
    std::uint32_t connections = 1;
    unsigned threads = 1;
    std::size_t size = 64;
    double rate = 0;
    std::uint64_t messages = 0;  // 0: by time
    std::int64_t timeout_ns = 0;
    std::int64_t start_ns = 0;  // connection 0 starts here
    double connect_interval_ns = 0;
    /// Messages (rate mode: scheduled times; others: completions) count when they fall in here.
    std::int64_t measure_start_ns = 0;
    std::int64_t measure_end_ns = never;
    /// When the workers tell every connection to finish: the window's end (hold: the hold's end).
    std::int64_t end_ns = never;
    std::size_t tx_capacity = 0;
    std::size_t rx_capacity = 0;

    /// When connection `conn` may start connecting: its slot in the --connect-rate ramp.
    [[nodiscard]] std::int64_t connect_at(std::uint32_t conn) const noexcept;
    /// Count mode: how many of the --messages this connection (or churn slot) measures.
    [[nodiscard]] std::uint64_t quota(std::uint32_t conn) const noexcept;
    /// Whether a completion (rate mode: a scheduled time) at t counts in the figures.
    [[nodiscard]] bool in_window(std::int64_t t) const noexcept {
        return t >= measure_start_ns && t < measure_end_ns;
    }
    /// --messages: the run ends when every quota is met, not at a time.
    [[nodiscard]] bool by_count() const noexcept { return messages != 0; }

    /// Open loop: rate mode's messages, or churn's connections, start on a fixed schedule.
    [[nodiscard]] bool paced() const noexcept { return rate > 0; }

    // Rate mode: message k of connection `conn` is due at slot k * connections + conn of one
    // evenly spaced global sequence, so the connections' sends interleave instead of bunching.
    // Paced churn uses the same sequence for cycle k of slot `conn`.
    /// When message k of `conn` is due.
    [[nodiscard]] std::int64_t scheduled_ns(std::uint32_t conn, std::uint64_t k) const noexcept;
    /// The first message of `conn` due at or after t.
    [[nodiscard]] std::uint64_t first_due_at_or_after(std::uint32_t conn,
                                                      std::int64_t t) const noexcept;
    /// One past the last message of `conn` that the run sends, when its first is `first`: the
    /// window's end, or its quota counted from the first message in the window.
    [[nodiscard]] std::uint64_t rate_end(std::uint32_t conn, std::uint64_t first) const noexcept;
};

/// Works the plan out from validated options, a resolved target and the start time.
plan make_plan(const options& o, const asio::ip::tcp::endpoint& target, std::int64_t start_ns);

}  // namespace slabd::load
