"""Collect one rollout: step the vector env with the current policy and fill a :class:`Rollout`.

The collector owns everything that persists *between* rollouts — the last observation, episode
accumulators, the running discounted return used for reward scaling — and can save and restore
it (with the envs' own snapshots) for bit-exact resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from agents.cnn import Policy
from agents.fast_inference import NumpyActorCritic
from agents.fast_inference import supports as supports_fast
from agents.policy import ActorCritic
from agents.rollout import POLICY_ACTOR, Rollout
from rlctl.config import PPOConfig
from rlctl.spaces import SpaceAdapter


@dataclass
class Episode:
    """A finished episode: global step at its end, raw (unscaled) return and length.

    For envs that report whole games (``info["game_return"]``, Atari) it is a game: all its lives,
    with the unclipped score, as published Atari results count it.

    ``success`` is the env's ``info["is_success"]`` on the last step, or None when the env does not report one.
    """

    step: int
    ret: float
    length: int
    success: bool | None = None


@dataclass
class RolloutInfo:
    """What a collection pass reports besides the rollout itself."""

    episodes: list[Episode]
    reward_components: dict[str, float]  # mean per step of each info["reward_components"] entry
    timing: dict[str, float] = field(default_factory=dict)  # seconds spent in env.step and in the policy

    def to_plain(self) -> dict[str, Any]:
        """Lists and dicts only (checkpoints load without pickled classes)."""
        return {"episodes": [[e.step, e.ret, e.length, e.success] for e in self.episodes],
                "reward_components": dict(self.reward_components), "timing": dict(self.timing)}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> RolloutInfo:
        return cls([Episode(int(e[0]), float(e[1]), int(e[2]), e[3] if len(e) > 3 else None) for e in data["episodes"]],
                   dict(data["reward_components"]), dict(data.get("timing", {})))


class _RowWriter:
    """Writes time row ``t`` of a rollout's fields.

    Through NumPy views when the rollout lives on the CPU (a few microseconds less per field and step
    than torch indexing, which adds up at ten fields per env step), with torch indexing elsewhere.
    """

    def __init__(self, rollout: Rollout) -> None:
        self.cpu = rollout.obs.device.type == "cpu"
        self.device = rollout.obs.device
        self.targets: dict[str, Any] = {
            f.name: getattr(rollout, f.name).numpy() if self.cpu else getattr(rollout, f.name) for f in fields(rollout)
        }

    def __call__(self, t: int, **values: torch.Tensor | np.ndarray) -> None:
        for name, value in values.items():
            if self.cpu:
                self.targets[name][t] = value.numpy() if isinstance(value, torch.Tensor) else value
            else:
                self.targets[name][t] = torch.as_tensor(value, device=self.device)


class Collector:
    """Steps ``envs`` with ``agent`` and writes transitions into a preallocated rollout."""

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        agent: Policy,
        adapter: SpaceAdapter,
        ppo: PPOConfig,
        device: torch.device,
        steps_per_row: int | None = None,
    ) -> None:
        self.envs, self.agent, self.adapter, self.ppo, self.device = envs, agent, adapter, ppo, device
        n = envs.num_envs
        # Env steps per rollout row across *all* workers (for episode step stamps); this collector's own
        # env count when it is the only one.
        self.steps_per_row = steps_per_row or n
        self.next_obs: np.ndarray | None = None
        self.ep_returns = np.zeros(n, dtype=np.float64)
        self.ep_lengths = np.zeros(n, dtype=np.int64)
        self.disc_returns = np.zeros(n, dtype=np.float64)
        self.seed = 0  # the last reset's seed, and env steps since: new seeds for envs that cannot be restored
        self.steps_since_reset = 0

    def reset(self, seed: int) -> None:
        """Start fresh episodes in every env (env i is seeded with ``seed + i``)."""
        self.seed, self.steps_since_reset = seed, 0
        self.next_obs, _ = self.envs.reset(seed=seed)
        self.ep_returns[:] = 0.0
        self.ep_lengths[:] = 0
        self.disc_returns[:] = 0.0

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.adapter.obs(obs)).to(self.device)

    @torch.no_grad()
    def collect(self, rollout: Rollout, global_step: int) -> RolloutInfo:
        """Fill ``rollout`` with ``num_steps`` transitions from every env."""
        assert self.next_obs is not None, "call reset() or load_state_dict() first"
        agent, ppo = self.agent, self.ppo
        num_steps, num_envs = rollout.rewards.shape
        obs_rms = agent.obs_rms if isinstance(agent, ActorCritic) and agent.normalize_inputs else None
        final_values: list[tuple[int, Any, torch.Tensor]] = []
        episodes: list[Episode] = []
        comp_sums: dict[str, float] = {}
        env_time = 0.0
        t_start = time.perf_counter()
        put = _RowWriter(rollout)
        rollout.actor.fill_(POLICY_ACTOR)  # every action below comes from the learned policy

        # CPU Gaussian MLPs act through NumPy views of the same weights (agents/fast_inference.py)
        fast = NumpyActorCritic(agent) if supports_fast(agent) and put.cpu else None

        for t in range(num_steps):
            if fast is not None:
                obs_np = self.adapter.obs(self.next_obs)
                if obs_rms is not None:
                    obs_rms.update_numpy(obs_np)
                norm_np = fast.normalize(obs_np)
                act_np, env_act_np, logp_np, value_np = fast.step(norm_np)
                put(t, obs=norm_np, actions=act_np, executed_actions=env_act_np, logprobs_dims=logp_np,
                    logprobs=logp_np.sum(-1), values=value_np)
                env_action_np = self.adapter.to_env(env_act_np)
            else:
                obs = self._obs_tensor(self.next_obs)
                if obs_rms is not None:
                    obs_rms.update(obs)
                norm_obs = agent.normalize_obs(obs)
                dist, value = agent.dist_and_value(norm_obs)
                action = dist.sample()
                logp_dims = dist.log_prob_dims(action)
                env_action = agent.to_env_action(action)
                put(t, obs=norm_obs, actions=action, executed_actions=env_action, logprobs_dims=logp_dims,
                    logprobs=logp_dims.sum(-1), values=value)
                env_action_np = self.adapter.to_env(env_action.cpu().numpy())
            t_env = time.perf_counter()
            next_obs, reward, terminated, truncated, info = self.envs.step(env_action_np)
            env_time += time.perf_counter() - t_env
            reward = np.asarray(reward, dtype=np.float64)
            done = np.logical_or(terminated, truncated)
            self.ep_returns += reward
            self.ep_lengths += 1

            learn_reward = reward
            if ppo.normalize_reward:
                self.disc_returns = self.disc_returns * ppo.gamma + reward
                agent.reward_scaler.update(torch.from_numpy(self.disc_returns))
                learn_reward = agent.reward_scaler.scale_numpy(reward, ppo.clip_reward)
                self.disc_returns[done] = 0.0
            put(t, rewards=learn_reward.astype(np.float32), terminated=np.asarray(terminated),
                truncated=np.asarray(truncated))

            # Time-limit bootstrap: V of the true final observation, not of the reset one.
            cut = np.nonzero(truncated & ~terminated)[0] if truncated.any() else ()
            if len(cut):
                final = np.stack([info["final_obs"][i] for i in cut])
                final_values.append((t, cut, agent.value(agent.normalize_obs(self._obs_tensor(final)))))

            # With SAME_STEP autoreset, an episode's last step reports its info under "final_info".
            for source in (info, info.get("final_info", {})):
                if "reward_components" in source:
                    mask = source["_reward_components"]
                    for name, values in source["reward_components"].items():
                        if name.startswith("_"):  # the vector env's per-key masks, not components
                            continue
                        comp_sums[name] = comp_sums.get(name, 0.0) + float(np.asarray(values)[mask].sum())

            final_info = info.get("final_info", {})
            step_stamp = global_step + (t + 1) * self.steps_per_row
            # Envs that play games of several learner episodes (Atari with episodic life, envs/atari.py)
            # report whole games: their raw score is the episode users compare, not a life's clipped sum.
            by_game = "game_over" in info
            for i in np.nonzero(done)[0] if done.any() else ():
                success = None
                if "is_success" in final_info and final_info["_is_success"][i]:
                    success = bool(final_info["is_success"][i])
                if not by_game:
                    episodes.append(Episode(step_stamp, float(self.ep_returns[i]), int(self.ep_lengths[i]), success))
                self.ep_returns[i] = 0.0
                self.ep_lengths[i] = 0
            if by_game:
                for source in (info, final_info):
                    if "game_return" in source:
                        for i in np.nonzero(source["_game_return"])[0]:
                            episodes.append(Episode(step_stamp, float(source["game_return"][i]),
                                                    int(source["game_length"][i])))
            self.next_obs = next_obs
            self.steps_since_reset += num_envs

        # next_values[t] = V(s_{t+1}): the next row's value, the last obs's value at the end, and
        # V(final obs) where step t hit a time limit. Terminated rows are masked inside GAE.
        rollout.next_values[:-1] = rollout.values[1:]
        rollout.next_values[-1] = agent.value(agent.normalize_obs(self._obs_tensor(self.next_obs)))
        for t, cut, values in final_values:
            rollout.next_values[t, torch.from_numpy(cut).to(self.device)] = values
        steps = num_steps * num_envs
        elapsed = time.perf_counter() - t_start
        timing = {"env_s": env_time, "policy_and_bookkeeping_s": elapsed - env_time}
        return RolloutInfo(episodes, {name: value / steps for name, value in comp_sums.items()}, timing)

    def state_dict(self) -> dict[str, Any]:
        """Between-rollout state, including every env's snapshot (plain data)."""
        return {
            "next_obs": np.asarray(self.next_obs),
            "ep_returns": self.ep_returns.copy(),
            "ep_lengths": self.ep_lengths.copy(),
            "disc_returns": self.disc_returns.copy(),
            "env_states": list(cast(Any, self.envs).get_attr("snapshot_state")),
            "seed": self.seed,
            "steps_since_reset": self.steps_since_reset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. Envs that cannot save their state (EnvPool) start new episodes
        instead, seeded past every seed used so far: the run goes on, but not bit-exactly."""
        if any(s is None for s in state["env_states"]):
            self.reset(int(state.get("seed", 0)) + int(state.get("steps_since_reset", 0)) + self.envs.num_envs)
            return
        cast(Any, self.envs).set_attr("snapshot_state", list(state["env_states"]))
        self.next_obs = np.asarray(state["next_obs"])
        self.ep_returns[:] = state["ep_returns"]
        self.ep_lengths[:] = state["ep_lengths"]
        self.disc_returns[:] = state["disc_returns"]
        self.seed, self.steps_since_reset = int(state.get("seed", 0)), int(state.get("steps_since_reset", 0))
