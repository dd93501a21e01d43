#!/usr/bin/env bash
# The frozen-policy gradient-variance measurements of results/factorized-baselines.md; run from the repository root.
# For each m: a state-baseline run of 10 iterations (seed 201, disjoint from the table's 101-105 and the screen's
# 1-3), then `rlctl variance` at its checkpoint: 20 fitting batches, 30 measured batches of 256 rows, and a 100x
# larger reference. The run directories are scratch (RUNS); the JSON and PNG land in results/runs/factorized/variance/.
set -euo pipefail
RUNS=${RUNS:-/tmp/factorized-variance}
for m in ${DIMS:-10 100 500 2000}; do
  rlctl train --env rlctl/TargetMatching-v0 --num-envs 16 --steps 2560 --seed 201 --run-dir "$RUNS/m$m" --force \
    --quiet --set env.kwargs.dim="$m" --set ppo.num_steps=16 --set ppo.minibatch_size=64 \
    --set ppo.learning_rate=1e-3 --set ppo.clip_reward=1e9 --set run.eval_episodes=0
  rlctl variance "$RUNS/m$m" --baselines state,factorized:regress,factorized:q_mean,factorized:q_mc \
    --fit-batches 20 --batches 30 --reference 100 --seed 0 --quiet \
    --out "results/runs/factorized/variance/m$m.json" --force
done
