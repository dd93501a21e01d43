"""Refine candidates as Ray tasks (a private local cluster on 127.0.0.1): the same candidates, trained in Ray
workers in scratch directories, come back to the refine directory with the results local processes give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlctl.cli import main
from tests.test_refine_loop import _refine

pytest.importorskip("ray")


@pytest.mark.slow
def test_candidates_trained_as_ray_tasks_match_local_processes_and_bring_their_files_back(tmp_path: Path) -> None:
    args = ("--iterations", "1", "--candidates", "2", "--eval-seeds", "0")
    assert main(_refine(tmp_path / "local", *args)) == 0
    assert main(_refine(tmp_path / "ray", *args, "--backend", "ray")) == 0
    for k in (1, 2):
        cand = Path("round_01") / f"cand_{k:02d}"
        local = json.loads((tmp_path / "local" / cand / "result.json").read_text())
        remote = json.loads((tmp_path / "ray" / cand / "result.json").read_text())
        assert remote["ok"] and remote["steps"] == local["steps"] == 1024
        assert remote["key"] == local["key"] and remote["series"] == local["series"]  # the same training
        for name in ("train.log", "run/metrics.jsonl", "run/checkpoint.pt", "run/config.yaml"):
            assert (tmp_path / "ray" / cand / name).is_file(), name
    rounds = [json.loads((tmp_path / d / "round_01" / "round.json").read_text()) for d in ("local", "ray")]
    assert rounds[0]["best_index"] == rounds[1]["best_index"]


def test_ray_address_without_the_ray_backend_is_one_clear_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_refine(tmp_path / "x", "--ray-address", "127.0.0.1:6379")) == 2
    assert "add --backend ray" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
