#include "settings.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

namespace slabd::config {
namespace detail {
namespace {

[[noreturn]] void fail_io(const std::string& path, std::string_view what, int error) {
    throw config_error(path + ": " + std::string{what} + ": " +
                       std::generic_category().message(error));
}

std::string_view kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "of an unknown type";
}

// The only file I/O of the loader. O_NONBLOCK: opening a FIFO that has no writer would block
// for ever; fstat on the open descriptor, not stat on the path, so what is checked is what is
// read. The read itself stops past the limit too, for a file that grows after fstat (or a /proc
// file, whose size says 0).
std::string read_file(const std::string& path) {
    struct descriptor {
        int fd;
        ~descriptor() {
            if (fd >= 0) ::close(fd);
        }
    };
    const descriptor file{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
    if (file.fd < 0) fail_io(path, "cannot open", errno);
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) fail_io(path, "cannot stat", errno);
    if (!S_ISREG(st.st_mode))
        throw config_error(path + ": " + std::string{kind_of(st.st_mode)} + ", not a regular file");
    const std::string limit = std::to_string(max_file_bytes) + " bytes a config file may have";
    if (static_cast<std::uintmax_t>(st.st_size) > max_file_bytes)
        throw config_error(path + ": " + std::to_string(st.st_size) + " bytes, more than the " +
                           limit);

    std::string text;
    text.reserve(static_cast<std::size_t>(st.st_size));
    char chunk[16 * 1024];
    while (text.size() <= max_file_bytes) {
        const ssize_t n =
            ::read(file.fd, chunk, std::min(sizeof chunk, max_file_bytes + 1 - text.size()));
        if (n == 0) return text;
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_io(path, "cannot read", errno);
        }
        text.append(chunk, static_cast<std::size_t>(n));
    }
    throw config_error(path + ": more than the " + limit +
                       " (read past them, though its size said " + std::to_string(st.st_size) +
                       ")");
}

std::string list_tables() {
    std::string out;
    std::string_view previous;
    for (const auto& s : settings()) {
        if (s.table == previous) continue;
        out += (out.empty() ? "" : ", ") + std::string{s.table};
        previous = s.table;
    }
    return out;
}

std::string list_keys(std::string_view table) {
    std::string out;
    for (const auto& s : settings()) {
        if (s.table == table) out += (out.empty() ? "" : ", ") + std::string{s.key};
    }
    return out;
}

const setting* find_setting(std::string_view table, std::string_view key) {
    for (const auto& s : settings()) {
        if (s.table == table && s.key == key) return &s;
    }
    return nullptr;
}

bool is_table(std::string_view name) {
    return !list_keys(name).empty();
}

// "name:line: " for a key; toml++ knows where each key was written, headers included.
std::string at(std::string_view name, const toml::key& key) {
    return std::string{name} + ":" + std::to_string(key.source().begin.line) + ": ";
}

[[noreturn]] void unknown_top_level(std::string_view name, const toml::key& key,
                                    const toml::node& value) {
    if (value.is_table()) {
        throw config_error(at(name, key) + "[" + std::string{key.str()} +
                           "]: unknown table (the tables are " + list_tables() + ")");
    }
    for (const auto& s : settings()) {
        if (s.key == key.str()) {
            throw config_error(at(name, key) + std::string{key.str()} +
                               ": unknown key at the top level (did you mean " +
                               std::string{s.table} + "." + std::string{s.key} + "?)");
        }
    }
    throw config_error(at(name, key) + std::string{key.str()} +
                       ": unknown key at the top level (settings go in the tables " +
                       list_tables() + ")");
}

std::string_view origin(const origins& where, std::string_view key) {
    const auto it = where.find(key);
    return it == where.end() ? key : std::string_view{it->second};
}

// Binding both fails on Linux when the ports match and the addresses overlap: equal, or one of
// them a wildcard covering the other's family ("::" also covers IPv4 unless IPV6_V6ONLY is set).
bool overlap(const endpoint& a, const endpoint& b) {
    if (a.port == 0 || a.port != b.port) return false;
    const auto ipv4 = [](const endpoint& e) { return e.host.find(':') == std::string::npos; };
    return a.host == b.host || a.host == "::" || b.host == "::" ||
           (a.host == "0.0.0.0" && ipv4(b)) || (b.host == "0.0.0.0" && ipv4(a));
}

void check_path(const origins& where, std::string_view key, const std::string& path) {
    if (!path.empty() && !path.starts_with('/')) {
        throw config_error(std::string{origin(where, key)} + ": expected an absolute path in " +
                           "daemon mode (the daemon runs in /), got " + quote(path));
    }
}

// toml++ keeps a table's keys sorted by name; walking them in the order of the file makes the
// first error reported the first one in the file.
std::vector<std::pair<const toml::key*, const toml::node*>> in_file_order(const toml::table& t) {
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (const auto& [key, node] : t) entries.emplace_back(&key, &node);
    std::ranges::sort(entries, {}, [](const auto& entry) {
        const auto& begin = entry.first->source().begin;
        return std::pair{begin.line, begin.column};
    });
    return entries;
}

// toml++ 3.3 (Debian 12's) reaches __builtin_unreachable() in is_non_ascii_horizontal_whitespace()
// for these code points, which it tests wherever whitespace may come: outside strings and
// comments, and after a backslash in a """string""". Found by tests/fuzz/config_load.
bool parser_mishandles(char32_t c) {
    return (c > 0xA0 && c < 0x49A) || (c >= 0x2C5E && c < 0x3058 && c != 0x3000) ||
           (c >= 0xFB26 && c < 0xFEFF);
}

// Columns count code points, as toml++'s do.
std::size_t code_points(std::string_view text) {
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0u) != 0x80u;
    }));
}

