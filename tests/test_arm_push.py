"""The PyBullet arm-push task and its scripted controller: API, determinism, exact restore with contacts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("pybullet")

from gymnasium.utils.env_checker import check_env

import rlctl.envs  # noqa: F401 - registers the rlctl/* ids
from rlctl.envs.controllers.arm_ik import ArmIKController
from rlctl.envs.controllers.arm_push import ArmPushController
from rlctl.envs.robots.push import ArmPushEnv
from rlctl.envs.snapshot import capture_state, restore_state


@pytest.fixture
def make() -> Iterator[Any]:
    made: list[Any] = []

    def _make(**kwargs: Any) -> ArmPushEnv:
        made.append(ArmPushEnv(**kwargs))
        return made[-1]

    yield _make
    for env in made:
        env.close()


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
def test_env_passes_gymnasium_check_env(make: Any, reward_type: str) -> None:
    check_env(make(reward_type=reward_type), skip_render_check=True)


def test_scripted_controller_pushes_the_cube_onto_the_goal(make: Any) -> None:
    env = make()
    ctrl = ArmPushController(env)
    successes, moved = 0, []
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        start_cube, start_distance = env.cube_position(), info["distance"]
        while True:
            obs, _, terminated, truncated, info = env.step(ctrl.act(obs))
            if terminated or truncated:
                break
        successes += info["is_success"]
        moved.append(float(np.linalg.norm(env.cube_position()[:2] - start_cube[:2])))
        assert info["distance"] < start_distance
    ctrl.close()
    assert successes >= 11
    assert min(moved) > 0.05  # the cube travelled: success is not reached by reaching over it


def test_doing_nothing_never_succeeds_and_the_reach_controller_refuses_the_push_task(make: Any) -> None:
    env = make()
    for seed in range(5):
        env.reset(seed=seed)
        for _ in range(30):
            _, _, terminated, _, info = env.step(np.zeros(7, dtype=np.float32))
        assert not terminated and not info["is_success"] and info["distance"] >= env.MIN_PUSH - 1e-6
    with pytest.raises(TypeError, match="ArmPushController"):
        ArmIKController(env).act(env.reset(seed=0)[0])


def test_same_seed_same_trajectory_and_snapshot_restores_a_push_in_contact(make: Any) -> None:
    a, b = make(), make()
    ctrl = ArmPushController(a)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    assert np.array_equal(obs_a, obs_b)
    obs = obs_a
    for _ in range(40):  # into the push: the hand touches the cube, which slides on the floor
        if ctrl.hand_target(obs)[1] == "push":
            break
        action = ctrl.act(obs)
        obs = a.step(action)[0]
        assert np.array_equal(obs, b.step(action)[0])
    assert ctrl.hand_target(obs)[1] == "push"
    state = capture_state(a)

    def play(env: ArmPushEnv, obs: np.ndarray) -> list[np.ndarray]:
        out = []
        for _ in range(10):
            obs, *_ = env.step(ctrl.act(obs))
            out.append(obs)
        return out

    first = play(a, obs)
    assert np.linalg.norm(first[-1][20:22]) > 0 or np.linalg.norm(first[-1][17:19] - obs[17:19]) > 1e-3
    restore_state(b, state)  # another instance, restored from plain data
    second = play(b, obs)
    ctrl.close()
    for x, y in zip(first, second, strict=True):
        assert np.array_equal(x, y)


def test_reward_components_sum_to_the_reward_and_a_lost_cube_ends_the_episode(make: Any) -> None:
    env = make()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(7, dtype=np.float32))
    assert set(info["reward_components"]) == {"reach", "push", "action_rate", "success"}
    assert reward == pytest.approx(sum(info["reward_components"].values()))
    env.bullet_client.resetBasePositionAndOrientation(env._cube, [1.2, 0.0, env.CUBE_HALF], [0, 0, 0, 1])
    _, _, terminated, truncated, info = env.step(np.zeros(7, dtype=np.float32))
    assert terminated and not truncated and info["failure_reason"] == "cube_lost"


def test_registered_ids_make_the_push_task() -> None:
    for env_id, kind in (("rlctl/ArmPush-v0", "dense"), ("rlctl/ArmPushSparse-v0", "sparse")):
        env = gym.make(env_id)
        assert isinstance(env.unwrapped, ArmPushEnv) and env.unwrapped.reward_type == kind
        assert env.observation_space.shape == (32,)
        env.close()
