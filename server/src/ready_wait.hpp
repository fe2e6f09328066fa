// A wait for a listener's next newcomer that costs no system call to start. Asio's
// async_wait(wait_read) re-arms the descriptor with epoll_ctl(EPOLL_CTL_MOD) each time; the
// listener is registered edge-triggered for reads once, when it opens, so after accept(2) said
// EAGAIN a queued operation is enough: the next newcomer raises an edge. On a shard's one thread
// a handler runs to its end before the next epoll_wait's events are handled, so an edge that
// comes while the accept loop runs is handled after it queued its wait.
#pragma once

#include <asio/detail/reactor.hpp>
#include <asio/detail/reactor_op.hpp>
#include <asio/error.hpp>

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "socket.hpp"

// This leans on Asio 1.22's reactor internals (reactor_op, start_op's signature, the socket's
// reactor data) and on its epoll reactor registering sockets edge-triggered: another Asio, or
// another reactor, must be checked against them before this builds.
#include <asio/version.hpp>
#if ASIO_VERSION < 102200 || ASIO_VERSION >= 102300
#error \
    "ready_wait.hpp is written against Asio 1.22's reactor internals: check them for this version"
#endif
#if !defined(ASIO_HAS_EPOLL) || defined(ASIO_HAS_IO_URING_AS_DEFAULT)
#error "ready_wait.hpp needs Asio's epoll reactor (edge-triggered registration)"
#endif

namespace slabd::server {

namespace detail {

/// A socket's or a listener's implementation (its reactor data and state bits), which Asio's
/// I/O objects keep protected.
template <typename IoObject>
struct internals : IoObject {
    static auto& of(IoObject& io) noexcept {
        return (io.*(&internals::impl_)).get_implementation();
    }
};

template <typename IoObject>
reactor_type::per_descriptor_data& reactor_data(IoObject& io) noexcept {
    return internals<IoObject>::of(io).reactor_data_;
}

/// Completes with the first read event (or error, or cancellation) after it starts; reads
/// nothing. Its memory comes from the handler's allocator, as an Asio operation's would.
template <typename Handler>
class ready_op : public asio::detail::reactor_op {
  public:
    explicit ready_op(Handler&& handler) noexcept
        : reactor_op(asio::error_code(), &perform, &complete), handler_(std::move(handler)) {}

    /// Set while start_op runs: its speculative attempt is told "not yet" rather than done, so
    /// the operation is queued on the descriptor without a system call.
    bool starting = true;

  private:
    // Past start_op, only the descriptor's event handling calls this.
    static status perform(reactor_op* base) noexcept {
        return static_cast<ready_op*>(base)->starting ? not_done : done;
    }

    // owner is null when the io_context is destroyed with the operation pending: the handler is
    // destroyed, not called.
    static void complete(void* owner, asio::detail::operation* base, const asio::error_code&,
                         std::size_t) noexcept {
        auto* op = static_cast<ready_op*>(base);
        Handler handler(std::move(op->handler_));
        const asio::error_code ec = op->ec_;
        auto allocator = handler.get_allocator();
        op->~ready_op();
        allocator.deallocate(reinterpret_cast<std::byte*>(op), sizeof(ready_op));
        if (owner != nullptr) handler(ec);
    }

    Handler handler_;
};

}  // namespace detail

/// Calls `handler(ec)` once `socket` (a listener) is readable. Only for a listener
/// whose accept returned EAGAIN: readiness that came before the wait raises no new edge.
template <typename IoObject, typename Handler>
void async_wait_readable(reactor_type& reactor, IoObject& socket, Handler handler) noexcept {
    using op_type = detail::ready_op<Handler>;
    auto allocator = handler.get_allocator();
    auto& descriptor = detail::reactor_data(socket);
    auto* op = new (allocator.allocate(sizeof(op_type))) op_type(std::move(handler));
    reactor.start_op(reactor_type::read_op, socket.native_handle(), descriptor, op, false, true);
    op->starting = false;
}

}  // namespace slabd::server
