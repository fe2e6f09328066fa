// slabd's entry point: parse the command line, set up logging and limits, serve.
// Exit codes: 0 clean, 1 runtime failure, 2 bad config or usage (docs/design.md, decision 9).
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <signal.h>

#include <csignal>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "daemon.hpp"
#include "logging.hpp"
#include "pool_demo.hpp"
#include "probe.hpp"
#include "server.hpp"
#include "slabd/config/config.hpp"
#include "top.hpp"

namespace {

/// argv kept for SIGHUP, which parses it again; the --config path is made absolute because the
/// daemon's working directory is "/".
std::vector<std::string> arguments_for_reload(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    const std::string flag = "--config";
    for (std::size_t i = 1; i < args.size(); ++i) {
        std::error_code ec;
        if (args[i] == flag && i + 1 < args.size()) {
            const auto path = std::filesystem::absolute(args[i + 1], ec);
            if (!ec) args[i + 1] = path.string();
            ++i;
        } else if (args[i].starts_with(flag + "=")) {
            const auto path = std::filesystem::absolute(args[i].substr(flag.size() + 1), ec);
            if (!ec) args[i] = flag + "=" + path.string();
        }
    }
    return args;
}

/// SIGHUP: a new log file for logrotate, then the settings again; a config that no longer loads
/// is reported and the running one kept.
void reload(slabd::server::server& daemon, const std::vector<std::string>& args) {
    slabd::server::notify_systemd("RELOADING=1");
    if (const auto ec = slabd::server::logging::reopen())
        spdlog::error("SIGHUP: cannot reopen the log file ({}); still writing to the old one",
                      ec.message());
    else
        spdlog::info("SIGHUP: log reopened, reloading settings");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    const auto cli = slabd::config::parse_command_line(static_cast<int>(argv.size()), argv.data());
    if (cli.what == slabd::config::action::run) {
        daemon.reload(cli.config);
    } else {
        std::string why = cli.output;
        while (!why.empty() && why.back() == '\n') why.pop_back();
        spdlog::error("reload failed, keeping the running settings: {}", why);
        daemon.reload_rejected(why);
    }
    slabd::server::notify_systemd("READY=1");
}

}  // namespace

namespace {

// HOST:PORT as the config file spells it: an IPv6 host in brackets.
std::string printable(const asio::ip::tcp::endpoint& e) {
    return slabd::config::to_string(slabd::config::endpoint{e.address().to_string(), e.port()});
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
        case action::probe:
            return slabd::server::probe(cli.config, cli.probe_path, std::cout, std::cerr);
        case action::top:
            return slabd::server::run_top(cli.config, cli.top_interval, cli.top_once);
        case action::run:
            break;
    }
    // A peer gone mid-write is an error code on one connection, never the end of the process:
    // send() passes MSG_NOSIGNAL, but splice(2) has no such flag. Before any thread starts.
    std::signal(SIGPIPE, SIG_IGN);
    const auto& settings = cli.config;
    const auto reload_args = arguments_for_reload(argc, argv);
    // SIGUSR2 starts the program found where this one was (a new binary, after an upgrade), by a
    // path made absolute now: the daemon's working directory is "/".
    std::string program = argv[0];
    if (program.find('/') != std::string::npos) {
        std::error_code ec;
        const auto path = std::filesystem::absolute(program, ec);
        if (!ec) program = path.string();
    }
    std::optional<slabd::server::pidfile> pid;
    std::optional<slabd::server::taken_over> inherited;
    try {
        // A running slabd at the handover socket gives this one its listeners and its locked
        // pidfile: a restart, not a second instance.
        if (!settings.handover_socket.empty())
            inherited = slabd::server::take_over(settings.handover_socket);
        // The pidfile first: a second instance is refused before it binds (it would name a busy
        // port, not the first instance) or writes to the first one's log.
        if (inherited && inherited->pidfile >= 0 && !settings.pidfile.empty())
            pid.emplace(settings.pidfile, std::exchange(inherited->pidfile, -1));
        else if (!settings.pidfile.empty())
            pid.emplace(settings.pidfile);
        slabd::server::logging::setup(settings);
    } catch (const std::runtime_error& e) {
        std::cerr << "slabd: cannot start: " << e.what() << "\n";
        return 1;
    }
    slabd::server::raise_descriptor_limit(settings);
    std::optional<slabd::server::launcher_pipe> launcher;
    try {
        slabd::server::server daemon(settings,
                                     {std::move(inherited), pid ? pid->descriptor() : -1, [&pid] {
                                          if (pid) pid->hand_over();
                                      }});
        if (settings.daemonize)
            launcher.emplace(
                slabd::server::daemonize([&daemon](auto event) { daemon.notify_fork(event); }));
        if (pid) pid->write_pid();
        spdlog::info("slabd {} {} mode: data {} admin {}, pool {} blocks of {} bytes, {} thread(s)",
                     SLABD_VERSION, slabd::config::to_string(settings.mode),
                     printable(daemon.data_endpoint()), printable(daemon.admin_endpoint()),
                     daemon.connections().capacity(), daemon.connections().block_size(),
                     settings.threads);
        if (launcher) {
            if (const auto ec = slabd::server::logging::capture_stderr())
                throw std::system_error(ec, "cannot redirect stderr");
            launcher->ready();
        }
        slabd::server::notify_systemd("READY=1");
        daemon.on_hangup([&daemon, &reload_args] { reload(daemon, reload_args); });
        daemon.on_upgrade({program, reload_args});
        daemon.run();
        // Done serving. Once the server's signal sets are gone a SIGINT or SIGTERM (systemd's
        // second, an impatient operator's) would take its default action and end the exit with
        // the signal instead of its status: blocked, it stays pending until the process is gone.
        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
        const auto totals = daemon.snapshot().total();
        spdlog::info("slabd stopped: {} connections served, {} refused", totals.accepted,
                     totals.refused());
    } catch (const std::runtime_error& e) {
        // Start-up failures must reach whoever started slabd, not only a log file they may not
        // read.
        spdlog::critical("cannot start: {}", e.what());
        if (launcher)
            launcher->failed(1, std::string("cannot start: ") + e.what());
        else if (!settings.log_file.empty())
            std::cerr << "slabd: cannot start: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
