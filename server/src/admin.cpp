#include "admin.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <system_error>

#include "admin_request.hpp"
#include "descriptor_reserve.hpp"
#include "server.hpp"
#include "slabd/pool/object_pool.hpp"

namespace slabd::server {

namespace {

using asio::experimental::as_tuple;
using namespace std::chrono_literals;

const char* reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 431:
            return "Request Header Fields Too Large";
        case 503:
            return "Service Unavailable";
        default:
            return "Error";
    }
}

std::string serialize(const admin_response& r, bool head_only, bool keep_alive) {
    std::string out =
        "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
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

const std::string& busy_answer() {
    static const std::string busy = serialize(error_response(503), false, false);
    return busy;
}

/// Writes the 503 without waiting for the client (a full socket buffer loses it), half-closes,
/// and closes at once: the descriptor is what the caller wants back.
void turn_away(asio::ip::tcp::socket& socket) {
    asio::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(busy_answer()), ignored);
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    socket.close(ignored);
}

/// One admin connection: its socket, its deadline, and the request being assembled. Lives in a
/// block of the admin's own pool; the deadline's handler shares it, since it may run after the
/// session's coroutine has finished.
struct session {
    explicit session(asio::ip::tcp::socket s)
        : socket(std::move(s)), deadline(socket.get_executor()) {}
    asio::ip::tcp::socket socket;
    asio::steady_timer deadline;
    request_assembler assembler;
    unsigned deadline_generation = 0;  // a deadline that fired after its phase ended is ignored
    bool timed_out = false;
    bool admitted = true;  // counted against max_sessions; false once evicted
    bool evicted = false;
    // The waiting list: sessions that have not completed their current request, oldest first.
    session* prev = nullptr;
    session* next = nullptr;
    bool waiting = false;
};

}  // namespace

// Under pressure (slowloris, floods, the descriptor limit), health and readiness must still
// answer within a second. The decision, after nginx:
// - Eviction: when max_sessions are admitted, a newcomer evicts the session that has waited
//   longest for a complete request (a slow or silent client, or an idle keep-alive); it gets a
//   best-effort 503 and is closed at once. A session that has a whole request is never evicted:
//   it is answering. Only when every session is answering is the newcomer refused with 503.
//   Evicted sessions keep their pool block until their coroutine unwinds, so the pool has twice
//   max_sessions blocks; admission counts admitted sessions, not blocks.
// - A reserved descriptor: one spare descriptor (/dev/null) is kept open. When accept fails with
//   EMFILE/ENFILE the spare is closed, the connection accepted and served like any other; with
//   no spare, the oldest waiting session is evicted to free a descriptor; both only when a client
//   is in the listener's queue (at the limit accept fails even with none). The spare is reopened
//   when a session ends, before each accept and on a retry timer: the data plane competes for
//   freed descriptors, so a failed reopen is normal and retried later, never in a loop. While it
//   is spent the shards refuse every newcomer (decision 28), so no data client keeps its slot.
// - Failed accepts back off 50 ms (at most 20 a second, so no spin) and are logged at most once
//   a second with a count. The 10 s header timeout stays; writes get the same bound.
struct admin::session_pool : std::enable_shared_from_this<admin::session_pool> {
    explicit session_pool(asio::io_context& context) : reopen_timer(context) {}
    session_pool(const session_pool&) = delete;
    session_pool& operator=(const session_pool&) = delete;

    descriptor_reserve spare;
    pool::object_pool<session> blocks{2 * admin_limits::max_sessions};
    std::size_t admitted =
        0;  // the rest is control-thread only; the atomics are read by snapshot()
    session* oldest = nullptr;
    session* newest = nullptr;
    asio::steady_timer reopen_timer;
    bool reopen_armed = false;
    bool stopped = false;
    std::chrono::steady_clock::time_point last_accept_log{};
    std::uint64_t unlogged_accept_errors = 0;

    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> active{0};
    std::atomic<std::uint64_t> evicted{0};
    std::atomic<std::uint64_t> accept_errors{0};
    std::atomic<std::uint64_t> reserve_used{0};

    void admit() {
        ++admitted;
        active.store(admitted, std::memory_order_relaxed);
    }
    void release(session& s) {
        unlist(s);
        if (!std::exchange(s.admitted, false)) return;
        --admitted;
        active.store(admitted, std::memory_order_relaxed);
    }

    /// From now until it has a whole request, `s` may be evicted.
    void list_waiting(session& s) {
        unlist(s);
        s.prev = newest;
        s.next = nullptr;
        (newest != nullptr ? newest->next : oldest) = &s;
        newest = &s;
        s.waiting = true;
    }
    void unlist(session& s) {
        if (!s.waiting) return;
        (s.prev != nullptr ? s.prev->next : oldest) = s.next;
        (s.next != nullptr ? s.next->prev : newest) = s.prev;
        s.prev = s.next = nullptr;
        s.waiting = false;
    }

