"""``rlctl bench``: every verb checks its input before it starts a worker process or makes a directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rlctl.cli import main


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything starts a process (``subprocess.run`` goes through ``Popen`` too)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


def bench_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    """Run ``rlctl bench ARGS --out TMP/out`` in-process; assert exit 2, one ``error:`` line, no directory."""
    out = tmp_path / "out"
    extra = ["--runs-dir", str(tmp_path / "runs")] if args[0] == "uav" else []
    code = main(["bench", *args, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out.exists() and not (tmp_path / "runs").exists()
    return lines[0]


BAD_INPUT = [
    # sps
    (["sps", "--env", "NoSuch-v0"], "unknown environment id 'NoSuch-v0'"),
    (["sps", "--env", "HalfCheetah-v9"], "did you mean HalfCheetah-v5"),
    (["sps", "--env", "CartPole-v1", "--preset", "nope"], "unknown preset 'nope'"),
    (["sps", "--env", "CartPole-v1", "--preset", "missing.yaml"], "preset file missing.yaml does not exist"),
    (["sps", "--env", "CartPole-v1", "--set", "ppo.gama=0.9"], "unknown config key 'ppo.gama'"),
    (["sps", "--env", "CartPole-v1", "--set", "ppo.gamma"], "malformed --set"),
    (["sps", "--env", "CartPole-v1", "--set", "ppo.num_steps=abc"], "expected int"),
    (["sps", "--env", "CartPole-v1", "--set", "run.overlap=true"], "run.overlap=true needs"),
    (["sps", "--env", "CartPole-v1", "--steps", "0"], "--steps (0) must be positive"),
    (["sps", "--env", "CartPole-v1", "--repeats", "0"], "--repeats (0) must be positive"),
    (["sps", "--env", "CartPole-v1", "--workers", "3"], "divide env.num_envs"),
    (["sps", "--env", "CartPole-v1", "--libs", "rlctl,nope"], "unknown --libs ['nope']"),
    # returns
    (["returns", "--envs", "CartPole-v1,NoSuch-v0"], "unknown environment id 'NoSuch-v0'"),
    (["returns", "--envs", ""], "--envs names no env id"),
    (["returns", "--envs", "CartPole-v1", "--preset", "nope"], "unknown preset 'nope'"),
    (["returns", "--envs", "CartPole-v1", "--seeds", "0"], "--seeds (0) must be positive"),
    (["returns", "--envs", "CartPole-v1", "--steps", "-5"], "--steps (-5) must be positive"),
    (["returns", "--envs", "CartPole-v1", "--jobs", "0"], "--jobs (0) must be positive"),
    (["returns", "--envs", "CartPole-v1", "--libs", "rllib"], "unknown --libs ['rllib']"),
    # suite
    (["suite", "--tasks", "Hopper-v5,NoSuch-v0"], "unknown environment id 'NoSuch-v0'"),
    (["suite", "--tasks", "Hopper-v5", "--sb3-tasks", "NoSuch-v0"], "unknown environment id 'NoSuch-v0'"),
    (["suite", "--tasks", "Hopper-v5", "--preset", "nope"], "unknown preset 'nope'"),
    (["suite", "--tasks", "Hopper-v5", "--seeds", "0"], "--seeds (0) must be positive"),
    (["suite", "--tasks", "Hopper-v5", "--steps", "0"], "--steps (0) must be positive"),
    (["suite", "--tasks", "Hopper-v5", "--jobs", "0"], "--jobs (0) must be positive"),
    (["suite", "--tasks", "Hopper-v5", "--bootstrap", "0"], "--bootstrap (0) must be positive"),
    # uav (its tasks have presets of their own, and it takes no --set)
    (["uav", "--tasks", "hover,loop"], "unknown --tasks ['loop']"),
    (["uav", "--train-sets", "held-out"], "unknown --train-sets ['held-out']"),
    (["uav", "--seeds", "0"], "--seeds (0) must be positive"),
    (["uav", "--steps", "0"], "--steps (0) must be positive"),
    (["uav", "--jobs", "0"], "--jobs (0) must be positive"),
    (["uav", "--episodes", "0"], "--episodes (0) must be positive"),
    (["uav", "--randomized-factor", "0"], "--randomized-factor (0.0) must be positive"),
    # report
    (["report", "--preset", "nope"], "unknown preset 'nope'"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
@pytest.mark.usefixtures("no_processes")
def test_bench_verbs_refuse_bad_input_in_one_line_before_any_process(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], fragment: str) -> None:
    assert fragment in bench_error(capsys, tmp_path, *args)


def test_sps_workers_skip_the_evaluation_through_their_command_line(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    from rlctl.bench import sps

    seen: dict[str, Any] = {}

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(cmd=cmd, kwargs=kwargs)
        (tmp_path / "r.json").write_text("{}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sps.subprocess, "run", fake_run)
    sps._worker("rlctl", "CartPole-v1", "-", 256, 1, 1, tmp_path / "r.json", ["ppo.gamma=0.9"])
    cmd = seen["cmd"]
    assert cmd[cmd.index("--eval-episodes") + 1] == "0"
    assert "env" not in seen["kwargs"]  # no hidden switch in the environment


def test_worker_evaluates_as_many_episodes_as_its_flag_says(tmp_path: Path) -> None:
    from rlctl.bench.worker import EVAL_EPISODES, main, parse_args

    args = ["rlctl", "CartPole-v1", "-", "256", "1", "1", str(tmp_path / "r.json")]
    assert parse_args(args).eval_episodes == EVAL_EPISODES == 10
    assert main([*args, "--eval-episodes", "2", "ppo.update_epochs=1"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert len(result["eval"]) == 2 and result["config"]["ppo"]["update_epochs"] == 1
    load = result["load"]  # the load average while it ran: whether its wall time and SPS count
    assert load["own_processes"] == 1 and len(load["samples"]) >= 2 and load["cpu_count"] >= 1
    assert main([*args, "--eval-episodes", "0"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["eval"] == []


def test_sps_ratios_are_against_sb3s_faster_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rlctl.bench import sps

    # SB3 with 1 thread is the faster one here for the whole run, with default threads in steady state
    speeds = {("rlctl", 1): (900.0, 1000.0), ("sb3", 0): (100.0, 250.0), ("sb3", 1): (300.0, 200.0),
              ("ceiling", 1): (1800.0, 2000.0)}

    def fake_worker(lib: str, env: str, preset: str, steps: int, seed: int, threads: int, out: Path,
                    set_items: list[str]) -> dict[str, Any]:
        whole, steady = speeds[(lib, threads)]
        load = {"own_processes": 1, "cpu_count": 2, "samples": [[0.0, 1.0], [30.0, 1.0]]}
        return {"threads": threads, "steps": steps, "wall_s": steps / whole, "sps": whole, "steady_sps": steady,
                "load": load}

    monkeypatch.setattr(sps, "_worker", fake_worker)
    sps.bench_sps("CartPole-v1", "default", 256, 1, tmp_path, [], "t", libs=("rlctl",))
    table = (tmp_path / "sps_CartPole-v1_default_t.md").read_text()
    inline = next(line for line in table.splitlines() if line.startswith("| rlctl, inline"))
    cells = [c.strip() for c in inline.strip("|").split("|")]
    assert cells[2] == "3.00×" and cells[5] == "4.00×"  # 900 / 300 whole run, 1000 / 250 steady state
    assert "whole run: SB3 (1 torch thread); steady state: SB3 (torch default threads)" in table


def test_sps_report_only_rebuilds_the_table_from_the_csv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from rlctl.bench import sps

    def fake_worker(lib: str, env: str, preset: str, steps: int, seed: int, threads: int, out: Path,
                    set_items: list[str]) -> dict[str, Any]:
        whole = {"rlctl": 900.0, "sb3": 300.0 + threads, "ceiling": 1800.0}[lib]
        load = {"own_processes": 1, "cpu_count": 2, "samples": [[0.0, 1.0], [30.0, 1.0]]}
        return {"threads": threads, "steps": steps, "wall_s": steps / whole, "sps": whole,
                "steady_sps": whole * 1.1, "load": load}

    monkeypatch.setattr(sps, "_worker", fake_worker)
    args = ["bench", "sps", "--env", "CartPole-v1", "--steps", "256", "--repeats", "2", "--libs", "rlctl",
            "--tag", "t", "--out", str(tmp_path)]
    assert main(args) == 0
    table = tmp_path / "sps_CartPole-v1_sb3-default_t.md"
    measured = table.read_text()
    table.unlink()

    def no_worker(*a: Any, **k: Any) -> dict[str, Any]:
        raise AssertionError("--report-only must not measure")

    monkeypatch.setattr(sps, "_worker", no_worker)
    assert main([*args, "--report-only"]) == 0
    assert table.read_text() == measured
    (tmp_path / "sps_CartPole-v1_sb3-default_t.csv").unlink()
    capsys.readouterr()
    assert main([*args, "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "no measurements at" in err and "Traceback" not in err
