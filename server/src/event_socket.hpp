// A data-path socket that slabd registers in its shard's epoll set itself, once, edge-triggered
// for reads, writes and the peer's hang-up, and whose readiness it keeps itself, as nginx's
// event module does (ready, pending_eof). Asio's reactor still runs the loop: its epoll_wait
// reports this socket's events with the rest, and its scheduler hands them to slabd's handler
// in the order they came. What goes is Asio's per-wait machinery, one queued operation, its
// start and its completion per message (docs/design.md, decision 30).
//
// Waiting costs nothing. After an edge the socket stays `readable` until a read shows it
// drained; a later byte, FIN or reset raises a new edge. A read drains the socket when it
// returns less than it asked for, unless a hang-up has been reported: the kernel can hand over
// the last bytes and take the FIN queued behind them in one read, and then no edge follows, so
// once the peer is known done, reads go on to the EOF or the error. A reset is reported as
// EPOLLERR | EPOLLHUP, so no error goes unread either.
//
// Urgent data stops a read at its mark, short, with the bytes after it queued and no edge to
// come; an urgent edge (EPOLLPRI) has reads go on until EAGAIN.
//
// Lifetime: the registration counts as a reference to the owner (connection_ref). close()
// and release() end it; while an event for the socket is already queued in the scheduler (the
// reactor harvested it, the handler has not run), the owner's block must stay, so that event
// ends the registration instead, by calling the handler with the number of registrations it
// ends.
#pragma once

#include <asio/error.hpp>
#include <asio/io_context.hpp>
// After io_context.hpp, which the reactor's header needs first.
#include <asio/detail/reactor.hpp>
#include <asio/detail/scheduler.hpp>
#include <asio/detail/scheduler_operation.hpp>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "socket.hpp"

// This leans on Asio 1.22's epoll reactor and scheduler: the reactor treats an event's data
// pointer as a scheduler operation that it queues (descriptor_state, whose layout starts with
// the operation), sets its task_result_ to the event mask, and queues an operation at most once
// per epoll_wait. Another Asio must be checked against that before this builds.
#include <asio/version.hpp>
#if ASIO_VERSION < 102200 || ASIO_VERSION >= 102300
#error "event_socket.hpp is written against Asio 1.22's reactor internals: check them"
#endif
#if !defined(ASIO_HAS_EPOLL) || defined(ASIO_HAS_IO_URING_AS_DEFAULT)
#error "event_socket.hpp needs Asio's epoll reactor"
#endif

namespace slabd::server {

namespace detail {

/// Asio keeps its reactor's epoll descriptor private. An explicit instantiation may name a
/// private member, and this one hands it out through a friend function.
struct epoll_fd_member {
    using type = int asio::detail::epoll_reactor::*;
    friend type member(epoll_fd_member);
};
template <typename Tag, typename Tag::type Member>
struct expose_member {
    friend typename Tag::type member(Tag) { return Member; }
};
template struct expose_member<epoll_fd_member, &asio::detail::epoll_reactor::epoll_fd_>;

}  // namespace detail

/// The reactor of `context`, with its task (the epoll_wait) queued in the scheduler: Asio queues
/// it when the first of its own sockets or timers is made, and an event_socket is neither.
inline reactor_type& started_reactor(asio::io_context& context) {
    auto& reactor = asio::use_service<reactor_type>(context);
    reactor.init_task();
    return reactor;
}

/// How many threads of this process run event loops that close data-path sockets (a shard
/// each). A spawn (the successor, decision 16) gives its child a copy of every descriptor from
/// its clone to its closefrom, and a close in that window leaves the open file, and with it the
/// registration and its events, behind. With one such thread the spawn runs on it (the control
/// work shares a lone shard's thread, decision 29), so no close can race it; with more, a close
/// takes the socket out of the epoll set first, at one system call more.
inline std::atomic<unsigned> socket_closing_threads{0};

/// The epoll set the reactor waits on.
inline int epoll_fd_of(reactor_type& reactor) noexcept {
    return reactor.*member(detail::epoll_fd_member{});
}

class event_socket : public asio::detail::scheduler_operation {
  public:
    /// Called on the shard's thread with the socket's new readiness (`registrations_ended` 0),
    /// or with the number of registrations that close() or release() could not end at once and
    /// the queued event ends now.
    using handler = void (*)(event_socket& socket, unsigned registrations_ended) noexcept;

    event_socket() noexcept : scheduler_operation(&complete) {}
    ~event_socket() {
        if (fd_ >= 0) ::close(fd_);
    }
    event_socket(const event_socket&) = delete;
    event_socket& operator=(const event_socket&) = delete;

    /// Whom the handler serves; set before open().
    void serve(handler on_event, void* owner) noexcept {
        on_event_ = on_event;
        owner_ = owner;
    }
    [[nodiscard]] void* owner() const noexcept { return owner_; }

