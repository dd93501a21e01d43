"""A two-node Ray cluster the way a user builds one, run inside fresh network and PID namespaces.

``tests/test_ray_cluster.py`` runs ``unshare --net --pid --fork --mount-proc python -m tests.ray_cluster_run DIR``:
only loopback exists in there (Ray cannot swap 127.0.0.1 for a routable address), and every process started
here dies with the namespace. Steps: ``ray start --head`` (2 CPUs) and ``ray start --address`` for a second node
(1 CPU, ``--block``, in its own process group), both on 127.0.0.1 with token authentication; ``rlctl train
--backend ray --ray-address`` with two sampler workers; the second node killed once the run has logged
``KILL_AT`` steps; ``ray stop``. Prints one JSON line: the train's exit code and output, the final step, the
logged worker restarts, and the Ray processes left after ``ray stop``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADDRESS = "127.0.0.1:6379"
STEPS, KILL_AT = 8192, 1024
RAY = str(Path(sys.executable).with_name("ray"))
WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + 240
while sum(n["Alive"] for n in ray.nodes()) < 2:
    if time.monotonic() > deadline:
        sys.exit(f"the second node never joined: {ray.nodes()}")
    time.sleep(0.5)
"""


def _env(temp: str) -> dict[str, str]:
    # RAY_TMPDIR: this cluster's session files apart from any other Ray on the machine (a short path: Ray's
    # socket paths must fit in 107 bytes)
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (single-machine mode, which rlctl's private local clusters use while
    # they live) would keep the second node from joining, so a value left in the caller's environment is dropped
    base = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    return {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "rlctl-test-token-0123456789abcdef",
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3", "RAY_TMPDIR": temp}


def _run(cmd: list[str], env: dict[str, str]) -> None:
    """Run a set-up step; its output goes into the error if it fails."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({done.returncode}): {done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")


def _logged_steps(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return 0
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def main(out: Path) -> dict[str, object]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out.mkdir(parents=True, exist_ok=True)
    env = _env(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    _run([RAY, "start", "--head", "--port", ADDRESS.split(":")[1], "--num-cpus", "2", "--include-dashboard", "false",
          *common], env)
    node_log = open(out / "second_node.log", "w")  # noqa: SIM115 - closed with the namespace
    second = subprocess.Popen([RAY, "start", "--address", ADDRESS, "--num-cpus", "1", "--block", *common], env=env,
                              stdout=node_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _run([sys.executable, "-c", WAIT_FOR_NODES, ADDRESS], env)
    except RuntimeError as err:
        raise RuntimeError(f"{err}\nsecond node: {(out / 'second_node.log').read_text()[-2000:]}") from None
    run = out / "run"
    log = open(out / "train.log", "w")  # noqa: SIM115 - closed below
    train = subprocess.Popen([sys.executable, "-m", "rlctl.cli", "train", "--env", "Pendulum-v1", "--backend", "ray",
                              "--ray-address", ADDRESS, "--num-workers", "2", "--num-envs", "2", "--steps", str(STEPS),
                              "--run-dir", str(run), "--quiet", "--set", "ppo.num_steps=256", "--set",
                              "run.log_every=512", "--set", "run.worker_timeout=60"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    killed_at = None
    deadline = time.monotonic() + 300
    while train.poll() is None and time.monotonic() < deadline:
        if killed_at is None and _logged_steps(run) >= KILL_AT:
            os.killpg(second.pid, signal.SIGKILL)  # the node's raylet and workers, without a goodbye
            killed_at = _logged_steps(run)
        time.sleep(0.2)
    if train.poll() is None:
        train.kill()
    train.wait()
    log.close()
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
    time.sleep(1.0)
    left = subprocess.run(["pgrep", "-f", "ray/core/src"], capture_output=True, text=True).stdout.split()
    from rlctl.logger import read_metrics

    restarts = [r["value"] for r in read_metrics(run / "metrics.jsonl") if r["tag"] == "charts/worker_restarts"]
    return {"returncode": train.returncode, "output": (out / "train.log").read_text(), "killed_at": killed_at,
            "last_step": _logged_steps(run), "restarts": max(restarts, default=0.0), "ray_left": left}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
