#include "admin.hpp"

#include <nlohmann/json.hpp>

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

}  // namespace

admin_response route(const admin_request& request, const server_snapshot& snapshot,
                     const config::Config& config) {
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

    const bool known = path == "/stats" || path == "/metrics" || path == "/config";
    if (!known)
        return {404, text, "not found: try /, /stats, /metrics, /healthz, /readyz, /config\n", {}};
    if (!config.admin_token.empty() && !token_matches(request.authorization, config.admin_token))
        return {401, text, "unauthorized: send Authorization: Bearer <admin.token>\n",
                "WWW-Authenticate: Bearer\r\n"};
    if (path == "/stats") return {200, "application/json", to_json(snapshot), {}};
    if (path == "/metrics")
        return {200, "text/plain; version=0.0.4; charset=utf-8", to_prometheus(snapshot), {}};
    return {200, "application/json", config_json(config), {}};
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
