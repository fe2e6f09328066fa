// The socket type of the data plane, and the last-resort close used when a socket cannot linger.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace slabd::server {

/// Typed on the concrete executor: 40 bytes instead of the 88 of asio::ip::tcp::socket.
using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

/// Shuts down the write side, reads what the peer already sent (a bounded amount, without
/// waiting) and closes: a FIN unless the peer sends more than that. For when lingering is not
/// possible (every linger slot taken, or the descriptor limit reached).
void close_now(socket_type& socket) noexcept;
/// The same for a bare descriptor.
void close_now(int fd) noexcept;

}  // namespace slabd::server
