#include "hgrm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace slabd::load {
namespace {

constexpr double ns_per_ms = 1e6;
constexpr int ticks_per_half_distance = 5;

/// The next percentile level after `level`, as HdrHistogram's PercentileIterator steps.
double next_level(double level) {
    const auto halvings = static_cast<std::int64_t>(std::log2(100.0 / (100.0 - level))) + 1;
    const double ticks = ticks_per_half_distance * std::pow(2.0, static_cast<double>(halvings));
    return level + 100.0 / ticks;
}

}  // namespace

void write_hgrm(std::ostream& out, const histogram& h) {
    out << fmt::format("{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount",
                       "1/(1-Percentile)");
    const std::uint64_t total = h.count();
    std::uint64_t seen = 0;
    double level = 0;
    for (std::size_t i = 0; i < histogram::bucket_count && seen < total; ++i) {
        if (h.count_at(i) == 0) continue;
        seen += h.count_at(i);
        const std::uint64_t top =
            i + 1 == histogram::bucket_count ? h.max() : histogram::highest_equivalent(i);
        const double value = static_cast<double>(std::min(top, h.max())) / ns_per_ms;
        const double reached = 100.0 * static_cast<double>(seen) / static_cast<double>(total);
        // The last bucket gets one line at the current level; the closing 100% line follows.
        while (level <= reached) {
            out << fmt::format("{:12.6f} {:2.12f} {:10d} {:14.2f}\n", value, level / 100.0, seen,
                               1.0 / (1.0 - level / 100.0));
            level = next_level(level);
            if (seen == total) break;
        }
    }
    if (total > 0)
        out << fmt::format("{:12.6f} {:2.12f} {:10d}\n", static_cast<double>(h.max()) / ns_per_ms,
                           1.0, total);
    out << fmt::format("#[Mean    = {:12.6f}, StdDeviation   = {:12.6f}]\n", h.mean() / ns_per_ms,
                       h.stddev() / ns_per_ms);
    out << fmt::format("#[Max     = {:12.6f}, Total count    = {:12d}]\n",
                       static_cast<double>(h.max()) / ns_per_ms, total);
    out << fmt::format("#[Buckets = {:12d}, SubBuckets     = {:12d}]\n",
                       histogram::value_bits - histogram::sub_bucket_bits,
                       2U << histogram::sub_bucket_bits);
}

}  // namespace slabd::load
