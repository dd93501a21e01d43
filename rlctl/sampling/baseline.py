"""A baseline that acts inside the collector instead of the learned policy (config section ``arbiter``).

The baseline is built where the envs live (in each sampler worker), one controller per env, from a spec:

* ``controller:NAME`` — a scripted controller of :mod:`rlctl.envs.controllers` (``pid``, ``ik``, ``push``,
  ``energy``);
* a run directory or checkpoint of rlctl — that policy's deterministic action;
* ``sb3:PATH.zip`` — a Stable-Baselines3 model's deterministic action (``model.predict``; observations as
  the env gives them, so a model trained under VecNormalize needs its statistics, which a zip lacks).

A policy baseline must take this env's observation and action shapes; a different env id is fine (a
policy trained on a dense task can drive its sparse variant).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlctl.agents import arbiter as arbitration
from rlctl.config import ArbiterConfig, Config
from rlctl.envs.controllers import Controller, make_controller
from rlctl.envs.snapshot import is_plain
from rlctl.errors import UserError


class _PolicyController:
    """A trained policy (rlctl or SB3) with the controller interface; a recurrent one's state is reset per episode."""

    def __init__(self, act: Any) -> None:
        self._act = act

    def reset(self) -> None:
        if callable(reset := getattr(self._act, "reset", None)):
            reset()

    def act(self, obs: Any) -> Any:
        return self._act(obs)


def _check_spaces(spec: str, obs_space: gym.Space, action_space: gym.Space, env: gym.Env) -> None:
    ours = (env.observation_space.shape, env.action_space.shape, type(env.action_space).__name__)
    theirs = (obs_space.shape, action_space.shape, type(action_space).__name__)
    if ours != theirs:
        raise UserError(f"baseline {spec}: it acts on observations {theirs[0]} with {theirs[2]} actions {theirs[1]}, "
                        f"this env has observations {ours[0]} and {ours[2]} actions {ours[1]}")


def _rlctl_policy(spec: str, env: gym.Env) -> Controller:
    from rlctl.evaluate import Chooser
    from rlctl.runs import load_policy

    loaded = load_policy(spec)
    _check_spaces(spec, loaded.adapter.obs_space, loaded.adapter.action_space, env)
    return _PolicyController(Chooser(loaded.agent, loaded.adapter, True))


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
    """One controller per env of a vector env, and the arbitration of :mod:`rlctl.agents.arbiter` (who acts).

    The learner's share ``p`` is set by the trainer before each rollout (:meth:`set_share`); the per-env state
    (CALF's certified value and relax probability, the random stream) lives here and is checkpointed.
    """

    def __init__(self, arbiter: ArbiterConfig, envs: gym.vector.VectorEnv, seed: int) -> None:
        sub_envs = getattr(envs, "envs", None)
        if sub_envs is None:
            raise UserError("arbiter.baseline needs env.vectorization=sync (or run.sampler=process/ray, whose "
                            "workers step their envs in-process): a controller reads its env's parameters")
        assert arbiter.baseline is not None
        if arbiter.mode == "residual" and not isinstance(envs.single_action_space, gym.spaces.Box):
            raise UserError(f"arbiter.mode=residual adds actions: it needs continuous actions, not "
                            f"{envs.single_action_space}")
        self.cfg, self.spec = arbiter, arbiter.baseline
        self.controllers = [make_baseline(arbiter.baseline, env) for env in sub_envs]
        self.action_space = envs.single_action_space
        spec = getattr(sub_envs[0], "spec", None)
        self.horizon = arbiter.horizon or int(getattr(spec, "max_episode_steps", None) or 1000)
        self.share = arbiter.share_start
        n = len(self.controllers)
        self.rng = np.random.default_rng([seed, 0xBA5E])
        self.certified_value = np.zeros(n)
        self.relax = np.full(n, arbiter.relax_init)
        self.relax_init = np.full(n, arbiter.relax_init)
        self.first_episode = np.ones(n, dtype=bool)
        self.counts = {"steps": 0, "learner": 0, "certified": 0}

    @property
    def residual(self) -> bool:
        return self.cfg.mode == "residual"

    def set_share(self, share: float) -> None:
        """The learner's share p for the next rollout (from the trainer's transfer schedule)."""
        self.share = float(share)

    def learner_acts(self, values: np.ndarray, steps_in_episode: np.ndarray) -> np.ndarray:
        """``[N]`` bool: where the learned policy acts at this step (residual: everywhere, the baseline adds)."""
        mode, n = self.cfg.mode, len(self.controllers)
        uniforms = self.rng.random(n)
        certified = np.zeros(n, dtype=bool)
        if self.share >= 1.0 or mode == "residual":
            acts = np.ones(n, dtype=bool)
        elif mode == "prob":
            acts = arbitration.prob_step(self.share, uniforms)
        elif mode == "jsrl":
            acts = arbitration.jsrl_step(self.share, steps_in_episode, self.horizon)
        else:  # calf
            start = steps_in_episode == 0
            if start.any():
                v_dag, relax, relax_init = arbitration.calf_episode_start(
                    values[start], self.relax_init[start], self.cfg.relax_episode_factor, self.first_episode[start])
                self.certified_value[start], self.relax[start], self.relax_init[start] = v_dag, relax, relax_init
                self.first_episode[start] = False
            acts, certified, self.certified_value, self.relax = arbitration.calf_step(
                values, self.certified_value, self.relax, self.share, uniforms, self.cfg.nu,
                self.cfg.relax_step_factor, episode_start=start)
        self.counts["steps"] += n
        self.counts["learner"] += int(acts.sum())
        self.counts["certified"] += int(certified.sum())
        return acts

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

    def take_stats(self) -> dict[str, float]:
        """Shares of the steps since the last call: the learner's, the certified ones (CALF); and λ, p."""
        steps = max(self.counts["steps"], 1)
        stats = {"learner_share": self.counts["learner"] / steps, "certified": self.counts["certified"] / steps,
                 "relax_prob": float(self.relax.mean()), "share": self.share}
        self.counts = {"steps": 0, "learner": 0, "certified": 0}
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "share": self.share,
                "certified_value": self.certified_value.copy(), "relax": self.relax.copy(),
                "relax_init": self.relax_init.copy(), "first_episode": self.first_episode.copy(),
                "controllers": [_controller_state(c) for c in self.controllers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.share = float(state.get("share", self.share))
        for key in ("certified_value", "relax", "relax_init", "first_episode"):
            if key in state:
                getattr(self, key)[:] = state[key]
        for controller, saved in zip(self.controllers, state.get("controllers") or [], strict=False):
            for name, value in saved.items():
                setattr(controller, name, copy.deepcopy(value))


def _controller_state(controller: Controller) -> dict[str, Any]:
    """A controller's plain-data attributes (a PID's integrators, a pusher's phase, their gains): what a resumed
    run needs to continue mid-episode as the uninterrupted run did. Objects (an env, a policy) are not state."""
    return {name: copy.deepcopy(value) for name, value in vars(controller).items() if is_plain(value)}


def make_arbiter_baseline(cfg: Config, envs: gym.vector.VectorEnv, seed: int) -> Baseline | None:
    """The baseline of ``cfg.arbiter`` for ``envs``, or None when the learned policy acts alone."""
    if cfg.arbiter.baseline is None:
        return None
    return Baseline(cfg.arbiter, envs, seed)