    /// Closes the session that has waited longest for a request; false when none is waiting.
    bool evict_oldest() {
        session* victim = oldest;
        if (victim == nullptr) return false;
        release(*victim);
        victim->evicted = true;
        ++victim->deadline_generation;
        victim->deadline.cancel();
        turn_away(victim->socket);  // its coroutine wakes with operation_aborted and unwinds
        evicted.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    bool release_spare() {
        if (!spare.spend()) return false;
        reserve_used.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    /// Takes the reserve back if a descriptor is free; otherwise tries again later.
    void reopen_spare() {
        if (stopped || spare.take_back() || reopen_armed) return;
        reopen_armed = true;
        reopen_timer.expires_after(250ms);
        reopen_timer.async_wait([self = shared_from_this()](const asio::error_code& ec) {
            self->reopen_armed = false;
            if (!ec) self->reopen_spare();
        });
    }

    void log_accept_error(const asio::error_code& ec) {
        accept_errors.fetch_add(1, std::memory_order_relaxed);
        ++unlogged_accept_errors;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_accept_log < 1s) return;
        spdlog::warn("admin accept failed: {} ({} time{} since the last report); backing off",
                     ec.message(), unlogged_accept_errors, unlogged_accept_errors == 1 ? "" : "s");
        last_accept_log = now;
        unlogged_accept_errors = 0;
    }
};

// g++ 12 at -O2 takes the coroutine frames' allocation (Asio's operator new) for a mismatch with
// their operator delete once one coroutine's start is inlined into another: a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {

using session_ptr = std::shared_ptr<session>;

/// Bounds the phase that follows: when it fires, the socket's operations are cancelled.
void arm_deadline(const session_ptr& s, std::chrono::seconds after) {
    const unsigned generation = ++s->deadline_generation;
    s->timed_out = false;
    s->deadline.expires_after(after);
    s->deadline.async_wait([s, generation](const asio::error_code& ec) {
        if (ec || s->deadline_generation != generation) return;
        s->timed_out = true;
        asio::error_code ignored;
        s->socket.cancel(ignored);
    });
}

void disarm_deadline(const session_ptr& s) {
    ++s->deadline_generation;
    s->deadline.cancel();
}

/// Writes all of `wire` within the write timeout; false if that failed.
asio::awaitable<bool> send(const session_ptr& s, const std::string& wire) {
    arm_deadline(s, std::chrono::seconds(admin_limits::write_timeout_seconds));
    auto [ec, n] =
        co_await asio::async_write(s->socket, asio::buffer(wire), as_tuple(asio::use_awaitable));
    disarm_deadline(s);
    co_return !ec;
}

/// The socket loop around the request assembler and the routes: read until a request is whole,
/// answer it, and go on with the bytes left over (pipelining) or the next read (keep-alive).
asio::awaitable<void> serve(session_ptr s, std::shared_ptr<admin::session_pool> pool,
                            server& owner) {
    std::array<char, 4096> chunk{};
    std::string_view input;  // read but not yet assembled; a view into chunk

    for (;;) {
        pool->list_waiting(*s);
        arm_deadline(s, std::chrono::seconds(admin_limits::header_timeout_seconds));
        auto got = request_assembler::outcome::need_more;
        while ((got = s->assembler.feed(input)) == request_assembler::outcome::need_more) {
            assert(input.empty());  // so the next read may overwrite chunk
            auto [ec, n] = co_await s->socket.async_read_some(asio::buffer(chunk),
                                                              as_tuple(asio::use_awaitable));
            if (ec || s->evicted) break;
            input = {chunk.data(), n};
        }
        const bool timed_out = s->timed_out;
        disarm_deadline(s);
        pool->unlist(*s);
        if (s->evicted) co_return;  // already answered and closed by the evictor

        if (got == request_assembler::outcome::need_more) {
            // Read failed: the client left, or the header timeout cut it off. An idle keep-alive
            // is closed quietly; a half-sent request hears why.
            if (timed_out && s->assembler.pending_bytes() > 0)
                co_await send(s, serialize(error_response(408), false, false));
            co_return;
        }
        if (got == request_assembler::outcome::error) {
            if (co_await send(
                    s, serialize(error_response(s->assembler.error_status()), false, false))) {
                asio::error_code ignored;
                s->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            }
            co_return;
        }
        const admin_request& request = s->assembler.request();
        const bool stats_page = request.target == "/stats" || request.target.starts_with("/stats?");
        const admin_views views{[&owner](std::uint64_t since) { return owner.history_json(since); },
                                [&owner] { return owner.slab_map_json(); }};
        const admin_response response =
            route(request, owner.snapshot(stats_page), owner.settings(), views);
        if (!co_await send(s, serialize(response, request.head, request.keep_alive))) co_return;
        if (!request.keep_alive) {
            asio::error_code ignored;
            s->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            co_return;
        }
    }
}

bool out_of_descriptors(const asio::error_code& ec) {
    return ec == asio::error::no_descriptors ||
           ec == std::error_code(ENFILE, std::system_category());
}

/// Whether a connection waits in the listener's queue: poll() needs no new descriptor.
bool has_newcomer(asio::ip::tcp::acceptor& acceptor) {
    pollfd listener{acceptor.native_handle(), POLLIN, 0};
    return ::poll(&listener, 1, 0) == 1 && (listener.revents & POLLIN) != 0;
}

/// At the descriptor limit: frees one descriptor (the spare, else the oldest waiting session) and
/// accepts the connection that is waiting in the backlog with it.
asio::error_code accept_at_the_limit(asio::ip::tcp::acceptor& acceptor, admin::session_pool& pool,
                                     asio::ip::tcp::socket& socket) {
    if (!pool.release_spare() && !pool.evict_oldest()) return asio::error::no_descriptors;
    asio::error_code ec;
    acceptor.accept(socket, ec);  // the acceptor is non-blocking: would_block if it went away
    return ec;
}

void admit(asio::ip::tcp::socket socket, const std::shared_ptr<admin::session_pool>& pool,
           server& owner) {
    if (pool->admitted >= admin_limits::max_sessions && !pool->evict_oldest()) {
        // Every session is answering a request: turn the newcomer away without waiting for it.
        pool->refused.fetch_add(1, std::memory_order_relaxed);
        turn_away(socket);
        return;
    }
    session* block = pool->blocks.create(std::move(socket));
    if (block == nullptr) {  // every block is held by a session still unwinding
        pool->refused.fetch_add(1, std::memory_order_relaxed);
        turn_away(socket);
        return;
    }
    pool->admit();
    session_ptr state(block, [pool](session* s) {
        pool->release(*s);
        pool->blocks.destroy(s);  // closes its socket: a descriptor for the spare
        pool->reopen_spare();
    });
    asio::co_spawn(block->socket.get_executor(), serve(std::move(state), pool, owner),
                   asio::detached);
}

asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor,
                                  std::shared_ptr<admin::session_pool> pool, server& owner) {
    while (acceptor.is_open()) {
        pool->reopen_spare();
        auto [ec, socket] = co_await acceptor.async_accept(as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) {
            pool->log_accept_error(ec);
            if (out_of_descriptors(ec)) {
                // Linux takes the descriptor before it looks at the queue: at the limit accept
                // fails whether or not anyone is waiting. Spend the spare (or evict) only for a
                // client that is there; otherwise wait until one is.
                if (!has_newcomer(acceptor)) {
                    co_await acceptor.async_wait(asio::socket_base::wait_read,
                                                 as_tuple(asio::use_awaitable));
                    continue;
                }
                ec = accept_at_the_limit(acceptor, *pool, socket);
            }
            if (ec) {
                asio::steady_timer pause(acceptor.get_executor(), 50ms);
                co_await pause.async_wait(as_tuple(asio::use_awaitable));
                continue;
            }
        }
        admit(std::move(socket), pool, owner);
    }
}

}  // namespace

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

