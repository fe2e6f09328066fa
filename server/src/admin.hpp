// The admin HTTP endpoint: its own listener on the control thread and its own small session
// pool, so operators can always see why the data plane is full (docs/design.md, decision 6). Routes
// are pure functions of the request and a stats snapshot; the socket loop around them is small.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "admin_request.hpp"
#include "slabd/config/config.hpp"
#include "slabd/server/stats.hpp"

namespace slabd::server {

class server;

/// What a route answers.
struct admin_response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string extra_headers;  // complete "Name: value\r\n" lines
};

/// What routes show besides the snapshot, computed only for the route that asks: the history
/// (GET /stats/history?since=SEQ) and the slab map (GET /stats/slab).
struct admin_views {
    std::function<std::string(std::uint64_t since_seq)> history;
    std::function<std::string()> slab_map;
};

/// Answers one request; no I/O, so it is tested without sockets.
admin_response route(const admin_request& request, const server_snapshot& snapshot,
                     const config::Config& config, const admin_views& views = {});
/// The body of GET /stats/slab: the pool's blocks summed into cells, and the admission limit.
std::string slab_map_json(const pool::slab_map& map, std::size_t limit);
/// The effective configuration as JSON, the token redacted.
std::string config_json(const config::Config& config);
/// The live status page served at "/": self-contained HTML that polls /stats.
std::string_view status_page() noexcept;

class admin {
  public:
    admin(asio::io_context& context, const asio::ip::tcp::endpoint& at, server& owner);
    /// On `fd`, a listener taken over from the process before this one.
    admin(asio::io_context& context, int fd, server& owner);
    /// The listener, for a process that takes over.
    [[nodiscard]] int native_handle() noexcept { return acceptor_.native_handle(); }
    ~admin();
    void start();
    void stop();
    [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const {
        return acceptor_.local_endpoint();
    }
    /// The admin endpoint's counters and gauges (SLABD_ADMIN_STATS), for /stats and /metrics.
    [[nodiscard]] admin_snapshot stats() const noexcept;

    struct session_pool;

  private:
    asio::io_context& context_;
    asio::ip::tcp::acceptor acceptor_;
    server& server_;
    // Shared with every live session, which may outlive this object inside the io_context.
    std::shared_ptr<session_pool> sessions_;
};

}  // namespace slabd::server
