// Counts by interposing the libc functions: slabd and Asio are linked into the test executable,
// so their calls bind to these definitions, which then make the system call themselves.
// Built only without sanitizers, which interpose some of these functions themselves.
#include "syscall_counter.hpp"

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>

namespace slabd::test {
namespace {

std::atomic<std::uint64_t> epoll_adds{0}, epoll_mods{0}, epoll_dels{0}, ioctls{0}, setsockopts{0};
thread_local bool counted_here = true;

void count(std::atomic<std::uint64_t>& counter) noexcept {
    if (counted_here) counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

socket_call_counts socket_calls() noexcept {
    return {epoll_adds.load(), epoll_mods.load(), epoll_dels.load(), ioctls.load(),
            setsockopts.load()};
}

void not_counted_here() noexcept {
    counted_here = false;
}

}  // namespace slabd::test

extern "C" {

int epoll_ctl(int epfd, int op, int fd, epoll_event* event) noexcept {
    using namespace slabd::test;
    count(op == EPOLL_CTL_ADD ? epoll_adds : op == EPOLL_CTL_MOD ? epoll_mods : epoll_dels);
    return static_cast<int>(::syscall(SYS_epoll_ctl, epfd, op, fd, event));
}

int ioctl(int fd, unsigned long request, ...) noexcept {
    std::va_list args;
    va_start(args, request);
    void* argument = va_arg(args, void*);
    va_end(args);
    slabd::test::count(slabd::test::ioctls);
    return static_cast<int>(::syscall(SYS_ioctl, fd, request, argument));
}

int setsockopt(int fd, int level, int name, const void* value, socklen_t size) noexcept {
    slabd::test::count(slabd::test::setsockopts);
    return static_cast<int>(::syscall(SYS_setsockopt, fd, level, name, value, size));
}
}
