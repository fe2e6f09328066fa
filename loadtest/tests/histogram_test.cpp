#include "histogram.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

using slabd::load::histogram;

namespace {

// A histogram is 38 KiB: keep it off the test's stack.
std::unique_ptr<histogram> make() {
    return std::make_unique<histogram>();
}

/// The exact nearest-rank percentile of `sorted`.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
    const auto rank =
        static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

void check_within_one_percent(const histogram& h, std::vector<std::uint64_t> values) {
    std::sort(values.begin(), values.end());
    for (const double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
        const auto want = static_cast<double>(exact_percentile(values, p));
        const auto got = static_cast<double>(h.value_at_percentile(p));
        INFO("percentile " << p << ": want " << want << ", got " << got);
        CHECK(std::abs(got - want) <= want * 0.01);
    }
}

}  // namespace

TEST_CASE("an empty histogram answers zero everywhere") {
    const auto h = make();
    CHECK(h->count() == 0);
    CHECK(h->min() == 0);
    CHECK(h->max() == 0);
    CHECK(h->mean() == 0.0);
    CHECK(h->stddev() == 0.0);
    CHECK(h->value_at_percentile(50) == 0);
    CHECK(h->value_at_percentile(100) == 0);
}

TEST_CASE("the buckets tile the value range without gaps, each within 1/128 of its values") {
    CHECK(histogram::lowest_equivalent(0) == 0);
    for (std::size_t i = 0; i + 1 < histogram::bucket_count; ++i) {
        REQUIRE(histogram::lowest_equivalent(i + 1) == histogram::highest_equivalent(i) + 1);
        REQUIRE(histogram::index_of(histogram::lowest_equivalent(i)) == i);
        REQUIRE(histogram::index_of(histogram::highest_equivalent(i)) == i);
        const std::uint64_t low = histogram::lowest_equivalent(i);
        const std::uint64_t width = histogram::highest_equivalent(i) - low + 1;
        REQUIRE(width * 128 <= std::max<std::uint64_t>(low, 128));
    }
    CHECK(histogram::highest_equivalent(histogram::bucket_count - 1) ==
          histogram::highest_trackable);
}

TEST_CASE("values below 256 are kept exactly") {
    const auto h = make();
    for (std::uint64_t v = 0; v < 256; ++v) h->record(v);
    CHECK(h->count() == 256);
    CHECK(h->value_at_percentile(50) == 127);
    CHECK(h->value_at_percentile(100) == 255);
    CHECK(h->min() == 0);
    CHECK(h->mean() == doctest::Approx(127.5));
}

TEST_CASE("percentiles of a uniform distribution are within 1%") {
    const auto h = make();
    std::vector<std::uint64_t> values;
    for (std::uint64_t v = 1; v <= 1'000'000; ++v) {
        h->record(v);
        values.push_back(v);
    }
    check_within_one_percent(*h, values);
    CHECK(h->max() == 1'000'000);
    CHECK(h->min() == 1);
    CHECK(h->mean() == doctest::Approx(500'000.5));
    // A uniform distribution's standard deviation is its range over sqrt(12).
    CHECK(h->stddev() == doctest::Approx(1'000'000 / std::sqrt(12.0)).epsilon(0.01));
}

TEST_CASE("percentiles of a long-tailed latency-like distribution are within 1%") {
    std::mt19937_64 random(42);
    std::lognormal_distribution<double> latency_ns(std::log(30'000.0), 1.2);  // median 30 us
    const auto h = make();
    std::vector<std::uint64_t> values;
    for (int i = 0; i < 200'000; ++i) {
        const auto v = static_cast<std::uint64_t>(latency_ns(random));
        h->record(v);
        values.push_back(v);
    }
    check_within_one_percent(*h, values);
    CHECK(h->max() == *std::max_element(values.begin(), values.end()));
}

TEST_CASE("merging per-thread histograms equals recording into one") {
    std::mt19937_64 random(7);
    std::exponential_distribution<double> gap(1.0 / 50'000);
    const auto whole = make();
    const auto a = make();
    const auto b = make();
    for (int i = 0; i < 50'000; ++i) {
        const auto v = static_cast<std::uint64_t>(gap(random));
        whole->record(v);
        (i % 3 == 0 ? *a : *b).record(v);
    }
    const auto merged = make();
    merged->merge(*a);
    merged->merge(*b);
    CHECK(merged->count() == whole->count());
    CHECK(merged->min() == whole->min());
    CHECK(merged->max() == whole->max());
    CHECK(merged->mean() == doctest::Approx(whole->mean()));
    for (std::size_t i = 0; i < histogram::bucket_count; ++i)
        REQUIRE(merged->count_at(i) == whole->count_at(i));
    for (const double p : {50.0, 90.0, 99.0, 99.9})
        CHECK(merged->value_at_percentile(p) == whole->value_at_percentile(p));
}

TEST_CASE(
    "merging into an empty histogram, and an empty one into another, changes nothing wrongly") {
    const auto h = make();
    const auto empty = make();
    h->record(1000);
    h->merge(*empty);
    CHECK(h->count() == 1);
    CHECK(h->min() == 1000);
    CHECK(h->max() == 1000);
    empty->merge(*h);
    CHECK(empty->min() == 1000);
    CHECK(empty->value_at_percentile(50) == h->value_at_percentile(50));
}

TEST_CASE("huge values saturate the top bucket while max stays exact") {
    const auto h = make();
    h->record(1000);
    h->record(std::uint64_t{1} << 50);
    h->record(std::numeric_limits<std::uint64_t>::max());
    CHECK(h->count() == 3);
    CHECK(h->max() == std::numeric_limits<std::uint64_t>::max());
    CHECK(h->value_at_percentile(100) == h->max());
    CHECK(h->value_at_percentile(34) >= histogram::highest_trackable);
    CHECK(h->value_at_percentile(33) == doctest::Approx(1000).epsilon(0.01));
    CHECK(histogram::index_of(std::numeric_limits<std::uint64_t>::max()) ==
          histogram::bucket_count - 1);
}

TEST_CASE("a percentile never reports more than the largest value recorded") {
    const auto h = make();
    h->record(1'000'001);  // inside a bucket whose top is above it
    CHECK(h->value_at_percentile(100) == 1'000'001);
    CHECK(h->value_at_percentile(50) == 1'000'001);
}
