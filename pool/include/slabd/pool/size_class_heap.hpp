// A byte allocator over caller-provided memory: one slab per size class (64 B, 128 B, ...),
// each request routed to the smallest class that fits its size and alignment. Its interface
// mirrors the classic BaseAllocator/ByteAllocator shape: init, add_memory, alloc, dealloc.
#pragma once

#include <array>
#include <cstddef>
#include <memory_resource>
#include <span>
#include <system_error>
#include <vector>

#include "slabd/pool/slab.hpp"

namespace slabd::pool {

/// Why an allocation failed. Usable as a std::error_code.
enum class alloc_error { no_memory = 1, invalid_param };
const std::error_category& alloc_category() noexcept;
inline std::error_code make_error_code(alloc_error e) noexcept {
    return {static_cast<int>(e), alloc_category()};
}

/// The pointer an allocation produced, or the typed reason it did not.
class alloc_result {
  public:
    alloc_result(void* ptr) noexcept : ptr_(ptr) {}  // NOLINT: implicit, like expected<T>
    alloc_result(alloc_error error) noexcept : error_(error) {}  // NOLINT
    [[nodiscard]] bool ok() const noexcept { return ptr_ != nullptr; }
    explicit operator bool() const noexcept { return ok(); }
    [[nodiscard]] void* get() const noexcept { return ptr_; }
    [[nodiscard]] std::error_code error() const noexcept {
        return ok() ? std::error_code{} : make_error_code(error_);
    }

  private:
    void* ptr_ = nullptr;
    alloc_error error_ = alloc_error::no_memory;
};

/// One size class: its block size and the summed stats of its slabs.
struct size_class_stats {
    std::size_t block_size = 0;
    slab_stats slabs;
};

/// Size-class byte allocator. Single-threaded, like `slab`.
class size_class_heap {
  public:
    static constexpr std::array<std::size_t, 7> default_classes{64,   128,  256, 512,
                                                                1024, 2048, 4096};

    /// Class sizes must be powers of two, ascending. No memory until init().
    explicit size_class_heap(std::span<const std::size_t> class_sizes = default_classes);

    /// Hands the heap its first region; the caller keeps ownership and keeps it alive.
    void init(std::byte* start, std::size_t size);
    /// Grows capacity by a further region, shared among the classes like the first.
    void add_memory(std::byte* start, std::size_t size);

    /// A block of at least `size` bytes aligned to `align`, or no_memory / invalid_param.
    [[nodiscard]] alloc_result alloc(std::size_t size, std::size_t align) noexcept;
    /// Returns a block; `size` and `align` must be those it was allocated with. A pointer that
    /// no slab of the routed class owns is refused and counted in rejected_deallocs().
    void dealloc(void* ptr, std::size_t size, std::size_t align) noexcept;
    [[nodiscard]] std::uint64_t rejected_deallocs() const noexcept { return rejected_deallocs_; }

    [[nodiscard]] std::size_t total_bytes() const noexcept;
    [[nodiscard]] std::size_t used_bytes() const noexcept;
    [[nodiscard]] std::size_t available_bytes() const noexcept {
        return total_bytes() - used_bytes();
    }
    [[nodiscard]] std::vector<size_class_stats> class_stats() const;
    [[nodiscard]] std::string check_invariants() const;

    /// Index of the class serving (size, align), or npos when none can.
    [[nodiscard]] std::size_t class_for(std::size_t size, std::size_t align) const noexcept;
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  private:
    struct size_class {
        std::size_t block_size;
        std::vector<slab> slabs;  // one per region given to the heap
    };
    std::vector<size_class> classes_;
    std::uint64_t rejected_deallocs_ = 0;
};

/// std::pmr adapter: lets standard containers draw from a size_class_heap.
class heap_resource final : public std::pmr::memory_resource {
  public:
    explicit heap_resource(size_class_heap& heap) noexcept : heap_(&heap) {}

  private:
    void* do_allocate(std::size_t bytes, std::size_t alignment) override;
    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override;

    size_class_heap* heap_;
};

}  // namespace slabd::pool

template <>
struct std::is_error_code_enum<slabd::pool::alloc_error> : std::true_type {};
