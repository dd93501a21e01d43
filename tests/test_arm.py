"""The PyBullet arm-reach task and its IK controller: API conformance, determinism, exact restore, reward terms."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pybullet")

from gymnasium.utils.env_checker import check_env

from rlctl.envs.controllers.arm_ik import ArmIKController
from rlctl.envs.robots.arm import ArmReachEnv
from rlctl.envs.snapshot import capture_state, restore_state

SEEDS = range(20)


@pytest.fixture
def make() -> Iterator[Any]:
    """Build envs that are closed after the test (each holds a PyBullet client)."""
    made: list[ArmReachEnv] = []

    def _make(**kwargs: Any) -> ArmReachEnv:
        made.append(ArmReachEnv(**kwargs))
        return made[-1]

    yield _make
    for env in made:
        env.close()


def _run_episode(env: ArmReachEnv, seed: int, policy: Any) -> tuple[bool, int, list[dict[str, Any]]]:
    """Play one episode; returns (success, steps, infos)."""
    obs, _ = env.reset(seed=seed)
    infos = []
    while True:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        infos.append(info)
        if terminated or truncated:
            return bool(info["is_success"]), len(infos), infos


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
def test_env_passes_gymnasium_check_env(make: Any, reward_type: str) -> None:
    check_env(make(reward_type=reward_type), skip_render_check=True)


def test_same_seed_gives_identical_trajectory_and_other_seeds_differ(make: Any) -> None:
    a, b = make(), make()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (40, 7)).astype(np.float32)
    obs_a, _ = a.reset(seed=5)
    obs_b, _ = b.reset(seed=5)
    assert np.array_equal(obs_a, obs_b)
    for action in actions:
        out_a, out_b = a.step(action), b.step(action)
        assert np.array_equal(out_a[0], out_b[0]) and out_a[1:4] == out_b[1:4]
    other, _ = b.reset(seed=6)
    assert not np.allclose(other[17:20], obs_a[17:20])  # a different target


def test_ik_controller_succeeds_in_19_of_20_episodes_well_within_the_time_limit(make: Any) -> None:
    env = make()
    controller = ArmIKController(env)
    results = []
    for seed in SEEDS:
        controller.reset()
        results.append(_run_episode(env, seed, controller.act))
    controller.close()
    steps = [n for ok, n, _ in results if ok]
    assert len(steps) >= 19, f"IK controller reached the target in only {len(steps)}/20 episodes"
    assert np.mean(steps) < env.max_steps / 4, f"mean {np.mean(steps):.1f} steps to success (limit {env.max_steps})"


def test_random_and_idle_policies_rarely_succeed(make: Any) -> None:
    """Contrast with the IK controller: success takes purposeful motion, it is not trivially true."""
    env = make()
    env.action_space.seed(0)
    random_successes = sum(_run_episode(env, seed, lambda _: env.action_space.sample())[0] for seed in SEEDS)
    assert random_successes <= 5
    idle_successes = sum(_run_episode(env, seed, lambda _: np.zeros(7, np.float32))[0] for seed in SEEDS)
    assert idle_successes == 0


def test_initial_distance_is_never_already_a_success(make: Any) -> None:
    env = make()
    for seed in range(50):
        _, info = env.reset(seed=seed)
        assert info["distance"] >= env.MIN_START_DISTANCE > env.success_threshold
        assert np.all(env._target >= env.WORKSPACE_LOW) and np.all(env._target <= env.WORKSPACE_HIGH)


def test_success_terminates_with_is_success_and_timeout_truncates_without(make: Any) -> None:
    env = make()
    controller = ArmIKController(env)
    ok, n, infos = _run_episode(env, 3, controller.act)
    controller.close()
    assert ok and n < env.max_steps
    assert all(not i["is_success"] for i in infos[:-1])
    last = infos[-1]
    assert last["distance"] < env.success_threshold and last["reward_components"]["success"] == env.SUCCESS_BONUS

    short = make(episode_s=0.5)  # 12 control steps at 24 Hz
    assert short.max_steps == 12
    short.reset(seed=3)
    for k in range(1, 13):
        _, _, terminated, truncated, info = short.step(np.zeros(7, np.float32))
        assert not terminated and truncated == (k == 12)
        assert info["is_success"] is False and isinstance(info["distance"], float)


def test_get_state_set_state_restores_exactly_in_the_same_and_in_another_env(make: Any) -> None:
    env, other = make(), make()
    rng = np.random.default_rng(1)
    env.reset(seed=2)
    for action in rng.uniform(-1, 1, (15, 7)):
        env.step(action)
    state = env.get_state()
    assert all(isinstance(v, np.ndarray | float | int) for v in state.values())
    actions = rng.uniform(-1, 1, (30, 7))
    original = [env.step(a) for a in actions]

    other.reset(seed=99)
    other.step(np.ones(7))
    for target in (env, other):
        target.set_state(state)
        replay = [target.step(a) for a in actions]
        for (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) in zip(original, replay, strict=True):
            assert np.array_equal(o1, o2) and (r1, te1, tr1) == (r2, te2, tr2)
            assert i1["reward_components"] == i2["reward_components"]


def test_snapshot_module_restores_the_arm_including_the_rng(make: Any) -> None:
    """rlctl.envs.snapshot uses get_state/set_state; with the RNG restored, even the next reset matches."""
    env, other = make(), make()
    env.reset(seed=4)
    env.step(np.full(7, 0.5))
    snap = capture_state(env)
    first = [env.step(np.full(7, -0.3))[0] for _ in range(5)] + [env.reset()[0]]
    other.reset(seed=123)
    restore_state(other, snap)
    second = [other.step(np.full(7, -0.3))[0] for _ in range(5)] + [other.reset()[0]]
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_set_state_rejects_wrongly_shaped_arrays(make: Any) -> None:
    env = make()
    env.reset(seed=0)
    state = env.get_state()
    state["joint_positions"] = np.zeros(6)
    with pytest.raises(ValueError, match="joint_positions"):
        env.set_state(state)


@pytest.mark.parametrize("ctrl_hz", [7, 25, 0, -24])
def test_ctrl_hz_that_does_not_divide_240_raises(ctrl_hz: int) -> None:
    with pytest.raises(ValueError, match="ctrl_hz"):
        ArmReachEnv(ctrl_hz=ctrl_hz)


def test_unknown_reward_type_raises() -> None:
    with pytest.raises(ValueError, match="reward_type"):
        ArmReachEnv(reward_type="shaped")


def test_ctrl_hz_sets_physics_substeps_and_episode_length(make: Any) -> None:
    env = make(ctrl_hz=48, episode_s=2.0)
    assert env.substeps == 5 and env.max_steps == 96 and env.metadata["render_fps"] == 48


def test_sparse_reward_is_minus_one_per_non_success_step_and_zero_on_success(make: Any) -> None:
    env = make(reward_type="sparse", episode_s=1.0)
    env.action_space.seed(0)
    _, n, infos = _run_episode(env, 0, lambda _: env.action_space.sample())
    assert n == env.max_steps and not infos[-1]["is_success"]
    assert all(i["reward_components"] == {"success": -1.0} for i in infos)

    env.reset(seed=0)
    controller = ArmIKController(env)
    ok, _, infos = _run_episode(env, 0, controller.act)
    controller.close()
    assert ok and infos[-1]["reward_components"] == {"success": 0.0}


def test_dense_reward_equals_sum_of_named_components(make: Any) -> None:
    env = make()
    env.reset(seed=1)
    rng = np.random.default_rng(2)
    prev = np.zeros(7)
    for action in rng.uniform(-1.5, 1.5, (30, 7)):
        _, reward, terminated, _, info = env.step(action)
        parts = info["reward_components"]
        assert set(parts) == {"distance", "action_rate", "success"}
        assert all(type(v) is float for v in parts.values())
        assert reward == sum(parts.values())
        clipped = np.clip(action, -1, 1)  # the action-rate term sees the action actually applied
        assert parts["action_rate"] == pytest.approx(-0.01 * np.sum((clipped - prev) ** 2))
        assert parts["distance"] == -info["distance"]
        prev = clipped
        if terminated:
            break


def test_controller_never_touches_the_env_simulation(make: Any) -> None:
    env = make()
    controller = ArmIKController(env)
    obs, _ = env.reset(seed=8)
    before = env.get_state()
    controller.act(obs)
    after = env.get_state()
    controller.close()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_rgb_array_render_is_a_small_image(make: Any) -> None:
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.shape == (240, 240, 3) and frame.dtype == np.uint8 and frame.std() > 0


def test_registered_ids_build_the_dense_and_sparse_variants() -> None:
    import gymnasium

    import rlctl.envs  # noqa: F401 - registers rlctl/* ids

    for env_id, kind in (("rlctl/ArmReach-v0", "dense"), ("rlctl/ArmReachSparse-v0", "sparse")):
        env = gymnasium.make(env_id)
        assert env.unwrapped.reward_type == kind
        env.close()
