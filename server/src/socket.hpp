// The socket types of the data plane, and the last-resort close used when a socket cannot linger.
#pragma once

#include <asio/io_context.hpp>
// After io_context.hpp, which the reactor's header needs first.
#include <asio/detail/reactor.hpp>
#include <asio/ip/tcp.hpp>

#include <unistd.h>

#include <utility>

namespace slabd::server {

/// Typed on the concrete executor: 40 bytes instead of the 88 of asio::ip::tcp::socket.
using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

/// The reactor an io_context's sockets are registered with; looked up once, not per wait.
using reactor_type = asio::detail::reactor;

/// A descriptor nobody waits on yet (a newcomer before it is admitted): closed if dropped.
class owned_fd {
  public:
    owned_fd() noexcept = default;
    explicit owned_fd(int fd) noexcept : fd_(fd) {}
    owned_fd(owned_fd&& other) noexcept : fd_(other.release()) {}
    owned_fd& operator=(owned_fd&& other) noexcept {
        reset(other.release());
        return *this;
    }
    owned_fd(const owned_fd&) = delete;
    owned_fd& operator=(const owned_fd&) = delete;
    ~owned_fd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

/// Shuts down the write side, reads what the peer already sent (a bounded amount, without
/// waiting) and closes: a FIN unless the peer sends more than that. For when lingering is not
/// possible (every linger slot taken, or the descriptor limit reached).
void close_now(int fd) noexcept;

}  // namespace slabd::server
