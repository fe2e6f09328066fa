#include "slabd/pool/slab.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

namespace slabd::pool {

namespace {

std::size_t round_up(std::size_t value, std::size_t multiple) {
    return (value + multiple - 1) / multiple * multiple;
}

void check_align(std::size_t align) {
    if (align == 0 || !std::has_single_bit(align))
        throw std::invalid_argument("slab: alignment must be a power of two");
}

}  // namespace

slab_stats& slab_stats::operator+=(const slab_stats& other) noexcept {
    // Summing classes of different block sizes leaves block_size to the caller.
    capacity += other.capacity;
    in_use += other.in_use;
    free += other.free;
    high_water += other.high_water;
    slab_bytes += other.slab_bytes;
    allocs += other.allocs;
    failed_allocs += other.failed_allocs;
    rejected_double_frees += other.rejected_double_frees;
    rejected_foreign_frees += other.rejected_foreign_frees;
    rejected_misaligned_frees += other.rejected_misaligned_frees;
    return *this;
}

slab::slab(std::size_t block_size, std::size_t capacity, std::size_t align) {
    check_align(align);
    if (capacity == 0 || capacity > max_capacity)
        throw std::invalid_argument("slab: capacity must be 1.." + std::to_string(max_capacity));
    const std::size_t stride = round_up(std::max(block_size, sizeof(std::uint32_t)), align);
    if (stride > SIZE_MAX / capacity) throw std::bad_alloc();

    // One mapping for the whole slab: the kernel hands out zero pages lazily, so an unused tail
    // of a large pool costs address space, not memory. Over-map when alignment exceeds a page.
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t slack = align > page ? align : 0;
    mapping_bytes_ = round_up(stride * capacity + slack, page);
    mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping_ == MAP_FAILED) {
        mapping_ = nullptr;
        throw std::bad_alloc();
    }
    const auto start = reinterpret_cast<std::uintptr_t>(mapping_);
    base_ = static_cast<std::byte*>(mapping_) + (round_up(start, align) - start);
    capacity_ = capacity;
    carve(block_size, align);
}

slab::slab(std::span<std::byte> region, std::size_t block_size, std::size_t align) {
    check_align(align);
    const std::size_t stride = round_up(std::max(block_size, sizeof(std::uint32_t)), align);
    const auto start = reinterpret_cast<std::uintptr_t>(region.data());
    const std::size_t skip = round_up(start, align) - start;
    const std::size_t usable = region.size() > skip ? region.size() - skip : 0;
    capacity_ = std::min(usable / stride, max_capacity);
    base_ = region.data() + std::min(skip, region.size());
    carve(block_size, align);
}

void slab::carve(std::size_t block_size, std::size_t align) {
    stride_ = round_up(std::max(block_size, sizeof(std::uint32_t)), align);
    region_bytes_used_ = capacity_ * stride_;
    fast_divide_ = region_bytes_used_ <= UINT32_MAX && stride_ <= UINT32_MAX;
    if (fast_divide_) reciprocal_ = UINT64_MAX / stride_ + 1;
    bitmap_.assign((capacity_ + 63) / 64, 0);
    for (std::size_t i = 0; i < capacity_; ++i) {
        const std::size_t next = i + 1 < capacity_ ? i + 1 : npos;
        store_next(block_at(i), static_cast<std::uint32_t>(next));
        poison_tail(block_at(i), stride_);
    }
    head_ = capacity_ > 0 ? 0 : npos;
}

slab::slab(slab&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      stride_(other.stride_),
      capacity_(std::exchange(other.capacity_, 0)),
      region_bytes_used_(std::exchange(other.region_bytes_used_, 0)),
      reciprocal_(other.reciprocal_),
      fast_divide_(other.fast_divide_),
      head_(std::exchange(other.head_, npos)),
      in_use_(std::exchange(other.in_use_, 0)),
      high_water_(other.high_water_),
      allocs_(other.allocs_),
      failed_allocs_(other.failed_allocs_),
      rejected_double_(other.rejected_double_),
      rejected_foreign_(other.rejected_foreign_),
      rejected_misaligned_(other.rejected_misaligned_),
      bitmap_(std::move(other.bitmap_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_bytes_(std::exchange(other.mapping_bytes_, 0)) {}

slab::~slab() {
    // Caller-owned memory must come back to its owner as the slab found it: addressable.
    if (base_ != nullptr) unpoison(base_, region_bytes_used_);
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
}

void* slab::on_empty() noexcept {
    ++failed_allocs_;
    return nullptr;
}

free_result slab::reject(free_result why) noexcept {
    switch (why) {
        case free_result::double_free: ++rejected_double_; break;
        case free_result::foreign: ++rejected_foreign_; break;
        case free_result::misaligned: ++rejected_misaligned_; break;
        case free_result::ok: break;
    }
    return why;
}

bool slab::owns(const void* p) const noexcept {
    const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(base_);
    return offset < region_bytes_used_;
}

std::size_t slab::index_of(const void* p) const noexcept {
    return index_of_offset(reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(base_));
}

slab_stats slab::stats() const noexcept {
    slab_stats s;
    s.block_size = stride_;
    s.capacity = capacity_;
    s.in_use = in_use_;
    s.free = capacity_ - in_use_;
    s.high_water = high_water_;
    s.slab_bytes = region_bytes_used_;
    s.allocs = allocs_;
    s.failed_allocs = failed_allocs_;
    s.rejected_double_frees = rejected_double_;
    s.rejected_foreign_frees = rejected_foreign_;
    s.rejected_misaligned_frees = rejected_misaligned_;
    return s;
}

std::vector<std::uint32_t> slab::free_list() const {
    std::vector<std::uint32_t> list;
    for (std::uint32_t i = head_; i != npos && list.size() <= capacity_; i = load_next(block_at(i)))
        list.push_back(i);
    return list;
}

std::string slab::check_invariants() const {
    std::vector<bool> seen(capacity_, false);
    std::size_t free_count = 0;
    for (std::uint32_t i = head_; i != npos; i = load_next(block_at(i))) {
        if (i >= capacity_) return "free list links to block " + std::to_string(i) + " past capacity";
        if (seen[i]) return "free list has a cycle through block " + std::to_string(i);
        if (is_in_use(i)) return "block " + std::to_string(i) + " is on the free list but marked in use";
        seen[i] = true;
        ++free_count;
    }
    std::size_t marked = 0;
    for (std::size_t i = 0; i < capacity_; ++i)
        if (is_in_use(i)) ++marked;
    if (marked != in_use_)
        return "bitmap marks " + std::to_string(marked) + " blocks in use, counter says " + std::to_string(in_use_);
    if (in_use_ + free_count != capacity_)
        return "in_use " + std::to_string(in_use_) + " + free " + std::to_string(free_count) +
               " != capacity " + std::to_string(capacity_);
    if (high_water_ < in_use_) return "high-water mark below in_use";
    return {};
}

}  // namespace slabd::pool
