"""Compacting bench results keeps every number the reports read, and the committed results stay compact."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlctl.bench.compact import MAX_POINTS, TAIL, compact_files, compact_result, main

RESULTS = Path(__file__).resolve().parents[1] / "results"


def result(lib: str, env: str, seed: int, n_episodes: int) -> dict[str, Any]:
    """A bench-worker result as :func:`rlctl.bench.worker.main` writes it (before compaction)."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(20, 200, n_episodes))
    returns = np.cumsum(rng.normal(0.1, 3.0, n_episodes)) * 1.000001  # long floats, as real returns are
    episodes = [[int(s), float(r)] for s, r in zip(steps, returns, strict=True)]
    ev = list(rng.normal(100.0, 10.0, 10))
    return {"wall_s": 61.5 + seed, "steps": int(steps[-1]), "episodes": episodes, "eval": ev,
            "perf": {"env_s": 0.1}, "steady_sps": 1234.5, "lib": lib, "env": env, "preset": "default",
            "seed": seed, "budget": 1_000_000, "threads": 1, "sps": steps[-1] / (61.5 + seed),
            "last100": float(np.mean(returns[-100:])), "eval_mean": float(np.mean(ev))}


def test_compaction_bins_the_curve_and_keeps_the_tail_and_every_other_field() -> None:
    original = result("rlctl", "Reacher-v5", 1, 19_998)
    small = compact_result(original)
    assert len(small["episodes"]) <= MAX_POINTS
    assert small["compacted"] == {"episodes": 19_998, "bin": 10, "tail": TAIL}
    assert small["last_episodes"] == original["episodes"][-TAIL:]
    assert np.mean([r for _, r in small["last_episodes"]]) == original["last100"]
    assert {k: v for k, v in small.items() if k not in ("episodes", "last_episodes", "compacted")} == \
        {k: v for k, v in original.items() if k != "episodes"}
    # each point: the step of its bin's last episode and the bin's mean return; the curve ends where training did
    assert small["episodes"][-1] == [original["episodes"][-1][0],
                                     round(float(np.mean([r for _, r in original["episodes"][-10:]])), 3)]
    assert small["episodes"][0][0] == original["episodes"][7][0]  # 19,998 = 8 + 1999 × 10: the short bin first
    assert len(json.dumps(small)) < 100_000 < len(json.dumps(original))
    assert compact_result(small) is small  # idempotent
    few = result("rlctl", "HalfCheetah-v5", 1, 999)
    assert compact_result(few) is few  # nothing to gain: left as the worker wrote it


def test_compaction_refuses_a_result_whose_tail_does_not_give_its_last100() -> None:
    bad = result("rlctl", "Hopper-v5", 1, 3000)
    bad["last100"] += 1.0
    with pytest.raises(ValueError, match="last100"):
        compact_result(bad)


def _write(folder: Path, runs: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for r in runs:
        (folder / f"{r['lib']}__{r['env']}__s{r['seed']}.json").write_text(json.dumps(r))


def test_reports_read_the_same_numbers_from_compacted_results(tmp_path: Path) -> None:
    from rlctl.bench.sps import report_returns
    from rlctl.bench.suite import report, screen

    full, small = tmp_path / "full", tmp_path / "small"
    matrix = [result(lib, "CartPole-v1", seed, n) for lib, n in (("rlctl", 4000), ("sb3", 2500))
              for seed in (1, 2, 3)]
    for preset in ("default", "suite", "suite-default"):
        _write(full / "runs" / preset, matrix)
    _write(full / "runs" / "suite" / "stale", matrix[:1])
    shutil.copytree(full, small)
    assert len(compact_files([str(small / "runs")])) == 3 * 6 + 1  # default, suite, suite-default, suite/stale
    args = argparse.Namespace(tasks="CartPole-v1", seeds=3, steps=1_000_000, sb3_tasks="CartPole-v1", jobs=1,
                              bootstrap=50)
    for out in (full, small):
        report_returns("default", out)
        report(out, out / "runs" / "suite", args)
        screen(out)
    for name in ("returns_default.md", "returns_default.csv", "mujoco-v5.md", "mujoco-v5-screen.md"):
        assert (small / name).read_text() == (full / name).read_text(), name
    assert "| CartPole-v1 | rlctl | 3 (1–3) |" in (small / "mujoco-v5.md").read_text()


def test_the_command_skips_other_json_and_check_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    big = tmp_path / "rlctl__Hopper-v5__s1.json"
    big.write_text(json.dumps(result("rlctl", "Hopper-v5", 1, 3000)))
    evaluation = tmp_path / "final_eval.json"  # an rlctl run's evaluation: "episodes" is a count
    evaluation.write_text(json.dumps({"episodes": 10, "returns": [1.0] * 10}))
    before = big.read_text()
    main([str(tmp_path), "--check"])
    assert big.read_text() == before and "1 result(s) to compact" in capsys.readouterr().out
    main([str(tmp_path)])
    assert json.loads(big.read_text())["compacted"]["episodes"] == 3000
    assert json.loads(evaluation.read_text()) == {"episodes": 10, "returns": [1.0] * 10}
    assert not list(tmp_path.glob("*.tmp"))


def test_committed_results_are_compact() -> None:
    """The house rule for results/: no run JSON above ~100 KB (`python -m rlctl.bench.compact results/runs`)."""
    files = sorted((RESULTS / "runs").rglob("*.json"))
    if not files:
        pytest.skip("no results/ in this checkout")
    assert [p.name for p in files if p.stat().st_size > 100_000] == []
    assert compact_files([str(RESULTS / "runs")], check=True) == []
