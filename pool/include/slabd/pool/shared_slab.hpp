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
                std::size_t align = alignof(std::max_align_t), std::size_t reserve = 0)
        : slab_(block_size, capacity, align, reserve) {}

    [[nodiscard]] void* alloc() noexcept {
        std::lock_guard lock(mutex_);
        return slab_.alloc();
    }
    free_result free(void* p) noexcept {
        std::lock_guard lock(mutex_);
        return slab_.free(p);
    }

    bool add_memory(std::size_t blocks) noexcept {
        std::lock_guard lock(mutex_);
        return slab_.add_memory(blocks);
    }
    void set_limit(std::size_t limit) noexcept {
        std::lock_guard lock(mutex_);
        slab_.set_limit(limit);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept {
        std::lock_guard lock(mutex_);
        return slab_.owns(p);
    }
    [[nodiscard]] std::size_t block_size() const noexcept { return slab_.block_size(); }
    [[nodiscard]] std::size_t reserved() const noexcept { return slab_.reserved(); }
    [[nodiscard]] std::size_t capacity() const noexcept {
        std::lock_guard lock(mutex_);
        return slab_.capacity();
    }
    [[nodiscard]] std::size_t limit() const noexcept {
        std::lock_guard lock(mutex_);
        return slab_.limit();
    }
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
    /// Holds the lock for one pass over the state bytes: O(capacity), for the admin page only.
    [[nodiscard]] slab_map map(std::size_t max_cells) const {
        std::lock_guard lock(mutex_);
        return slab_.map(max_cells);
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
