"""The rules every bench table follows (issue 23): table seeds apart from screening seeds, the table refusing
screen runs, labelled statistics, timings only from runs that had the machine to themselves, and one
normalization for the aggregate."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlctl.bench.load import LoadMonitor, timing_issue
from rlctl.bench.seeds import SCREEN_SEEDS, refusal, screen_seeds, span, table_seeds, tune_seed
from rlctl.bench.stats import mean_std
from rlctl.errors import UserError


def result(seed: int, last100: float, **extra: Any) -> dict[str, Any]:
    """A bench-worker result as the reports read it (no config: it counts as current)."""
    return {"lib": "rlctl", "env": "CartPole-v1", "seed": seed, "preset": "-", "budget": 4096, "steps": 4096,
            "last100": last100, "eval_mean": last100 + 1.0, "wall_s": 120.0, "sps": 1000.0,
            "episodes": [[1000, 1.0], [2000, 2.0], [4096, 3.0]], **extra}


def idle(own: int = 1) -> dict[str, Any]:
    """A load record of a run that had the 2-core machine to itself."""
    return {"samples": [[0.0, 0.3], [90.0, 1.1], [120.0, 1.2]], "cpu_count": 2, "own_processes": own}


def write(folder: Path, runs: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for r in runs:
        (folder / f"{r['lib']}__{r['env']}__s{r['seed']}.json").write_text(json.dumps(r))


def suite_args(**overrides: Any) -> argparse.Namespace:
    values = {"tasks": "CartPole-v1", "seeds": 3, "steps": 4096, "sb3_tasks": "", "jobs": 1, "bootstrap": 20,
              "preset": "-", "screen": False, "report_only": True, "out": "results"}
    return argparse.Namespace(**{**values, **overrides})


def test_table_seeds_start_at_101_and_never_meet_screening_or_tuning_seeds() -> None:
    assert table_seeds(5) == [101, 102, 103, 104, 105]
    assert screen_seeds(3) == [1, 2, 3]
    tuning = {tune_seed(i) for i in range(1000)}  # a long study cycles through the range
    assert tuning == set(SCREEN_SEEDS)
    assert not (set(table_seeds(1000)) & (set(SCREEN_SEEDS) | tuning))
    with pytest.raises(UserError, match="at most 99"):
        screen_seeds(100)  # the 100th would be a table's neighbour
    assert span([103, 101, 102]) == "101–103" and span([1, 4]) == "1, 4"


def test_tune_trials_train_on_screening_seeds() -> None:
    optuna = pytest.importorskip("optuna")
    from rlctl.tune import SEARCH_SPACE, _trial_config

    params = {path: spec[1][0] if spec[0] == "cat" else spec[1] for path, spec in SEARCH_SPACE.items()}
    params["ppo.num_steps"], params["ppo.minibatch_size"] = 256, 64
    for number, seed in ((0, 1), (150, 52)):
        cfg = _trial_config("CartPole-v1", None, 4096, [], optuna.trial.FixedTrial(params, number=number))
        assert cfg.run.seed == seed


def test_refusal_names_screening_seeds_adopted_screen_runs_and_screen_presets() -> None:
    assert refusal(result(101, 1.0)) is None
    assert "seed 5 is a screening seed" in str(refusal(result(5, 1.0)))
    adopted = result(101, 1.0, reused_from="results/runs/suite-tianshou-mujoco/rlctl__Hopper-v5__s1.json")
    assert "reused from results/runs/suite-tianshou-mujoco" in str(refusal(adopted))
    assert "preset 'tianshou-mujoco'" in str(refusal(result(101, 1.0, preset="tianshou-mujoco")))
    assert refusal(result(101, 1.0, preset="default"), table_preset="default") is None  # bench returns' own


def test_mean_std_is_the_sample_std_and_gives_one_seed_no_spread() -> None:
    assert mean_std([1.0, 2.0, 3.0, 4.0, 5.0]) == "3 ± 2"  # sample std 1.58; the population std would be 1.41
    assert mean_std([0.7, 0.8, 0.9], digits=2) == "0.80 ± 0.10"  # population: 0.08
    assert mean_std([3994.0]) == "3994" and mean_std([]) == "—"


def test_suite_report_refuses_screen_runs_and_labels_its_statistics(tmp_path: Path) -> None:
    from rlctl.bench.suite import report

    contended = {"samples": [[0.0, 1.0], [90.0, 3.0], [150.0, 3.2]], "cpu_count": 2, "own_processes": 1}
    runs = [result(101, 10.0, load=idle()), result(102, 20.0, load=contended, wall_s=600.0, sps=200.0),
            result(103, 30.0),  # no load record: trained before the bench kept one
            result(1, 1000.0, load=idle()),  # a screening seed
            result(104, 2000.0, load=idle(), reused_from="runs/suite-x/rlctl__CartPole-v1__s104.json")]
    write(tmp_path / "runs" / "suite", runs)
    report(tmp_path, tmp_path / "runs" / "suite", suite_args())
    table = (tmp_path / "mujoco-v5.md").read_text()
    assert "| last-100 return, mean ± sample std | det. eval, mean ± sample std |" in table
    assert "mean ± sample std (ddof = 1) over n seeds" in table
    # the screen's runs stay out of the mean (20, not 612); the sample std of 10, 20, 30 is 10 (population: 8)
    assert "| CartPole-v1 | rlctl | 3 (101–103) | 20 ± 10 | 21 ± 10 |" in table
    # timings: only seed 101 had the machine to itself
    assert "| 2.0 (1 of 3) | 1,000 (1 of 3) |" in table
    assert "1 run(s) with no load record" in table and "1 contended run(s)" in table
    assert "Set aside, not in the table (2 results): 1 ran on screening seeds (1;" in table
    assert "1 are screen runs that the table had adopted (`reused_from`: CartPole-v1 seed 104)" in table
    assert "Not a benchmark result" not in table


def test_suite_report_without_table_runs_shows_the_screen_runs_as_no_result(tmp_path: Path) -> None:
    from rlctl.bench.suite import report

    write(tmp_path / "runs" / "suite", [result(1, 10.0), result(2, 30.0, reused_from="runs/suite-x/a.json")])
    report(tmp_path, tmp_path / "runs" / "suite", suite_args(seeds=5))
    table = (tmp_path / "mujoco-v5.md").read_text()
    assert "**Not a benchmark result: none of the 5 table runs (seeds 101–105) is finished.**" in table
    assert "2 ran on screening seeds (1–2;" in table
    assert "`rlctl bench suite --tasks CartPole-v1 --seeds 5 --steps 4096 --sb3-tasks '' --jobs 1`" in table
    assert "| CartPole-v1 | rlctl | 2 (1–2) | 20 ± 14 |" in table
    assert "Incomplete" not in table  # the heading says more than that


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.mark.usefixtures("no_processes")
def test_suite_refuses_to_train_when_a_screen_run_sits_among_the_table_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlctl.cli import main

    write(tmp_path / "runs" / "suite", [result(101, 1.0, env="InvertedPendulum-v5",
                                               reused_from="runs/suite-default/rlctl__InvertedPendulum-v5__s1.json")])
    code = main(["bench", "suite", "--tasks", "InvertedPendulum-v5", "--seeds", "1", "--sb3-tasks", "",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot stand in the table: a screen's run (reused from runs/suite-default/" in err


def test_the_table_trains_seeds_from_101_and_screens_from_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlctl.bench import matrix, suite

    planned: list[Any] = []
    monkeypatch.setattr(matrix, "run_claimed", lambda jobs, parallel: planned.append(jobs))
    monkeypatch.setattr(suite, "report", lambda *args: None)
    monkeypatch.setattr(suite, "screen", lambda *args: None)
    base = {"tasks": "InvertedPendulum-v5", "out": str(tmp_path), "report_only": False, "jobs": 2}
    for overrides in ({}, {"screen": True}, {"preset": "tianshou-mujoco"}):
        suite.run_cli(suite_args(**base, **overrides))
    table, entry, candidate = ([(job.done.parent.name, job.done.name) for job in jobs] for jobs in planned)
    assert table == [("suite", f"rlctl__InvertedPendulum-v5__s{s}.json") for s in (101, 102, 103)]
    assert entry == [("suite-entry", f"rlctl__InvertedPendulum-v5__s{s}.json") for s in (1, 2, 3)]
    assert candidate == [("suite-tianshou-mujoco", f"rlctl__InvertedPendulum-v5__s{s}.json") for s in (1, 2, 3)]
    cmd = planned[0][0].cmd
    assert cmd[cmd.index("--parallel") + 1] == "2"  # the worker counts the matrix's other runs as its own load


def test_timing_counts_only_for_runs_that_had_the_machine_to_themselves() -> None:
    assert timing_issue({"load": idle()}) is None
    assert timing_issue({}) == "no load record"
    busy = {"samples": [[0.0, 0.2], [60.0, 2.4], [120.0, 2.6]], "cpu_count": 2, "own_processes": 1}
    assert timing_issue({"load": busy}) == "load 2.50 with 1 own process(es)"
    # the first minute does not count: the 1-minute average has not caught up with the run itself yet
    settling = {"samples": [[0.0, 3.0], [30.0, 2.5], [90.0, 1.2]], "cpu_count": 2, "own_processes": 1}
    assert timing_issue({"load": settling}) is None
    assert timing_issue({"load": idle(own=2)}) is None  # two runs of the matrix on two cores
    assert timing_issue({"load": idle(own=3)}) == "3 own processes on 2 cores"
    short = {"samples": [[0.0, 1.9], [12.0, 2.1]], "cpu_count": 2, "own_processes": 1}
    assert timing_issue({"load": short}) == "load 2.00 with 1 own process(es)"  # all samples, for a short run


def test_the_load_monitor_samples_while_the_run_trains() -> None:
    import time

    readings = iter([0.5, 1.0, 1.5, 2.0, 2.5, 3.0] + [3.0] * 1000)
    monitor = LoadMonitor(own_processes=2, every_s=0.01, loadavg=lambda: (next(readings), 0.0, 0.0))
    monitor.start_thread()
    time.sleep(0.1)
    record = monitor.stop()
    assert len(record["samples"]) >= 3 and [load for _, load in record["samples"][:3]] == [0.5, 1.0, 1.5]
    assert record["own_processes"] == 2 and record["cpu_count"] >= 1
    assert record["max"] == max(load for _, load in record["samples"])
    times = [t for t, _ in record["samples"]]
    assert times == sorted(times) and times[0] == 0.0


def test_the_aggregate_normalizes_each_task_against_one_reference_of_its_own_metric() -> None:
    from rlctl.bench.anchors import ANCHORS, REFERENCE_SOURCE, REFERENCES, normalized_scores

    assert "last 100 training episodes" in REFERENCE_SOURCE
    for task, ref in REFERENCES.items():  # the reference is the anchor of the table's metric, where one is listed
        assert (ref, "CleanRL, v4, 3 seeds, last 100") in ANCHORS[task]
    runs = [{"lib": "rlctl", "env": "Hopper-v5", "last100": x} for x in (1182.86, 2382.86)]
    runs += [{"lib": "sb3", "env": "Hopper-v5", "last100": 9999.0},  # only rlctl is aggregated
             {"lib": "rlctl", "env": "Ant-v5", "last100": 3000.0}]  # no reference of this metric: left out
    scores = normalized_scores(runs, ["Hopper-v5", "Ant-v5"], lambda task: -17.14)
    assert list(scores) == ["Hopper-v5"]
    np.testing.assert_allclose(scores["Hopper-v5"][0], [0.5, 1.0])
    assert scores["Hopper-v5"][1] == -17.14


def test_uav_rows_take_table_seeds_and_fall_back_to_screening_seeds_as_provisional(tmp_path: Path) -> None:
    from rlctl.bench.uav import _cell, _row_files

    for name in ("hover__randomized__s1", "hover__randomized__s2", "hover__nominal__s2", "hover__nominal__s101"):
        (tmp_path / f"{name}.eval.json").write_text("{}")
    nominal, provisional = _row_files(tmp_path, "hover", "nominal")
    assert [p.name for p in nominal] == ["hover__nominal__s101.eval.json"] and not provisional
    randomized, provisional = _row_files(tmp_path, "hover", "randomized")
    assert len(randomized) == 2 and provisional
    assert _row_files(tmp_path, "waypoint", "nominal") == ([], False)
    assert _cell([0.78, 0.81, 0.80, 0.75, 0.80]) == "0.79 ± 0.02"  # sample std 0.024 (population 0.021)
    assert _cell([0.557, 0.425, 0.545]) == "0.51 ± 0.07"  # the waypoint gaps: population std 0.06


def test_the_returns_report_labels_its_statistics_and_sets_aside_screening_seeds(tmp_path: Path) -> None:
    from rlctl.bench.sps import report_returns

    def run(seed: int, last100: float, **extra: Any) -> dict[str, Any]:
        return result(seed, last100, preset="default", **extra)

    folder = tmp_path / "runs" / "default"
    write(folder, [run(1, 5.0), run(2, 7.0)])
    report_returns("default", tmp_path)
    table = (tmp_path / "returns_default.md").read_text()
    assert "**Provisional: no run on table seeds is finished.** The rows show the runs on seeds 1–2" in table
    assert "| CartPole-v1 | rlctl | 2 (1–2) | 6 ± 1 | 7 ± 1 | — |" in table  # no load record: no SPS
    write(folder, [run(101, 10.0, load=idle()), run(102, 20.0, load=idle())])
    report_returns("default", tmp_path)
    table = (tmp_path / "returns_default.md").read_text()
    assert "| last-100 train return, mean ± sample std | deterministic eval, mean ± sample std | SPS |" in table
    assert "| CartPole-v1 | rlctl | 2 (101–102) | 15 ± 7 | 16 ± 7 | 1,000 |" in table
    assert "Set aside, not in the table: 2 run(s) (seed 1 is a screening seed (1–99); seed 2" in table
    assert "set_aside,timing_issue" in (tmp_path / "returns_default.csv").read_text().splitlines()[0]


def test_uav_lstm_runs_are_rows_of_their_own_and_summarised_against_the_same_seeds(tmp_path: Path) -> None:
    from rlctl.bench.recurrent import uav_summary
    from rlctl.bench.uav import ROWS, _label, _row_files, _split_row

    def summary(name: str, nominal: float, held_out: float, wall_s: float) -> None:
        sets = {level: {"success_rate": rate} for level, rate in (("nominal", nominal), ("held-out", held_out))}
        (tmp_path / f"{name}.eval.json").write_text(json.dumps({"results": {"policy": sets}}))
        (tmp_path / f"{name}.train.json").write_text(json.dumps({"wall_s": wall_s}))

    summary("hover__randomized__s101", 1.0, 0.8, 600.0)
    summary("hover__randomized__s102", 0.8, 0.4, 600.0)
    summary("hover__randomized-lstm__s101", 1.0, 0.9, 1200.0)
    summary("hover__randomized-lstm__s3", 1.0, 1.0, 1200.0)  # a screening seed: not a table seed
    assert [p.name for p in _row_files(tmp_path, "hover", "randomized")[0]] == \
        ["hover__randomized__s101.eval.json", "hover__randomized__s102.eval.json"]
    assert [p.name for p in _row_files(tmp_path, "hover", "randomized-lstm")[0]] == \
        ["hover__randomized-lstm__s101.eval.json"]
    assert _split_row("randomized-lstm") == ("randomized", "lstm") and _label("randomized-lstm") == "PPO (LSTM)"
    assert _split_row("nominal") == ("nominal", "mlp") and "randomized-lstm" in ROWS
    rows = [line for line in uav_summary(tmp_path) if line.startswith("| hover |")]
    assert rows == ["| hover | feed-forward | 1 (101) | 1.00 | 0.80 | 0.80 | 10 |",  # only seed 101 has both
                    "| hover | LSTM | 1 (101) | 1.00 | 0.90 | 0.90 | 20 |"]