// What toml++ 3.3 takes for whitespace beyond ASCII's (is_non_ascii_horizontal_whitespace and
// is_non_ascii_vertical_whitespace, where they answer).
bool parser_whitespace(char32_t c) {
    return c == 0xA0 || c == 0x1680 || c == 0x180E || (c >= 0x2000 && c <= 0x200B) || c == 0x202F ||
           c == 0x205F || c == 0x2060 || c == 0x3000 || c == 0xFEFF || c == 0x85 || c == 0x2028 ||
           c == 0x2029;
}

// How many of up to two more `quote`s follow a closing triple quote at `i`: they belong to the
// string (TOML allows """a"""" for a string ending in one quote).
std::size_t extra_quotes(std::string_view text, std::size_t i, char quote) {
    std::size_t n = 0;
    while (n < 2 && i + 3 + n < text.size() && text[i + 3 + n] == quote) ++n;
    return n;
}

[[noreturn]] void unexpected(std::string_view name, std::size_t line, std::size_t column,
                             char32_t c) {
    char code[16];
    std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
    throw config_error(std::string{name} + ":" + std::to_string(line) + ":" +
                       std::to_string(column) + ": unexpected character " + code);
}

// Refuses those characters where toml++ would test them, in text that is valid TOML (invalid
// TOML fools any lexer short of the parser itself: 2-e='x' is one bad value to toml++). TOML
// allows non-ASCII only in strings and comments, so in valid TOML that is right after a
// backslash in a """string""". A light lexer: comments, the four kinds of string, escapes.
void refuse_what_the_parser_mishandles(std::string_view text, std::string_view name) {
    enum class in { code, comment, basic, literal, ml_basic, ml_literal, ml_escape, ml_trim };
    in state = in::code;
    // A quote opens a string only where TOML lets one begin (after these, or first on a line);
    // elsewhere (5"x) toml++ reads on as a bad value, testing each character for whitespace.
    char before = '\n';
    std::size_t line = 1;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        const auto at = [&](std::string_view s) { return text.substr(i, s.size()) == s; };
        if (byte == '\n') {
            ++line;
            line_start = i + 1;
            if (state == in::comment || state == in::basic || state == in::literal)
                state = in::code;
            if (state == in::code) before = '\n';
            continue;
        }
        if (byte >= 0xC2 && byte < 0xF0 &&
            (state == in::code || state == in::ml_escape || state == in::ml_trim)) {
            const std::size_t length = byte < 0xE0 ? 2 : 3;
            if (i + length > text.size()) return;  // truncated: toml++ refuses it as invalid UTF-8
            char32_t c = byte & (length == 2 ? 0x1Fu : 0x0Fu);
            for (std::size_t k = 1; k < length; ++k)
                c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3Fu);
            if (parser_mishandles(c))
                unexpected(name, line, code_points(text.substr(line_start, i - line_start)) + 1, c);
            // toml++ trims its non-ASCII whitespace after a line-ending backslash too (and takes
            // a backslash before one for the start of a trim), then tests what follows.
            if (state != in::code && parser_whitespace(c)) {
                state = in::ml_trim;
                i += length - 1;
                continue;
            }
        }
        switch (state) {
            case in::code: {
                const bool string_may_start =
                    std::string_view{"\n=[,{."}.find(before) != std::string_view::npos;
                if (byte != ' ' && byte != '\t' && byte != '\r') before = static_cast<char>(byte);
                if (!string_may_start && (byte == '"' || byte == '\'')) break;
                if (byte == '#') {
                    state = in::comment;
                } else if (at(R"(""")")) {
                    state = in::ml_basic;
                    i += 2;
                } else if (at("'''")) {
                    state = in::ml_literal;
                    i += 2;
                } else if (byte == '"') {
                    state = in::basic;
                } else if (byte == '\'') {
                    state = in::literal;
                }
                break;
            }
            case in::basic:
                if (byte == '\\') {
                    ++i;
                } else if (byte == '"') {
                    state = in::code;
                }
                break;
            case in::literal:
                if (byte == '\'') state = in::code;
                break;
            case in::ml_trim:
                if (byte == ' ' || byte == '\t' || byte == '\r') break;
                state = in::ml_basic;
                [[fallthrough]];
            case in::ml_basic:
                if (byte == '\\' && i + 1 < text.size() &&
                    std::string_view{" \t\r\n"}.find(text[i + 1]) != std::string_view::npos) {
                    state = in::ml_trim;
                } else if (byte == '\\') {
                    state = in::ml_escape;  // toml++ tests the escaped character for whitespace
                } else if (at(R"(""")")) {
                    i += 2 + extra_quotes(text, i, '"');
                    state = in::code;
                }
                break;
            case in::ml_escape:
                state = in::ml_basic;
                break;
            case in::ml_literal:
                if (at("'''")) {
                    i += 2 + extra_quotes(text, i, '\'');
                    state = in::code;
                }
                break;
            case in::comment:
                break;
        }
    }
}

