"""Episodes that start from demonstration states (Salimans & Chen 2018), one env at a time.

:class:`DemoStarts` sits directly on the env ``make_env`` builds, below any reward hook and the snapshot
wrapper, so a demo's snapshots (taken from that same chain by ``rlctl demo record``) restore exactly. The
learner's curriculum (:mod:`rlctl.train.curriculum`) moves one number, ``demo_back``, through the samplers
(``sampler.set_env_attr``); everything per episode happens here:

* **start**: pick a demo episode (uniformly, per episode), then a distance ``d`` from its end: with probability
  ``1 − frac_sample`` uniform in the window ``[back, back + window − 1]``, else uniform in ``[1, back]`` (easier,
  later states). The episode starts at demo step ``T − d``. A ``d`` beyond the demo's beginning (``d > T``)
  starts from the env's own reset instead, so as the window slides past the beginning, the env's own
  initial states take over;
* **warm-up**: with ``warmup_steps = K`` the start is ``K`` steps earlier and the demo's actions replace the
  policy's for those steps; each such step reports ``info["demo_replay"]`` and the learner drops it from every
  loss (recurrent policies and observation statistics get real steps to warm up on);
* **horizon**: an episode from demo step ``T − d`` is *truncated* (bootstrapped, not a failure) after
  ``d + L`` steps, ``L = ⌊e^{U·ln(extra_steps + 1)}⌋``, ``U ~ U(0, 1)`` (the reference's ``e^{7U}`` extra frames,
  scaled to the task);
* **success**: the env's ``info["is_success"]`` when it reports one, else "the return since the start matched
  the demo's return from that point"; reported on the last step as ``info["demo_start"] = [d, success, own]``.

The env's random generator is re-drawn from this wrapper's stream at each demo start: restoring a snapshot
also restores the generator the demo had, and every episode from one demo state would otherwise see the same
noise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rlctl.envs.demo import Demo, DemoEpisode, load_demo
from rlctl.envs.snapshot import restore_state


@dataclass(frozen=True)
class StartSettings:
    """Where episodes start (the config's ``curriculum`` section, as the env layer needs it)."""

    demos: tuple[str, ...]
    window: int = 10
    frac_sample: float = 0.2
    warmup_steps: int = 0
    extra_steps: int = 50
    start_back: int = 1


class DemoStarts(gym.Wrapper):
    """Start episodes from the states of demonstrations; see the module docstring."""

    def __init__(self, env: gym.Env, demos: list[Demo], settings: StartSettings) -> None:
        super().__init__(env)
        self.episodes: list[DemoEpisode] = [ep for demo in demos for ep in demo.episodes]
        if not self.episodes:
            raise ValueError("DemoStarts needs at least one demo episode")
        self.settings = settings
        self.demo_back = int(settings.start_back)
        self._rng = np.random.default_rng(0)
        self._run: dict[str, Any] = {}

    @property
    def demo_length(self) -> int:
        """The longest demo episode (``demo_back`` past it starts every episode from the env's own reset)."""
        return max(ep.length for ep in self.episodes)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng([seed, 0xDE30])
        s, rng, back = self.settings, self._rng, max(1, self.demo_back)
        k = int(rng.integers(len(self.episodes)))
        ep = self.episodes[k]
        if back > 1 and rng.random() < s.frac_sample:
            d = int(rng.integers(1, back + 1))
        else:
            d = int(rng.integers(back, back + s.window))
        start = ep.length - d
        run = {"demo": k, "back": d, "own": start < 0, "steps": 0, "ret": 0.0, "flag": False, "success": False,
               "replay": 0, "pos": 0, "limit": -1, "need": float(ep.returns[-1])}
        if start >= 0:
            first = max(0, start - s.warmup_steps)
            restore_state(self.env, ep.snapshot(first))
            self.env.unwrapped.np_random = np.random.default_rng(int(rng.integers(2**63)))
            obs = np.array(ep.obs[first])
            extra = int(np.floor(np.exp(rng.random() * np.log(s.extra_steps + 1))))
            run.update(replay=start - first, pos=first, limit=d + extra,
                       need=float(ep.returns[-1] - ep.returns[start]))
            info = {"demo_step": start}
        self._run = run
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        run = self._run
        replay = run.get("replay", 0) > 0
        if replay:  # warm-up: the demo acts
            action = self.episodes[run["demo"]].actions[run["pos"]]
            run["pos"] += 1
            run["replay"] -= 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        if replay:
            info = {**info, "demo_replay": True}
        elif run:
            run["steps"] += 1
            run["ret"] += float(reward)
            if "is_success" in info:
                run["flag"] = True
                run["success"] = run["success"] or bool(info["is_success"])
            if not (terminated or truncated) and 0 <= run["limit"] <= run["steps"]:
                truncated = True  # past the demo's horizon: cut, and bootstrapped by the learner
        if (terminated or truncated) and run:
            success = run["success"] if run["flag"] else run["ret"] >= run["need"] - 1e-9
            info = {**info, "demo_start": np.array([run["back"], int(success), int(run["own"])], dtype=np.int64)}
        return obs, reward, terminated, truncated, info

    @property
    def wrapper_state(self) -> dict[str, Any]:
        return {"rng": copy.deepcopy(self._rng.bit_generator.state), "back": self.demo_back,
                "run": copy.deepcopy(self._run)}

    @wrapper_state.setter
    def wrapper_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.demo_back = int(state["back"])
        self._run = copy.deepcopy(state["run"])


def with_demo_starts(env: gym.Env, settings: StartSettings, env_id: str, kwargs: dict[str, Any] | None,
                     max_episode_steps: int | None) -> DemoStarts:
    """``env`` wrapped with the demos ``settings`` names, each checked against the env it will restore into."""
    demos = [load_demo(path) for path in settings.demos]
    for demo, path in zip(demos, settings.demos, strict=True):
        demo.check_env(env_id, kwargs, max_episode_steps, path)
    return DemoStarts(env, demos, settings)
