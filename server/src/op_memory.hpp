// In-block storage for a connection's one outstanding Asio operation, so that waiting on a
// socket allocates nothing (STYLE.md, "The data path"; Asio's cpp11/allocation example).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace slabd::server {

/// Counts operations too large for their in-block storage, which then fall back to the heap.
/// Stays zero in a correct build; /stats reports it so a regression cannot hide.
inline std::atomic<std::uint64_t> op_memory_overflows{0};

/// Room for one pending Asio operation of at most `Capacity` bytes. Not thread-safe: one
/// connection, one thread. Sizes seen with Asio 1.22 on x86-64: a socket wait or a connect with
/// our handlers 88-96 B, a ready wait (ready_wait.hpp) 104 B.
template <std::size_t Capacity>
class op_memory {
  public:
    static constexpr std::size_t capacity = Capacity;

    void* allocate(std::size_t bytes) {
        if (!in_use_ && bytes <= capacity) [[likely]] {
            in_use_ = true;
            return storage_;
        }
        op_memory_overflows.fetch_add(1, std::memory_order_relaxed);
        return ::operator new(bytes);
    }
    void deallocate(void* p) noexcept {
        if (p == storage_) {
            in_use_ = false;
            return;
        }
        ::operator delete(p);
    }

  private:
    alignas(std::max_align_t) std::byte storage_[capacity];
    bool in_use_ = false;
};

/// Storage for a listener's or a lingering socket's wait, or a shard's posted handler.
using io_op_memory = op_memory<112>;
/// Storage for a relay's posted handler (its yield).
using post_op_memory = op_memory<64>;

/// The allocator Asio finds through a handler's get_allocator().
template <typename T, typename Memory>
class op_allocator {
  public:
    using value_type = T;
    template <typename U>
    struct rebind {
        using other = op_allocator<U, Memory>;
    };
    explicit op_allocator(Memory& memory) noexcept : memory_(&memory) {}
    template <typename U>
    op_allocator(const op_allocator<U, Memory>& other) noexcept
        : memory_(other.memory_) {}  // NOLINT: rebind

    T* allocate(std::size_t n) { return static_cast<T*>(memory_->allocate(sizeof(T) * n)); }
    void deallocate(T* p, std::size_t) noexcept { memory_->deallocate(p); }
    friend bool operator==(const op_allocator& a, const op_allocator& b) noexcept {
        return a.memory_ == b.memory_;
    }

  private:
    template <typename, typename>
    friend class op_allocator;
    Memory* memory_;
};

}  // namespace slabd::server
