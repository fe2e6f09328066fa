// A slab that several threads share, so that a capacity is exact across all of them
// (docs/design.md, decision 2). alloc/free happen once per connection, not per message, so one
// uncontended lock around the single-threaded slab is cheap; bench/ measures it.
#pragma once

#include <mutex>

#include "slabd/pool/slab.hpp"

namespace slabd::pool {

/// Thread-safe slab: every operation of `slab`, serialised by one mutex.
class shared_slab {
public:
    shared_slab(std::size_t block_size, std::size_t capacity,
                std::size_t align = alignof(std::max_align_t))
        : slab_(block_size, capacity, align) {}

    [[nodiscard]] void* alloc() noexcept {
        std::lock_guard lock(mutex_);
        return slab_.alloc();
    }
    free_result free(void* p) noexcept {
        std::lock_guard lock(mutex_);
        return slab_.free(p);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept { return slab_.owns(p); }
    [[nodiscard]] std::size_t block_size() const noexcept { return slab_.block_size(); }
    [[nodiscard]] std::size_t capacity() const noexcept { return slab_.capacity(); }
    [[nodiscard]] std::size_t in_use() const noexcept {
        std::lock_guard lock(mutex_);
        return slab_.in_use();
    }
    [[nodiscard]] std::size_t available() const noexcept {
        std::lock_guard lock(mutex_);
        return slab_.available();
    }
    [[nodiscard]] slab_stats stats() const noexcept {
        std::lock_guard lock(mutex_);
        return slab_.stats();
    }
    [[nodiscard]] std::string check_invariants() const {
        std::lock_guard lock(mutex_);
        return slab_.check_invariants();
    }

private:
    mutable std::mutex mutex_;
    slab slab_;
};

}  // namespace slabd::pool
