// The list of settings, declared once: each one's TOML table and key, its flag, its check and how
// it prints. The file loader, the flag parser and to_toml all walk this list, so none is
// half-wired.
#pragma once

#include "given.hpp"
#include "slabd/config/config.hpp"

#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>

namespace slabd::config::detail {

/// How a setting can be given on the command line.
enum class flag_kind { none, value, repeated, toggle };

/// When a changed value takes effect: at the next start, or at a reload too (SIGHUP;
/// server::reload applies it).
enum class applies : bool { at_start, at_reload };

/// One setting.
struct setting {
    std::string_view table;       ///< TOML table, e.g. "pool"
    std::string_view key;         ///< key in that table, e.g. "max_connections"
    std::string_view help;        ///< one line, for --help and the comments of to_toml
    flag_kind kind;               ///< none: only in the file
    std::string_view flag;        ///< e.g. "--max-connections"
    std::string_view value_name;  ///< e.g. "N" in --help
    void (*set)(Config&, const given&);
    std::string (*show)(const Config&, bool redact_secrets);  ///< as a TOML value
    applies when = applies::at_start;
};

/// Every setting, grouped by table, tables in the order to_toml prints them.
std::span<const setting> settings() noexcept;

/// The setting named "table.key", or nullptr.
const setting* find_setting(std::string_view name) noexcept;

/// The setting's help line as --help, the man page and to_toml print it: what it does, and
/// whether a reload applies it.
std::string described(const setting& s);

/// Where each setting was last given ("file:line: key" or "--flag"), by "table.key".
using origins = std::map<std::string, std::string, std::less<>>;

/// Parses TOML text named `name` and applies it over `config`; throws config_error.
void apply_toml(std::string_view toml, std::string_view name, Config& config, origins& where);
/// Reads the TOML file at `path` and applies it over `config`; throws config_error.
void apply_file(const std::string& path, Config& config, origins& where);
/// The checks that involve several settings; each message names where the culprit was given.
void check_consistency(const Config& config, const origins& where);

}  // namespace slabd::config::detail
