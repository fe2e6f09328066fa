// A histogram as HdrHistogram's percentile distribution text (.hgrm), the format its plotters and
// wrk2 read: the "Value Percentile TotalCount 1/(1-Percentile)" table, then the #[...] footer.
#pragma once

#include <ostream>

#include "histogram.hpp"

namespace slabd::load {

/// Writes `h` (values in nanoseconds) as .hgrm with values in milliseconds, HdrHistogram's usual
/// unit, to 6 decimals so that microsecond latencies keep their digits. Percentile levels follow
/// HdrHistogram: 5 ticks per halving of the distance to 100%.
void write_hgrm(std::ostream& out, const histogram& h);

}  // namespace slabd::load
