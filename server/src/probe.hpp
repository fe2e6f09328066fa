// `slabd --probe PATH`: one GET of the running slabd's admin endpoint, for a container's
// HEALTHCHECK or an operator without curl. The endpoint and the token come from the same settings
// (file and flags) the daemon reads, so the probe asks the daemon it describes.
#pragma once

#include <ostream>
#include <string>

#include "slabd/config/config.hpp"

namespace slabd::server {

/// One GET's outcome: the HTTP status and body, or status 0 and why there was no answer.
struct admin_answer {
    int status = 0;
    std::string body;
    std::string error;
};

/// GETs `path` from the admin endpoint `settings` name (a wildcard address means this host), with
/// the settings' token. Gives up after a few seconds.
admin_answer admin_get(const config::Config& settings, const std::string& path);

/// admin_get, then the body to `out`; returns 0 for a 200, 1 for anything else, and what went
/// wrong goes to `err`.
int probe(const config::Config& settings, const std::string& path, std::ostream& out,
          std::ostream& err);

}  // namespace slabd::server
