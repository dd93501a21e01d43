"""The MuJoCo suite's statistics and its end-to-end report on a tiny budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlctl.bench_suite import iqm, stratified_bootstrap_ci
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


def test_suite_runs_a_tiny_matrix_and_writes_the_table(tmp_path: Path) -> None:
    rlctl("bench", "suite", "--tasks", "InvertedPendulum-v5", "--seeds", "2", "--steps", "2048", "--sb3-tasks", "",
          "--out", str(tmp_path), "--bootstrap", "50", "--jobs", "2")
    table = (tmp_path / "mujoco-v5.md").read_text()
    assert "| InvertedPendulum-v5 | rlctl | 2 |" in table and "CleanRL, v4, 3 seeds" in table
    assert "Aggregate over 1 tasks: IQM" in table
    assert (tmp_path / "mujoco-v5_InvertedPendulum-v5.png").exists()
    assert_user_error(rlctl("bench", "suite", "--tasks", "Hoper-v5", check=False), "Hopper-v5")
