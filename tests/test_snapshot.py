"""Exact state save/restore: the continuation from a restored snapshot equals the original one."""

from __future__ import annotations

import numpy as np
import pytest

from rlctl.checkpoint import from_safe, to_safe
from rlctl.envs.make import make_env
from rlctl.envs.snapshot import capture_state, restore_state


def _continuation_matches(env_id: str, warmup: int = 40, horizon: int = 40) -> None:
    env = make_env(env_id)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(warmup):
        env.step(env.action_space.sample())
    # through the checkpoint encoding, as a resumed run would see it
    state = from_safe(to_safe(capture_state(env)))
    actions = [env.action_space.sample() for _ in range(horizon)]
    original = [env.step(a) for a in actions]

    other = make_env(env_id)
    other.reset(seed=12345)  # a different trajectory, then overwritten
    restore_state(other, state)
    replay = [other.step(a) for a in actions]
    for (o1, r1, te1, tr1, _), (o2, r2, te2, tr2, _) in zip(original, replay, strict=True):
        assert np.array_equal(o1, o2) and r1 == r2 and te1 == te2 and tr1 == tr2


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "HalfCheetah-v5", "Hopper-v5"])
def test_restored_state_continues_bit_exactly(env_id: str) -> None:
    _continuation_matches(env_id)


def test_atari_state_including_rng_continues_bit_exactly() -> None:
    pytest.importorskip("ale_py")
    # Pong with sticky actions (repeat_action_probability 0.25): only an exact RNG restore replays it
    _continuation_matches("ALE/Pong-v5", warmup=60, horizon=60)


def test_time_limit_counter_is_part_of_the_state() -> None:
    env = make_env("CartPole-v1", max_episode_steps=50)
    env.reset(seed=0)
    for _ in range(5):
        env.step(0 if _ % 2 else 1)
    state = capture_state(env)
    other = make_env("CartPole-v1", max_episode_steps=50)
    other.reset(seed=0)
    restore_state(other, state)
    assert other._elapsed_steps == 5  # type: ignore[attr-defined]
