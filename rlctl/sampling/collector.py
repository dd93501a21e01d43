"""Collect one rollout: step the vector env with the current policy and fill a :class:`Rollout`.

The collector owns everything that persists *between* rollouts — the last observation, episode
accumulators, the running discounted return used for reward scaling — and can save and restore
it (with the envs' own snapshots) for bit-exact resume.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from rlctl.agents.arbiter import residual_action
from rlctl.agents.policies import Policy
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.agents.rollout import BASELINE_ACTOR, DEMO_ACTOR, POLICY_ACTOR, Rollout
from rlctl.config import PPOConfig
from rlctl.envs.snapshot import IncompleteSnapshotError
from rlctl.sampling.acting import PolicyActor, RecurrentActor, StepOut, policy_actor
from rlctl.sampling.baseline import Baseline
from rlctl.spaces import SpaceAdapter


@dataclass
class Episode:
    """A finished episode: global step at its end, raw (unscaled) return and length.

    For envs that report whole games (``info["game_return"]``, Atari) it is a game: all its lives,
    with the unclipped score, as published Atari results count it.

    ``success`` is the env's ``info["is_success"]`` on the last step, or None when the env does not report one.
    ``shaped_ret`` is the return of the reward learned from when a reward hook replaced the env's (``ret``
    stays the env's own), else None.
    """

    step: int
    ret: float
    length: int
    success: bool | None = None
    shaped_ret: float | None = None
    learner_share: float | None = None  # with a baseline: the fraction of the episode's steps the learner acted
    start: tuple[int, bool, bool] | None = None  # with demo starts: (steps before the demo's end, success, own reset)


@dataclass
class RolloutInfo:
    """What a collection pass reports besides the rollout itself."""

    episodes: list[Episode]
    reward_components: dict[str, float]  # mean per step of each info["reward_components"] entry
    timing: dict[str, float] = field(default_factory=dict)  # seconds spent in env.step and in the policy
    arbiter: dict[str, float] = field(default_factory=dict)  # with a baseline: shares of who acted (baseline.py)

    def to_plain(self) -> dict[str, Any]:
        """Lists and dicts only (checkpoints load without pickled classes)."""
        return {"episodes": [[e.step, e.ret, e.length, e.success, e.shaped_ret, e.learner_share,
                              list(e.start) if e.start is not None else None] for e in self.episodes],
                "reward_components": dict(self.reward_components), "timing": dict(self.timing),
                "arbiter": dict(self.arbiter)}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> RolloutInfo:
        return cls([_episode(e) for e in data["episodes"]],
                   dict(data["reward_components"]), dict(data.get("timing", {})), dict(data.get("arbiter", {})))


def _episode(e: list[Any]) -> Episode:
    """An :class:`Episode` from :meth:`RolloutInfo.to_plain`'s list (older checkpoints have fewer fields)."""
    success, shaped, share, start = (list(e[3:]) + [None] * 4)[:4]
    return Episode(int(e[0]), float(e[1]), int(e[2]), success, shaped, share,
                   (int(start[0]), bool(start[1]), bool(start[2])) if start is not None else None)


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
    """Steps ``envs`` with ``agent`` (or, where the arbiter says so, a baseline) and writes transitions
    into a preallocated rollout."""

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        agent: Policy,
        adapter: SpaceAdapter,
        ppo: PPOConfig,
        device: torch.device,
        steps_per_row: int | None = None,
        baseline: Baseline | None = None,
    ) -> None:
        self.envs, self.agent, self.adapter, self.ppo, self.device = envs, agent, adapter, ppo, device
        self.baseline = baseline
        self.actor: PolicyActor = policy_actor(agent, device)
        n = envs.num_envs
        # Env steps per rollout row across *all* workers (for episode step stamps); this collector's own
        # env count when it is the only one.
        self.steps_per_row = steps_per_row or n
        self.next_obs: np.ndarray | None = None
        self.ep_returns = np.zeros(n, dtype=np.float64)  # the env's own reward
        self.ep_shaped = np.zeros(n, dtype=np.float64)  # the reward learned from (a reward hook's), when it differs
        self.ep_lengths = np.zeros(n, dtype=np.int64)
        self.ep_learner_steps = np.zeros(n, dtype=np.int64)  # steps the learned policy acted (with a baseline)
        self.disc_returns = np.zeros(n, dtype=np.float64)
        self.seed = 0  # the last reset's seed, and env steps since: new seeds for envs that cannot be restored
        self.steps_since_reset = 0
        # A recurrent policy's state per env, carried across rollouts, and where it restarts (episode starts).
        self.rnn: RecurrentActor | None = None
        self.rnn_state: torch.Tensor | None = None
        if isinstance(agent, RecurrentActorCritic):
            self.rnn = RecurrentActor(agent, device)
            self.rnn_state = agent.initial_state(n, device)
        self.rnn_starts = torch.ones(n, dtype=torch.bool)
        self._warned_snapshot = False

    def reset(self, seed: int) -> None:
        """Start fresh episodes in every env (env i is seeded with ``seed + i``)."""
        self.seed, self.steps_since_reset = seed, 0
        self.next_obs, _ = self.envs.reset(seed=seed)
        self._new_episodes(np.arange(self.envs.num_envs))

    def _new_episodes(self, idx: np.ndarray) -> None:
        """Per-episode bookkeeping of envs ``idx`` back to an episode's start."""
        self.ep_returns[idx] = 0.0
        self.ep_shaped[idx] = 0.0
        self.ep_lengths[idx] = 0
        self.ep_learner_steps[idx] = 0
        self.disc_returns[idx] = 0.0
        if self.rnn is not None:
            self.rnn_starts[torch.as_tensor(idx, dtype=torch.long)] = True
        if self.baseline is not None:
            self.baseline.reset(idx)

    def start_from(self, starts: dict[int, dict[str, Any]], now: bool = True) -> None:
        """Start the next episodes of envs ``i`` from ``starts[i]`` (a :class:`~rlctl.envs.snapshot.Snapshot`
        state): at once with ``now`` (the episode under way is cut, as at a time limit: the previous
        rollout bootstrapped it), otherwise when each env's episode next ends."""
        if not starts:
            return
        if any(not 0 <= i < self.envs.num_envs for i in starts):
            raise ValueError(f"start_from: env indices {sorted(starts)} outside 0..{self.envs.num_envs - 1}")
        pending = list(cast(Any, self.envs).get_attr("pending_start"))
        for i, state in starts.items():
            pending[i] = state
        cast(Any, self.envs).set_attr("pending_start", pending)
        if now:
            idx = np.array(sorted(starts))
            mask = np.zeros(self.envs.num_envs, dtype=bool)
            mask[idx] = True
            obs, _ = self.envs.reset(options={"reset_mask": mask})
            assert self.next_obs is not None, "call reset() or load_state_dict() first"
            self.next_obs = np.array(self.next_obs)
            self.next_obs[idx] = np.asarray(obs)[idx]
            self._new_episodes(idx)

    def _bootstrap_values(self, obs: np.ndarray, rows: Any = None) -> torch.Tensor:
        """V(obs) of envs ``rows`` (all by default); a recurrent policy continues from their current state."""
        if self.rnn is not None:
            assert self.rnn_state is not None
            state = self.rnn_state * (~self.rnn_starts).to(self.rnn_state)[:, None]
            return self.rnn.value(self.adapter.obs(obs), state if rows is None else state[torch.as_tensor(rows)])
        return self.agent.value(self.agent.normalize_obs(torch.from_numpy(self.adapter.obs(obs)).to(self.device)))

    def _baseline_acts(self, out: StepOut, t: int, rollout: Rollout) -> np.ndarray:
        """Let the baseline act where the arbiter says (:mod:`rlctl.agents.arbiter`); returns the env actions.

        Where the baseline acts, the rollout stores its action as the action taken, the policy's log-prob of
        it, and ``actor = BASELINE_ACTOR``. In the residual mode the learner's sample stays the action and the
        env receives it plus the faded baseline's.
        """
        baseline = self.baseline
        assert baseline is not None and self.next_obs is not None
        env_actions = _numpy(out.env_actions)
        learner = baseline.learner_acts(_numpy(out.values), self.ep_lengths)
        self.ep_learner_steps += learner
        if baseline.residual:
            everyone = np.arange(len(learner))
            added = self.adapter.from_env(baseline.act(everyone, self.next_obs))
            executed = residual_action(_numpy(out.actions), added, baseline.share).astype(np.float32)
            if self.adapter.action.low:
                executed = np.clip(executed, self.adapter.action.low, self.adapter.action.high)
            rollout.executed_actions[t] = torch.as_tensor(executed, device=rollout.executed_actions.device)
            return executed
        if learner.all():
            return env_actions
        idx = np.nonzero(~learner)[0]
        executed = baseline.act(idx, self.next_obs)
        acts = self.adapter.from_env(executed)
        if self.adapter.action.kind == "continuous" and self.adapter.action.low:
            acts = np.clip(acts, self.adapter.action.low, self.adapter.action.high).astype(np.float32)
        logp = self.actor.logprobs_dims(_rows(out.norm_obs, idx), acts).astype(np.float32)
        for name, rows in (("actions", acts), ("executed_actions", acts), ("logprobs_dims", logp)):
            column = getattr(rollout, name)[t]
            column[torch.from_numpy(idx).to(column.device)] = torch.as_tensor(rows, device=column.device)
        rollout.logprobs[t] = rollout.logprobs_dims[t].sum(-1)
        rollout.actor[t, torch.from_numpy(idx).to(rollout.actor.device)] = BASELINE_ACTOR
        env_actions = np.array(env_actions)
        env_actions[idx] = acts
        return env_actions

    @torch.no_grad()
    def collect(self, rollout: Rollout, global_step: int) -> RolloutInfo:
        """Fill ``rollout`` with ``num_steps`` transitions from every env."""
        assert self.next_obs is not None, "call reset() or load_state_dict() first"
        ppo = self.ppo
        num_steps, num_envs = rollout.rewards.shape
        final_values: list[tuple[int, Any, torch.Tensor]] = []
        episodes: list[Episode] = []
        comp_sums: dict[str, float] = {}
        env_time = 0.0
        t_start = time.perf_counter()
        put = _RowWriter(rollout)
        self.actor = policy_actor(self.agent, rollout.obs.device)  # fresh NumPy views of the current weights
        rollout.actor.fill_(POLICY_ACTOR)

        for t in range(num_steps):
            if self.rnn is not None:  # the state before step t, then the step from it
                assert self.rnn_state is not None
                put(t, starts=self.rnn_starts, rnn_states=self.rnn_state)
                out, self.rnn_state = self.rnn.act(self.adapter.obs(self.next_obs), self.rnn_state, self.rnn_starts)
                self.rnn_starts = torch.zeros_like(self.rnn_starts)  # episodes that end below start again
            else:
                out = self.actor.act(self.adapter.obs(self.next_obs))
            put(t, obs=out.norm_obs, actions=out.actions, executed_actions=out.env_actions,
                logprobs_dims=out.logprobs_dims, logprobs=out.logprobs_dims.sum(-1), values=out.values)
            env_actions = self._baseline_acts(out, t, rollout) if self.baseline is not None \
                else _numpy(out.env_actions)
            t_env = time.perf_counter()
            next_obs, reward, terminated, truncated, info = self.envs.step(self.adapter.to_env(env_actions))
            env_time += time.perf_counter() - t_env
            reward = np.asarray(reward, dtype=np.float64)
            done = np.logical_or(terminated, truncated)
            final_info = info.get("final_info", {})
            env_reward = _env_reward(info, final_info, done)
            if env_reward is None:
                self.ep_returns += reward
            else:  # a reward hook replaced the env's reward: both returns are kept
                self.ep_returns += env_reward
                self.ep_shaped += reward
            self.ep_lengths += 1

            learn_reward = reward
            if ppo.normalize_reward:
                self.disc_returns = self.disc_returns * ppo.gamma + reward
                self.agent.reward_scaler.update(torch.from_numpy(self.disc_returns))
                learn_reward = self.agent.reward_scaler.scale_numpy(reward, ppo.clip_reward)
                self.disc_returns[done] = 0.0
            put(t, rewards=learn_reward.astype(np.float32), terminated=np.asarray(terminated),
                truncated=np.asarray(truncated))
            if "demo_replay" in info:  # a demo's warm-up step (envs/demo_start.py): the demo acted, no loss sees it
                replayed = np.nonzero(info["_demo_replay"])[0]
                rollout.actor[t, torch.from_numpy(replayed).to(rollout.actor.device)] = DEMO_ACTOR

            # Time-limit bootstrap: V of the true final observation, not of the reset one.
            cut = np.nonzero(truncated & ~terminated)[0] if truncated.any() else ()
            if len(cut):
                final_obs = np.stack([info["final_obs"][i] for i in cut])
                final_values.append((t, cut, self._bootstrap_values(final_obs, cut)))

            # With SAME_STEP autoreset, an episode's last step reports its info under "final_info".
            for source in (info, final_info):
                if "reward_components" in source:
                    mask = source["_reward_components"]
                    for name, values in source["reward_components"].items():
                        if name.startswith("_"):  # the vector env's per-key masks, not components
                            continue
                        comp_sums[name] = comp_sums.get(name, 0.0) + float(np.asarray(values)[mask].sum())

            step_stamp = global_step + (t + 1) * self.steps_per_row
            # Envs that play games of several learner episodes (Atari with episodic life, envs/atari) report
            # whole games: their raw score is the episode users compare, not a life's clipped sum.
            by_game = "game_over" in info
            ended = np.nonzero(done)[0] if done.any() else np.zeros(0, dtype=np.int64)
            for i in ended:
                success = None
                if "is_success" in final_info and final_info["_is_success"][i]:
                    success = bool(final_info["is_success"][i])
                start = None
                if "demo_start" in final_info and final_info["_demo_start"][i]:
                    d, won, own = (int(v) for v in final_info["demo_start"][i])
                    start = (d, bool(won), bool(own))
                if not by_game:
                    shaped = float(self.ep_shaped[i]) if env_reward is not None else None
                    share = float(self.ep_learner_steps[i] / self.ep_lengths[i]) if self.baseline else None
                    episodes.append(Episode(step_stamp, float(self.ep_returns[i]), int(self.ep_lengths[i]), success,
                                            shaped, share, start))
            if len(ended):
                self._new_episodes(ended)
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
        rollout.next_values[-1] = self._bootstrap_values(self.next_obs)
        for t, cut, values in final_values:
            rollout.next_values[t, torch.from_numpy(cut).to(rollout.next_values.device)] = values
        steps = num_steps * num_envs
        elapsed = time.perf_counter() - t_start
        timing = {"env_s": env_time, "policy_and_bookkeeping_s": elapsed - env_time}
        stats = self.baseline.take_stats() if self.baseline is not None else {}
        return RolloutInfo(episodes, {name: value / steps for name, value in comp_sums.items()}, timing, stats)

    def state_dict(self) -> dict[str, Any]:
        """Between-rollout state, including every env's snapshot (plain data)."""
        return {
            "next_obs": np.asarray(self.next_obs),
            "ep_returns": self.ep_returns.copy(),
            "ep_shaped": self.ep_shaped.copy(),
            "ep_lengths": self.ep_lengths.copy(),
            "disc_returns": self.disc_returns.copy(),
            "env_states": self._env_states(),
            "seed": self.seed,
            "steps_since_reset": self.steps_since_reset,
            "baseline": self.baseline.state_dict() if self.baseline is not None else None,
            "rnn_state": self.rnn_state.cpu().clone() if self.rnn_state is not None else None,
            "rnn_starts": self.rnn_starts.clone(),
        }

    def _env_states(self) -> list[dict[str, Any] | None]:
        """Every env's snapshot; Nones (with a warning, once) for an env that cannot be captured exactly."""
        try:
            return list(cast(Any, self.envs).get_attr("snapshot_state"))
        except IncompleteSnapshotError as exc:
            if not self._warned_snapshot:
                warnings.warn(f"{exc}; a resumed run starts new episodes instead of continuing these", stacklevel=2)
                self._warned_snapshot = True
            return [None] * self.envs.num_envs

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. Envs that cannot save their state (EnvPool) start new episodes
        instead, seeded past every seed used so far: the run goes on, but not bit-exactly."""
        if any(s is None for s in state["env_states"]):
            self.reset(int(state.get("seed", 0)) + int(state.get("steps_since_reset", 0)) + self.envs.num_envs)
            return
        cast(Any, self.envs).set_attr("snapshot_state", list(state["env_states"]))
        self.next_obs = np.asarray(state["next_obs"])
        self.ep_returns[:] = state["ep_returns"]
        self.ep_shaped[:] = state.get("ep_shaped", 0.0)
        self.ep_lengths[:] = state["ep_lengths"]
        self.disc_returns[:] = state["disc_returns"]
        self.seed, self.steps_since_reset = int(state.get("seed", 0)), int(state.get("steps_since_reset", 0))
        if self.baseline is not None and state.get("baseline") is not None:
            self.baseline.load_state_dict(state["baseline"])
        if self.rnn_state is not None and state.get("rnn_state") is not None:
            self.rnn_state = torch.as_tensor(state["rnn_state"]).to(self.rnn_state.device)
            self.rnn_starts = torch.as_tensor(state["rnn_starts"]).clone()


def _numpy(x: Any) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


def _rows(x: Any, idx: np.ndarray) -> Any:
    return x[torch.from_numpy(idx).to(x.device)] if isinstance(x, torch.Tensor) else x[idx]


def _env_reward(info: dict[str, Any], final_info: dict[str, Any], done: np.ndarray) -> np.ndarray | None:
    """``[N]`` the env's own reward where a reward hook (:mod:`rlctl.envs.reward`) replaced it, else None.

    An episode's last step reports it under ``final_info`` (SAME_STEP autoreset), the others under ``info``.
    """
    if "env_reward" not in info and "env_reward" not in final_info:
        return None
    out = np.zeros(len(done), dtype=np.float64)
    for source in (info, final_info):
        if "env_reward" in source:
            mask = source["_env_reward"]
            out[mask] = np.asarray(source["env_reward"], dtype=np.float64)[mask]
    return out
