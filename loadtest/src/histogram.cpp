#include "histogram.hpp"

#include <algorithm>
#include <cmath>

namespace slabd::load {

void histogram::merge(const histogram& other) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

double histogram::mean() const noexcept {
    return total_ == 0 ? 0.0 : sum_ / static_cast<double>(total_);
}

double histogram::stddev() const noexcept {
    if (total_ == 0) return 0.0;
    const double m = mean();
    double squares = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        if (counts_[i] == 0) continue;
        const double mid = (static_cast<double>(lowest_equivalent(i)) +
                            static_cast<double>(highest_equivalent(i))) /
                           2;
        squares += static_cast<double>(counts_[i]) * (mid - m) * (mid - m);
    }
    return std::sqrt(squares / static_cast<double>(total_));
}

std::uint64_t histogram::value_at_percentile(double percentile) const noexcept {
    if (total_ == 0) return 0;
    const double wanted =
        std::ceil(std::clamp(percentile, 0.0, 100.0) / 100.0 * static_cast<double>(total_));
    const auto rank = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(wanted), 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += counts_[i];
        // The top bucket also holds every saturated value, for which only max() is true.
        if (seen >= rank)
            return i + 1 == bucket_count ? max_ : std::min(highest_equivalent(i), max_);
    }
    return max_;
}

}  // namespace slabd::load
