// slabd-pool-bench: what one alloc+free pair costs in the slab pool and in the allocators it
// replaces (glibc malloc, std::pmr's pool, jemalloc, mimalloc), all measured in one process.
// bench/pool-bench.sh runs it pinned to one core and prints the comparison table.

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <memory_resource>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "slabd/pool/object_pool.hpp"
#include "slabd/pool/shared_slab.hpp"
#include "slabd/pool/size_class_heap.hpp"
#include "slabd/pool/slab.hpp"

namespace {

namespace pool = slabd::pool;

/// Blocks alive at once in the burst workloads: a busy worker's connections.
constexpr std::size_t live_blocks = 1000;
/// What malloc guarantees; every allocator is asked for the same.
constexpr std::size_t block_align = alignof(std::max_align_t);

// Linking libjemalloc or libmimalloc would interpose their malloc/free on the whole process, and
// the "glibc" row would silently measure one of them. So neither is linked: each is dlopen'ed
// RTLD_LOCAL, which keeps its symbols out of the global scope, and RTLD_DEEPBIND, which binds the
// library's own calls to malloc/free to itself rather than to glibc. dladdr() then checks that
// every entry point lives in the library it is named after, glibc's included.

/// A malloc/free pair found at run time, or why it could not be.
struct c_allocator {
    std::string name;
    void* (*allocate)(std::size_t) = nullptr;
    void (*deallocate)(void*) = nullptr;
    std::string origin;  ///< the shared object both entry points resolved into
    std::string error;   ///< empty when usable
};

std::string object_of(void* address) {
    Dl_info info{};
    return dladdr(address, &info) != 0 && info.dli_fname != nullptr ? info.dli_fname : "?";
}

bool has_basename(std::string_view path, std::string_view name) {
    return path.ends_with(name) &&
           (path.size() == name.size() || path[path.size() - name.size() - 1] == '/');
}

/// Looks both symbols up through `handle` and accepts them only if they live in `soname`.
c_allocator resolve(std::string name, void* handle, const char* alloc_symbol,
                    const char* free_symbol, std::string_view soname) {
    c_allocator c;
    c.name = std::move(name);
    void* const allocate = dlsym(handle, alloc_symbol);
    void* const deallocate = dlsym(handle, free_symbol);
    if (allocate == nullptr || deallocate == nullptr) {
        c.error = std::string(alloc_symbol) + " or " + free_symbol + " not found";
        return c;
    }
    for (void* const entry : {allocate, deallocate}) {
        if (const std::string where = object_of(entry); !has_basename(where, soname)) {
            c.error = "resolved into " + where + ", not " + std::string(soname);
            return c;
        }
    }
    c.origin = object_of(allocate);
    c.allocate = reinterpret_cast<void* (*)(std::size_t)>(allocate);
    c.deallocate = reinterpret_cast<void (*)(void*)>(deallocate);
    return c;
}

c_allocator load(std::string name, const char* soname, const char* alloc_symbol,
                 const char* free_symbol) {
    // Never dlclose'd: the library's heaps and thread state must outlive every benchmark.
    void* const handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle != nullptr)
        return resolve(std::move(name), handle, alloc_symbol, free_symbol, soname);
    c_allocator c;
    c.name = std::move(name);
    c.error = dlerror();
    // Both libraries use initial-exec TLS, which a dlopen'ed library must take from glibc's
    // small static TLS reserve; jemalloc's 2.6 KiB does not fit the default one.
    if (c.error.find("static TLS") != std::string::npos)
        c.error +=
            "; run with GLIBC_TUNABLES=glibc.rtld.optional_static_tls=4096 (pool-bench.sh does)";
    return c;
}

// Every allocator under test behind the same alloc()/free(), sized at compile time like
// malloc(sizeof(connection)). Each benchmark run constructs a fresh one outside the timed loop.

template <typename Slab, std::size_t Size>
class slab_adapter {
  public:
    void* alloc() noexcept { return slab_.alloc(); }
    void free(void* p) noexcept { slab_.free(p); }

  private:
    Slab slab_{Size, live_blocks};
};

/// object_pool's T: its constructor does nothing, so the row prices the pool and not a memset.
template <std::size_t Size>
struct alignas(block_align) payload {
    payload() noexcept {}  // user-provided: `T()` would otherwise zero all Size bytes
    std::array<std::byte, Size> bytes;
};

/// create/destroy: the path make() and its handle wrap.
template <std::size_t Size>
class object_pool_adapter {
  public:
    void* alloc() { return pool_.create(); }
    void free(void* p) noexcept { pool_.destroy(static_cast<payload<Size>*>(p)); }

  private:
    pool::object_pool<payload<Size>> pool_{live_blocks};
};

template <std::size_t Size>
class heap_adapter {
  public:
    heap_adapter() { heap_.init(region_.get(), region_bytes); }
    void* alloc() noexcept { return heap_.alloc(Size, block_align).get(); }
    void free(void* p) noexcept { heap_.dealloc(p, Size, block_align); }

  private:
    // Split evenly among the default classes, this gives every class far more than live_blocks.
    static constexpr std::size_t region_bytes = std::size_t{8} << 20;
    std::unique_ptr<std::byte[]> region_ = std::make_unique<std::byte[]>(region_bytes);
    pool::size_class_heap heap_;
};

template <std::size_t Size>
class pmr_adapter {
  public:
    void* alloc() { return pool_.allocate(Size, block_align); }
    void free(void* p) noexcept { pool_.deallocate(p, Size, block_align); }

