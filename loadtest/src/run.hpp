// One load run from start to verdict: raise the descriptor limit, resolve the target, run the
// workers on their threads while the main thread shows progress and handles Ctrl-C, then merge
// their tallies, print the summary, write the reports and return the exit status.
#pragma once

#include "options.hpp"

namespace slabd::load {

/// Runs the load test; returns the process exit status (0 passed, 1 failed, 2 unusable target).
int run(const options& o);

}  // namespace slabd::load
