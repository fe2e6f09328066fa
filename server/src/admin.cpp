#include "admin.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <http_parser.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>

#include "server.hpp"
#include "slabd/pool/object_pool.hpp"

namespace slabd::server {

namespace {

using asio::experimental::as_tuple;

const char* reason_phrase(int status) {
    switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 431: return "Request Header Fields Too Large";
        case 503: return "Service Unavailable";
        default: return "Error";
    }
}

/// One admin connection: its socket, its header deadline, and what http-parser found. Lives in a
/// block of the admin's own pool; the deadline's handler shares it, since it may run after the
/// session's coroutine has finished.
struct session {
    explicit session(asio::ip::tcp::socket s) : socket(std::move(s)), deadline(socket.get_executor()) {}
    asio::ip::tcp::socket socket;
    asio::steady_timer deadline;
    bool timed_out = false;
    // The request being parsed.
    std::string url;
    std::string header_field;
    std::string header_value;
    std::string authorization;
    bool in_value = false;
    bool complete = false;

    void reset_request() {
        url.clear();
        header_field.clear();
        header_value.clear();
        authorization.clear();
        in_value = false;
        complete = false;
    }
    void end_header() {
        // Header names are case-insensitive.
        if (in_value && header_field.size() == 13 &&
            std::equal(header_field.begin(), header_field.end(), "authorization",
                       [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
            authorization = header_value;
        header_field.clear();
        header_value.clear();
        in_value = false;
    }
};

session& of(http_parser* p) { return *static_cast<session*>(p->data); }

const http_parser_settings& parser_settings() {
    static const http_parser_settings settings = [] {
        http_parser_settings s{};
        s.on_url = [](http_parser* p, const char* at, std::size_t n) {
            of(p).url.append(at, n);
            return 0;
        };
        s.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
            if (of(p).in_value) of(p).end_header();
            of(p).header_field.append(at, n);
            return 0;
        };
        s.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
            of(p).in_value = true;
            of(p).header_value.append(at, n);
            return 0;
        };
        s.on_headers_complete = [](http_parser* p) {
            of(p).end_header();
            return 0;
        };
        s.on_message_complete = [](http_parser* p) {
            of(p).complete = true;
            http_parser_pause(p, 1);  // one request at a time: pipelined bytes wait their turn
            return 0;
        };
        return s;
    }();
    return settings;
}

std::string serialize(const admin_response& r, bool head_only, bool keep_alive) {
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
    out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    out += "Cache-Control: no-store\r\n";
    out += r.extra_headers;
    out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    if (!head_only) out += r.body;
    return out;
}

admin_response error_response(int status) {
    return {status, "text/plain; charset=utf-8", std::string(reason_phrase(status)) + "\n", {}};
}

}  // namespace

/// The admin's own pool of sessions, apart from the data pool.
struct admin::session_pool {
    pool::object_pool<session> sessions{admin_limits::max_sessions};
    std::atomic<std::uint64_t> refused{0};  // read by snapshot() from any thread
    std::atomic<std::uint64_t> active{0};
};

namespace {

asio::awaitable<void> write_and_close(asio::ip::tcp::socket& socket, const std::string& wire) {
    co_await asio::async_write(socket, asio::buffer(wire), as_tuple(asio::use_awaitable));
    asio::error_code ignored;
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> serve(std::shared_ptr<session> state, server& owner) {
    auto& socket = state->socket;
    std::array<char, 4096> chunk{};
    std::string pending;  // bytes read but not yet parsed

    for (;;) {
        state->reset_request();
        http_parser parser{};
        http_parser_init(&parser, HTTP_REQUEST);
        parser.data = state.get();
        std::size_t consumed = 0;
        int status = 0;
        state->timed_out = false;
        state->deadline.expires_after(std::chrono::seconds(admin_limits::header_timeout_seconds));
        state->deadline.async_wait([state](const asio::error_code& ec) {
            if (ec) return;
            state->timed_out = true;
            asio::error_code ignored;
            state->socket.cancel(ignored);
        });
        while (!state->complete) {
            if (pending.empty()) {
                auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), as_tuple(asio::use_awaitable));
                if (ec) {
                    if (state->timed_out) status = 408;
                    break;
                }
                pending.assign(chunk.data(), n);
            }
            const std::size_t used = http_parser_execute(&parser, &parser_settings(), pending.data(), pending.size());
            consumed += used;
            pending.erase(0, used);
            // The limit counts what this request took, complete or not: a request whose
            // headers arrived whole in one read is as oversized as one still arriving.
            if (consumed > admin_limits::max_request_bytes) {
                status = 431;
                break;
            }
            const auto err = HTTP_PARSER_ERRNO(&parser);
            if (err == HPE_PAUSED) break;
            if (err != HPE_OK) {
                status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
                break;
            }
        }
        state->deadline.cancel();
        if (!state->complete && status == 0) co_return;  // the client went away between requests
        if (status == 408 && consumed == 0) co_return;   // an idle keep-alive: close quietly
        if (status != 0) {
            co_await write_and_close(socket, serialize(error_response(status), false, false));
            co_return;
        }
        const admin_request request{http_method_str(static_cast<http_method>(parser.method)), state->url,
                                    state->authorization};
        const bool keep_alive = http_should_keep_alive(&parser) != 0;
        const admin_response response = route(request, owner.snapshot(), owner.settings());
        const std::string wire = serialize(response, parser.method == HTTP_HEAD, keep_alive);
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(wire), as_tuple(asio::use_awaitable));
        if (ec) co_return;
        if (!keep_alive) {
            asio::error_code ignored;
            socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            co_return;
        }
        http_parser_pause(&parser, 0);
    }
}

asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, std::shared_ptr<admin::session_pool> pool,
                                  server& owner) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) {
            spdlog::warn("admin accept failed: {}; backing off", ec.message());
            asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
            co_await pause.async_wait(as_tuple(asio::use_awaitable));
            continue;
        }
        session* block = pool->sessions.create(std::move(socket));
        if (block == nullptr) {
            // The admin pool is full (a flood of admin clients): answer 503 and close, without
            // waiting for the client; the data plane is not affected either way.
            pool->refused.fetch_add(1, std::memory_order_relaxed);
            static const std::string busy = serialize(error_response(503), false, false);
            asio::error_code ignored;
            socket.non_blocking(true, ignored);
            socket.write_some(asio::buffer(busy), ignored);
            socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            continue;
        }
        pool->active.fetch_add(1, std::memory_order_relaxed);
        std::shared_ptr<session> state(block, [pool](session* s) {
            pool->sessions.destroy(s);
            pool->active.fetch_sub(1, std::memory_order_relaxed);
        });
        asio::co_spawn(acceptor.get_executor(), serve(std::move(state), owner), asio::detached);
    }
}

}  // namespace

admin::admin(asio::io_context& context, const asio::ip::tcp::endpoint& at, server& owner)
    : context_(context), acceptor_(context, at), server_(owner), sessions_(std::make_shared<session_pool>()) {}

admin::~admin() = default;

void admin::start() { asio::co_spawn(context_, accept_loop(acceptor_, sessions_, server_), asio::detached); }

std::uint64_t admin::sessions_refused() const noexcept { return sessions_->refused.load(std::memory_order_relaxed); }
std::uint64_t admin::sessions_active() const noexcept { return sessions_->active.load(std::memory_order_relaxed); }

void admin::stop() {
    asio::error_code ignored;
    acceptor_.close(ignored);
}

}  // namespace slabd::server
