// A process-wide count of heap allocations, for tests that prove a path allocates nothing.
#pragma once

#include <atomic>
#include <cstdint>

namespace slabd::test {

inline std::atomic<std::uint64_t> allocations{0};

inline void count_allocation() noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);
}
inline std::uint64_t allocation_count() noexcept {
    return allocations.load(std::memory_order_relaxed);
}

}  // namespace slabd::test
