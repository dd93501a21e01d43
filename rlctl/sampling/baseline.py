"""A baseline that acts inside the collector instead of the learned policy (config section ``arbiter``).

The baseline is built where the envs live (in each sampler worker), one controller per env, from a spec:

* ``controller:NAME`` — a scripted controller of :mod:`rlctl.envs.controllers` (``pid``, ``ik``, ``push``);
* a run directory or checkpoint of rlctl — that policy's deterministic action;
* ``sb3:PATH.zip`` — a Stable-Baselines3 model's deterministic action (``model.predict``; observations as
  the env gives them, so a model trained under VecNormalize needs its statistics, which a zip lacks).

A policy baseline must take this env's observation and action shapes; a different env id is fine (a
policy trained on a dense task can drive its sparse variant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlctl.config import Config
from rlctl.envs.controllers import Controller, make_controller
from rlctl.errors import UserError


class _PolicyController:
    """A trained policy (rlctl or SB3) with the controller interface; stateless between steps."""

    def __init__(self, act: Any) -> None:
        self._act = act

    def reset(self) -> None:
        pass

    def act(self, obs: Any) -> Any:
        return self._act(obs)


def _check_spaces(spec: str, obs_space: gym.Space, action_space: gym.Space, env: gym.Env) -> None:
    ours = (env.observation_space.shape, env.action_space.shape, type(env.action_space).__name__)
    theirs = (obs_space.shape, action_space.shape, type(action_space).__name__)
    if ours != theirs:
        raise UserError(f"baseline {spec}: it acts on observations {theirs[0]} with {theirs[2]} actions {theirs[1]}, "
                        f"this env has observations {ours[0]} and {ours[2]} actions {ours[1]}")


def _rlctl_policy(spec: str, env: gym.Env) -> Controller:
    from rlctl.evaluate import act
    from rlctl.runs import load_policy

    loaded = load_policy(spec)
    _check_spaces(spec, loaded.adapter.obs_space, loaded.adapter.action_space, env)
    return _PolicyController(lambda obs: act(loaded.agent, loaded.adapter, obs, True))


def _sb3_policy(spec: str, env: gym.Env) -> Controller:
    path = Path(spec.removeprefix("sb3:"))
    if not path.is_file():
        raise UserError(f"baseline {spec}: no such file")
    try:
        from stable_baselines3.common.base_class import BaseAlgorithm
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError:
        raise UserError("an sb3: baseline needs Stable-Baselines3: pip install 'rlctl[bench]'") from None
    try:
        data, _, _ = load_from_zip_file(path, device="cpu")
        algo: type[BaseAlgorithm] = _sb3_class(data)
        model = algo.load(path, device="cpu")
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise UserError(f"baseline {spec}: not a Stable-Baselines3 model ({exc})") from None
    assert model.observation_space is not None and model.action_space is not None
    _check_spaces(spec, model.observation_space, model.action_space, env)
    return _PolicyController(lambda obs: model.predict(obs, deterministic=True)[0])


def _sb3_class(data: dict[str, Any] | None) -> Any:
    """The SB3 algorithm class a saved model was made with (its policy class names the algorithm module)."""
    import stable_baselines3 as sb3

    policy_class = (data or {}).get("policy_class")
    module = getattr(policy_class, "__module__", "") or ""
    for name in ("PPO", "A2C", "SAC", "TD3", "DDPG", "DQN"):
        if f".{name.lower()}." in module:
            return getattr(sb3, name)
    return sb3.PPO


def make_baseline(spec: str, env: gym.Env) -> Controller:
    """The baseline ``spec`` names, built for ``env`` (one sub-env of a vector env)."""
    if spec.startswith("controller:"):
        try:
            return make_controller(spec.removeprefix("controller:"), env)
        except ValueError as exc:
            raise UserError(f"arbiter.baseline={spec}: {exc}") from None
    if spec.startswith("sb3:"):
        return _sb3_policy(spec, env)
    if Path(spec).exists():
        return _rlctl_policy(spec, env)
    raise UserError(f"arbiter.baseline={spec!r} is not controller:NAME, sb3:PATH.zip or an existing rlctl run "
                    "directory or checkpoint")


class Baseline:
    """One controller per env of a vector env, and the draw of who acts (``arbiter.baseline_prob``)."""

    def __init__(self, spec: str, envs: gym.vector.VectorEnv, prob: float, seed: int) -> None:
        sub_envs = getattr(envs, "envs", None)
        if sub_envs is None:
            raise UserError("arbiter.baseline needs env.vectorization=sync (or run.sampler=process/ray, whose "
                            "workers step their envs in-process): a controller reads its env's parameters")
        self.spec, self.prob = spec, prob
        self.controllers = [make_baseline(spec, env) for env in sub_envs]
        self.action_space = envs.single_action_space
        self.rng = np.random.default_rng([seed, 0xBA5E])

    def choose(self) -> np.ndarray:
        """``[N]`` bool: where the baseline acts at this step."""
        if self.prob >= 1.0:
            return np.ones(len(self.controllers), dtype=bool)
        return self.rng.random(len(self.controllers)) < self.prob

    def act(self, envs_idx: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """``[k, ...]`` env actions of the controllers of envs ``envs_idx`` for their raw observations."""
        actions = np.stack([np.asarray(self.controllers[i].act(obs[i])) for i in envs_idx])
        want = self.action_space.shape or ()
        if actions.shape[1:] != want:
            raise UserError(f"arbiter.baseline={self.spec} returned actions of shape {actions.shape[1:]}, "
                            f"the env takes {want}")
        return actions

    def reset(self, envs_idx: Any) -> None:
        for i in np.atleast_1d(envs_idx):
            self.controllers[int(i)].reset()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def make_arbiter_baseline(cfg: Config, envs: gym.vector.VectorEnv, seed: int) -> Baseline | None:
    """The baseline of ``cfg.arbiter`` for ``envs``, or None when the learned policy acts alone."""
    if cfg.arbiter.baseline is None:
        return None
    return Baseline(cfg.arbiter.baseline, envs, cfg.arbiter.baseline_prob, seed)
