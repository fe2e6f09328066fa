#include "pipes.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace slabd::server {

namespace {

bool make_pipe(int (&fds)[2]) noexcept { return ::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0; }

}  // namespace

pipe_pool::pipe_pool(std::size_t count) {
    fds_.reserve(count);
    free_.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        int fds[2];
        if (!make_pipe(fds)) throw std::system_error(errno, std::generic_category(), "pipe2 for splice");
        fds_.push_back({fds[0], fds[1]});
        free_.push_back(static_cast<std::int32_t>(count - 1 - i));
    }
    if (!fds_.empty()) {
        const int size = ::fcntl(fds_.front().write, F_GETPIPE_SZ);
        if (size < 0) throw std::system_error(errno, std::generic_category(), "F_GETPIPE_SZ");
        capacity_ = static_cast<std::size_t>(size);
    }
}

pipe_pool::~pipe_pool() {
    for (const ends& e : fds_) {
        if (e.read >= 0) ::close(e.read);
        if (e.write >= 0) ::close(e.write);
    }
}

bool pipe_pool::replace(std::int32_t index) noexcept {
    ends& e = fds_[std::size_t(index)];
    ::close(e.read);
    ::close(e.write);
    int fds[2];
    if (!make_pipe(fds)) {
        e = {};
        return false;
    }
    e = {fds[0], fds[1]};
    return true;
}

}  // namespace slabd::server
