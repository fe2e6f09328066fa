#include "admin.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <http_parser.h>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>

#include "server.hpp"

namespace slabd::server {

namespace {

constexpr std::size_t max_request_bytes = 8192;
constexpr auto header_timeout = std::chrono::seconds(10);

const char* reason_phrase(int status) {
    switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 431: return "Request Header Fields Too Large";
        default: return "Error";
    }
}

/// What http-parser tells us about one request.
struct request {
    std::string url;
    bool complete = false;
};

int on_url(http_parser* p, const char* at, std::size_t length) {
    static_cast<request*>(p->data)->url.append(at, length);
    return 0;
}

int on_message_complete(http_parser* p) {
    static_cast<request*>(p->data)->complete = true;
    http_parser_pause(p, 1);  // one request at a time: the rest stays for the next round
    return 0;
}

std::string serialize(const admin_response& r, bool head_only, bool keep_alive) {
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
    out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    out += "Cache-Control: no-store\r\n";
    out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    if (!head_only) out += r.body;
    return out;
}

/// A session's socket and header deadline, shared with the deadline's handler, which may run
/// after the coroutine has finished.
struct session_state {
    explicit session_state(asio::ip::tcp::socket s) : socket(std::move(s)), deadline(socket.get_executor()) {}
    asio::ip::tcp::socket socket;
    asio::steady_timer deadline;
    bool timed_out = false;
};

asio::awaitable<void> serve(asio::ip::tcp::socket accepted, server& owner) {
    http_parser_settings settings{};
    settings.on_url = on_url;
    settings.on_message_complete = on_message_complete;
    std::array<char, 4096> chunk{};
    std::string pending;  // bytes read but not yet parsed
    const auto state = std::make_shared<session_state>(std::move(accepted));
    auto& socket = state->socket;

    for (;;) {
        request req;
        http_parser parser{};
        http_parser_init(&parser, HTTP_REQUEST);
        parser.data = &req;
        std::size_t consumed_total = 0;
        state->timed_out = false;
        state->deadline.expires_after(header_timeout);
        state->deadline.async_wait([state](const asio::error_code& ec) {
            if (!ec) {
                state->timed_out = true;
                asio::error_code ignored;
                state->socket.cancel(ignored);
            }
        });
        int status = 0;
        while (!req.complete) {
            if (pending.empty()) {
                auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), asio::experimental::as_tuple(asio::use_awaitable));
                if (ec) {
                    if (state->timed_out && consumed_total > 0) status = 408;
                    break;
                }
                pending.assign(chunk.data(), n);
            }
            const std::size_t used = http_parser_execute(&parser, &settings, pending.data(), pending.size());
            consumed_total += used;
            pending.erase(0, used);
            const auto err = HTTP_PARSER_ERRNO(&parser);
            if (err != HPE_OK && err != HPE_PAUSED) {
                status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
                break;
            }
            if (!req.complete && consumed_total > max_request_bytes) {
                status = 431;
                break;
            }
        }
        state->deadline.cancel();
        if (!req.complete && status == 0) co_return;  // the client went away

        admin_response response;
        bool keep_alive = false;
        bool head_only = false;
        if (status != 0) {
            response = {status, "text/plain; charset=utf-8", std::string(reason_phrase(status)) + "\n"};
        } else {
            const std::string_view method = http_method_str(static_cast<http_method>(parser.method));
            head_only = parser.method == HTTP_HEAD;
            keep_alive = http_should_keep_alive(&parser) != 0;
            response = route(method, req.url, owner.snapshot());
        }
        const std::string wire = serialize(response, head_only, keep_alive);
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(wire), asio::experimental::as_tuple(asio::use_awaitable));
        if (ec || !keep_alive) {
            asio::error_code ignored;
            socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            co_return;
        }
    }
}

asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, server& owner) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) {
            spdlog::warn("admin accept failed: {}", ec.message());
            asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
            co_await pause.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
            continue;
        }
        asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), owner), asio::detached);
    }
}

}  // namespace

admin_response route(std::string_view method, std::string_view target, const server_snapshot& snapshot) {
    if (method != "GET" && method != "HEAD") return {405, "text/plain; charset=utf-8", "method not allowed\n"};
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/stats") return {200, "application/json", to_json(snapshot)};
    if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
    return {404, "text/plain; charset=utf-8", "not found\n"};
}

admin::admin(asio::io_context& context, const asio::ip::tcp::endpoint& at, server& owner)
    : context_(context), acceptor_(context, at), server_(owner) {}

void admin::start() { asio::co_spawn(context_, accept_loop(acceptor_, server_), asio::detached); }

void admin::stop() {
    asio::error_code ignored;
    acceptor_.close(ignored);
}

}  // namespace slabd::server
