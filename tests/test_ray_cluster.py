"""``--ray-address`` on a real two-node cluster (two raylets, ``ray start`` on 127.0.0.1, token auth): the sampler
workers spread over both nodes, the second node dies mid-run, training finishes on the head with the restart
counted, and ``ray stop`` leaves nothing running. The cluster lives in its own network and PID namespaces
(``tests/ray_cluster_run.py``), so it cannot reach or be reached from anything but loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[1]
NAMESPACES = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        return False
    return subprocess.run([*NAMESPACES, "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(900)  # two Ray nodes starting on a busy 2-core machine
@pytest.mark.skipif(not _namespaces_work(), reason="needs root, unshare and ip (network and PID namespaces)")
def test_training_spans_two_ray_nodes_and_finishes_on_the_head_when_one_dies(tmp_path: Path) -> None:
    proc = subprocess.run([*NAMESPACES, sys.executable, "-m", "tests.ray_cluster_run", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    output = result["output"]
    assert result["returncode"] == 0, output[-3000:]
    placed = re.search(r"ray sampler workers: 0 on node (\w+) \(127\.0\.0\.1\), 1 on node (\w+) \(127\.0\.0\.1\)",
                       output)
    assert placed is not None and placed[1] != placed[2], output  # one worker on each node
    restarted = re.search(r"ray sampler worker (\d) restarted on node (\w+)", output)
    assert restarted is not None, output
    survivor = placed[2] if restarted[1] == "0" else placed[1]
    assert restarted[2] == survivor  # the lost node's worker came back on the node that is left
    assert result["killed_at"] is not None and result["killed_at"] < result["last_step"] == 8192
    assert result["restarts"] >= 1
    assert result["ray_left"] == []  # ray stop took every Ray process down
