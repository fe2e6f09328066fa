#include "admin.hpp"

#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

namespace slabd::server {

namespace {

constexpr const char* text = "text/plain; charset=utf-8";

bool token_matches(std::string_view authorization, const std::string& token) noexcept {
    constexpr std::string_view scheme = "Bearer ";
    if (authorization.size() != scheme.size() + token.size() ||
        authorization.substr(0, scheme.size()) != scheme)
        return false;
    // Compare every byte whatever the first difference, so timing does not leak the token.
    unsigned char difference = 0;
    for (std::size_t i = 0; i < token.size(); ++i)
        difference |= static_cast<unsigned char>(authorization[scheme.size() + i] ^ token[i]);
    return difference == 0;
}

// The value of `name` in the target's query, 0 when it is absent; nullopt when it is not a
// non-negative integer or the query has anything else.
std::optional<std::int64_t> query_number(std::string_view target, std::string_view name) {
    const auto question = target.find('?');
    if (question == std::string_view::npos) return 0;
    std::string_view query = target.substr(question + 1);
    if (query.empty()) return 0;
    if (!query.starts_with(name) || query.size() == name.size() || query[name.size()] != '=')
        return std::nullopt;
    query.remove_prefix(name.size() + 1);
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(query.data(), query.data() + query.size(), value);
    if (ec != std::errc{} || end != query.data() + query.size() || value < 0) return std::nullopt;
    return value;
}

}  // namespace

admin_response route(const admin_request& request, const server_snapshot& snapshot,
                     const config::Config& config, const admin_views& views) {
    if (request.method != "GET" && request.method != "HEAD")
        return {405, text, "method not allowed: GET or HEAD only\n", "Allow: GET, HEAD\r\n"};
    const std::string_view path = request.target.substr(0, request.target.find('?'));

    // Probes and the static page carry no data and must work for a load balancer without
    // credentials; everything that shows numbers or settings needs the token when one is set.
    if (path == "/healthz") return {200, text, "ok\n", {}};
    if (path == "/readyz") {
        if (ready(snapshot)) return {200, text, "ready\n", {}};
        return {503, text, snapshot.draining ? "draining\n" : "pool nearly full\n", {}};
    }
    if (path == "/") return {200, "text/html; charset=utf-8", std::string(status_page()), {}};

    const bool known = path == "/stats" || path == "/metrics" || path == "/config" ||
                       path == "/stats/history" || path == "/stats/slab";
    if (!known)
        return {404,
                text,
                "not found: try /, /stats, /stats/history, /stats/slab, /metrics, /healthz, "
                "/readyz, /config\n",
                {}};
    if (!config.admin_token.empty() && !token_matches(request.authorization, config.admin_token))
        return {401, text, "unauthorized: send Authorization: Bearer <admin.token>\n",
                "WWW-Authenticate: Bearer\r\n"};
    if (path == "/stats") return {200, "application/json", to_json(snapshot), {}};
    if (path == "/stats/history") {
        const auto since = query_number(request.target, "since");
        if (!since)
            return {400, text, "bad query: /stats/history?since=SEQ (a sample's seq)\n", {}};
        if (!views.history) return {503, text, "no history kept\n", {}};
        return {200, "application/json", views.history(static_cast<std::uint64_t>(*since)), {}};
    }
    if (path == "/stats/slab") {
        if (!views.slab_map) return {503, text, "no slab map\n", {}};
        return {200, "application/json", views.slab_map(), {}};
    }
    if (path == "/metrics")
        return {200, "text/plain; version=0.0.4; charset=utf-8", to_prometheus(snapshot), {}};
    return {200, "application/json", config_json(config), {}};
}

std::string slab_map_json(const pool::slab_map& map, std::size_t limit) {
    // Cells, not blocks, so that the body stays small whatever the pool's size: with one block
    // per cell each entry is that block's state (1 in use; 0 free, or never carved at or past
    // "carved"); otherwise it counts the cell's blocks in use.
    nlohmann::json j = {{"capacity", map.capacity},
                        {"limit", limit},
                        {"blocks_per_cell", map.blocks_per_cell},
                        {"carved", map.carved},
                        {"in_use", map.in_use}};
    j["head"] =
        map.head == pool::slab_map::none ? nlohmann::json(nullptr) : nlohmann::json(map.head);
    return j.dump();
}

std::string config_json(const config::Config& c) {
    // Generated from the settings list: each value is the literal the file would hold.
    nlohmann::json j = nlohmann::json::object();
    for (const auto& v : config::setting_values(c))
        j[std::string(v.table)][std::string(v.key)] = nlohmann::json::parse(v.literal);
    j["source_file"] = c.source_file;
    return j.dump();
}

}  // namespace slabd::server
