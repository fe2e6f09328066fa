#!/usr/bin/env bash
# Builds the release preset if needed, runs slabd-pool-bench pinned to core 1 and prints the
# median ns per alloc+free pair as a markdown table, each cell with its ratio to `slab`.
# Extra arguments go to the benchmark, e.g. --benchmark_filter=alloc_free.
# The raw JSON is kept in build/release/pool-bench.json (or $POOL_BENCH_JSON).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
json=${POOL_BENCH_JSON:-build/release/pool-bench.json}

./scripts/install-deps.sh bench >&2
# The release preset leaves the benchmarks out (scripts/run.sh needs none of their libraries).
cmake --preset release -DSLABD_BUILD_BENCH=ON >/dev/null
cmake --build --preset release --target slabd-pool-bench >/dev/null

# jemalloc is dlopen'ed (see pool_bench.cpp) and its initial-exec TLS needs more static TLS
# reserve than glibc keeps for dlopen by default; tunables are only read at process start.
GLIBC_TUNABLES=glibc.rtld.optional_static_tls=4096 \
  taskset -c 1 build/release/bench/slabd-pool-bench \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$json" --benchmark_out_format=json "$@" >&2

/usr/bin/python3 - "$json" <<'EOF'
import json, sys

doc = json.load(open(sys.argv[1]))
columns = ["slab", "shared_slab", "object_pool", "size_class_heap",
           "pmr_pool", "glibc", "jemalloc", "mimalloc"]
ns = {}  # (workload, size) -> allocator -> median ns per pair; None when skipped
for b in doc["benchmarks"]:
    if b.get("error_occurred") or b.get("aggregate_name") == "median":
        workload, allocator, size = b["run_name"].split("/")
        ips = None if b.get("error_occurred") else b["items_per_second"]
        ns.setdefault((workload, int(size)), {})[allocator] = ips and 1e9 / ips

for name in ("glibc", "jemalloc", "mimalloc"):
    print(f"- {name}: {doc['context'].get(name, '?')}")
print()
print("| workload (ns per alloc+free) | " + " | ".join(columns) + " |")
print("|---|" + "---:|" * len(columns))
for (workload, size), row in sorted(ns.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    slab = row.get("slab")
    cells = [f"{row[c]:.2f} ({row[c] / slab:.1f}x)" if row.get(c) and slab else "n/a"
             for c in columns]
    print(f"| {workload} {size} B | " + " | ".join(cells) + " |")
EOF