    /// Takes `fd` (non-blocking) over and registers it with `reactor` (started_reactor). On
    /// failure `fd` is closed, `ec` says why, and there is no registration.
    bool open(reactor_type& reactor, int fd, asio::error_code& ec) noexcept {
        epoll_event event{};
        event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
        event.data.ptr = static_cast<asio::detail::scheduler_operation*>(this);
        epoll_fd_ = epoll_fd_of(reactor);
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) [[unlikely]] {
            ec.assign(errno, asio::error::get_system_category());
            ::close(fd);
            return false;
        }
        fd_ = fd;
        // What arrived before the registration is not known yet: worth a read. Writable since a
        // socket's send buffer starts empty (a connect's completion is its own edge).
        readable = true;
        writable = true;
        peer_done = false;
        urgent_ = false;
        return true;
    }

    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] int fd() const noexcept { return fd_; }

    /// Closes the descriptor. True when that ended the registration; false when a queued event
    /// will (the handler is then called with `registrations_ended`).
    [[nodiscard]] bool close() noexcept {
        if (fd_ < 0) return true;
        const int fd = std::exchange(fd_, -1);
        if (socket_closing_threads.load(std::memory_order_relaxed) > 1)
            ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        return end_registration();
    }

    /// Takes the descriptor out of the epoll set and hands it over, open. `registration_ended`
    /// as close() returns it.
    [[nodiscard]] int release(bool& registration_ended) noexcept {
        const int fd = std::exchange(fd_, -1);
        if (fd >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        registration_ended = fd < 0 || end_registration();
        return fd;
    }

    /// recv(2) of at most `capacity` bytes. 0 with `ec` set: would_block (drained), eof or the
    /// error. Clears `readable` once the socket is drained (the header's rule).
    std::size_t read(std::byte* buffer, std::size_t capacity, asio::error_code& ec) noexcept {
        // syscall(2), not recv(3): glibc's wrapper is a cancellation point, whose bookkeeping
        // cost as much as the rest of the wrapper per message, and slabd never cancels a thread.
        long n = 0;
        do n = ::syscall(SYS_recvfrom, fd_, buffer, capacity, 0, nullptr, nullptr);
        while (n < 0 && errno == EINTR);
        if (n > 0) [[likely]] {
            ec.clear();
            if (static_cast<std::size_t>(n) < capacity && !peer_done && !urgent_) readable = false;
            return static_cast<std::size_t>(n);
        }
        if (n == 0) {
            ec = asio::error::eof;
        } else {
            ec.assign(errno, asio::error::get_system_category());
            if (ec == asio::error::would_block) readable = urgent_ = false;
        }
        return 0;
    }

    /// send(2) with MSG_NOSIGNAL; clears `writable` on would_block.
    std::size_t write(const std::byte* data, std::size_t size, asio::error_code& ec) noexcept {
        long n = 0;
        do n = ::syscall(SYS_sendto, fd_, data, size, MSG_NOSIGNAL, nullptr, 0);
        while (n < 0 && errno == EINTR);
        if (n >= 0) [[likely]] {
            ec.clear();
            return static_cast<std::size_t>(n);
        }
        ec.assign(errno, asio::error::get_system_category());
        if (ec == asio::error::would_block) writable = false;
        return 0;
    }

    /// An edge since the last drain: bytes, an EOF or an error may be waiting.
    bool readable = false;
    /// Room in the send buffer, or an error a write would report.
    bool writable = false;
    /// The peer hung up or reset: reading goes on until the EOF or the error.
    bool peer_done = false;

    /// The caller's own read found nothing more to come without a new edge: a splice said
    /// EAGAIN, or a peek saw only bytes already peeked.
    void note_would_block() noexcept { readable = urgent_ = false; }
    /// Urgent data was reported and not yet read past: splice(2) stops at its mark, recv(2)
    /// steps over it.
    [[nodiscard]] bool urgent() const noexcept { return urgent_; }

  private:
    bool end_registration() noexcept {
        readable = writable = false;
        // The reactor sets task_result_ to the event's mask as it queues the event, and
        // complete() clears it: non-zero means queued.
        if (task_result_ == 0) return true;
        ++releases_pending_;
        return false;
    }

    static void complete(void* scheduler, asio::detail::scheduler_operation* base,
                         const asio::error_code&, std::size_t mask) {
        auto* self = static_cast<event_socket*>(base);
        self->task_result_ = 0;
        if (scheduler == nullptr) return;  // the io_context is going away with it queued
        // The scheduler counts each operation it runs as work finished; a socket's event was
        // never counted as work started (as Asio's own descriptor_state compensates).
        static_cast<asio::detail::scheduler*>(scheduler)->compensating_work_started();
        if (self->releases_pending_ != 0)
            return self->on_event_(*self, std::exchange(self->releases_pending_, 0U));
        const auto events = static_cast<std::uint32_t>(mask);
        if ((events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0)
            self->readable = true;
        if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) self->writable = true;
        if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) self->peer_done = true;
        if ((events & EPOLLPRI) != 0) self->urgent_ = true;
        self->on_event_(*self, 0);
    }

    int fd_ = -1;
    int epoll_fd_ = -1;
    unsigned releases_pending_ = 0;  // registrations ended while an event was queued
    bool urgent_ = false;            // urgent data came: reads go on until EAGAIN
    handler on_event_ = nullptr;
    void* owner_ = nullptr;
};

}  // namespace slabd::server
