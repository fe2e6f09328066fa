#include "shard.hpp"

#include <asio/post.hpp>
#include <sys/socket.h>

#include <algorithm>
#include <array>

#include "server.hpp"

namespace slabd::server {

namespace {

constexpr std::chrono::milliseconds tick_period{250};
constexpr std::chrono::milliseconds max_backoff{1000};

std::uint32_t to_ticks(std::chrono::milliseconds d) noexcept {
    return static_cast<std::uint32_t>((d + tick_period - std::chrono::milliseconds{1}) / tick_period);
}

}  // namespace

struct shard::accept_handler {
    shard* self;
    using allocator_type = op_allocator<std::byte, accept_op_memory>;
    allocator_type get_allocator() const noexcept { return allocator_type(self->accept_memory_); }
    void operator()(const asio::error_code& ec, socket_type peer) const noexcept {
        self->on_accept(ec, std::move(peer));
    }
};

shard::shard(server& owner, std::size_t buffer_count, std::size_t buffer_size, std::size_t splice_pipes)
    : server_(owner),
      acceptor_(context_.get_executor()),
      tick_timer_(context_),
      backoff_timer_(context_),
      grace_timer_(context_),
      buffer_size_(buffer_size),
      buffers_(buffer_size, std::max<std::size_t>(buffer_count, 1), 64),
      pipes_(splice_pipes),
      live_{owner.settings().idle_timeout, owner.settings().connect_timeout,
            owner.settings().busy_message} {
    buffer_stats_ = buffers_.stats();
}

upstreams& shard::upstream_list() noexcept { return *server_.upstream_list(); }

void shard::listen(const asio::ip::tcp::endpoint& at) {
    listen_at_ = at;
    acceptor_.open(at.protocol());
    acceptor_.set_option(acceptor_type::reuse_address(true));
    const int one = 1;
    if (::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
    acceptor_.bind(at);
    acceptor_.listen(asio::socket_base::max_listen_connections);
}

void shard::run() {
    accept();
    tick();
    context_.run();
}

void shard::accept() noexcept { acceptor_.async_accept(accept_handler{this}); }

void shard::on_accept(const asio::error_code& ec, socket_type peer) noexcept {
    if (ec) {
        if (ec == asio::error::operation_aborted || draining_) return;
        return on_accept_error(ec);
    }
    backoff_ = std::chrono::milliseconds{0};
    admit(peer);
    if (!paused_) accept();
}

void shard::admit(socket_type& peer) noexcept {
    connection* c = server_.connections().create(*this, std::move(peer));
    if (c == nullptr && server_.settings().on_exhausted == config::exhausted_policy::pause) [[unlikely]] {
        // Announce the pause before one more try: a block freed on another shard after that
        // try then sees the announcement and wakes us, so no free can slip between the two.
        server_.note_paused(+1);
        c = server_.connections().create(*this, std::move(peer));
        if (c == nullptr) {
            // Keep the newcomer and stop accepting: the kernel's backlog holds the rest until a
            // block frees (DESIGN decision 3).
            parked_.emplace(std::move(peer));
            paused_ = true;
            bump(stats_.paused);
            return;
        }
        server_.note_paused(-1);
    }
    if (c == nullptr) [[unlikely]]
        return refuse(peer);
    bump(stats_.accepted);
    bump(stats_.active);
    if (server_.legs() != nullptr) {
        upstream_leg* leg = server_.legs()->create(context_);
        // The leg pool has the connection pool's capacity, so it cannot run dry first.
        c->start_proxy(leg);
    } else {
        link_idle(*c);
        c->start_echo();
    }
}

void shard::refuse(socket_type& peer) noexcept {
    bump(stats_.refused);
    server_.note_refusal();
    asio::error_code ignored;
    peer.non_blocking(true, ignored);
    const std::string& busy = live_.busy_message;
    if (!busy.empty()) peer.write_some(std::array{asio::buffer(busy), asio::buffer("\n", 1)}, ignored);
    close_cleanly(peer);
}

void shard::on_accept_error(const asio::error_code& ec) noexcept {
    // EMFILE and friends leave the connection in the backlog: retrying at once would spin.
    bump(stats_.accept_errors);
    server_.note_accept_error(ec);
    backoff_ = std::clamp(backoff_ * 2, std::chrono::milliseconds{10}, max_backoff);
    backoff_timer_.expires_after(backoff_);
    backoff_timer_.async_wait([this](const asio::error_code& wait_ec) {
        if (!wait_ec && !draining_) accept();
    });
}

void shard::notify_block_freed() {
    if (resume_posted_.exchange(true)) return;
    asio::post(context_, [this] {
        resume_posted_.store(false);
        resume_accepting();
    });
}

void shard::update(live_settings next) {
    asio::post(context_, [this, next = std::move(next)]() mutable { live_ = std::move(next); });
}

void shard::resume_accepting() noexcept {
    if (!paused_ || draining_) return;
    socket_type peer = std::move(*parked_);
    parked_.reset();
    paused_ = false;
    server_.note_paused(-1);
    admit(peer);
    if (!paused_) accept();
}

void shard::give_back_buffer(std::byte* buffer) noexcept {
    buffers_.free(buffer);
    if (waiters_head_ != nullptr) [[unlikely]] {
        connection* c = waiters_head_;
        waiters_head_ = c->links.next_waiter;
        if (waiters_head_ == nullptr) waiters_tail_ = nullptr;
        c->links.next_waiter = nullptr;
        c->links.waiting_for_buffer = false;
        // Resume from the event loop, not from inside another connection's handler.
        asio::post(context_, [c] { c->resume_after_buffer_wait(); });
    }
}

void shard::wait_for_buffer(connection& c) noexcept {
    bump(stats_.buffer_waits);
    if (c.links.waiting_for_buffer) return;
    c.links.waiting_for_buffer = true;
    if (waiters_tail_ != nullptr)
        waiters_tail_->links.next_waiter = &c;
    else
        waiters_head_ = &c;
    waiters_tail_ = &c;
}

void shard::push_back(list& l, connection& c) noexcept {
    c.links.prev = l.tail;
    c.links.next = nullptr;
    if (l.tail != nullptr)
        l.tail->links.next = &c;
    else
        l.head = &c;
    l.tail = &c;
    c.links.linked = true;
    c.links.last_active = now_;
}

void shard::unlink(connection& c) noexcept {
    if (!c.links.linked) return;
    list& l = c.links.connecting ? connecting_ : idle_;
    (c.links.prev != nullptr ? c.links.prev->links.next : l.head) = c.links.next;
    (c.links.next != nullptr ? c.links.next->links.prev : l.tail) = c.links.prev;
    c.links.prev = c.links.next = nullptr;
    c.links.linked = false;
}

void shard::link_idle(connection& c) noexcept {
    unlink(c);
    c.links.connecting = false;
    push_back(idle_, c);
}

void shard::link_connecting(connection& c) noexcept {
    unlink(c);
    c.links.connecting = true;
    push_back(connecting_, c);
}

void shard::move_to_idle_tail(connection& c) noexcept {
    if (!c.links.linked || c.links.connecting) return;
    unlink(c);
    push_back(idle_, c);
}

void shard::destroy(connection& c, close_reason why, upstream_leg* leg) noexcept {
    unlink(c);
    if (c.links.waiting_for_buffer) {
        connection** at = &waiters_head_;
        connection* prev = nullptr;
        while (*at != &c) {
            prev = *at;
            at = &(*at)->links.next_waiter;
        }
        *at = c.links.next_waiter;
        if (waiters_tail_ == &c) waiters_tail_ = prev;
    }
    switch (why) {
        case close_reason::idle_timeout: bump(stats_.closed_idle_timeout); break;
        case close_reason::error: bump(stats_.closed_error); break;
        case close_reason::upstream_failure: bump(stats_.closed_upstream_failure); break;
        case close_reason::shutdown: bump(stats_.closed_shutdown); break;
        case close_reason::client_eof:
        case close_reason::none: bump(stats_.closed_client_eof); break;
    }
    if (leg != nullptr) {
        if (leg->upstream != nullptr)
            static_cast<upstreams::upstream*>(leg->upstream)->active.fetch_sub(1, std::memory_order_relaxed);
        server_.legs()->destroy(leg);
    }
    server_.connections().destroy(&c);
    drop(stats_.active);
    server_.on_block_freed();
    if (draining_) finish_drain_if_empty();
}

void shard::tick() noexcept {
    tick_timer_.expires_after(tick_period);
    tick_timer_.async_wait([this](const asio::error_code& ec) { on_tick(ec); });
}

void shard::on_tick(const asio::error_code& ec) noexcept {
    // A tick already queued when the drain cancelled the timer must not re-arm it, or run()
    // never runs out of work and the process never exits.
    if (ec || (draining_ && stats_.active.load(std::memory_order_relaxed) == 0)) return;
    ++now_;
    if (live_.idle_timeout.count() > 0) {
        const std::uint32_t limit = to_ticks(live_.idle_timeout);
        while (idle_.head != nullptr && now_ - idle_.head->links.last_active >= limit) {
            connection& c = *idle_.head;
            unlink(c);
            c.abort(close_reason::idle_timeout);
        }
    }
    // Connecting clients share one timeout, so the list is in expiry order.
    const std::uint32_t connect_limit = std::max<std::uint32_t>(to_ticks(live_.connect_timeout), 1);
    while (connecting_.head != nullptr && now_ - connecting_.head->links.last_active >= connect_limit) {
        connection& c = *connecting_.head;
        unlink(c);
        c.abort_connect_attempt();
    }
    {
        std::lock_guard lock(buffer_stats_mutex_);
        buffer_stats_ = buffers_.stats();
    }
    tick();
}

pool::slab_stats shard::buffer_stats() const noexcept {
    std::lock_guard lock(buffer_stats_mutex_);
    return buffer_stats_;
}

void shard::begin_drain(std::chrono::milliseconds grace) {
    asio::post(context_, [this, grace] {
        if (draining_) return;
        draining_ = true;
        asio::error_code ignored;
        acceptor_.close(ignored);
        backoff_timer_.cancel();
        if (parked_) {
            refuse(*parked_);
            parked_.reset();
            paused_ = false;
            server_.note_paused(-1);
        }
        grace_timer_.expires_after(grace);
        grace_timer_.async_wait([this](const asio::error_code& ec) {
            if (!ec) close_all(close_reason::shutdown);
        });
        finish_drain_if_empty();
    });
}

void shard::close_all(close_reason why) noexcept {
    for (list* l : {&idle_, &connecting_}) {
        while (l->head != nullptr) {
            connection& c = *l->head;
            unlink(c);
            c.abort(why);
        }
    }
    while (waiters_head_ != nullptr) {
        connection* c = waiters_head_;
        waiters_head_ = c->links.next_waiter;
        c->links.next_waiter = nullptr;
        c->links.waiting_for_buffer = false;
        c->abort(why);
    }
    waiters_tail_ = nullptr;
}

void shard::finish_drain_if_empty() noexcept {
    if (stats_.active.load(std::memory_order_relaxed) != 0) return;
    // Nothing left to serve: let run() return.
    tick_timer_.cancel();
    grace_timer_.cancel();
    backoff_timer_.cancel();
}

}  // namespace slabd::server
