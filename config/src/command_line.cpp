#include "settings.hpp"

#include <CLI/CLI.hpp>

#include <sstream>
#include <utility>

namespace slabd::config {
namespace {

// What one setting's flag received; CLI11 only collects text, the setting's own check converts it
// so that a bad flag and a bad file value get the same message.
struct flag_input {
    std::string text;
    std::vector<std::string> texts;
    bool on = false;
    CLI::Option* option = nullptr;
};

CLI::Option* add_setting_flag(CLI::App& app, const detail::setting& s, flag_input& in) {
    const std::string name{s.flag};
    const std::string help = detail::described(s);
    switch (s.kind) {
        case detail::flag_kind::value:
            return app.add_option(name, in.text, help)
                ->type_name(std::string{s.value_name})
                ->take_last();
        case detail::flag_kind::repeated:
            return app.add_option(name, in.texts, help)
                ->type_name(std::string{s.value_name})
                ->allow_extra_args(false);
        case detail::flag_kind::toggle:
            return app.add_flag(name, in.on, help);
        case detail::flag_kind::none:
            break;
    }
    return nullptr;
}

detail::given flag_value(const detail::setting& s, const flag_input& in) {
    std::string flag{s.flag};
    switch (s.kind) {
        case detail::flag_kind::repeated:
            return {in.texts, std::move(flag)};
        case detail::flag_kind::toggle:
            return {{in.on ? "true" : "false"}, std::move(flag)};
        default:
            return {{in.text}, std::move(flag)};
    }
}

command_line failure(int exit_code, std::string output) {
    command_line result;
    result.what = action::exit;
    result.exit_code = exit_code;
    result.output = std::move(output);
    return result;
}

}  // namespace

command_line parse_command_line(int argc, const char* const* argv) {
    CLI::App app{"slabd " SLABD_VERSION ": a TCP echo and proxy server on a slab connection pool",
                 "slabd"};
    app.footer(
        "Settings are taken from the defaults, then --config FILE, then these flags.\n"
        "Some settings can only be set in the file; deploy/slabd.toml describes every one.");
    app.set_version_flag("--version", "slabd " SLABD_VERSION);
    std::string config_path;
    const auto* config_option =
        app.add_option("--config", config_path, "read settings from this TOML file")
            ->type_name("FILE");
    bool check = false;
    app.add_flag("--check-config", check,
                 "check the configuration, print it as TOML and exit (0: valid, 2: not)");
    bool demo = false;
    app.add_flag("--pool-demo", demo, "run the connection-pool demonstration instead of serving");
    std::string probe_path;
    const auto* probe_option =
        app.add_option(
               "--probe", probe_path,
               "GET this route of the admin endpoint the settings name (e.g. /healthz), print "
               "the body and exit (0: it answered 200, 1: anything else); for health checks")
            ->type_name("PATH")
            ->check([](const std::string& p) {
                return p.starts_with('/') && p.find_first_of(" \r\n") == std::string::npos
                           ? std::string{}
                           : std::string{"a route starting with '/', without spaces"};
            });

    // A subcommand, not a flag: it takes flags of its own. Falling through lets the settings'
    // flags (--config, --admin) follow it, so "slabd top --config FILE" finds that daemon.
    auto* top = app.add_subcommand(
                       "top",
                       "a live view of the running slabd: polls /stats of the admin endpoint the "
                       "settings name and redraws a table (q or Ctrl-C quits)")
                    ->fallthrough();
    std::string top_interval = "1s";
    top->add_option("--interval", top_interval, "time between polls (default 1s)")
        ->type_name("DURATION");
    bool top_once = false;
    top->add_flag("--once", top_once, "print one frame without escape codes and exit");

    const auto settings = detail::settings();
    std::vector<flag_input> inputs(settings.size());
    for (std::size_t i = 0; i < settings.size(); ++i) {
        if (settings[i].kind != detail::flag_kind::none) {
            inputs[i].option = add_setting_flag(app, settings[i], inputs[i]);
        }
    }

    try {
        // CLI11 reads argv[0] even when there are no arguments; argc can be 0 from execve.
        const char* const program_only[] = {"slabd"};
        if (argc < 1)
            app.parse(1, program_only);
        else
            app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        std::ostringstream out;
        const int code = app.exit(e, out, out);
        return failure(code == 0 ? 0 : 2, out.str());
    }

    command_line result;
    try {
        detail::origins where;
        if (config_option->count() > 0) detail::apply_file(config_path, result.config, where);
        for (std::size_t i = 0; i < settings.size(); ++i) {
            if (inputs[i].option == nullptr || inputs[i].option->count() == 0) continue;
            settings[i].set(result.config, flag_value(settings[i], inputs[i]));
            where[std::string{settings[i].table} + "." + std::string{settings[i].key}] =
                settings[i].flag;
        }
        detail::check_consistency(result.config, where);
        result.top_interval = detail::given({top_interval}, "--interval")
                                  .duration(std::chrono::milliseconds{100}, std::chrono::hours{1});
    } catch (const config_error& e) {
        return failure(2, std::string{e.what()} + "\n");
    }
    if (check) {
        result.what = action::check_config;
        result.output = to_toml(result.config);
    } else if (demo) {
        result.what = action::pool_demo;
    } else if (probe_option->count() > 0) {
        result.what = action::probe;
        result.probe_path = probe_path;
    } else if (top->parsed()) {
        result.what = action::top;
        result.top_once = top_once;
    }
    return result;
}

}  // namespace slabd::config