  private:
    std::pmr::unsynchronized_pool_resource pool_;
};

template <std::size_t Size>
class c_adapter {
  public:
    explicit c_adapter(const c_allocator& c) noexcept
        : allocate_(c.allocate), deallocate_(c.deallocate) {}
    void* alloc() noexcept { return allocate_(Size); }
    void free(void* p) noexcept { deallocate_(p); }

  private:
    void* (*allocate_)(std::size_t);
    void (*deallocate_)(void*);
};

// Workloads. One item is one alloc+free pair, so items_per_second compares across all rows.

template <typename Alloc>
void alloc_free(benchmark::State& state, Alloc& a) {
    // A server always has other blocks live. Without one, mimalloc would find its page empty
    // after every free and retire it, so the row would time its slow path.
    void* const neighbour = a.alloc();
    for (auto _ : state) {
        void* p = a.alloc();
        // The const overload lets p stay in a register; g++'s mutable one spills it to the stack
        // and would add a store-to-load round trip to every pair.
        benchmark::DoNotOptimize(std::as_const(p));
        a.free(p);
    }
    a.free(neighbour);
    state.SetItemsProcessed(state.iterations());
}

/// live_blocks allocated, then all freed in `order` (block indices fixed before timing).
template <typename Alloc>
void burst(benchmark::State& state, Alloc& a, std::span<const std::uint32_t> order) {
    std::vector<void*> blocks(live_blocks);
    // One untimed round first: it faults the memory in and proves the allocator holds the burst.
    for (void*& p : blocks) p = a.alloc();
    const bool complete = std::ranges::none_of(blocks, [](void* p) { return p == nullptr; });
    for (void* p : blocks)
        if (p != nullptr) a.free(p);
    if (!complete) {
        state.SkipWithError("the allocator ran out before the burst was complete");
        return;
    }
    for (auto _ : state) {
        for (void*& p : blocks) {
            p = a.alloc();
            benchmark::DoNotOptimize(std::as_const(p));
        }
        for (const std::uint32_t i : order) a.free(blocks[i]);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(live_blocks));
}

/// Free orders for the bursts, drawn once so that no RNG runs inside a timed loop.
struct free_orders {
    std::vector<std::uint32_t> lifo;
    std::vector<std::uint32_t> random;
};

free_orders make_free_orders() {
    free_orders orders;
    orders.random.resize(live_blocks);
    std::iota(orders.random.begin(), orders.random.end(), 0U);
    orders.lifo.assign(orders.random.rbegin(), orders.random.rend());
    std::mt19937 rng(20240601);  // fixed seed: every row and every run frees in the same order
    std::shuffle(orders.random.begin(), orders.random.end(), rng);
    return orders;
}

/// Registers "<workload>/<allocator>/<size>" for the three workloads; each run builds its own
/// Alloc from `args`, or skips with `unavailable` when that is not empty.
template <typename Alloc, typename... Args>
void register_rows(std::string_view allocator, std::size_t size, const free_orders& orders,
                   const std::string& unavailable, const Args&... args) {
    const auto add = [&](std::string_view workload, auto run) {
        const std::string name =
            std::string(workload) + "/" + std::string(allocator) + "/" + std::to_string(size);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
            if (!unavailable.empty()) {
                state.SkipWithError(unavailable.c_str());
                return;
            }
            Alloc a(args...);
            run(state, a);
        });
    };
    add("alloc_free", [](benchmark::State& state, Alloc& a) { alloc_free(state, a); });
    add("lifo_burst",
        [&orders](benchmark::State& state, Alloc& a) { burst(state, a, orders.lifo); });
    add("random_free",
        [&orders](benchmark::State& state, Alloc& a) { burst(state, a, orders.random); });
}

template <std::size_t Size>
void register_size(const free_orders& orders, std::span<const c_allocator> c_allocators) {
    register_rows<slab_adapter<pool::slab, Size>>("slab", Size, orders, {});
    register_rows<slab_adapter<pool::shared_slab, Size>>("shared_slab", Size, orders, {});
    register_rows<object_pool_adapter<Size>>("object_pool", Size, orders, {});
    register_rows<heap_adapter<Size>>("size_class_heap", Size, orders, {});
    register_rows<pmr_adapter<Size>>("pmr_pool", Size, orders, {});
    for (const c_allocator& c : c_allocators)
        register_rows<c_adapter<Size>>(c.name, Size, orders, c.error, c);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    // glibc is resolved last, through the global scope a plain malloc() call binds to: its check
    // then also proves that neither library loaded before it leaked into that scope.
    const std::array c_allocators{
        load("jemalloc", "libjemalloc.so.2", "malloc", "free"),
        load("mimalloc", "libmimalloc.so.2", "mi_malloc", "mi_free"),
        resolve("glibc", RTLD_DEFAULT, "malloc", "free", "libc.so.6"),
    };
    for (const c_allocator& c : c_allocators) {
        // In the JSON context too, so that a saved result says what each row measured.
        benchmark::AddCustomContext(c.name, c.error.empty() ? c.origin : "unavailable: " + c.error);
        if (!c.error.empty())
            std::fprintf(stderr, "slabd-pool-bench: skipping %s: %s\n", c.name.c_str(),
                         c.error.c_str());
    }

    const free_orders orders = make_free_orders();
    register_size<64>(orders, c_allocators);
    register_size<320>(orders, c_allocators);  // about the size of a server connection
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
