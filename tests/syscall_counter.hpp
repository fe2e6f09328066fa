// A process-wide count of the system calls that configure a socket (epoll_ctl by operation,
// ioctl, setsockopt), for tests that prove what a connection costs beyond its reads and writes.
// The calls are counted on every thread but those that say not_counted_here(): a test's own
// client sockets are not the server's cost.
#pragma once

#include <atomic>
#include <cstdint>

namespace slabd::test {

struct socket_call_counts {
    std::uint64_t epoll_add = 0;
    std::uint64_t epoll_mod = 0;
    std::uint64_t epoll_del = 0;
    std::uint64_t ioctl = 0;
    std::uint64_t setsockopt = 0;
};

/// The counts so far.
socket_call_counts socket_calls() noexcept;
/// The calling thread's socket calls are not counted from now on.
void not_counted_here() noexcept;

}  // namespace slabd::test
