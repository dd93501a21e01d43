#!/usr/bin/env bash
# Issue 24's whole-run throughput at 1M steps and the compile cache, on an otherwise idle machine; run from the
# repository root with rlctl installed. Writes results/sps_HalfCheetah-v5_sb3-default_1M.{md,csv,png},
# results/runs/throughput/compile_cache.txt and the bench's progress lines in results/runs/throughput/bench_1M.txt.
set -euo pipefail
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d /tmp/rlctl-inductor-XXXX)}
log=results/runs/throughput/compile_cache.txt
: > "$log"
for run in cold warm; do  # the first run on a machine compiles; the second loads the graphs from the cache
  echo "== $run cache ($TORCHINDUCTOR_CACHE_DIR), $(date -u +%FT%TZ), load $(cut -d' ' -f1 /proc/loadavg)" >> "$log"
  /usr/bin/time -f "wall %e s" rlctl train --env HalfCheetah-v5 --preset sb3-default --fast --steps 8192 \
    --seed 1 --run-dir "/tmp/rlctl-compile-$run" --force --quiet --set run.eval_episodes=0 2>&1 \
    | grep -E "torch.compile of|wall" >> "$log"
done
cat "$log"
# the same cache: the bench's compiled variant starts warm, as a user's second run on the machine does
rlctl bench sps --env HalfCheetah-v5 --preset sb3-default --steps 1000000 --repeats 1 --libs rlctl-fast --tag 1M \
  2>&1 | tee results/runs/throughput/bench_1M.txt
