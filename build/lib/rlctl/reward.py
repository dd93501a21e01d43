"""The run's reward function (``env.reward=FILE.py:fn``): loaded once, recorded in the checkpoint with its
sha256, and checked again on resume and eval."""

from __future__ import annotations

from typing import Any

from rlctl.config import Config
from rlctl.envs.errors import EnvError
from rlctl.envs.reward import RewardSource, load_reward_source
from rlctl.errors import UserError


def run_reward(cfg: Config, saved: dict[str, Any] | None = None, force: bool = False) -> RewardSource | None:
    """The reward source of a run, or None when it trains on the env's own reward.

    ``saved`` is what the run's checkpoint recorded (:func:`reward_record`). The file must still hold the
    code the run was trained with: a changed or missing file is refused, unless ``force`` (a changed file is
    then used as it is now; a missing one is replaced by the code the checkpoint kept).
    """
    if cfg.env.reward is None:
        return None
    try:
        current: RewardSource | None = load_reward_source(cfg.env.reward)
    except EnvError:
        if saved is None or not force:
            raise
        current = None
    if saved is None:
        return current
    kept = RewardSource(saved["spec"], saved["source"], saved["function"])
    if current is None:
        print(f"rlctl: env.reward={cfg.env.reward}: the file is gone; using the code the checkpoint kept "
              f"(sha256 {kept.sha256[:12]})", flush=True)
        return kept
    if current.sha256 != kept.sha256:
        if not force:
            raise UserError(f"env.reward={cfg.env.reward} changed since this run started (sha256 "
                            f"{kept.sha256[:12]} → {current.sha256[:12]}); restore the file, or pass --force to "
                            "go on with the file as it is now")
        print(f"rlctl: env.reward={cfg.env.reward} changed (sha256 {kept.sha256[:12]} → {current.sha256[:12]}); "
              "going on with the file as it is now (--force)", flush=True)
    return current


def reward_record(reward: RewardSource | None) -> dict[str, Any] | None:
    """What a checkpoint keeps of the reward: where it came from, the code and its sha256."""
    if reward is None:
        return None
    return {"spec": reward.spec, "function": reward.function, "source": reward.source, "sha256": reward.sha256}
