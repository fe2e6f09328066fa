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

// The one place a block's footprint is decided: a free block holds the free-list link (a
// pointer) in its first bytes, so no block is smaller than one, whatever the caller asked.
std::size_t stride_for(std::size_t block_size, std::size_t align) {
    return round_up(std::max(block_size, sizeof(std::byte*)), align);
}

}  // namespace

slab_stats& slab_stats::operator+=(const slab_stats& other) noexcept {
    const std::size_t own_block_size = block_size;
#define SLABD_ADD(field, metric, label, json, type, help) field += other.field;
    SLABD_SLAB_STATS(SLABD_ADD)
#undef SLABD_ADD
    block_size = own_block_size;
    return *this;
}

slab::slab(std::size_t block_size, std::size_t capacity, std::size_t align, std::size_t reserve) {
    check_align(align);
    reserve = std::max(reserve, capacity);
    if (capacity == 0 || reserve > max_capacity)
        throw std::invalid_argument("slab: capacity must be 1.." + std::to_string(max_capacity));
    const std::size_t stride = stride_for(block_size, align);
    if (stride > SIZE_MAX / reserve) throw std::bad_alloc();

    // One mapping for the whole reservation: the kernel hands out zero pages lazily, so the
    // unused tail of a large pool, and the room it may grow into, cost address space, not memory
    // (MAP_NORESERVE: nor commit charge). Over-map when alignment exceeds a page.
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t slack = align > page ? align : 0;
    mapping_bytes_ = round_up(stride * reserve + slack, page);
    mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping_ == MAP_FAILED) {
        mapping_ = nullptr;
        throw std::bad_alloc();
    }
    const auto start = reinterpret_cast<std::uintptr_t>(mapping_);
    base_ = static_cast<std::byte*>(mapping_) + (round_up(start, align) - start);
    capacity_ = capacity;
    reserved_ = reserve;
    carve(stride);
}

slab::slab(std::span<std::byte> region, std::size_t block_size, std::size_t align) {
    check_align(align);
    const std::size_t stride = stride_for(block_size, align);
    const auto start = reinterpret_cast<std::uintptr_t>(region.data());
    const std::size_t skip = round_up(start, align) - start;
    const std::size_t usable = region.size() > skip ? region.size() - skip : 0;
    capacity_ = std::min(usable / stride, max_capacity);
    reserved_ = capacity_;
    base_ = region.data() + std::min(skip, region.size());
    carve(stride);
}

