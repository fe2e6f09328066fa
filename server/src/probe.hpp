// `slabd --probe PATH`: one GET of the running slabd's admin endpoint, for a container's
// HEALTHCHECK or an operator without curl. The endpoint and the token come from the same settings
// (file and flags) the daemon reads, so the probe asks the daemon it describes.
#pragma once

#include <ostream>
#include <string>

#include "slabd/config/config.hpp"

namespace slabd::server {

/// GETs `path` from the admin endpoint `settings` name (a wildcard address means this host),
/// writes the body to `out`, and returns 0 for a 200, 1 for anything else; what went wrong goes
/// to `err`. Gives up after a few seconds.
int probe(const config::Config& settings, const std::string& path, std::ostream& out,
          std::ostream& err);

}  // namespace slabd::server
