"""A sandboxed reward is computed once per vector step for all sub-envs, with what the per-env hook gives."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from rlctl.envs.make import env_factory, make_vector_env
from rlctl.envs.reward import BatchedRewardHook
from rlctl.refine.hook import SandboxedReward
from rlctl.refine.sandbox import Limits
from rlctl.refine.schema import schema_for
from tests.test_refine_toyenv import ENV_ID as TOY

PROGRAMS = {  # CartPole terminates at different steps in each env; the toy env reports its own terms
    "CartPole-v1": "def compute_reward(next_obs, env_reward, terminated):\n"
                   "    pole = -next_obs[:, 2] ** 2\n"
                   "    return env_reward + pole - 5.0 * terminated, {'pole': pole, 'end': -5.0 * terminated}\n",
    TOY: "def compute_reward(env_progress, env_success, distance):\n"
         "    total = 3.0 * env_progress + env_success - distance\n"
         "    return total, {'progress': 3.0 * env_progress, 'left': -distance}\n",
}
LIMITS = Limits(call_timeout_s=5.0, start_timeout_s=10.0)


def _per_env(env_id: str, hook: SandboxedReward, n: int) -> gym.vector.VectorEnv:
    """The reference: every sub-env calls the program for its own step (a plain function is not batched)."""
    def one_step(*args: Any, **kwargs: Any) -> tuple[float, dict[str, float]]:
        return hook(*args, **kwargs)

    fns = [env_factory(env_id, reward_fn=one_step) for _ in range(n)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def _where(info: dict[str, Any], key: str) -> dict[int, Any]:
    """Per env, the value of ``key`` in the step's info or, for an episode's last step, its final info."""
    out = {}
    for source in (info, info.get("final_info", {})):
        if key in source:
            for i in np.nonzero(source[f"_{key}"])[0]:
                value = source[key]
                out[int(i)] = {k: float(v[i]) for k, v in value.items() if not k.startswith("_")
                               and value[f"_{k}"][i]} if isinstance(value, dict) else float(value[i])
    return out


@pytest.mark.parametrize("env_id", sorted(PROGRAMS))
def test_one_sandbox_call_per_vector_step_gives_the_per_env_hooks_rewards_and_infos(env_id: str) -> None:
    n, steps = 4, 120
    schema = schema_for(env_id, {})
    batched, single = SandboxedReward(PROGRAMS[env_id], schema, LIMITS), SandboxedReward(PROGRAMS[env_id], schema,
                                                                                         LIMITS)
    a, b = make_vector_env(env_id, n, "sync", reward_fn=batched), _per_env(env_id, single, n)
    try:
        assert isinstance(a, BatchedRewardHook)
        a.reset(seed=3)
        b.reset(seed=3)
        a.action_space.seed(0)
        ends = 0
        for _ in range(steps):
            act = a.action_space.sample()
            obs_a, rew_a, term_a, trunc_a, info_a = a.step(act)
            obs_b, rew_b, term_b, trunc_b, info_b = b.step(act)
            np.testing.assert_array_equal(obs_a, obs_b)
            np.testing.assert_array_equal(term_a, term_b)
            np.testing.assert_array_equal(trunc_a, trunc_b)
            np.testing.assert_allclose(rew_a, rew_b, rtol=0, atol=1e-12)
            for key in ("env_reward", "reward_components"):
                assert _where(info_a, key) == _where(info_b, key), key
            assert "reward_row" not in info_a and "reward_row" not in info_a.get("final_info", {})
            ends += int(np.sum(term_a | trunc_a))
        assert ends >= n  # episodes ended, so rows came from final_info too
        assert batched.calls == steps and single.calls == n * steps
    finally:
        a.close()
        b.close()
        batched.close()
        single.close()


def test_the_batched_env_passes_attribute_access_through_for_snapshots() -> None:
    hook = SandboxedReward(PROGRAMS[TOY], schema_for(TOY, {}), LIMITS)
    envs = make_vector_env(TOY, 2, "sync", reward_fn=hook)
    try:
        envs.reset(seed=1)
        envs.step(envs.action_space.sample())
        states = envs.get_attr("snapshot_state")
        after = [envs.step(np.full((2, 1), 0.5, dtype=np.float32))[1] for _ in range(3)]
        envs.set_attr("snapshot_state", list(states))
        again = [envs.step(np.full((2, 1), 0.5, dtype=np.float32))[1] for _ in range(3)]
        np.testing.assert_array_equal(np.array(after), np.array(again))
    finally:
        envs.close()
        hook.close()


def test_a_non_finite_reward_stops_the_step_with_its_value() -> None:
    from rlctl.envs.reward import RewardHook

    env = RewardHook(gym.make("CartPole-v1"), lambda *args, **kwargs: (float("nan"), {}))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite reward nan"):
        env.step(0)
    env.close()
