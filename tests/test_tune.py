from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlctl.cli import main
from rlctl.resolve import resolve_config

optuna = pytest.importorskip("optuna")


def test_tune_writes_a_usable_preset_and_resumes_from_storage(tmp_path: Path, capsys) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "best.yaml"
    args = ["tune", "--env", "CartPole-v1", "--steps", "2048", "--storage", storage, "--out", str(out),
            "--set", "env.num_envs=2", "--set", "ppo.update_epochs=2"]
    assert main([*args, "--trials", "3"]) == 0
    assert main([*args, "--trials", "2", "--force"]) == 0  # same storage and study: resumed
    study = optuna.load_study(study_name="rlctl-CartPole-v1", storage=storage)
    assert len(study.trials) == 5

    preset = yaml.safe_load(out.read_text())["CartPole-v1"]
    best = study.best_trial
    assert preset["ppo"]["learning_rate"] == pytest.approx(best.params["ppo.learning_rate"])
    assert 1e-5 <= preset["ppo"]["learning_rate"] <= 1e-3
    # the file is a preset rlctl train accepts
    cfg, name = resolve_config("CartPole-v1", str(out))
    assert name == str(out) and cfg.ppo.clip_coef == best.params["ppo.clip_coef"]
    # trials whose rollout would not fit the budget are pruned, never run past it
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.params["ppo.num_steps"] * 2 <= 2048


def test_tune_refuses_to_overwrite_the_preset_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "best.yaml"
    out.write_text("keep me")
    assert main(["tune", "--env", "CartPole-v1", "--trials", "1", "--out", str(out)]) == 2
    assert out.read_text() == "keep me" and "--force" in capsys.readouterr().err
