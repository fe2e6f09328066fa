// A slab: one region carved into equal blocks, handed out and taken back in O(1).
// The free list is a LIFO stack of pointers threaded through the free blocks themselves; a state
// byte per block, kept outside the blocks, lets free() reject bad pointers without corrupting it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SLABD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLABD_ASAN 1
#endif
#endif
#if defined(SLABD_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace slabd::pool {

__extension__ using uint128 = unsigned __int128;  // __extension__: -Wpedantic knows it is not ISO

/// Why a free() was refused; `ok` when the block went back on the free list.
enum class free_result : std::uint8_t { ok, double_free, foreign, misaligned };

// A slab's counters and gauges, declared once: the snapshot below and every view of it (the
// server's /stats and /metrics, generated from this list) come from here.
// X(field, metric family, label, JSON pointer in the pool's object, type, help).
// clang-format off
#define SLABD_SLAB_STATS(X)                                                                       \
    X(block_size, "pool_block_size_bytes", "", "/block_size", gauge,                              \
      "Bytes per block, alignment padding included")                                              \
    X(capacity, "pool_capacity_blocks", "", "/capacity", gauge,                                   \
      "Blocks the pool's memory holds now (grown by reload, never shrunk)")                       \
    X(limit, "pool_limit_blocks", "", "/limit", gauge,                                            \
      "Blocks that may be in use at once: the admission limit")                                   \
    X(reserved, "pool_reserved_blocks", "", "/reserved", gauge,                                   \
      "Blocks the pool may grow to at a reload without a restart")                                \
    X(in_use, "pool_in_use_blocks", "", "/in_use", gauge, "Blocks handed out")                    \
    X(free, "pool_free_blocks", "", "/free", gauge,                                               \
      "Blocks that may still be handed out under the limit")                                      \
    X(high_water, "pool_high_water_blocks", "", "/high_water", gauge,                             \
      "Most blocks in use at once since start")                                                   \
    X(slab_bytes, "pool_slab_bytes", "", "/slab_bytes", gauge,                                    \
      "Bytes of the slabs the blocks are carved from")                                            \
    X(allocs, "pool_allocs", "", "/allocs", counter, "Blocks handed out since start")             \
    X(failed_allocs, "pool_failed_allocs", "", "/failed_allocs", counter,                         \
      "Allocations that found no block under the limit")                                          \
    X(rejected_double_frees, "pool_rejected_frees", "kind=\"double\"", "/rejected_frees/double",  \
      counter, "Frees refused: double, foreign or misaligned pointers")                           \
    X(rejected_foreign_frees, "pool_rejected_frees", "kind=\"foreign\"",                          \
      "/rejected_frees/foreign", counter, "")                                                     \
    X(rejected_misaligned_frees, "pool_rejected_frees", "kind=\"misaligned\"",                    \
      "/rejected_frees/misaligned", counter, "")
// clang-format on

/// A snapshot of one slab's (or several slabs' summed) counters and gauges.
struct slab_stats {
#define SLABD_DECLARE(field, metric, label, json, type, help) std::size_t field = 0;
    SLABD_SLAB_STATS(SLABD_DECLARE)
#undef SLABD_DECLARE
    /// Sums every field but block_size, which summing slabs of different sizes leaves alone.
    slab_stats& operator+=(const slab_stats& other) noexcept;
};

/// The pool drawn as its blocks, in block order, for the admin page's slab map: block i belongs
/// to cell i / blocks_per_cell, so a pool of any size fits a bounded number of cells.
struct slab_map {
    static constexpr std::size_t none = SIZE_MAX;
    std::size_t capacity = 0;
    std::size_t blocks_per_cell = 1;
    std::size_t carved = 0;  ///< blocks [carved, capacity) were never handed out
    /// The free list's head: the block the next alloc() takes (the most recently freed one, else
    /// the first never used); `none` when every block is in use.
    std::size_t head = none;
    std::vector<std::uint32_t> in_use;  ///< blocks in use, per cell
};

