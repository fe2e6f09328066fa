// A slab: one region carved into equal blocks, handed out and taken back in O(1).
// The free list is a LIFO stack of block indices threaded through the free blocks themselves;
// an in-use bitmap kept outside the blocks lets free() reject bad pointers without corrupting it.
#pragma once

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

/// A snapshot of one slab's (or several slabs' summed) counters and gauges.
struct slab_stats {
    std::size_t block_size = 0;  ///< bytes per block, alignment padding included
    std::size_t capacity = 0;
    std::size_t in_use = 0;
    std::size_t free = 0;
    std::size_t high_water = 0;  ///< most blocks ever in use at once
    std::size_t slab_bytes = 0;  ///< bytes of the region(s) the blocks were carved from
    std::uint64_t allocs = 0;
    std::uint64_t failed_allocs = 0;
    std::uint64_t rejected_double_frees = 0;
    std::uint64_t rejected_foreign_frees = 0;
    std::uint64_t rejected_misaligned_frees = 0;

    slab_stats& operator+=(const slab_stats& other) noexcept;
};

/// Single-threaded fixed-size block allocator.
///
/// Invariant (checked by check_invariants()): in_use + free == capacity; the free list is
/// acyclic, holds exactly the blocks whose bitmap bit is clear, and ends in npos.
class slab {
public:
    static constexpr std::uint32_t npos = UINT32_MAX;
    static constexpr std::size_t max_capacity = npos - 1;

    /// Maps a region of its own (one mmap) for `capacity` blocks of at least `block_size` bytes,
    /// each aligned to `align` (a power of two). Throws std::invalid_argument / std::bad_alloc.
    slab(std::size_t block_size, std::size_t capacity, std::size_t align = alignof(std::max_align_t));
    /// Carves as many blocks as fit into caller-owned memory, which must outlive the slab.
    slab(std::span<std::byte> region, std::size_t block_size, std::size_t align);
    ~slab();

    slab(slab&& other) noexcept;
    slab& operator=(slab&&) = delete;
    slab(const slab&) = delete;
    slab& operator=(const slab&) = delete;

    /// Pops the most recently freed block, or returns nullptr when every block is in use.
    [[nodiscard]] void* alloc() noexcept {
        if (head_ == npos) [[unlikely]]
            return on_empty();
        const std::uint32_t index = head_;
        std::byte* block = block_at(index);
        head_ = load_next(block);
        unpoison(block, stride_);
        mark_in_use(index);
        if (++in_use_ > high_water_) high_water_ = in_use_;
        ++allocs_;
        return block;
    }

    /// Pushes `p` back; refuses (and counts) a pointer that is not a live block of this slab.
    free_result free(void* p) noexcept {
        // Unsigned wrap-around turns a pointer below the region into a huge offset: one compare.
        const std::uintptr_t offset =
            reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(base_);
        if (offset >= region_bytes_used_) [[unlikely]]
            return reject(free_result::foreign);
        const std::size_t index = index_of_offset(offset);
        if (index * stride_ != offset) [[unlikely]]
            return reject(free_result::misaligned);
        if (!clear_in_use(index)) [[unlikely]]
            return reject(free_result::double_free);
        store_next(static_cast<std::byte*>(p), head_);
        poison_tail(static_cast<std::byte*>(p), stride_);
        head_ = static_cast<std::uint32_t>(index);
        --in_use_;
        return free_result::ok;
    }

    [[nodiscard]] bool owns(const void* p) const noexcept;
    [[nodiscard]] std::size_t block_size() const noexcept { return stride_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::size_t in_use() const noexcept { return in_use_; }
    [[nodiscard]] std::size_t available() const noexcept { return capacity_ - in_use_; }
    [[nodiscard]] slab_stats stats() const noexcept;

    /// Index of the block at `p` (which must be a block start of this slab); for tests and demos.
    [[nodiscard]] std::size_t index_of(const void* p) const noexcept;
    /// The free list from head to tail, as block indices.
    [[nodiscard]] std::vector<std::uint32_t> free_list() const;
    /// Empty when the invariant holds, else a description of the first violation found. O(N).
    [[nodiscard]] std::string check_invariants() const;

private:
    void carve(std::size_t block_size, std::size_t align);
    [[gnu::noinline]] void* on_empty() noexcept;
    [[gnu::noinline]] free_result reject(free_result why) noexcept;

    std::byte* block_at(std::size_t index) const noexcept { return base_ + index * stride_; }
    // memcpy, not a cast: the block's bytes may last have held an object of another type.
    static std::uint32_t load_next(const std::byte* block) noexcept {
        std::uint32_t next;
        std::memcpy(&next, block, sizeof next);
        return next;
    }
    static void store_next(std::byte* block, std::uint32_t next) noexcept {
        std::memcpy(block, &next, sizeof next);
    }

    // Under ASan a free block is poisoned past its link, so a use after free() is reported.
    static void unpoison([[maybe_unused]] std::byte* block, [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(SLABD_ASAN)
        ASAN_UNPOISON_MEMORY_REGION(block, bytes);
#endif
    }
    static void poison_tail([[maybe_unused]] std::byte* block, [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(SLABD_ASAN)
        ASAN_POISON_MEMORY_REGION(block + sizeof(std::uint32_t), bytes - sizeof(std::uint32_t));
#endif
    }

    std::size_t index_of_offset(std::uintptr_t offset) const noexcept {
        // Lemire's multiply-by-reciprocal is exact for 32-bit numerators and divisors; it keeps a
        // 20-40 cycle division off the free path. Larger slabs take the plain division.
        if (fast_divide_) [[likely]]
            return static_cast<std::size_t>((static_cast<uint128>(reciprocal_) * offset) >> 64);
        return offset / stride_;
    }

    void mark_in_use(std::size_t index) noexcept {
        bitmap_[index / 64] |= std::uint64_t{1} << (index % 64);
    }
    bool clear_in_use(std::size_t index) noexcept {
        std::uint64_t& word = bitmap_[index / 64];
        const std::uint64_t bit = std::uint64_t{1} << (index % 64);
        const bool was_set = (word & bit) != 0;
        word &= ~bit;
        return was_set;
    }
    bool is_in_use(std::size_t index) const noexcept {
        return (bitmap_[index / 64] >> (index % 64)) & 1U;
    }

    std::byte* base_ = nullptr;
    std::size_t stride_ = 0;
    std::size_t capacity_ = 0;
    std::uintptr_t region_bytes_used_ = 0;  // capacity_ * stride_
    std::uint64_t reciprocal_ = 0;
    bool fast_divide_ = false;
    std::uint32_t head_ = npos;
    std::size_t in_use_ = 0;
    std::size_t high_water_ = 0;
    std::uint64_t allocs_ = 0;
    std::uint64_t failed_allocs_ = 0;
    std::uint64_t rejected_double_ = 0;
    std::uint64_t rejected_foreign_ = 0;
    std::uint64_t rejected_misaligned_ = 0;
    std::vector<std::uint64_t> bitmap_;
    void* mapping_ = nullptr;  // what munmap gets back; null when the region is the caller's
    std::size_t mapping_bytes_ = 0;
};

}  // namespace slabd::pool
