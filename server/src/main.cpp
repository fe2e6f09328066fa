// slabd's entry point: parse the command line, set up logging and limits, serve.
// Exit codes: 0 clean, 1 runtime failure, 2 bad config or usage (DESIGN decision 9).
#include <sys/resource.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>

#include "pool_demo.hpp"
#include "server.hpp"
#include "slabd/config/config.hpp"

namespace {

/// Raises the soft descriptor limit to the hard one; warns when the pool cannot fit under it.
void raise_descriptor_limit(const slabd::config::Config& settings) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    const std::size_t per_client = settings.mode == slabd::config::server_mode::proxy ? 2 : 1;
    const std::size_t needed = settings.max_connections * per_client + 64;
    if (limit.rlim_cur != RLIM_INFINITY && needed > limit.rlim_cur)
        spdlog::warn("max_connections {} needs about {} descriptors but the limit is {}: "
                     "accept will fail (and back off) before the pool is full",
                     settings.max_connections, needed, limit.rlim_cur);
}

}  // namespace

int main(int argc, char** argv) {
    using slabd::config::action;
    const auto cli = slabd::config::parse_command_line(argc, argv);
    switch (cli.what) {
        case action::exit:
            (cli.exit_code == 0 ? std::cout : std::cerr) << cli.output;
            return cli.exit_code;
        case action::check_config:
            std::cout << cli.output;
            return cli.exit_code;
        case action::pool_demo:
            slabd::server::run_pool_demo(std::cout);
            return 0;
        case action::run: break;
    }
    const auto& settings = cli.config;
    // spdlog's default logger writes to stdout; the log belongs on stderr (log.file empty), and
    // stdout only to what was asked for (--check-config, --help).
    spdlog::set_default_logger(
        std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
    spdlog::set_level(spdlog::level::from_str(settings.log_level));
    raise_descriptor_limit(settings);
    try {
        slabd::server::server daemon(settings);
        spdlog::info("slabd {} {} mode: data {} admin {}, pool {} blocks of {} bytes, {} thread(s)",
                     SLABD_VERSION, slabd::config::to_string(settings.mode),
                     daemon.data_endpoint().address().to_string() + ":" +
                         std::to_string(daemon.data_endpoint().port()),
                     daemon.admin_endpoint().address().to_string() + ":" +
                         std::to_string(daemon.admin_endpoint().port()),
                     daemon.connections().capacity(), daemon.connections().block_size(),
                     settings.threads);
        daemon.run();
        const auto totals = daemon.snapshot().total();
        spdlog::info("slabd stopped: {} connections served, {} refused", totals.accepted, totals.refused);
    } catch (const std::system_error& e) {
        spdlog::critical("cannot start: {}", e.what());
        return 1;
    }
    return 0;
}
