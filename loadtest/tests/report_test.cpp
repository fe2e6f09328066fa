#include "report.hpp"

#include <doctest/doctest.h>

#include <memory>

using namespace slabd::load;

namespace {

std::unique_ptr<tally> sample() {
    auto t = std::make_unique<tally>();
    for (std::uint64_t i = 1; i <= 1000; ++i) t->latency.record(i * 1000);  // 1..1000 us
    t->msgs = 1000;
    t->cycles = 400;
    t->bytes_sent = t->bytes_received = 64'000;
    t->count(outcome::ok);
    t->count(outcome::ok);
    t->count(outcome::refused_cleanly);
    return t;
}

options opts(mode m) {
    options o;
    o.run_mode = m;
    o.target_host = "127.0.0.1";
    o.target_port = 7000;
    o.connections = 3;
    return o;
}

}  // namespace

TEST_CASE("the JSON report holds the figures, the outcomes and the verdict") {
    const auto t = sample();
    const summary s = summarize(*t, 2.0, 2, false);
    const auto j = to_json(opts(mode::churn), *t, s);
    CHECK(j["mode"] == "churn");
    CHECK(j["target"] == "127.0.0.1:7000");
    CHECK(j["msgs"] == 1000);
    CHECK(j["msgs_per_s"] == 500.0);
    CHECK(j["conns_per_s"] == 200.0);
    CHECK(j["duration_s"] == 2.0);
    CHECK(j["bytes"]["sent"] == 64'000);
    CHECK(j["mb_per_s"]["received"] == doctest::Approx(0.032));
    CHECK(j["latency_us"]["p50"].get<double>() == doctest::Approx(500).epsilon(0.01));
    CHECK(j["latency_us"]["p90"].get<double>() == doctest::Approx(900).epsilon(0.01));
    CHECK(j["latency_us"]["p99"].get<double>() == doctest::Approx(990).epsilon(0.01));
    CHECK(j["latency_us"]["p99.9"].get<double>() == doctest::Approx(999).epsilon(0.01));
    CHECK(j["latency_us"]["max"] == 1000.0);
    CHECK(j["outcomes"]["ok"] == 2);
    CHECK(j["outcomes"]["refused_cleanly"] == 1);
    for (const char* key : {"reset", "timeout", "connect_error", "closed_early", "other_error"})
        CHECK(j["outcomes"][key] == 0);
    CHECK(j["mismatches"] == 0);
    CHECK(j["errors"] == 0);
    CHECK(j["passed"] == true);
    CHECK_FALSE(to_json(opts(mode::rr), *t, s).contains("conns_per_s"));
}

TEST_CASE("the verdict: refusals pass, a mismatch fails, errors fail past --max-errors") {
    auto t = sample();
    CHECK(exit_status(*t, 0) == 0);
    t->count(outcome::reset);
    t->count(outcome::timeout);
    CHECK(t->errors() == 2);
    CHECK(exit_status(*t, 1) == 1);
    CHECK(exit_status(*t, 2) == 0);
    t->mismatches = 1;
    CHECK(exit_status(*t, 100) == 1);
}

TEST_CASE("an empty run reports zeros, not nonsense") {
    const auto t = std::make_unique<tally>();
    const summary s = summarize(*t, 0.0, 0, true);
    CHECK(s.msgs_per_s == 0.0);
    CHECK(s.p99_us == 0.0);
    const auto j = to_json(opts(mode::rr), *t, s);
    CHECK(j["interrupted"] == true);
    CHECK(j["latency_us"]["samples"] == 0);
    CHECK(summary_table(opts(mode::rr), *t, s).find("latency") == std::string::npos);
}

TEST_CASE("the summary table and the progress line carry the figures") {
    const auto t = sample();
    const summary s = summarize(*t, 2.0, 2, false);
    const std::string table = summary_table(opts(mode::rr), *t, s);
    CHECK(table.find("500.0") != std::string::npos);
    CHECK(table.find("p99.9") != std::string::npos);
    CHECK(table.find("refused_cleanly") != std::string::npos);
    CHECK(table.find("PASSED") != std::string::npos);
    const std::string line = progress_line(3.0, 42, 1234.0, *t);
    CHECK(line.find("up     42") != std::string::npos);
    CHECK(line.find("1234") != std::string::npos);
    CHECK(line.find("refused      1") != std::string::npos);
    CHECK(line.find('\n') == std::string::npos);
}
