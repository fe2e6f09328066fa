// Replays the worked example of docs/design.md on a real slab and prints the free list after
// each step, as the slab-allocator design card does (`slabd --pool-demo`).
#pragma once

#include <ostream>

namespace slabd::server {

void run_pool_demo(std::ostream& out);

}  // namespace slabd::server