/// Single-threaded fixed-size block allocator.
///
/// The free list holds the blocks freed so far, most recent first, linked through their first
/// eight bytes; blocks never handed out follow it implicitly, in index order (they are carved
/// lazily, so an unused tail of a large slab costs address space, not memory). A state byte per
/// block, kept outside the blocks, says whether it is in use.
///
/// The region is reserved for `reserved` blocks up front and used for the first `capacity`:
/// add_memory() takes more of it, so the pool grows without moving a block and free() still
/// decides ownership with one compare. An admission limit below the capacity shrinks the pool
/// without touching a block in use: alloc() refuses until in_use falls under it.
///
/// Invariant (checked by check_invariants()): in_use + free blocks == capacity; the free list is
/// acyclic, holds only blocks marked free, and with the uncarved tail covers every free block.
class slab {
  public:
    static constexpr std::uint32_t npos = UINT32_MAX;
    static constexpr std::size_t max_capacity = npos - 1;

    /// Maps a region of its own (one mmap) for `capacity` blocks of at least `block_size` bytes,
    /// each aligned to `align` (a power of two), reserving address space for `reserve` blocks
    /// (0: `capacity`). Throws std::invalid_argument / std::bad_alloc.
    slab(std::size_t block_size, std::size_t capacity,
         std::size_t align = alignof(std::max_align_t), std::size_t reserve = 0);
    /// Carves as many blocks as fit into caller-owned memory, which must outlive the slab.
    slab(std::span<std::byte> region, std::size_t block_size, std::size_t align);
    ~slab();

    slab(slab&& other) noexcept;
    slab& operator=(slab&&) = delete;
    slab(const slab&) = delete;
    slab& operator=(const slab&) = delete;

    /// Pops the most recently freed block, or returns nullptr when the limit's worth is in use.
    [[nodiscard]] void* alloc() noexcept {
        std::byte* block = head_;
        if (block == nullptr || in_use() >= limit_) [[unlikely]]
            return alloc_slow();
        head_ = load_next(block);
        unpoison(block, stride_);
        states_[index_of_offset(offset_of(block))] = in_use_state;
        ++allocs_;
        return block;
    }

    /// Pushes `p` back; refuses (and counts) a pointer that is not a live block of this slab.
    free_result free(void* p) noexcept {
        std::byte* block = static_cast<std::byte*>(p);
        const std::uintptr_t offset = offset_of(block);
        if (offset >= region_bytes_used_ || !fast_divide_) [[unlikely]]
            return free_slow(block);
        // One 64x64->128 multiply gives both the index (high half) and, from the low half,
        // whether the offset is an exact multiple of the stride (Lemire's divisibility test).
        const uint128 product = static_cast<uint128>(reciprocal_) * offset;
        if (static_cast<std::uint64_t>(product) >= reciprocal_) [[unlikely]]
            return reject(free_result::misaligned);
        std::uint8_t& state = states_[static_cast<std::size_t>(product >> 64)];
        if (state != in_use_state) [[unlikely]]
            return reject(free_result::double_free);
        return push(block, state);
    }

