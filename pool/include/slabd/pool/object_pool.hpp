// A typed pool: a slab whose blocks are sized and aligned to T, constructing objects in place.
// `make` returns an owning handle; `create`/`destroy` serve objects that own their own lifetime
// (a server connection that destroys itself back into its block).
#pragma once

#include <new>
#include <utility>

#include "slabd/pool/shared_slab.hpp"
#include "slabd/pool/slab.hpp"

namespace slabd::pool {

/// Pool of T objects over a `slab` (one thread) or a `shared_slab` (several threads).
template <typename T, typename Slab = slab>
class object_pool {
  public:
    /// Move-only owner of one pooled T: destroys it and returns its block when it dies.
    class handle {
      public:
        handle() noexcept = default;
        handle(handle&& other) noexcept
            : pool_(std::exchange(other.pool_, nullptr)),
              object_(std::exchange(other.object_, nullptr)) {}
        handle& operator=(handle&& other) noexcept {
            if (this != &other) {
                reset();
                pool_ = std::exchange(other.pool_, nullptr);
                object_ = std::exchange(other.object_, nullptr);
            }
            return *this;
        }
        handle(const handle&) = delete;
        handle& operator=(const handle&) = delete;
        ~handle() { reset(); }

        void reset() noexcept {
            if (object_ != nullptr)
                std::exchange(pool_, nullptr)->destroy(std::exchange(object_, nullptr));
        }
        [[nodiscard]] T* get() const noexcept { return object_; }
        T& operator*() const noexcept { return *object_; }
        T* operator->() const noexcept { return object_; }
        explicit operator bool() const noexcept { return object_ != nullptr; }

      private:
        friend class object_pool;
        handle(object_pool* pool, T* object) noexcept : pool_(pool), object_(object) {}
        object_pool* pool_ = nullptr;
        T* object_ = nullptr;
    };

    /// Room for `capacity` objects now and, through add_memory(), for `reserve` (0: capacity).
    explicit object_pool(std::size_t capacity, std::size_t reserve = 0)
        : slab_(sizeof(T), capacity, alignof(T), reserve) {}

    /// Constructs a T in a free block; an empty handle when the pool is exhausted.
    template <typename... Args>
    [[nodiscard]] handle make(Args&&... args) {
        T* object = create(std::forward<Args>(args)...);
        return object != nullptr ? handle(this, object) : handle();
    }

    /// Constructs a T in a free block, or returns nullptr when the pool is exhausted.
    /// If T's constructor throws, the block goes back and the exception propagates.
    template <typename... Args>
    [[nodiscard]] T* create(Args&&... args) {
        void* block = slab_.alloc();
        if (block == nullptr) [[unlikely]]
            return nullptr;
        if constexpr (std::is_nothrow_constructible_v<T, Args&&...>) {
            return ::new (block) T(std::forward<Args>(args)...);
        } else {
            try {
                return ::new (block) T(std::forward<Args>(args)...);
            } catch (...) {
                slab_.free(block);
                throw;
            }
        }
    }

    /// Destroys an object made by this pool and returns its block.
    void destroy(T* object) noexcept {
        object->~T();
        slab_.free(object);
    }

    [[nodiscard]] bool owns(const T* object) const noexcept { return slab_.owns(object); }
    /// The real per-object cost: sizeof(T), at least a pointer (the free-list link), rounded up to
    /// alignof(T).
    [[nodiscard]] std::size_t block_size() const noexcept { return slab_.block_size(); }
    /// Grows the pool by `objects` from its reservation; existing objects never move.
    bool add_memory(std::size_t objects) noexcept { return slab_.add_memory(objects); }
    /// Admits at most `limit` objects at once (at most the capacity); none in use is touched.
    void set_limit(std::size_t limit) noexcept { slab_.set_limit(limit); }
    [[nodiscard]] std::size_t capacity() const noexcept { return slab_.capacity(); }
    [[nodiscard]] std::size_t limit() const noexcept { return slab_.limit(); }
    [[nodiscard]] std::size_t reserved() const noexcept { return slab_.reserved(); }
    [[nodiscard]] std::size_t in_use() const noexcept { return slab_.in_use(); }
    [[nodiscard]] std::size_t available() const noexcept { return slab_.available(); }
    [[nodiscard]] slab_stats stats() const noexcept { return slab_.stats(); }
    [[nodiscard]] slab_map map(std::size_t max_cells) const { return slab_.map(max_cells); }
    [[nodiscard]] std::string check_invariants() const { return slab_.check_invariants(); }

  private:
    Slab slab_;
};

}  // namespace slabd::pool
