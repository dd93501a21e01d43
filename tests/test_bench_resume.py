"""A benchmark job whose training was killed goes on from its checkpoint, exactly, and says so in its timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlctl.bench.experiment import wall_ratio
from rlctl.bench.load import timing_issue
from rlctl.bench.matrix import run_claimed, train_job
from rlctl.resolve import resolve_config
from rlctl.rundir import FINAL_EVAL, RESUMES
from rlctl.runs import can_resume
from rlctl.train.loop import train
from tests.helpers import assert_same_weights, stop_after, weights

SETS = ["run.seed=3", "env.num_envs=2", "ppo.total_timesteps=1024", "ppo.num_steps=128", "ppo.minibatch_size=64",
        "ppo.update_epochs=2", "run.checkpoint_every=256", "run.eval_episodes=2", "run.sampler=inline",
        "run.overlap=false"]


def _job(tmp_path: Path, name: str, sets: list[str], records: dict[str, Any]) -> Any:
    def record(wall_s: float, load: dict[str, Any]) -> None:
        records[name] = {"wall_s": wall_s, "load": load}

    run = tmp_path / name
    return train_job(name, "CartPole-v1", sets, run, run / FINAL_EVAL, tmp_path, record)


def _killed(run: Path, sets: list[str]) -> None:
    """What a job killed after its 2nd of 4 updates leaves: a checkpoint and the metrics up to it."""
    train(resolve_config("CartPole-v1", set_items=sets)[0], run, on_update=stop_after(2), progress=False)


def test_a_killed_job_goes_on_from_its_checkpoint_to_the_uninterrupted_run(tmp_path: Path) -> None:
    records: dict[str, Any] = {}
    _killed(tmp_path / "killed", SETS)
    run_claimed([_job(tmp_path, "whole", SETS, records), _job(tmp_path, "killed", SETS, records)], parallel=1)

    assert "resumed at step 512" in (tmp_path / "killed.log").read_text()
    assert [json.loads(line)["step"] for line in (tmp_path / "killed" / RESUMES).read_text().splitlines()] == [512]
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "killed"))
    assert json.loads((tmp_path / "killed" / FINAL_EVAL).read_text()) == \
        json.loads((tmp_path / "whole" / FINAL_EVAL).read_text())
    # its wall time is the last part's: no timing is read from it
    assert records["killed"]["load"]["resumed"] and "resumed" in (timing_issue(records["killed"]) or "")
    assert "resumed" not in records["whole"]["load"]
    assert wall_ratio(tmp_path / "killed", tmp_path / "whole") is None
    assert wall_ratio(tmp_path / "whole", tmp_path / "whole") == 1.0


def test_a_killed_job_of_another_config_starts_over(tmp_path: Path) -> None:
    _killed(tmp_path / "changed", [*SETS, "ppo.learning_rate=0.0005"])  # the bench trains it differently now
    run_claimed([_job(tmp_path, "changed", SETS, {})], parallel=1)

    assert "new run" in (tmp_path / "changed.log").read_text()
    assert not (tmp_path / "changed" / RESUMES).exists()
    assert resolve_config("CartPole-v1", set_items=SETS)[0].ppo.learning_rate != 0.0005
    assert can_resume(tmp_path / "changed", resolve_config("CartPole-v1", set_items=SETS)[0])  # finished, same config


def test_a_run_killed_before_its_final_evaluation_gets_it_on_resume(tmp_path: Path) -> None:
    cfg = resolve_config("CartPole-v1", set_items=SETS)[0]
    whole = train(cfg, tmp_path / "run", progress=False)
    (tmp_path / "run" / FINAL_EVAL).unlink()

    again = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert again.global_step == whole.global_step
    assert again.final_eval == whole.final_eval
    assert json.loads((tmp_path / "run" / FINAL_EVAL).read_text()) == whole.final_eval
    assert (tmp_path / "run" / RESUMES).is_file()  # its wall time now spans the interruption


def test_nothing_to_resume_without_a_checkpoint_of_this_config(tmp_path: Path) -> None:
    cfg = resolve_config("CartPole-v1", set_items=SETS)[0]
    assert not can_resume(tmp_path / "missing", cfg)
    _killed(tmp_path / "run", SETS)
    assert can_resume(tmp_path / "run", cfg)
    assert not can_resume(tmp_path / "run", resolve_config("CartPole-v1", set_items=[*SETS, "run.seed=4"])[0])


def test_a_killed_refine_candidate_goes_on_from_its_checkpoint(tmp_path: Path) -> None:
    from rlctl.refine.candidate import run_job

    job = {"env_id": "CartPole-v1", "preset": None, "set": SETS,
           "overrides": {"ppo": {"total_timesteps": 1024}, "run": {"seed": 5, "eval_episodes": 0}},
           "program": None, "fitness": {"kind": "return", "episodes": 2, "seed": 100}}
    for name in ("whole", "killed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "job.json").write_text(json.dumps(job))
    cfg = resolve_config("CartPole-v1", None, job["overrides"], SETS)[0]
    train(cfg, tmp_path / "killed" / "run", on_update=stop_after(2), progress=False)

    whole, killed = run_job(tmp_path / "whole"), run_job(tmp_path / "killed")
    assert (whole["resumed"], killed["resumed"]) == (False, True)
    assert killed["steps"] == whole["steps"] == 1024 and killed["key"] == whole["key"]
    assert_same_weights(weights(tmp_path / "whole" / "run"), weights(tmp_path / "killed" / "run"))


def test_the_refine_summary_says_which_candidate_times_are_partial() -> None:
    from rlctl.refine.report import summary_markdown

    summary = {"env": "CartPole-v1", "task": "t", "llm": "none", "fitness_kind": "return",
               "rounds": [{"round": 1, "best_fitness": 1.0, "fitness": [1.0, 0.5]}], "candidates": 2, "trained": 2,
               "candidate_steps": 2048, "candidate_wall_s": 120.0,
               "final": {"steps": 1024, "seeds": [1], "episodes": 2, "results": {}}}
    assert "resumed" not in summary_markdown(summary | {"candidates_resumed": 0})
    assert "1 resumed after an interruption" in summary_markdown(summary | {"candidates_resumed": 1})
