// `slabd top`: a live view of a running slabd on a terminal, after varnishstat and hatop. It polls
// /stats; a frame is a pure function of two snapshots, so the view is tested without a daemon or a
// terminal, and the loop around it only polls, draws and waits for a key.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <string>

namespace slabd::server {

/// One frame, lines of at most `width` columns, from the /stats snapshots `previous` and `current`
/// taken `elapsed` seconds apart. Rates need both: a null `previous` (the first poll) or a counter
/// that went down (a restarted daemon) shows "-", and so does any field either one lacks.
std::string render_top_frame(const nlohmann::json& previous, const nlohmann::json& current,
                             double elapsed, std::size_t width);

}  // namespace slabd::server
