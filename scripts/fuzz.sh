#!/usr/bin/env bash
# Builds the fuzz preset (clang, libFuzzer, ASan+UBSan) and fuzzes every target it lists for a
# bounded time, all targets at once, over a copy of the corpus in the build directory (the seed
# corpus in tests/fuzz/corpus/ is not touched). Prints executions per target; exits non-zero on
# a crash, naming the file that reproduces it.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60; env SLABD_FUZZ_BUILD_DIR, default build/fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
build=${SLABD_FUZZ_BUILD_DIR:-build/fuzz}

echo "=== fuzz: configure, build (${build})"
cmake --preset fuzz -B "${build}" >/dev/null
cmake --build "${build}" --target fuzz_targets -j "$(nproc)"

# One "name<TAB>binary<TAB>corpus" line per slabd_fuzz_target (tests/fuzz/CMakeLists.txt).
mapfile -t targets <"${build}/fuzz_targets.tsv"
((${#targets[@]})) || { echo "fuzz: no targets in ${build}/fuzz_targets.tsv" >&2; exit 1; }

run="${build}/fuzz-run"
rm -rf "${run}"
declare -A pids logs binaries
for line in "${targets[@]}"; do
  IFS=$'\t' read -r name binary corpus <<<"${line}"
  mkdir -p "${run}/${name}/corpus"
  cp -R "${corpus}/." "${run}/${name}/corpus/"
  logs[${name}]="${run}/${name}/fuzz.log"
  binaries[${name}]=${binary}
  echo "=== fuzz: ${name}, ${seconds} s"
  # -artifact_prefix: a crash file lands beside the log, not in the working directory.
  # A dictionary beside the target's source (tests/fuzz/NAME.dict) is used when there is one.
  dict=${corpus%/corpus/*}/${name}.dict
  dict_flag=()
  [[ -f ${dict} ]] && dict_flag=(-dict="${dict}")
  "${binary}" -max_total_time="${seconds}" -rss_limit_mb=2048 -print_final_stats=1 "${dict_flag[@]}" \
    -artifact_prefix="${run}/${name}/" "${run}/${name}/corpus" >"${logs[${name}]}" 2>&1 &
  pids[${name}]=$!
done

failed=0
for name in "${!pids[@]}"; do
  status=0
  wait "${pids[${name}]}" || status=$?
  log=${logs[${name}]}
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "${log}" | tail -1)
  echo "fuzz ${name}: ${execs:-?} executions, ${rate:-?} exec/s, exit ${status} (log ${log})"
  if ((status != 0)); then
    failed=1
    grep -E 'ERROR: |runtime error|SUMMARY: |Test unit written to' "${log}" | sed "s/^/  ${name}: /" >&2 || true
    for crash in "${run}/${name}"/crash-* "${run}/${name}"/leak-* "${run}/${name}"/timeout-* "${run}/${name}"/oom-*; do
      [[ -e ${crash} ]] && echo "  ${name}: crash file ${crash} (reproduce: ${binaries[${name}]} ${crash})" >&2
    done
  fi
done
exit "${failed}"
