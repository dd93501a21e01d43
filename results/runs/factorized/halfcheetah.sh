#!/usr/bin/env bash
# The HalfCheetah-v5 variance decomposition of results/factorized-baselines.md (one checkpoint); run from the
# repository root. A run with the HalfCheetah preset and factorized regress baselines to 204,800 steps (seed 201;
# scratch directory), so that its checkpoint holds a critic and factorized baselines trained side by side, then
# `rlctl variance --decompose` there. The JSON and PNG land in results/runs/factorized/variance/.
set -euo pipefail
RUNS=${RUNS:-/tmp/factorized-variance}
rlctl train --env HalfCheetah-v5 --steps 204800 --seed 201 --run-dir "$RUNS/halfcheetah" --force --quiet \
  --set run.eval_episodes=0 --set baseline.type=factorized --set baseline.mode=regress
rlctl variance "$RUNS/halfcheetah" --baselines none,state,factorized \
  --fit-batches 5 --batches 30 --reference 100 --decompose --states 20 --seed 0 --quiet \
  --out results/runs/factorized/variance/halfcheetah.json --force
