"""``rlctl bench gpu`` where there is no GPU (every CI machine): one clear line and exit 2, and the parts that
do not need CUDA (device identity, the learner timing) work on the CPU."""

from __future__ import annotations

import pytest
import torch

from rlctl.agents.rollout import Rollout, same_device
from rlctl.bench.gpu import update_rate
from rlctl.cli import main


def test_without_cuda_the_gpu_check_says_so_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CUDA device") and err.count("\n") == 1


def test_an_index_less_device_is_the_same_device_as_its_indexed_form() -> None:
    assert same_device(torch.device("cuda"), torch.device("cuda:0"))
    assert same_device(torch.device("cuda:1"), torch.device("cuda"))
    assert not same_device(torch.device("cuda:0"), torch.device("cuda:1"))
    assert not same_device(torch.device("cpu"), torch.device("cuda"))
    rollout = Rollout.allocate(4, 2, 3, 1, False, torch.device("cpu"))
    assert rollout.to(torch.device("cpu")) is rollout


def test_the_learner_timing_runs_a_real_update() -> None:
    assert update_rate("mlp", torch.device("cpu"), updates=1) > 0


def test_a_training_run_reports_its_sps_and_the_learners_idle_fraction() -> None:
    from rlctl.bench.gpu import report, training_run

    run = training_run("CartPole-v1", "default", 2, 1024, "cpu")
    assert run["sps"] > 0 and 0.0 <= run["learner_idle"] <= 1.0 and run["envs"] == 4
    page = report({"device": "test", "torch": "x", "cuda": None, "tests": {"ran": False, "why": "no tests"},
                   "learners": {"mlp": {"cpu_updates_per_s": 2.0, "cuda_updates_per_s": 8.0}}, "runs": [run]})
    assert "| 4.0× |" in page and "| CartPole-v1 | 2 | 4 | 1024 |" in page