    [[nodiscard]] bool owns(const void* p) const noexcept {
        return offset_of(p) < region_bytes_used_;
    }
    /// Bytes per block: the requested size, at least a pointer (the free-list link), rounded up to
    /// the alignment.
    [[nodiscard]] std::size_t block_size() const noexcept { return stride_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    [[nodiscard]] std::size_t reserved() const noexcept { return reserved_; }
    [[nodiscard]] std::size_t in_use() const noexcept {
        return static_cast<std::size_t>(allocs_ - frees_);
    }
    [[nodiscard]] std::size_t available() const noexcept {
        return limit_ > in_use() ? limit_ - in_use() : 0;
    }

    /// The seed design's add_memory, over the reserved range: `blocks` more blocks after the
    /// last, raising the capacity and the limit with it. False (and nothing changes) when the
    /// reservation has no room for them.
    bool add_memory(std::size_t blocks) noexcept;
    /// Sets the admission limit, at most the capacity. Blocks in use stay in use; below the
    /// limit's worth alloc() hands out blocks again.
    void set_limit(std::size_t limit) noexcept { limit_ = std::min(limit, capacity_); }
    [[nodiscard]] slab_stats stats() const noexcept;

    /// Index of the block at `p` (which must be a block start of this slab); for tests and demos.
    [[nodiscard]] std::size_t index_of(const void* p) const noexcept;
    /// The state bytes summed into at most `max_cells` cells (at least one). O(capacity).
    [[nodiscard]] slab_map map(std::size_t max_cells) const;
    /// The free list from head to tail as block indices, the never-used blocks last.
    [[nodiscard]] std::vector<std::uint32_t> free_list() const;
    /// Empty when the invariant holds, else a description of the first violation found. O(N).
    [[nodiscard]] std::string check_invariants() const;

  private:
    static constexpr std::uint8_t free_state = 0;
    static constexpr std::uint8_t in_use_state = 1;

    void carve(std::size_t stride);
    [[gnu::noinline]] void* alloc_slow() noexcept;
    [[gnu::noinline]] free_result free_slow(std::byte* block) noexcept;
    [[gnu::noinline]] free_result reject(free_result why) noexcept;

    /// The end of every accepted free: mark the block free and make it the list's head.
    free_result push(std::byte* block, std::uint8_t& state) noexcept {
        state = free_state;
        store_next(block, head_);
        poison_tail(block, stride_);
        head_ = block;
        ++frees_;
        return free_result::ok;
    }

    std::uintptr_t offset_of(const void* p) const noexcept {
        // Unsigned wrap-around turns a pointer below the region into a huge offset: one compare.
        return reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(base_);
    }
    std::byte* block_at(std::size_t index) const noexcept { return base_ + index * stride_; }
    std::size_t index_of_offset(std::uintptr_t offset) const noexcept {
        // Exact for 32-bit offsets and strides; larger slabs divide (free_slow, index_of).
        if (fast_divide_) [[likely]]
            return static_cast<std::size_t>((static_cast<uint128>(reciprocal_) * offset) >> 64);
        return offset / stride_;
    }

    // memcpy, not a cast: the block's bytes may last have held an object of another type.
    static std::byte* load_next(const std::byte* block) noexcept {
        std::byte* next;
        std::memcpy(&next, block, sizeof next);
        return next;
    }
    static void store_next(std::byte* block, std::byte* next) noexcept {
        std::memcpy(block, &next, sizeof next);
    }

    // Under ASan a free block is poisoned past its link, so a use after free() is reported.
    static void unpoison([[maybe_unused]] std::byte* block,
                         [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(SLABD_ASAN)
        ASAN_UNPOISON_MEMORY_REGION(block, bytes);
#endif
    }
    static void poison_tail([[maybe_unused]] std::byte* block,
                            [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(SLABD_ASAN)
        ASAN_POISON_MEMORY_REGION(block + sizeof(std::byte*), bytes - sizeof(std::byte*));
#endif
    }
    static void poison_whole([[maybe_unused]] std::byte* block,
                             [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(SLABD_ASAN)
        ASAN_POISON_MEMORY_REGION(block, bytes);
#endif
    }
    std::byte* base_ = nullptr;
    std::byte* head_ = nullptr;  // most recently freed block; null when none is
    std::size_t stride_ = 0;
    std::size_t capacity_ = 0;
    std::size_t limit_ = 0;
    std::size_t reserved_ = 0;
    std::uintptr_t region_bytes_used_ = 0;  // capacity_ * stride_
    std::uint64_t reciprocal_ = 0;
    bool fast_divide_ = false;
    std::size_t fresh_ = 0;  // blocks [fresh_, capacity_) were never handed out
    std::uint64_t allocs_ = 0;
    std::uint64_t frees_ = 0;
    std::uint64_t failed_allocs_ = 0;
    std::uint64_t rejected_double_ = 0;
    std::uint64_t rejected_foreign_ = 0;
    std::uint64_t rejected_misaligned_ = 0;
    std::uint8_t* states_ = nullptr;  // one byte per block, its own zero-filled mapping
    std::size_t states_bytes_ = 0;
    void* mapping_ = nullptr;  // what munmap gets back; null when the region is the caller's
    std::size_t mapping_bytes_ = 0;
};

}  // namespace slabd::pool
