// The admin HTTP endpoint: its own listener on the control thread, so operators can always see
// why the data plane is full (DESIGN decision 6). Routes are pure functions of the request and a
// stats snapshot; the socket loop around them is small.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <string>
#include <string_view>

#include "slabd/server/stats.hpp"

namespace slabd::server {

class server;

/// What a route answers.
struct admin_response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// Answers one request; no I/O, so it is tested without sockets.
admin_response route(std::string_view method, std::string_view target, const server_snapshot& snapshot);

class admin {
public:
    admin(asio::io_context& context, const asio::ip::tcp::endpoint& at, server& owner);
    void start();
    void stop();
    void set_draining() noexcept { draining_.store(true); }
    [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

private:
    asio::io_context& context_;
    asio::ip::tcp::acceptor acceptor_;
    server& server_;
    std::atomic<bool> draining_{false};
};

}  // namespace slabd::server