// The text with each code point parser_mishandles() replaced by one of the same length that
// toml++ classifies correctly and treats alike (not whitespace, not a key character): U+0500 or
// U+4E00. toml++ takes the same path through both texts, so parsing this one says, without
// the undefined behaviour, whether the original is valid TOML and where it is not.
std::string with_stand_ins(std::string_view text) {
    std::string out{text};
    for (std::size_t i = 0; i < out.size(); ++i) {
        const auto byte = static_cast<unsigned char>(out[i]);
        if (byte < 0xC2 || byte >= 0xF0) continue;
        const std::size_t length = byte < 0xE0 ? 2 : 3;
        if (i + length > out.size()) break;
        char32_t c = byte & (length == 2 ? 0x1Fu : 0x0Fu);
        bool valid = true;
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(out[i + k]);
            valid = valid && (next & 0xC0u) == 0x80u;
            c = (c << 6) | (next & 0x3Fu);
        }
        // An overlong form (E0 82 A1 for U+00A1) stays: toml++'s decoder refuses it, while a
        // stand-in would make the text valid.
        if (!valid || (length == 3 && c < 0x800)) continue;
        if (parser_mishandles(c)) out.replace(i, length, length == 2 ? "\xD4\x80" : "\xE4\xB8\x80");
        i += length - 1;
    }
    return out;
}

// The code point at a toml++ source position (1-based line, column in code points), or 0.
char32_t code_point_at(std::string_view text, std::size_t line, std::size_t column) {
    std::size_t i = 0;
    for (std::size_t l = 1; l < line; ++l) {
        i = text.find('\n', i);
        if (i == std::string_view::npos) return 0;
        ++i;
    }
    for (std::size_t c = 1; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0u) == 0x80u) continue;
        if (c++ == column) break;
    }
    if (i >= text.size()) return 0;
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0xC2 || lead >= 0xF0) return lead < 0x80 ? lead : 0;
    const std::size_t length = lead < 0xE0 ? 2 : 3;
    if (i + length > text.size()) return 0;
    char32_t c = lead & (length == 2 ? 0x1Fu : 0x0Fu);
    for (std::size_t k = 1; k < length; ++k)
        c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3Fu);
    return c;
}

// Parses `toml`; an error names the file, line and column. `original`, when the text holds
// stand-ins, is the text the user wrote: an error at a stand-in names the character they wrote
// there, not the stand-in.
toml::table parse(std::string_view toml, std::string_view name, std::string_view original = {}) {
    try {
        return toml::parse(toml, name);
    } catch (const toml::parse_error& e) {
        const auto& begin = e.source().begin;
        if (!original.empty()) {
            const char32_t wrote = code_point_at(original, begin.line, begin.column);
            if (parser_mishandles(wrote)) unexpected(name, begin.line, begin.column, wrote);
        }
        throw config_error(std::string{name} + ":" + std::to_string(begin.line) + ":" +
                           std::to_string(begin.column) + ": " + std::string{e.description()});
    }
}

}  // namespace

