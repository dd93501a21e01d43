"""Ctrl-C during ``rlctl train``: the first press finishes the update, writes a checkpoint and says where;
a second press aborts at once. Either way the run can be resumed (or says plainly that it cannot)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN_CLI = "import sys; from rlctl.cli import main; sys.exit(main(sys.argv[1:]))"
# A long run with checkpoints far apart: only the interrupt can write the first one.
TRAIN = ["train", "--env", "CartPole-v1", "--steps", "10000000", "--num-envs", "2", "--set", "ppo.num_steps=64",
         "--set", "ppo.minibatch_size=64", "--set", "run.checkpoint_every=100000000", "--set", "run.eval_episodes=0"]


def _start(args: list[str]) -> subprocess.Popen[str]:
    # SIG_DFL in the child: a test run started in the background by a shell has SIGINT ignored, and a child
    # would inherit that (Python then installs no KeyboardInterrupt handler, so a second Ctrl-C does nothing).
    proc = subprocess.Popen([sys.executable, "-c", RUN_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    for line in proc.stdout:  # training has started once the run is announced
        if line.startswith("rlctl: CartPole-v1 on"):
            break
    time.sleep(1.0)
    return proc


def test_first_ctrl_c_checkpoints_and_stops_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start([*TRAIN, "--run-dir", str(run), "--quiet"])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping after this update" in err and f"checkpoint written to {run / 'checkpoint.pt'}" in err
    assert (run / "checkpoint.pt").is_file()
    resumed = _start(["train", "--resume", str(run), "--quiet"])
    resumed.send_signal(signal.SIGINT)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0 and "stopped at step" in err, err


def test_second_ctrl_c_aborts_and_says_there_is_nothing_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start([*TRAIN, "--run-dir", str(run), "--quiet", "--set", "ppo.num_steps=20000",
                   "--set", "ppo.update_epochs=50"])  # a long update: the second press lands inside it
    proc.send_signal(signal.SIGINT)
    # Press again only once the first press was handled: two signals that arrive while the interpreter is inside
    # one long C call (an extension import, a big tensor op) are delivered to Python as one.
    assert proc.stderr is not None
    first = ""
    while "stopping after this update" not in first:
        line = proc.stderr.readline()
        assert line, "the run ended without acknowledging the first Ctrl-C"
        first += line
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = first + err
    assert proc.returncode == 130, err
    assert "nothing to resume" in err and "Traceback" not in err
    assert not (run / "checkpoint.pt").exists()
