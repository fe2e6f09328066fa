// `slabd top`: a live view of a running slabd on a terminal, after varnishstat and hatop. It polls
// /stats; a frame is a pure function of two snapshots, so the view is tested without a daemon or a
// terminal, and the loop around it only polls, draws and waits for a key.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstddef>
#include <string>

#include "slabd/config/config.hpp"

namespace slabd::server {

/// One frame, lines of at most `width` columns, from the /stats snapshots `previous` and `current`
/// taken `elapsed` seconds apart. Rates need both: a null `previous` (the first poll) or a counter
/// that went down (a restarted daemon) shows "-", and so does any field either one lacks.
std::string render_top_frame(const nlohmann::json& previous, const nlohmann::json& current,
                             double elapsed, std::size_t width);

/// Polls /stats of the admin endpoint `settings` name every `interval` and draws on stdout until
/// q, Ctrl-C or SIGTERM: redrawn in place on a terminal, one plain frame after another when stdout
/// is not one. `once`: one plain frame, its rates over one interval. Returns the exit code: 1 if
/// the first poll fails; later failures are shown and retried, since the daemon may be restarting.
int run_top(const config::Config& settings, std::chrono::milliseconds interval, bool once);

}  // namespace slabd::server