void apply_toml(std::string_view toml, std::string_view name, Config& config, origins& where) {
    // With characters toml++ mishandles, the stand-ins first: an invalid file is refused there;
    // a valid one is lexed exactly, so only the one position toml++ mishandles in valid TOML
    // (after a backslash in a """string""") remains to refuse before the real parse.
    if (const std::string stand_ins = with_stand_ins(toml); stand_ins != toml) {
        (void)parse(stand_ins, name, toml);
        refuse_what_the_parser_mishandles(toml, name);
    }
    const toml::table root = parse(toml, name);
    for (const auto& [table_key, table_node] : in_file_order(root)) {
        const std::string_view table_name = table_key->str();
        if (!is_table(table_name)) unknown_top_level(name, *table_key, *table_node);
        const auto* table = table_node->as_table();
        if (table == nullptr) given{*table_node, name, std::string{table_name}}.fail("a table");
        for (const auto& [key, node] : in_file_order(*table)) {
            std::string path = std::string{table_name} + "." + std::string{key->str()};
            const setting* s = find_setting(table_name, key->str());
            if (s == nullptr) {
                throw config_error(at(name, *key) + path + ": unknown key (the keys of [" +
                                   std::string{table_name} + "] are " + list_keys(table_name) +
                                   ")");
            }
            const given value{*node, name, path};
            s->set(config, value);
            where[std::move(path)] = value.where();
        }
    }
}

void apply_file(const std::string& path, Config& config, origins& where) {
    apply_toml(read_file(path), path, config, where);
    config.source_file = path;
}

void check_consistency(const Config& config, const origins& where) {
    const auto blame = [&where](std::string_view key) { return std::string{origin(where, key)}; };
    if (config.mode == server_mode::proxy && config.upstreams.empty()) {
        throw config_error(
            blame("server.mode") +
            ": proxy mode needs at least one upstream (proxy.upstreams or --upstream)");
    }
    if (config.accept_proxy && config.trusted_sources.empty()) {
        throw config_error(blame("server.accept_proxy") +
                           ": accept_proxy needs server.trusted_sources (or --trusted-source), "
                           "the load balancers allowed to say who the client is");
    }
    if (config.send_proxy != proxy_header_version::off && config.mode != server_mode::proxy) {
        throw config_error(blame("proxy.send_proxy") + ": send_proxy applies to proxy mode only");
    }
    if (overlap(config.listen, config.admin)) {
        const std::string listener = quote(to_string(config.listen));
        throw config_error(blame("admin.listen") + ": expected an endpoint apart from the data " +
                           "listener " + listener + " (" + blame("server.listen") + "), got " +
                           quote(to_string(config.admin)));
    }
    if (config.ready_headroom > config.max_connections) {
        throw config_error(blame("admin.ready_headroom") + ": expected at most " +
                           "pool.max_connections (" + std::to_string(config.max_connections) +
                           "), got " + std::to_string(config.ready_headroom));
    }
    if (config.pool_reserve != 0 && config.pool_reserve < config.max_connections) {
        throw config_error(blame("pool.reserve") + ": expected at least pool.max_connections (" +
                           std::to_string(config.max_connections) + ", " +
                           blame("pool.max_connections") + "), got " +
                           std::to_string(config.pool_reserve));
    }
    if (config.daemonize) {
        if (config.pidfile.empty()) {
            throw config_error(blame("daemon.daemonize") +
                               ": daemon mode needs a pidfile (daemon.pidfile or --pidfile)");
        }
        check_path(where, "daemon.pidfile", config.pidfile);
        check_path(where, "log.file", config.log_file);
        check_path(where, "daemon.handover_socket", config.handover_socket);
    }
}

}  // namespace detail

Config load_string(std::string_view toml, std::string_view name, Config base) {
    detail::origins where;
    detail::apply_toml(toml, name, base, where);
    detail::check_consistency(base, where);
    return base;
}

Config load_file(const std::string& path, Config base) {
    detail::origins where;
    detail::apply_file(path, base, where);
    detail::check_consistency(base, where);
    return base;
}

std::vector<std::string> differing_settings(const Config& a, const Config& b) {
    std::vector<std::string> out;
    for (const auto& s : detail::settings())
        if (s.show(a, false) != s.show(b, false))
            out.push_back(std::string{s.table} + "." + std::string{s.key});
    return out;
}

std::string setting_literal(const Config& config, std::string_view name) {
    const detail::setting* s = detail::find_setting(name);
    return s != nullptr ? s->show(config, true) : std::string{};
}

std::vector<setting_value> setting_values(const Config& config, bool redact_secrets) {
    std::vector<setting_value> values;
    for (const auto& s : detail::settings())
        values.push_back({s.table, s.key, s.show(config, redact_secrets)});
    return values;
}

std::string to_toml(const Config& config, bool redact_secrets) {
    std::string out = "# slabd " SLABD_VERSION ", effective configuration";
    if (!config.source_file.empty()) out += " (file " + detail::quote(config.source_file) + ")";
    out += "\n";
    std::string_view table;
    for (const auto& s : detail::settings()) {
        if (s.table != table) {
            table = s.table;
            out += "\n[" + std::string{table} + "]\n";
        }
        out += "# " + detail::described(s) + "\n";
        out += std::string{s.key} + " = " + s.show(config, redact_secrets) + "\n";
    }
    return out;
}

}  // namespace slabd::config