admin::admin(asio::io_context& context, const asio::ip::tcp::endpoint& at, server& owner)
    : context_(context),
      acceptor_(context, at),
      server_(owner),
      sessions_(std::make_shared<session_pool>(context)) {
    acceptor_.non_blocking(true);  // accept_at_the_limit's synchronous accept must not block
}

admin::admin(asio::io_context& context, int fd, server& owner)
    : context_(context),
      acceptor_(context),
      server_(owner),
      sessions_(std::make_shared<session_pool>(context)) {
    sockaddr_storage address{};
    socklen_t size = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0)
        throw std::system_error(errno, std::generic_category(), "the admin listener taken over");
    acceptor_.assign(address.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd);
    acceptor_.non_blocking(true);
}

admin::~admin() = default;

void admin::start() {
    asio::co_spawn(context_, accept_loop(acceptor_, sessions_, server_), asio::detached);
}

admin_snapshot admin::stats() const noexcept {
    const auto& p = *sessions_;
    admin_snapshot a;
    a.sessions_active = p.active.load(std::memory_order_relaxed);
    a.sessions_refused = p.refused.load(std::memory_order_relaxed);
    a.sessions_evicted = p.evicted.load(std::memory_order_relaxed);
    a.accept_errors = p.accept_errors.load(std::memory_order_relaxed);
    a.reserve_used = p.reserve_used.load(std::memory_order_relaxed);
    return a;
}

void admin::stop() {
    asio::error_code ignored;
    // Released, not closed: after a handover the next process holds the same listener, and only
    // EPOLL_CTL_DEL (which release does) stops its newcomers waking this one (as shard.cpp).
    if (const int fd = acceptor_.release(ignored); fd >= 0) ::close(fd);
    sessions_->stopped = true;
    sessions_->reopen_timer.cancel();
}

}  // namespace slabd::server
