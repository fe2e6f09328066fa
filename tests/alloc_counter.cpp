// Counts every heap allocation in this process by interposing the malloc family: operator new
// reaches malloc through libstdc++, and Asio's recycling allocator calls aligned_alloc directly,
// so counting operator new alone would miss it (docs/design.md, decision 5).
// Built only without sanitizers, which interpose these functions themselves.
#include "alloc_counter.hpp"

#include <cerrno>
#include <cstddef>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t size) {
    slabd::test::count_allocation();
    return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
    slabd::test::count_allocation();
    return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
    slabd::test::count_allocation();
    return __libc_realloc(p, size);
}
void* aligned_alloc(std::size_t align, std::size_t size) {
    slabd::test::count_allocation();
    return __libc_memalign(align, size);
}
void* memalign(std::size_t align, std::size_t size) {
    slabd::test::count_allocation();
    return __libc_memalign(align, size);
}
int posix_memalign(void** out, std::size_t align, std::size_t size) {
    slabd::test::count_allocation();
    void* p = __libc_memalign(align, size);
    if (p == nullptr) return ENOMEM;
    *out = p;
    return 0;
}
void free(void* p) {
    __libc_free(p);
}
}
