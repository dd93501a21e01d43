#!/usr/bin/env bash
# Where the 1-env `--fast` sampler spends its time (issue 24): py-spy samples every process of an 80k-step run, and
# summarize_profile.py splits the collector's samples by what it calls. py-spy is not an rlctl dependency:
# `python -m venv /tmp/spy && /tmp/spy/bin/pip install py-spy`, then `PYSPY=/tmp/spy/bin/py-spy bash $0`.
set -euo pipefail
here=$(dirname "$0")
"${PYSPY:-py-spy}" record --subprocesses --rate 200 -f raw -o /tmp/rlctl-sampler-profile.txt -- \
  rlctl train --env HalfCheetah-v5 --preset sb3-default --fast --steps 81920 --seed 1 --run-dir /tmp/rlctl-profile \
  --force --quiet --set run.eval_episodes=0
{ echo "# bash $0, $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
  echo "# (shares of the collector's samples: compare shares, not times)"
  python "$here/summarize_profile.py" /tmp/rlctl-sampler-profile.txt; } | tee "$here/sampler_profile.txt"
