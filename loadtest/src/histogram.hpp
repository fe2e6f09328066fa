// The latency histogram: HdrHistogram's log-linear buckets (128 linear steps per power of two),
// so any value is kept within 1/128 (0.8%) of itself, in fixed memory, recorded in O(1). Each
// thread records into its own; merge() adds them up for the report.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace slabd::load {

class histogram {
  public:
    /// log2 of the linear steps in each power of two: the precision.
    static constexpr unsigned sub_bucket_bits = 7;
    /// Values of 2^44 and above (ns: about 4.9 hours) share the top bucket; max() stays exact.
    static constexpr unsigned value_bits = 44;
    static constexpr std::uint64_t highest_trackable = (std::uint64_t{1} << value_bits) - 1;
    static constexpr std::size_t bucket_count = (value_bits - sub_bucket_bits + 1)
                                                << sub_bucket_bits;

    /// Counts one value: O(1), no allocation.
    void record(std::uint64_t value) noexcept {
        ++counts_[index_of(value)];
        ++total_;
        sum_ += static_cast<double>(value);
        if (value < min_) min_ = value;
        if (value > max_) max_ = value;
    }
    /// Adds another histogram's values, as if they had been recorded here.
    void merge(const histogram& other) noexcept;

    [[nodiscard]] std::uint64_t count() const noexcept { return total_; }
    /// The smallest and largest values recorded, exactly; 0 when empty.
    [[nodiscard]] std::uint64_t min() const noexcept { return total_ == 0 ? 0 : min_; }
    [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
    [[nodiscard]] double mean() const noexcept;
    /// From the bucket midpoints, as HdrHistogram computes it.
    [[nodiscard]] double stddev() const noexcept;
    /// The value at `percentile` (0..100): the highest value of the bucket holding that rank,
    /// never above max(). 0 when empty.
    [[nodiscard]] std::uint64_t value_at_percentile(double percentile) const noexcept;

    // Bucket access for writers of the full distribution (.hgrm).
    [[nodiscard]] std::uint64_t count_at(std::size_t index) const noexcept {
        return counts_[index];
    }
    [[nodiscard]] static constexpr std::size_t index_of(std::uint64_t value) noexcept {
        if (value > highest_trackable) value = highest_trackable;
        const auto width = static_cast<unsigned>(std::bit_width(value));
        const unsigned shift = width > sub_bucket_bits + 1 ? width - sub_bucket_bits - 1 : 0U;
        return (std::size_t{shift} << sub_bucket_bits) + static_cast<std::size_t>(value >> shift);
    }
    [[nodiscard]] static constexpr std::uint64_t lowest_equivalent(std::size_t index) noexcept {
        const std::size_t group = index >> sub_bucket_bits;
        const std::size_t shift = group < 2 ? 0 : group - 1;
        return static_cast<std::uint64_t>(index - (shift << sub_bucket_bits)) << shift;
    }
    [[nodiscard]] static constexpr std::uint64_t highest_equivalent(std::size_t index) noexcept {
        return index + 1 == bucket_count ? highest_trackable : lowest_equivalent(index + 1) - 1;
    }

  private:
    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t total_ = 0;
    std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t max_ = 0;
    double sum_ = 0;
};

}  // namespace slabd::load
