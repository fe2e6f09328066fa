#include "pool_demo.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "slabd/pool/slab.hpp"

namespace slabd::server {

namespace {

void show(std::ostream& out, const pool::slab& s, const std::string& step) {
    out << step;
    out << std::string(step.size() < 22 ? 22 - step.size() : 1, ' ') << "free list: ";
    for (const std::uint32_t i : s.free_list()) out << i << " -> ";
    out << "NONE   (in use " << s.in_use() << ", free " << s.available() << ")\n";
}

}  // namespace

void run_pool_demo(std::ostream& out) {
    pool::slab s(64, 8);
    out << "slab: " << s.capacity() << " blocks of " << s.block_size() << " bytes\n";
    show(out, s, "init");
    std::vector<void*> blocks;
    for (const char* name : {"a", "b", "c", "d"}) {
        blocks.push_back(s.alloc());
        show(out, s,
             std::string("alloc ") + name + " = " + std::to_string(s.index_of(blocks.back())));
    }
    s.free(blocks[1]);
    show(out, s, "free b (1)");
    s.free(blocks[3]);
    show(out, s, "free d (3)");
    void* e = s.alloc();
    show(out, s, "alloc e = " + std::to_string(s.index_of(e)));
    const auto rejected = s.free(blocks[1]);
    show(out, s,
         rejected == pool::free_result::double_free ? "free b again: refused"
                                                    : "free b again: ACCEPTED");
    out << "invariant: " << (s.check_invariants().empty() ? "holds" : s.check_invariants()) << "\n";
}

}  // namespace slabd::server
