// What the user sees: the live progress line, the summary table, the JSON report, and the exit
// status, all computed from the merged tally and the measured duration. No I/O here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "options.hpp"
#include "tally.hpp"

namespace slabd::load {

/// The run's figures, worked out once for the table and the JSON alike.
struct summary {
    double duration_s = 0;
    double msgs_per_s = 0;
    double conns_per_s = 0;  // churn
    double mb_per_s_sent = 0;
    double mb_per_s_received = 0;
    double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0, max_us = 0, min_us = 0, mean_us = 0;
    std::int64_t peak_connections = 0;
    bool interrupted = false;
};

summary summarize(const tally& t, double duration_s, std::int64_t peak_connections,
                  bool interrupted);

/// 0 when every echo matched and errors are within --max-errors, else 1.
int exit_status(const tally& t, std::uint64_t max_errors) noexcept;

/// The JSON report: the options that shape the figures, the figures, and the verdict.
nlohmann::ordered_json to_json(const options& o, const tally& t, const summary& s);

/// The table printed on stdout at the end.
std::string summary_table(const options& o, const tally& t, const summary& s);

/// One progress line (without a line ending): elapsed, connections up, msgs/s, p99 so far,
/// refused, errors.
std::string progress_line(double elapsed_s, std::int64_t up, double msgs_per_s, const tally& t);

}  // namespace slabd::load
