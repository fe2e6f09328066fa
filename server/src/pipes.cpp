#include "pipes.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace slabd::server {

bool pipe_pool::make(ends& e) noexcept {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    const int size = ::fcntl(fds[1], F_GETPIPE_SZ);
    if (size <= 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        return false;
    }
    e = {fds[0], fds[1], static_cast<std::size_t>(size)};
    return true;
}

void pipe_pool::close(ends& e) noexcept {
    if (e.read >= 0) ::close(e.read);
    if (e.write >= 0) ::close(e.write);
    e = {};
}

pipe_pool::pipe_pool(std::size_t count) {
    fds_.resize(count);
    free_.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        if (!make(fds_[i])) {
            const int error = errno;
            for (ends& e : fds_) close(e);
            throw std::system_error(error, std::generic_category(), "pipe2 for splice");
        }
        free_.push_back(static_cast<std::int32_t>(count - 1 - i));
    }
}

pipe_pool::~pipe_pool() {
    for (ends& e : fds_) close(e);
}

std::size_t pipe_pool::smallest() const noexcept {
    if (fds_.empty()) return 0;
    return std::ranges::min_element(fds_, {}, &ends::size)->size;
}

bool pipe_pool::replace(std::int32_t index) noexcept {
    ends& e = fds_[std::size_t(index)];
    close(e);
    return make(e);
}

}  // namespace slabd::server
