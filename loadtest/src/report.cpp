#include "report.hpp"

#include <fmt/format.h>

namespace slabd::load {
namespace {

constexpr double ns_per_us = 1e3;
constexpr double bytes_per_mb = 1e6;

double per_second(std::uint64_t n, double seconds) {
    return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

double us(std::uint64_t ns) {
    return static_cast<double>(ns) / ns_per_us;
}

/// A latency for people: microseconds up to 10 ms, then milliseconds.
std::string human_latency(double micros) {
    if (micros >= 10'000) return fmt::format("{:.2f} ms", micros / 1000);
    return fmt::format("{:.1f} us", micros);
}

}  // namespace

summary summarize(const tally& t, double duration_s, std::int64_t peak_connections,
                  bool interrupted) {
    summary s;
    s.duration_s = duration_s;
    s.msgs_per_s = per_second(t.msgs, duration_s);
    s.conns_per_s = per_second(t.cycles, duration_s);
    s.mb_per_s_sent = per_second(t.bytes_sent, duration_s) / bytes_per_mb;
    s.mb_per_s_received = per_second(t.bytes_received, duration_s) / bytes_per_mb;
    const histogram& h = t.latency;
    s.p50_us = us(h.value_at_percentile(50));
    s.p90_us = us(h.value_at_percentile(90));
    s.p99_us = us(h.value_at_percentile(99));
    s.p999_us = us(h.value_at_percentile(99.9));
    s.max_us = us(h.max());
    s.min_us = us(h.min());
    s.mean_us = h.mean() / ns_per_us;
    s.peak_connections = peak_connections;
    s.interrupted = interrupted;
    return s;
}

int exit_status(const tally& t, std::uint64_t max_errors) noexcept {
    return t.mismatches > 0 || t.errors() > max_errors ? 1 : 0;
}

nlohmann::ordered_json to_json(const options& o, const tally& t, const summary& s) {
    nlohmann::ordered_json j;
    j["tool"] = "slabd-load";
    j["version"] = SLABD_LOAD_VERSION;
    j["mode"] = to_string(o.run_mode);
    j["target"] = o.target();
    j["connections"] = o.connections;
    j["size"] = o.size;
    j["threads"] = o.threads;
    if (o.rate > 0) j["rate"] = o.rate;
    if (o.run_mode == mode::bulk) j["direction"] = to_string(o.bulk_direction);
    j["warmup_s"] = o.warmup_s;
    j["duration_s"] = s.duration_s;
    j["interrupted"] = s.interrupted;
    j["msgs"] = t.msgs;
    j["msgs_per_s"] = s.msgs_per_s;
    if (o.run_mode == mode::churn) j["conns_per_s"] = s.conns_per_s;
    j["bytes"] = {{"sent", t.bytes_sent}, {"received", t.bytes_received}};
    j["mb_per_s"] = {{"sent", s.mb_per_s_sent}, {"received", s.mb_per_s_received}};
    j["latency_us"] = {{"samples", t.latency.count()},
                       {"min", s.min_us},
                       {"mean", s.mean_us},
                       {"p50", s.p50_us},
                       {"p90", s.p90_us},
                       {"p99", s.p99_us},
                       {"p99.9", s.p999_us},
                       {"max", s.max_us}};
    nlohmann::ordered_json outcomes;
    for (std::size_t i = 0; i < outcome_count; ++i)
        outcomes[std::string(outcome_names[i])] = t.outcomes[i];
    j["outcomes"] = outcomes;
    j["busy_lines"] = t.busy_lines;
    j["peak_connections"] = s.peak_connections;
    j["mismatches"] = t.mismatches;
    j["errors"] = t.errors();
    j["max_errors"] = o.max_errors;
    j["passed"] = exit_status(t, o.max_errors) == 0;
    return j;
}

std::string summary_table(const options& o, const tally& t, const summary& s) {
    std::string out = fmt::format(
        "slabd-load {} {}: {} connection(s), {} B messages, {} thread(s), {:.2f} s measured{}\n",
        to_string(o.run_mode), o.target(), o.connections, o.size, o.threads, s.duration_s,
        s.interrupted ? " (interrupted)" : "");
    out += fmt::format("  {:<12}{:>14}{:>14}{:>14}{:>14}\n", "throughput", "msgs/s", "MB/s sent",
                       "MB/s recv", o.run_mode == mode::churn ? "conns/s" : "msgs");
    out += fmt::format(
        "  {:<12}{:>14.1f}{:>14.2f}{:>14.2f}{:>14}\n", "", s.msgs_per_s, s.mb_per_s_sent,
        s.mb_per_s_received,
        o.run_mode == mode::churn ? fmt::format("{:.1f}", s.conns_per_s) : std::to_string(t.msgs));
    if (t.latency.count() > 0) {
        out += fmt::format("  {:<12}{:>12}{:>12}{:>12}{:>12}{:>12}\n", "latency", "p50", "p90",
                           "p99", "p99.9", "max");
        out += fmt::format("  {:<12}{:>12}{:>12}{:>12}{:>12}{:>12}\n", "", human_latency(s.p50_us),
                           human_latency(s.p90_us), human_latency(s.p99_us),
                           human_latency(s.p999_us), human_latency(s.max_us));
    }
    std::string names;
    std::string counts;
    for (std::size_t i = 0; i < outcome_count; ++i) {
        const std::size_t width = std::max<std::size_t>(outcome_names[i].size(), 6) + 2;
        names += fmt::format("{:>{}}", outcome_names[i], width);
        counts += fmt::format("{:>{}}", t.outcomes[i], width);
    }
    out += fmt::format("  {:<12}{}\n  {:<12}{}\n", "connections", names, "", counts);
    out += fmt::format(
        "  {:<12}mismatches {}, busy lines {}, peak connections {}, errors {} (max {}): {}\n",
        "checks", t.mismatches, t.busy_lines, s.peak_connections, t.errors(), o.max_errors,
        exit_status(t, o.max_errors) == 0 ? "PASSED" : "FAILED");
    return out;
}

std::string progress_line(double elapsed_s, std::int64_t up, double msgs_per_s, const tally& t) {
    const std::string p99 =
        t.latency.count() > 0 ? human_latency(us(t.latency.value_at_percentile(99))) : "-";
    return fmt::format(
        "[{:6.1f}s] up {:>6}  msgs/s {:>10.0f}  p99 {:>10}  refused {:>6}  errors {:>6}", elapsed_s,
        up, msgs_per_s, p99, t.outcomes_of(outcome::refused_cleanly), t.errors());
}

}  // namespace slabd::load
