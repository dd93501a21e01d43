"""The MuJoCo suite's statistics and its end-to-end report on a tiny budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlctl.bench.stats import iqm, permutation_p, stratified_bootstrap_ci
from rlctl.bench.suite import _versus_sb3, is_current
from tests.test_cli import assert_user_error, rlctl


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm(np.array([0.0, 1.0, 1.0, 100.0])) == pytest.approx(1.0)  # the outlier does not move it


def test_bootstrap_interval_brackets_the_estimate_and_collapses_without_spread() -> None:
    rng = np.random.default_rng(0)
    tasks = [rng.normal(1.0, 0.3, 5), rng.normal(0.5, 0.3, 5)]
    low, high = stratified_bootstrap_ci(tasks, 500)
    assert low < iqm(np.concatenate(tasks)) < high
    assert stratified_bootstrap_ci([np.ones(5), np.ones(5)], 100) == (1.0, 1.0)


def test_permutation_p_is_exact_for_small_groups_and_sampled_for_large_ones() -> None:
    # 20 relabellings of 3 + 3 values; only the observed split and its mirror are as extreme
    assert permutation_p([1.0, 2.0, 3.0], [10.0, 11.0, 12.0]) == pytest.approx(2 / 20)
    assert permutation_p([1.0, 2.0], [2.0, 1.0]) == 1.0
    a, b = [3994.0, 5664.0, 4849.0, 3668.0, 4479.0], [4873.0, 4884.0, 4665.0, 5204.0, 5845.0]
    exact = permutation_p(a, b)
    assert exact == permutation_p(b, a)
    assert permutation_p(a, b, max_exact=1) == pytest.approx(exact, abs=0.01)  # the seeded random relabellings
    rng = np.random.default_rng(0)
    assert permutation_p(list(rng.normal(0, 1, 10)), list(rng.normal(3, 1, 10))) < 0.01


def test_the_report_compares_the_libraries_only_where_both_have_two_seeds() -> None:
    def run(lib: str, env: str, last100: float) -> dict:
        return {"lib": lib, "env": env, "last100": last100, "eval_mean": last100 + 100.0}

    runs = [run("rlctl", "A", x) for x in (1.0, 2.0, 3.0)] + [run("sb3", "A", x) for x in (10.0, 11.0, 12.0)]
    runs += [run("rlctl", "B", 1.0), run("rlctl", "B", 2.0), run("sb3", "B", 5.0)]
    line = " ".join(_versus_sb3(runs, ["A", "B"]))
    assert "A last-100 -9 (p = 0.10), eval -9 (p = 0.10)" in line
    assert "B " not in line
    assert _versus_sb3(runs[6:], ["B"]) == []


def test_suite_runs_a_tiny_matrix_and_writes_the_table(tmp_path: Path) -> None:
    rlctl("bench", "suite", "--tasks", "InvertedPendulum-v5", "--seeds", "2", "--steps", "2048", "--sb3-tasks", "",
          "--out", str(tmp_path), "--bootstrap", "50", "--jobs", "2")
    table = (tmp_path / "mujoco-v5.md").read_text()
    assert "| InvertedPendulum-v5 | rlctl | 2 (101–102) |" in table and "CleanRL, v4, 3 seeds" in table
    assert "Aggregate over 1 task(s): IQM" in table and "References: InvertedPendulum-v5 963.09" in table
    assert (tmp_path / "mujoco-v5_InvertedPendulum-v5.png").exists()
    assert "Incomplete" not in table
    rlctl("bench", "suite", "--tasks", "InvertedPendulum-v5", "--seeds", "3", "--steps", "2048", "--sb3-tasks", "",
          "--report-only", "--out", str(tmp_path), "--bootstrap", "50")
    assert "**Incomplete: 2 of the 3 planned runs are finished**" in (tmp_path / "mujoco-v5.md").read_text()
    assert_user_error(rlctl("bench", "suite", "--tasks", "Hoper-v5", check=False), "Hopper-v5")


def test_a_result_from_an_older_preset_is_set_aside_and_run_again(tmp_path: Path) -> None:
    import json

    from rlctl.bench.matrix import run_matrix
    from rlctl.bench.worker import fingerprint

    runs = tmp_path / "runs"
    run_matrix([("rlctl", "InvertedPendulum-v5", 1)], "-", 1024, 1, runs)
    result = runs / "rlctl__InvertedPendulum-v5__s1.json"
    first = json.loads(result.read_text())
    assert first["config"]["ppo"]["total_timesteps"] == 1024
    assert is_current(first)
    first["config"]["ppo"]["gamma"] = 0.5  # as if trained before the preset changed its gamma
    assert not is_current(first)  # the report leaves it out
    result.write_text(json.dumps(first))
    run_matrix([("rlctl", "InvertedPendulum-v5", 1)], "-", 1024, 1, runs)  # same job, other config: rerun
    assert json.loads(result.read_text())["config"]["ppo"]["gamma"] != 0.5
    assert (runs / "stale" / f"rlctl__InvertedPendulum-v5__s1__{fingerprint(first['config'])}.json").exists()


def test_a_config_field_added_at_its_default_keeps_fingerprints() -> None:
    from rlctl.bench.worker import fingerprint, worker_config
    from rlctl.config import to_dict, with_overrides

    cfg = worker_config("rlctl", "HalfCheetah-v5", "-", 1000, 1, 1)[0]  # recompute_adv at its default
    older = to_dict(cfg)
    del older["ppo"]["recompute_adv"]  # a result written before the field existed
    assert fingerprint(older) == fingerprint(cfg)
    changed = with_overrides(cfg, {"ppo": {"recompute_adv": not cfg.ppo.recompute_adv}})
    assert fingerprint(older) != fingerprint(changed)


def test_a_lock_is_stale_only_when_its_process_on_this_host_is_gone(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from rlctl.bench.matrix import _lock_is_stale

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / "job.lock"
    lock.write_text(f"{socket.gethostname()} {gone.pid}")
    assert _lock_is_stale(lock)
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")
    assert not _lock_is_stale(lock)
    lock.write_text(f"another-machine {gone.pid}")  # it may still be working on a shared directory
    assert not _lock_is_stale(lock)


def test_a_candidate_preset_runs_apart_from_the_table_and_lands_in_the_screen(tmp_path: Path) -> None:
    rlctl("bench", "suite", "--tasks", "InvertedPendulum-v5", "--seeds", "1", "--steps", "1024", "--sb3-tasks", "",
          "--preset", "tianshou-mujoco", "--out", str(tmp_path))
    assert (tmp_path / "runs" / "suite-tianshou-mujoco" / "rlctl__InvertedPendulum-v5__s1.json").exists()
    assert not (tmp_path / "mujoco-v5.md").exists()  # the table holds each task's own preset only
    screen = (tmp_path / "mujoco-v5-screen.md").read_text()
    assert "| InvertedPendulum-v5 | tianshou-mujoco | 1 (1) | 1,024 |" in screen
    assert_user_error(rlctl("bench", "suite", "--preset", "no-such-preset", "--out", str(tmp_path), check=False),
                      "no-such-preset")


def test_a_screen_run_with_the_same_config_is_reused_instead_of_trained_again(tmp_path: Path) -> None:
    import json

    from rlctl.bench.matrix import run_matrix
    from rlctl.bench.worker import worker_config
    from rlctl.config import to_dict

    screen, same, other = tmp_path / "suite-x", tmp_path / "suite", tmp_path / "suite-y"
    for d in (screen, other):
        d.mkdir()
    job = "rlctl__InvertedPendulum-v5__s1.json"
    right = to_dict(worker_config("rlctl", "InvertedPendulum-v5", "-", 1024, 1, 1)[0])
    wrong = to_dict(worker_config("rlctl", "InvertedPendulum-v5", "default", 1024, 1, 1)[0])
    (other / job).write_text(json.dumps({"config": wrong, "last100": 1.0}))
    (screen / job).write_text(json.dumps({"config": right, "last100": 2.0}))
    run_matrix([("rlctl", "InvertedPendulum-v5", 1)], "-", 1024, 1, same, [other, screen])
    reused = json.loads((same / job).read_text())
    assert reused["last100"] == 2.0 and reused["reused_from"] == str(screen / job)
    assert not (same / job).with_suffix(".log").exists()  # nothing was trained


def test_settings_sb3_cannot_take_are_named_for_the_report() -> None:
    from rlctl.bench.suite import _sb3_unmatched
    from rlctl.bench.worker import sb3_kwargs, sb3_unmatched
    from rlctl.resolve import resolve_config

    hopper = resolve_config("Hopper-v5")[0]  # Tianshou's settings: advantages recomputed every epoch
    assert any(item.startswith("ppo.recompute_adv") for item in sb3_unmatched(hopper))
    assert sb3_unmatched(resolve_config("Walker2d-v5")[0]) == []  # SB3's own defaults
    kl = resolve_config("Walker2d-v5", set_items=["ppo.target_kl=0.02", "ppo.adam_eps=1e-8"])[0]
    assert [item.split(" ")[0] for item in sb3_unmatched(kl)] == ["ppo.target_kl"]
    assert sb3_kwargs(kl)["policy_kwargs"]["optimizer_kwargs"] == {"eps": 1e-8}  # Adam's eps does reach SB3
    assert "optimizer_kwargs" not in sb3_kwargs(resolve_config("Walker2d-v5")[0])["policy_kwargs"]
    assert list(_sb3_unmatched(["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])) == ["Hopper-v5"]


def test_sb3_runs_get_the_env_kwargs_and_time_limit_of_the_preset() -> None:
    from rlctl.bench.worker import sb3_env_maker
    from rlctl.resolve import resolve_config

    ant = resolve_config("Ant-v5", set_items=["env.max_episode_steps=50"])[0]
    assert ant.env.kwargs == {"include_cfrc_ext_in_observation": False}
    env = sb3_env_maker(ant)()
    assert env.observation_space.shape == (27,)  # contact forces left out, as rlctl's own env does
    env.reset(seed=0)
    steps = 0
    truncated = terminated = False
    while not (truncated or terminated):
        _, _, terminated, truncated, _ = env.step(np.zeros(8, np.float32))
        steps += 1
    assert truncated and steps == 50
    env.close()
