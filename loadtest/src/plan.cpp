#include "plan.hpp"

#include <algorithm>
#include <cmath>

namespace slabd::load {
namespace {

constexpr double ns_per_s = 1e9;
// One write carries at most this much, and reads take at most this much at a time: large enough
// to amortise the system call, small enough that 20,000 held connections stay cheap.
constexpr std::size_t max_io_chunk = 64 * 1024;

std::int64_t to_ns(double seconds) noexcept {
    return std::llround(seconds * ns_per_s);
}

}  // namespace

std::int64_t plan::connect_at(std::uint32_t conn) const noexcept {
    return start_ns + std::llround(connect_interval_ns * conn);
}

std::uint64_t plan::quota(std::uint32_t conn) const noexcept {
    return messages / connections + (conn < messages % connections ? 1 : 0);
}

std::int64_t plan::scheduled_ns(std::uint32_t conn, std::uint64_t k) const noexcept {
    const double slot = static_cast<double>(k) * connections + conn;
    return start_ns + std::llround(slot * ns_per_s / rate);
}

std::uint64_t plan::first_due_at_or_after(std::uint32_t conn, std::int64_t t) const noexcept {
    if (t <= start_ns) return 0;
    const double slot = static_cast<double>(t - start_ns) * rate / ns_per_s;
    auto k = static_cast<std::uint64_t>(std::max(0.0, std::ceil((slot - conn) / connections)));
    // The floating-point estimate can be one off either way; the schedule itself decides.
    while (k > 0 && scheduled_ns(conn, k - 1) >= t) --k;
    while (scheduled_ns(conn, k) < t) ++k;
    return k;
}

std::uint64_t plan::rate_end(std::uint32_t conn, std::uint64_t first) const noexcept {
    if (by_count())
        return std::max(first, first_due_at_or_after(conn, measure_start_ns)) + quota(conn);
    return first_due_at_or_after(conn, measure_end_ns);
}

plan make_plan(const options& o, const asio::ip::tcp::endpoint& target, std::int64_t start_ns) {
    plan p;
    p.run_mode = o.run_mode;
    p.bulk_direction = o.bulk_direction;
    p.target = target;
    p.sources = o.sources;
    p.connections = o.connections;
    p.threads = o.threads;
    p.size = o.size;
    p.rate = o.rate;
    p.messages = o.messages;
    p.timeout_ns = to_ns(o.timeout_s);
    p.start_ns = start_ns;
    p.connect_interval_ns = o.connect_rate > 0 ? ns_per_s / o.connect_rate : 0;

    if (o.run_mode == mode::hold) {
        // Everything the hold does is its figure: the ramp, then -d seconds with all connections
        // up.
        const std::int64_t ramp = p.connect_at(o.connections - 1) - start_ns;
        p.measure_start_ns = start_ns;
        p.end_ns = p.measure_end_ns = start_ns + ramp + to_ns(o.duration_s);
    } else {
        p.measure_start_ns = start_ns + to_ns(o.warmup_s);
        if (!p.by_count()) p.end_ns = p.measure_end_ns = p.measure_start_ns + to_ns(o.duration_s);
    }

    const std::size_t message = std::min(o.size, max_io_chunk);
    switch (o.run_mode) {
        case mode::bulk:
            p.tx_capacity = p.rx_capacity = max_io_chunk;
            break;
        case mode::rate:
            // Several messages may be due at once when the server lags: they go in one write.
            p.tx_capacity = std::max(message, std::min<std::size_t>(max_io_chunk / 4, o.size * 64));
            p.rx_capacity = max_io_chunk / 4;
            break;
        case mode::rr:
        case mode::churn:
        case mode::hold:
            // One message in flight; room for a little more so that the read that completes an
            // echo is short, which tells us the socket is drained without another system call.
            p.tx_capacity = message;
            p.rx_capacity = std::min(max_io_chunk, std::max<std::size_t>(2 * o.size, 256));
            break;
    }
    return p;
}

}  // namespace slabd::load