void slab::carve(std::size_t stride) {
    // Blocks are carved lazily by alloc_slow(): nothing here touches them, so the kernel's zero
    // pages stay unmapped until a block is first used.
    stride_ = stride;
    limit_ = capacity_;
    region_bytes_used_ = capacity_ * stride_;
    // Decided for the whole reservation, so that growing never changes how free() divides.
    fast_divide_ = reserved_ * stride_ <= UINT32_MAX && stride_ <= UINT32_MAX;
    if (fast_divide_) reciprocal_ = UINT64_MAX / stride_ + 1;
    // The state bytes get a mapping of their own: the kernel's zero pages already say "free"
    // (free_state is 0), so they too cost memory only once their blocks are used.
    static_assert(free_state == 0);
    if (reserved_ > 0) {
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        states_bytes_ = round_up(reserved_, page);
        void* states = ::mmap(nullptr, states_bytes_, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (states == MAP_FAILED) {
            if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
            throw std::bad_alloc();
        }
        states_ = static_cast<std::uint8_t*>(states);
    }
    poison_whole(base_, region_bytes_used_);
}

bool slab::add_memory(std::size_t blocks) noexcept {
    if (blocks > reserved_ - capacity_) return false;
    poison_whole(block_at(capacity_), blocks * stride_);
    capacity_ += blocks;
    limit_ = capacity_;
    region_bytes_used_ = capacity_ * stride_;
    return true;
}

slab::slab(slab&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      head_(std::exchange(other.head_, nullptr)),
      stride_(other.stride_),
      capacity_(std::exchange(other.capacity_, 0)),
      limit_(std::exchange(other.limit_, 0)),
      reserved_(std::exchange(other.reserved_, 0)),
      region_bytes_used_(std::exchange(other.region_bytes_used_, 0)),
      reciprocal_(other.reciprocal_),
      fast_divide_(other.fast_divide_),
      fresh_(std::exchange(other.fresh_, 0)),
      allocs_(std::exchange(other.allocs_, 0)),
      frees_(std::exchange(other.frees_, 0)),
      failed_allocs_(other.failed_allocs_),
      rejected_double_(other.rejected_double_),
      rejected_foreign_(other.rejected_foreign_),
      rejected_misaligned_(other.rejected_misaligned_),
      states_(std::exchange(other.states_, nullptr)),
      states_bytes_(std::exchange(other.states_bytes_, 0)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_bytes_(std::exchange(other.mapping_bytes_, 0)) {}

slab::~slab() {
    // Caller-owned memory must come back to its owner as the slab found it: addressable.
    if (base_ != nullptr) unpoison(base_, region_bytes_used_);
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
    if (states_ != nullptr) ::munmap(states_, states_bytes_);
}

void* slab::alloc_slow() noexcept {
    if (in_use() >= limit_ || fresh_ == capacity_) {
        ++failed_allocs_;
        return nullptr;
    }
    // Under the limit with an empty free list, every block used so far is in use: the next
    // never-used block is also the new high-water mark.
    std::byte* block = block_at(fresh_);
    states_[fresh_++] = in_use_state;
    unpoison(block, stride_);
    ++allocs_;
    return block;
}

free_result slab::free_slow(std::byte* block) noexcept {
    const std::uintptr_t offset = offset_of(block);
    if (offset >= region_bytes_used_) return reject(free_result::foreign);
    // Only slabs of 4 GiB or more get here with a pointer they own.
    if (offset % stride_ != 0) return reject(free_result::misaligned);
    std::uint8_t& state = states_[offset / stride_];
    if (state != in_use_state) return reject(free_result::double_free);
    return push(block, state);
}

free_result slab::reject(free_result why) noexcept {
    switch (why) {
        case free_result::double_free:
            ++rejected_double_;
            break;
        case free_result::foreign:
            ++rejected_foreign_;
            break;
        case free_result::misaligned:
            ++rejected_misaligned_;
            break;
        case free_result::ok:
            break;
    }
    return why;
}

std::size_t slab::index_of(const void* p) const noexcept {
    return index_of_offset(offset_of(p));
}

slab_stats slab::stats() const noexcept {
    slab_stats s;
    s.block_size = stride_;
    s.capacity = capacity_;
    s.limit = limit_;
    s.reserved = reserved_;
    s.in_use = in_use();
    s.free = available();
    s.high_water = fresh_;
    s.slab_bytes = region_bytes_used_;
    s.allocs = allocs_;
    s.failed_allocs = failed_allocs_;
    s.rejected_double_frees = rejected_double_;
    s.rejected_foreign_frees = rejected_foreign_;
    s.rejected_misaligned_frees = rejected_misaligned_;
    return s;
}

slab_map slab::map(std::size_t max_cells) const {
    slab_map m;
    m.capacity = capacity_;
    m.carved = fresh_;
    const std::size_t cells = std::max<std::size_t>(1, max_cells);
    m.blocks_per_cell = std::max<std::size_t>(1, (capacity_ + cells - 1) / cells);
    m.in_use.assign((capacity_ + m.blocks_per_cell - 1) / m.blocks_per_cell, 0);
    // Blocks past fresh_ were never handed out, so their state bytes are known to be free.
    for (std::size_t i = 0; i < fresh_; ++i)
        m.in_use[i / m.blocks_per_cell] += states_[i] == in_use_state ? 1U : 0U;
    if (head_ != nullptr)
        m.head = index_of(head_);
    else if (fresh_ < capacity_)
        m.head = fresh_;
    return m;
}

std::vector<std::uint32_t> slab::free_list() const {
    std::vector<std::uint32_t> list;
    for (std::byte* b = head_; b != nullptr && list.size() <= capacity_; b = load_next(b))
        list.push_back(static_cast<std::uint32_t>(index_of(b)));
    for (std::size_t i = fresh_; i < capacity_; ++i) list.push_back(static_cast<std::uint32_t>(i));
    return list;
}

std::string slab::check_invariants() const {
    std::vector<bool> seen(capacity_, false);
    std::size_t listed = 0;
    for (std::byte* b = head_; b != nullptr; b = load_next(b)) {
        const std::uintptr_t offset = offset_of(b);
        if (offset >= region_bytes_used_ || offset % stride_ != 0)
            return "free list links to " + std::to_string(offset) +
                   ", not a block start of this slab";
        const std::size_t i = offset / stride_;
        if (i >= fresh_)
            return "free list holds block " + std::to_string(i) + ", which was never handed out";
        if (seen[i]) return "free list has a cycle through block " + std::to_string(i);
        if (states_[i] != free_state)
            return "block " + std::to_string(i) + " is on the free list but marked in use";
        seen[i] = true;
        ++listed;
    }
    std::size_t marked = 0;
    for (std::size_t i = 0; i < capacity_; ++i) {
        if (states_[i] == in_use_state) {
            if (i >= fresh_)
                return "block " + std::to_string(i) + " is marked in use but was never handed out";
            ++marked;
        } else if (i < fresh_ && !seen[i]) {
            return "block " + std::to_string(i) + " is free but not on the free list (lost)";
        }
    }
    if (marked != in_use())
        return "state bytes mark " + std::to_string(marked) + " blocks in use, counters say " +
               std::to_string(in_use());
    const std::size_t free_count = listed + (capacity_ - fresh_);
    if (in_use() + free_count != capacity_)
        return "in_use " + std::to_string(in_use()) + " + free " + std::to_string(free_count) +
               " != capacity " + std::to_string(capacity_);
    return {};
}

}  // namespace slabd::pool
