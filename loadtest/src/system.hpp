// The operating-system calls the load client needs beyond Asio: a descriptor limit high enough
// for many connections, and source addresses that do not spend a port at bind() time.
#pragma once

#include <asio/error_code.hpp>

#include <cstdint>

namespace slabd::load {

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit now in force.
std::uint64_t raise_descriptor_limit() noexcept;

/// IP_BIND_ADDRESS_NO_PORT on `fd`: a later bind() takes the address only and connect() picks the
/// port per destination, so one source address is not capped at one port per connection overall.
void bind_address_no_port(int fd, asio::error_code& ec) noexcept;

}  // namespace slabd::load
