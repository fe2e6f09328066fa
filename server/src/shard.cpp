#include "shard.hpp"

#include "new_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>
#include <asio/post.hpp>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <utility>

namespace slabd::server {

namespace {

constexpr std::chrono::milliseconds tick_period{250};
constexpr std::chrono::milliseconds max_backoff{1000};
// How long a closed client may go on sending before its socket is closed over what it sends
// (nginx's lingering_time is 30 s; a client that has been sent FIN rarely needs more than a
// round trip).
constexpr std::chrono::milliseconds linger_time{2000};
// Refusals at the descriptor limit per accept error, so that a storm cannot starve the shard.
constexpr int max_fd_limit_refusals = 64;
// Newcomers accepted in a row before the shard's other handlers run (HAProxy's
// tune.maxaccept defaults to 64 per listener too).
constexpr int accept_batch = 64;

std::uint32_t to_ticks(std::chrono::milliseconds d) noexcept {
    return static_cast<std::uint32_t>((d + tick_period - std::chrono::milliseconds{1}) /
                                      tick_period);
}

/// Ticks after which a deadline of `d` has surely passed: a connection linked just before a tick
/// sees that tick at once, so a deadline of whole ticks needs one more never to end early.
std::uint32_t deadline_ticks(std::chrono::milliseconds d) noexcept {
    return to_ticks(d) + 1;
}

bool is_descriptor_limit(const asio::error_code& ec) noexcept {
    return ec.category() == asio::error::get_system_category() &&
           (ec.value() == EMFILE || ec.value() == ENFILE);
}

}  // namespace

// Serves a listener's wait for a newcomer and the next round of a long backlog, one at a time.
struct shard::accept_handler {
    shard* self;
    using allocator_type = op_allocator<std::byte, io_op_memory>;
    allocator_type get_allocator() const noexcept { return allocator_type(self->accept_memory_); }
    void operator()(const asio::error_code& ec = {}) const noexcept {
        if (!ec && !self->draining_) self->accept();
    }
};

struct shard::resume_handler {
    shard* self;
    using allocator_type = op_allocator<std::byte, io_op_memory>;
    allocator_type get_allocator() const noexcept { return allocator_type(self->resume_memory_); }
    void operator()() const noexcept { self->resume_buffer_waiters(); }
};

shard::shard(const shard_setup& setup, std::uint16_t index, asio::io_context& context)
    : connections_(setup.connections),
      legs_(setup.legs),
      upstreams_(setup.upstream_list),
      events_(setup.events),
      on_exhausted_(setup.on_exhausted),
      sources_(setup.sources),
      accept_rate_(setup.accept_rate),
      log_(setup.log),
      index_(index),
      context_(context),
      listener_(context_.get_executor()),
      tick_timer_(context_),
      backoff_timer_(context_),
      grace_timer_(context_),
      rate_timer_(context_),
      closes_seen_timer_(context_),
      buffer_size_(setup.buffer_size),
      buffers_(setup.buffer_size, std::max<std::size_t>(setup.buffer_count, 1), 64),
      pipes_(setup.splice_pipes),
      lingering_(context_, stats_, std::max<std::size_t>(setup.linger_slots, 1),
                 to_ticks(linger_time)),
      live_(setup.live) {
    buffer_stats_ = buffers_.stats();
    socket_closing_threads.fetch_add(1, std::memory_order_relaxed);
}

shard::~shard() {
    socket_closing_threads.fetch_sub(1, std::memory_order_relaxed);
}

void shard::listen(const asio::ip::tcp::endpoint& at) {
    listener_.open(at.protocol());
    listener_.set_option(socket_type::reuse_address(true));
    const int one = 1;
    if (::setsockopt(listener_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
    listener_.bind(at);
    // Before listen: a socket inherits what its listener had when its handshake completed.
    set_inherited_options(listener_.native_handle());
    if (::listen(listener_.native_handle(), SOMAXCONN) != 0)
        throw std::system_error(errno, std::generic_category(), "listen");
    // accept() drains the backlog until EAGAIN, so it must never block there.
    listener_.non_blocking(true);
}

void shard::adopt(int fd) {
    sockaddr_storage address{};
    socklen_t size = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0)
        throw std::system_error(errno, std::generic_category(), "a listener taken over");
    listener_.assign(address.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd);
    listener_.non_blocking(true);
    set_inherited_options(fd);
    // The backlog may hold clients that completed their handshake before, without TCP_NODELAY
    // if the process before this one did not set it on the listener.
    backlog_may_lack_nodelay_ = true;
}

void shard::run() {
    accept();
    tick();
    context_.run();
}

void shard::accept() noexcept {
    // A newcomer takes the lowest free descriptor, so none is kept while a reserve is spent
    // (this shard's, another shard's, or the admin endpoint's): it could take the slot that
    // reserve needs back and keep it for as long as it stays connected, and then a shard could
    // refuse no one at the limit, or the admin endpoint answer no one. A spent reserve's slot
    // may be another thread's for a moment (an accept(2) holds a descriptor even when nobody is
    // waiting), so the shard takes its own back here; the others are their threads' to take
    // back, and until then every newcomer is refused below. (Not with this shard's reserve:
    // spending it would keep the count up for the others.)
    if (descriptor_reserve::any_spent()) [[unlikely]] {
        if (!reserve_.take_back()) return back_off();
    }
    for (int i = 0; i < accept_batch; ++i) {
        assert(!newcomer_.is_open());
        asio::error_code ec;
        if (!accept_into(listener_, newcomer_, peer_, ec)) {
            // The listener is registered edge-triggered, and only an empty backlog guarantees
            // that the next newcomer raises an edge: waiting is free then, and only then.
            if (ec == asio::error::would_block) {
                backlog_may_lack_nodelay_ = false;
                return async_wait_readable(reactor_, listener_, accept_handler{this});
            }
            return on_accept_error(ec);
        }
        // This newcomer may hold the very slot a spent reserve needs back: refused at once, it
        // frees it again. (A reserve counts as spent before its slot is freed, and the kernel's
        // descriptor table lock orders that close before this accept, so a newcomer in that
        // slot sees the count.)
        if (descriptor_reserve::any_spent()) [[unlikely]] {
            count_refusal(refusal_reason::fd_limit);
            send_busy_line(newcomer_.get());
            close_now(newcomer_.release());
            continue;
        }
        backoff_ = std::chrono::milliseconds{0};
        if (backlog_may_lack_nodelay_) [[unlikely]] {
            const int one = 1;
            ::setsockopt(newcomer_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        admit(newcomer_);
        if (parked_.is_open()) return;
    }
    // A long backlog: the connections already accepted get their turn before the next round.
    asio::post(context_, accept_handler{this});
}

void shard::admit(owned_fd& peer) noexcept {
    // A parked newcomer's token is its own: whatever becomes of it, the next one pays for its own.
    const bool rate_token_held = std::exchange(rate_token_held_, false);
    // Only a trusted load balancer may say who its client is; the header itself comes later.
    if (live_.accept_proxy && !trusted(live_.trusted_sources, peer_.address())) [[unlikely]]
        return refuse(peer, refusal_reason::proxy_untrusted);
    source_key source;
    bool counted = false;
    if ((sources_.limit() != 0 || accept_rate_.enabled()) &&
        !within_limits(peer, source, counted, rate_token_held)) [[unlikely]]
        return;
    // Owned by the connection once it exists (its destructor gives it back); until then, here.
    const auto give_back_source = [&] {
        if (counted) sources_.release(source);
    };
    // The leg pool holds a spare leg per shard beyond the connection pool's capacity, so the leg
    // taken before the block is never the one another shard needed.
    upstream_leg* leg = legs_ != nullptr ? legs_->create() : nullptr;
    if (legs_ != nullptr && leg == nullptr) [[unlikely]] {
        give_back_source();
        return refuse_for_room(peer, refusal_reason::pool_full, accept_rate_.enabled());
    }
    connection* c = connections_.create(*this, std::move(peer), leg);
    // evict-idle closes a connection whose block returns once its last operation has run: the
    // newcomer waits for it as under pause (and when another shard takes that block first, the
    // retry evicts again or refuses).
    if (c == nullptr &&
        (on_exhausted_ == config::exhausted_policy::pause ||
         (on_exhausted_ == config::exhausted_policy::evict_idle && evict_idle_connection())))
        [[unlikely]] {
        // Announce the pause before one more try: a block freed on another shard after that
        // try then sees the announcement and wakes us, so no free can slip between the two.
        events_.paused(+1);
        c = connections_.create(*this, std::move(peer), leg);
        if (c == nullptr) {
            // Keep the newcomer and stop accepting: the kernel's backlog holds the rest until a
            // block frees. On resume admit() counts the source again (peer_ still holds its
            // address: no accept is in flight while paused).
            if (leg != nullptr) legs_->destroy(leg);
            give_back_source();
            park(peer, parked_until::block_freed);
            rate_token_held_ = accept_rate_.enabled();
            if (on_exhausted_ == config::exhausted_policy::pause) bump(stats_.paused);
            return;
        }
        events_.paused(-1);
    }
    if (c == nullptr) [[unlikely]] {
        if (leg != nullptr) legs_->destroy(leg);
        give_back_source();
        return refuse_for_room(peer, refusal_reason::pool_full, accept_rate_.enabled());
    }
    closes_seen_since_admitting_ = false;
    c->set_client(peer_);
    if (counted) {
        c->links.source_bits = static_cast<std::uint8_t>(
            source_bits(c->links.source, live_.source_prefix_v4, live_.source_prefix_v6));
        c->links.holds_source = true;
    }
    const connection_ref hold(*c);
    // Accepted once served: an echo client now, a proxied one once it has an upstream to go to
    // (connection::connect_next_upstream), either only after its PROXY header under accept_proxy.
    if (live_.accept_proxy) {
        link_awaiting_header(*c);
    } else if (leg == nullptr) {
        bump(stats_.accepted);
        link_idle(*c);
    }
    c->start();
}

std::optional<refusal_reason> shard::admit_proxied(connection& c,
                                                   const asio::ip::address& client) noexcept {
    bump(stats_.proxy_headers_received);
    if (sources_.limit() != 0) {
        const source_key source =
            make_source_key(client, live_.source_prefix_v4, live_.source_prefix_v6);
        // As within_limits does: a full table refuses for want of room.
        if (const auto verdict = sources_.acquire(source);
            verdict != source_table::verdict::admitted)
            return verdict == source_table::verdict::over_limit ? refusal_reason::per_source
                                                                : refusal_reason::pool_full;
        c.links.source_bits = static_cast<std::uint8_t>(
            source_bits(c.links.source, live_.source_prefix_v4, live_.source_prefix_v6));
        c.links.holds_source = true;
    }
    if (legs_ == nullptr) {
        bump(stats_.accepted);
        link_idle(c);
    }
    return std::nullopt;
}

bool shard::within_limits(owned_fd& peer, source_key& source, bool& counted,
                          bool rate_token_held) noexcept {
    // The source first: a client over its own limit must not spend the rate everyone shares.
    // Under accept_proxy the peer is the load balancer: the client's source is counted once its
    // header names it (admit_proxied).
    if (sources_.limit() != 0 && !live_.accept_proxy) {
        source = make_source_key(peer_.address(), live_.source_prefix_v4, live_.source_prefix_v6);
        // A full table (room for every block's source and each shard's newcomer, so only a bug
        // fills it) refuses too, for want of room: failing open would let a client past its limit.
        if (const auto verdict = sources_.acquire(source);
            verdict != source_table::verdict::admitted) [[unlikely]] {
            if (verdict == source_table::verdict::over_limit)
                refuse_for_room(peer, refusal_reason::per_source, rate_token_held);
            else
                refuse(peer, refusal_reason::pool_full);
            return false;
        }
        counted = true;
    }
    // A newcomer parked for room kept the token it took before; it does not pay twice.
    if (accept_rate_.enabled() && !rate_token_held &&
        !accept_rate_.try_take(accept_rate_limiter::clock::now())) {
        if (std::exchange(counted, false)) sources_.release(source);
        if (on_exhausted_ == config::exhausted_policy::pause) {
            // Hold this one and stop accepting: the backlog keeps the rest until a token is due.
            park(peer, parked_until::rate_token);
            wait_for_rate();
        } else {
            refuse(peer, refusal_reason::rate_limited);
        }
        return false;
    }
    return true;
}

bool shard::evict_idle_connection() noexcept {
    // The idle list runs from the longest silent: its head is the only candidate.
    connection* victim = idle_.head;
    const std::uint32_t silent_for = std::max<std::uint32_t>(to_ticks(live_.evict_idle_after), 1);
    if (victim == nullptr || now_ - victim->links.last_active < silent_for) return false;
    unlink(*victim);
    const connection_ref hold(*victim);
    victim->abort(close_reason::evicted);
    return true;
}

void shard::park(owned_fd& peer, parked_until until) noexcept {
    parked_ = std::move(peer);
    parked_until_ = until;
}

void shard::wait_for_rate() noexcept {
    rate_timer_.expires_after(accept_rate_.until_next(accept_rate_limiter::clock::now()));
    rate_timer_.async_wait([this](const asio::error_code& ec) {
        if (ec || draining_ || parked_until_ != parked_until::rate_token) return;
        admit_parked();
    });
}

void shard::admit_parked() noexcept {
    owned_fd peer = std::move(parked_);
    parked_until_ = parked_until::nothing;
    admit(peer);
    if (!parked_.is_open()) accept();
}

void shard::refuse_for_room(owned_fd& peer, refusal_reason why, bool took_rate_token) noexcept {
    if (closes_seen_since_admitting_) return refuse(peer, why);
    bump(stats_.held_for_closes);
    park(peer, parked_until::closes_seen);
    rate_token_held_ = took_rate_token;
    // Accepting runs up to accept_batch newcomers in a row, each served at once, while the
    // events of the shard's other sockets wait: clients that have hung up meanwhile still hold
    // their room. An expired timer fires only after the event loop's next epoll_wait, and Asio
    // runs it after the first handler of each socket event that wait returned: an echo client's
    // EOF frees its block and source share there. (A proxied client's half-close does not: its
    // block waits for the upstream's FIN, as the bytes in flight must.)
    closes_seen_timer_.expires_after(asio::steady_timer::duration::zero());
    closes_seen_timer_.async_wait([this](const asio::error_code& ec) {
        if (ec || draining_ || parked_until_ != parked_until::closes_seen) return;
        closes_seen_since_admitting_ = true;
        admit_parked();
    });
}

void shard::count_refusal(refusal_reason why) noexcept {
    switch (why) {
#define SLABD_CASE(X, reason)          \
    case refusal_reason::reason:       \
        bump(stats_.refused_##reason); \
        break;
        SLABD_REFUSAL_REASONS(SLABD_CASE, )
#undef SLABD_CASE
    }
    events_.refused(why);
}

void shard::refuse(owned_fd& peer, refusal_reason why) noexcept {
    count_refusal(why);
    send_busy_line(peer.get());
    lingering_.linger(peer.release(), now_);
}

void shard::send_busy_line(int fd) noexcept {
    const std::string& busy = live_.busy_message;
    if (busy.empty()) return;
    std::array<iovec, 2> parts{
        {{const_cast<char*>(busy.data()), busy.size()}, {const_cast<char*>("\n"), 1}}};
    msghdr message{};
    message.msg_iov = parts.data();
    message.msg_iovlen = parts.size();
    ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void shard::on_accept_error(const asio::error_code& ec) noexcept {
    bump(stats_.accept_errors);
    events_.accept_failed(ec);
    if (is_descriptor_limit(ec) && refuse_at_fd_limit()) return wait_for_newcomer();
    back_off();
}

void shard::wait_for_newcomer() noexcept {
    // At the descriptor limit accept() fails even on an empty backlog, so wait for a newcomer
    // first: accepting again at once would spin.
    listener_.async_wait(socket_type::wait_read, accept_handler{this});
}

bool shard::refuse_at_fd_limit() noexcept {
    // A reopen may have lost the freed descriptor to another thread: try again now.
    if (!reserve_.take_back()) return false;
    for (int i = 0; i < max_fd_limit_refusals; ++i) {
        reserve_.spend();
        const int fd =
            ::accept4(listener_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        const int accept_errno = errno;
        if (fd >= 0) {
            count_refusal(refusal_reason::fd_limit);
            send_busy_line(fd);
            // No lingering here: the descriptor must come back at once to be the reserve again.
            close_now(fd);
        }
        const bool reserve_back = reserve_.take_back();
        if (fd < 0) return accept_errno == EAGAIN || accept_errno == EWOULDBLOCK;  // backlog empty
        if (!reserve_back) return false;
    }
    return true;
}

void shard::back_off() noexcept {
    // Retrying at once would spin on a listener that stays readable.
    backoff_ = std::clamp(backoff_ * 2, std::chrono::milliseconds{10}, max_backoff);
    backoff_timer_.expires_after(backoff_);
    backoff_timer_.async_wait([this](const asio::error_code& wait_ec) {
        if (!wait_ec && !draining_) accept();
    });
}

void shard::notify_block_freed() {
    if (wake_posted_.exchange(true)) return;
    asio::post(context_, [this] {
        wake_posted_.store(false);
        resume_accepting();
    });
}

void shard::update(live_settings next) {
    asio::post(context_, [this, next = std::move(next)]() mutable { live_ = std::move(next); });
}

void shard::resume_accepting() noexcept {
    if (parked_until_ != parked_until::block_freed || draining_) return;
    events_.paused(-1);
    admit_parked();
}

void shard::give_back_buffer(std::byte* buffer) noexcept {
    buffers_.free(buffer);
    // Resume from the event loop, not from inside another connection's handler.
    if (waiters_head_ != nullptr && !resume_posted_) [[unlikely]] {
        resume_posted_ = true;
        asio::post(context_, resume_handler{this});
    }
}

void shard::resume_buffer_waiters() noexcept {
    resume_posted_ = false;
    // A resumed connection that finds no buffer queues again, which ends the loop.
    while (waiters_head_ != nullptr && buffers_.available() > 0) {
        connection& c = *waiters_head_;
        waiters_head_ = c.links.next_waiter;
        if (waiters_head_ == nullptr) waiters_tail_ = nullptr;
        c.links.next_waiter = nullptr;
        c.links.waiting_for_buffer = false;
        const connection_ref hold = connection_ref::adopt(c);
        c.resume_after_buffer_wait();
    }
}

void shard::wait_for_buffer(connection& c) noexcept {
    bump(stats_.buffer_waits);
    if (c.links.waiting_for_buffer) return;
    c.links.waiting_for_buffer = true;
    connection* held = connection_ref(c).release();
    if (waiters_tail_ != nullptr)
        waiters_tail_->links.next_waiter = held;
    else
        waiters_head_ = held;
    waiters_tail_ = held;
}

void shard::leave_buffer_wait(connection& c) noexcept {
    if (!c.links.waiting_for_buffer) return;
    connection** at = &waiters_head_;
    connection* prev = nullptr;
    while (*at != &c) {
        prev = *at;
        at = &(*at)->links.next_waiter;
    }
    *at = c.links.next_waiter;
    if (waiters_tail_ == &c) waiters_tail_ = prev;
    c.links.next_waiter = nullptr;
    c.links.waiting_for_buffer = false;
    // The caller holds a reference of its own, so the queue's is never the last.
    const connection_ref queue_ref = connection_ref::adopt(c);
}

void shard::push_back(list& l, connection& c) noexcept {
    c.links.prev = l.tail;
    c.links.next = nullptr;
    if (l.tail != nullptr)
        l.tail->links.next = &c;
    else
        l.head = &c;
    l.tail = &c;
    c.links.last_active = now_;
}

shard::list& shard::list_of(const connection& c) noexcept {
    switch (c.links.list) {
        case shard_links::on::connecting:
            return connecting_;
        case shard_links::on::awaiting_header:
            return awaiting_header_;
        case shard_links::on::idle:
        case shard_links::on::none:
            break;
    }
    return idle_;
}

void shard::unlink(connection& c) noexcept {
    if (c.links.list == shard_links::on::none) return;
    list& l = list_of(c);
    (c.links.prev != nullptr ? c.links.prev->links.next : l.head) = c.links.next;
    (c.links.next != nullptr ? c.links.next->links.prev : l.tail) = c.links.prev;
    c.links.prev = c.links.next = nullptr;
    c.links.list = shard_links::on::none;
}

void shard::link_idle(connection& c) noexcept {
    unlink(c);
    push_back(idle_, c);
    c.links.list = shard_links::on::idle;
}

void shard::link_connecting(connection& c) noexcept {
    unlink(c);
    push_back(connecting_, c);
    c.links.list = shard_links::on::connecting;
}

void shard::link_awaiting_header(connection& c) noexcept {
    unlink(c);
    push_back(awaiting_header_, c);
    c.links.list = shard_links::on::awaiting_header;
}

void shard::move_to_idle_tail(connection& c) noexcept {
    if (c.links.list != shard_links::on::idle) return;
    unlink(c);
    push_back(idle_, c);
    c.links.list = shard_links::on::idle;
}

void shard::destroy(connection& c) noexcept {
    connections_.destroy(&c);
    events_.block_freed();
    if (draining_) finish_drain_if_empty();
}

void shard::tick() noexcept {
    tick_timer_.expires_after(tick_period);
    tick_timer_.async_wait([this](const asio::error_code& ec) { on_tick(ec); });
}

template <class Action>
void shard::expire(list& l, std::chrono::milliseconds after, Action act) noexcept {
    // Each list's members share one timeout and are appended as their clock starts, so the list
    // is in expiry order and the sweep stops at the first one still in time.
    const std::uint32_t limit = deadline_ticks(after);
    while (l.head != nullptr && now_ - l.head->links.last_active >= limit) {
        connection& c = *l.head;
        unlink(c);
        const connection_ref hold(c);
        act(c);
    }
}

void shard::on_tick(const asio::error_code& ec) noexcept {
    // A tick already queued when the drain cancelled the timer must not re-arm it, or run()
    // never runs out of work and the process never exits.
    if (ec) return;
    if (draining_ && drained()) return finish_drain_if_empty();
    ++now_;
    if (live_.idle_timeout.count() > 0)
        expire(idle_, live_.idle_timeout,
               [](connection& c) { c.abort(close_reason::idle_timeout); });
    expire(connecting_, live_.connect_timeout, [](connection& c) { c.abort_connect_attempt(); });
    // A late PROXY header: the block goes back at the deadline.
    expire(awaiting_header_, live_.proxy_header_timeout,
           [](connection& c) { c.refuse(refusal_reason::proxy_timeout); });
    lingering_.expire(now_);
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
        // Released, not closed: a process that took over has the same listener, so only
        // EPOLL_CTL_DEL (which release does) stops its newcomers waking this one.
        if (const int fd = listener_.release(ignored); fd >= 0) ::close(fd);
        backoff_timer_.cancel();
        rate_timer_.cancel();
        closes_seen_timer_.cancel();
        // Not served yet, and now never will be: the header would only start a drained connection.
        while (awaiting_header_.head != nullptr) {
            connection& c = *awaiting_header_.head;
            unlink(c);
            const connection_ref hold(c);
            c.refuse(refusal_reason::draining);
        }
        if (parked_.is_open()) {
            refuse(parked_, refusal_reason::draining);
            rate_token_held_ = false;
            if (std::exchange(parked_until_, parked_until::nothing) == parked_until::block_freed)
                events_.paused(-1);
        }
        grace_timer_.expires_after(grace);
        grace_timer_.async_wait([this](const asio::error_code& ec) {
            if (!ec) close_all(close_reason::shutdown);
        });
        finish_drain_if_empty();
    });
}

void shard::close_all(close_reason why) noexcept {
    // Every connection not already closing is on one of the three lists (those waiting for a
    // buffer too): the idle sweep takes a connection off before it aborts it.
    for (list* l : {&idle_, &connecting_, &awaiting_header_}) {
        while (l->head != nullptr) {
            connection& c = *l->head;
            unlink(c);
            const connection_ref hold(c);
            c.abort(why);
        }
    }
}

bool shard::drained() const noexcept {
    return stats_.active.load(std::memory_order_relaxed) == 0 && lingering_.empty();
}

void shard::finish_drain_if_empty() noexcept {
    if (!drained()) return;
    // Nothing left to serve: the shard's work on its io_context ends.
    tick_timer_.cancel();
    grace_timer_.cancel();
    backoff_timer_.cancel();
    rate_timer_.cancel();
    closes_seen_timer_.cancel();
    if (!std::exchange(drain_reported_, true)) events_.drained();
}

}  // namespace slabd::server
