// A descriptor kept open (on /dev/null) so that a thread at the descriptor limit can free one
// when it must: a shard to accept a newcomer it refuses, the admin endpoint to answer a health
// check (docs/design.md, decisions 12 and 28).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>

namespace slabd::server {

/// Its owner's thread spends it and takes it back. Linux gives the lowest free descriptor to
/// whichever thread asks first, so while any reserve of the process is spent, the shards keep
/// no newcomer: one could take the slot that reserve needs back and keep it for as long as it
/// stays connected. any_spent() tells them.
class descriptor_reserve {
  public:
    /// At start-up. Throws if /dev/null cannot be opened: a reserve spent from the start would
    /// keep every shard from accepting anyone.
    descriptor_reserve() : fd_(open_null()) {
        if (fd_ < 0)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot open /dev/null for the reserved descriptor");
    }
    ~descriptor_reserve() {
        if (fd_ >= 0)
            ::close(fd_);
        else
            spent_.fetch_sub(1, std::memory_order_relaxed);
    }
    descriptor_reserve(const descriptor_reserve&) = delete;
    descriptor_reserve& operator=(const descriptor_reserve&) = delete;

    /// Whether any reserve of the process's is spent, its slot free or in someone's hands.
    [[nodiscard]] static bool any_spent() noexcept {
        return spent_.load(std::memory_order_relaxed) != 0;
    }

    /// Closes the reserve, so that the caller's next call that opens a descriptor can have its
    /// slot. False if it was not held. Other threads see it spent before the slot is free.
    bool spend() noexcept {
        if (fd_ < 0) return false;
        spent_.fetch_add(1, std::memory_order_relaxed);
        ::close(fd_);
        fd_ = -1;
        return true;
    }

    /// Reopens the reserve if it is spent. False if it is still spent: no descriptor was free.
    bool take_back() noexcept {
        if (fd_ >= 0) return true;
        fd_ = open_null();
        if (fd_ < 0) return false;
        spent_.fetch_sub(1, std::memory_order_relaxed);
        return true;
    }

  private:
    static int open_null() noexcept { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

    // The descriptor table is the process's, so the count is too.
    static inline std::atomic<int> spent_{0};
    int fd_;
};

}  // namespace slabd::server
