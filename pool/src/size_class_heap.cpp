#include "slabd/pool/size_class_heap.hpp"

#include <algorithm>
#include <bit>
#include <new>
#include <stdexcept>
#include <string>

namespace slabd::pool {

namespace {

class alloc_category_impl final : public std::error_category {
  public:
    const char* name() const noexcept override { return "slabd.pool"; }
    std::string message(int code) const override {
        switch (static_cast<alloc_error>(code)) {
            case alloc_error::no_memory:
                return "no free block in the size class";
            case alloc_error::invalid_param:
                return "size or alignment no size class can serve";
        }
        return "unknown pool error";
    }
};

}  // namespace

const std::error_category& alloc_category() noexcept {
    static const alloc_category_impl category;
    return category;
}

size_class_heap::size_class_heap(std::span<const std::size_t> class_sizes) {
    if (class_sizes.empty()) throw std::invalid_argument("size_class_heap: no size classes");
    std::size_t previous = 0;
    for (const std::size_t size : class_sizes) {
        if (!std::has_single_bit(size) || size <= previous)
            throw std::invalid_argument(
                "size_class_heap: class sizes must be ascending powers of two");
        classes_.push_back({size, {}});
        previous = size;
    }
}

void size_class_heap::init(std::byte* start, std::size_t size) {
    for (auto& c : classes_) c.slabs.clear();
    add_memory(start, size);
}

void size_class_heap::add_memory(std::byte* start, std::size_t size) {
    // Every class gets an equal share of the region; a share too small for one block of its
    // class (after alignment) adds nothing to that class.
    const std::size_t share = size / classes_.size();
    for (std::size_t i = 0; i < classes_.size(); ++i) {
        std::span<std::byte> part(start + i * share, share);
        slab s(part, classes_[i].block_size, classes_[i].block_size);
        if (s.capacity() > 0) classes_[i].slabs.push_back(std::move(s));
    }
}

std::size_t size_class_heap::class_for(std::size_t size, std::size_t align) const noexcept {
    // (a & (a - 1)) rather than std::has_single_bit, which baseline x86-64 turns into a libgcc
    // popcount call.
    if (size == 0 || align == 0 || (align & (align - 1)) != 0) return npos;
    const std::size_t need = std::max(size, align);
    // Class sizes are powers of two, so a block of the class that fits `need` is also aligned to
    // it.
    for (std::size_t i = 0; i < classes_.size(); ++i)
        if (classes_[i].block_size >= need) return i;
    return npos;
}

alloc_result size_class_heap::alloc(std::size_t size, std::size_t align) noexcept {
    const std::size_t index = class_for(size, align);
    if (index == npos) return alloc_error::invalid_param;
    for (slab& s : classes_[index].slabs)
        if (void* p = s.alloc()) return p;
    return alloc_error::no_memory;
}

void size_class_heap::dealloc(void* ptr, std::size_t size, std::size_t align) noexcept {
    const std::size_t index = class_for(size, align);
    if (index != npos) {
        for (slab& s : classes_[index].slabs) {
            if (s.owns(ptr)) {
                s.free(ptr);
                return;
            }
        }
    }
    ++rejected_deallocs_;
}

std::size_t size_class_heap::total_bytes() const noexcept {
    std::size_t total = 0;
    for (const auto& c : classes_)
        for (const slab& s : c.slabs) total += s.capacity() * c.block_size;
    return total;
}

std::size_t size_class_heap::used_bytes() const noexcept {
    std::size_t used = 0;
    for (const auto& c : classes_)
        for (const slab& s : c.slabs) used += s.in_use() * c.block_size;
    return used;
}

std::vector<size_class_stats> size_class_heap::class_stats() const {
    std::vector<size_class_stats> out;
    for (const auto& c : classes_) {
        size_class_stats cs;
        cs.block_size = c.block_size;
        cs.slabs.block_size = c.block_size;
        for (const slab& s : c.slabs) cs.slabs += s.stats();
        out.push_back(cs);
    }
    return out;
}

std::string size_class_heap::check_invariants() const {
    for (const auto& c : classes_) {
        for (const slab& s : c.slabs) {
            if (std::string why = s.check_invariants(); !why.empty())
                return "class " + std::to_string(c.block_size) + ": " + why;
        }
    }
    return {};
}

void* heap_resource::do_allocate(std::size_t bytes, std::size_t alignment) {
    const alloc_result r = heap_->alloc(bytes, alignment);
    if (!r) throw std::bad_alloc();
    return r.get();
}

void heap_resource::do_deallocate(void* p, std::size_t bytes, std::size_t alignment) {
    heap_->dealloc(p, bytes, alignment);
}

bool heap_resource::do_is_equal(const std::pmr::memory_resource& other) const noexcept {
    return this == &other;
}

}  // namespace slabd::pool
