#include "hgrm.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

using slabd::load::histogram;
using slabd::load::write_hgrm;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

struct row {
    double value, percentile;
    long long total;
};

std::vector<row> table_of(const std::vector<std::string>& lines) {
    std::vector<row> rows;
    for (std::size_t i = 2; i < lines.size() && lines[i].rfind("#[", 0) != 0; ++i) {
        std::istringstream in(lines[i]);
        row r{};
        in >> r.value >> r.percentile >> r.total;
        REQUIRE(in);
        rows.push_back(r);
    }
    return rows;
}

}  // namespace

TEST_CASE(".hgrm has HdrHistogram's header, a monotonic table ending at 100%, and the footer") {
    auto h = std::make_unique<histogram>();
    for (std::uint64_t v = 1; v <= 10'000; ++v) h->record(v * 1000);  // 1 us .. 10 ms
    std::ostringstream out;
    write_hgrm(out, *h);
    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() > 10);
    CHECK(lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)");
    CHECK(lines[1].empty());

    const auto rows = table_of(lines);
    REQUIRE(rows.size() > 20);
    CHECK(rows.front().percentile == 0.0);
    CHECK(rows.front().value == doctest::Approx(0.001).epsilon(0.01));  // milliseconds
    CHECK(rows.back().percentile == 1.0);
    CHECK(rows.back().total == 10'000);
    CHECK(rows.back().value == doctest::Approx(10.0));
    for (std::size_t i = 1; i < rows.size(); ++i) {
        CHECK(rows[i].value >= rows[i - 1].value);
        CHECK(rows[i].percentile >= rows[i - 1].percentile);
        CHECK(rows[i].total >= rows[i - 1].total);
    }
    // HdrHistogram's tick spacing: 0.1 apart up to 50%, then 0.05 up to 75%, ...
    CHECK(rows[1].percentile == doctest::Approx(0.1));
    CHECK(rows[5].percentile == doctest::Approx(0.5));
    CHECK(rows[6].percentile == doctest::Approx(0.55));

    const std::size_t n = lines.size();
    CHECK(lines[n - 3].rfind("#[Mean    = ", 0) == 0);
    CHECK(lines[n - 3].find(", StdDeviation   = ") != std::string::npos);
    CHECK(lines[n - 2].rfind("#[Max     =    10.000000, Total count    =        10000]", 0) == 0);
    CHECK(lines[n - 1] == "#[Buckets =           37, SubBuckets     =          256]");
}

TEST_CASE(".hgrm of one value and of no values") {
    auto h = std::make_unique<histogram>();
    std::ostringstream empty;
    write_hgrm(empty, *h);
    const auto empty_lines = lines_of(empty.str());
    CHECK(table_of(empty_lines).empty());
    CHECK(empty_lines.size() == 5);

    h->record(2'500'000);
    std::ostringstream one;
    write_hgrm(one, *h);
    const auto rows = table_of(lines_of(one.str()));
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].percentile == 0.0);
    CHECK(rows[1].percentile == 1.0);
    CHECK(rows[1].value == doctest::Approx(2.5));
}
