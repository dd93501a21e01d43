"""Sim-to-real wrappers: each perturbation does what it says, is seeded, and is recorded at reset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("pybullet")

import rlctl.envs  # noqa: F401 - registers rlctl/* ids
from rlctl.envs.errors import EnvError
from rlctl.envs.ids import find_wrapper
from rlctl.envs.make import make_env, make_vector_env
from rlctl.envs.uav.latency import ActionDelay, CommandHistory, ObservationDelay
from rlctl.envs.uav.sim2real import (
    HELD_OUT_DYNAMICS,
    RANDOMIZED_DYNAMICS,
    DynamicsRandomization,
    RandomPush,
    Range,
    SensorNoise,
)
from rlctl.envs.uav.tasks import QuadHoverEnv


def _rollout(env: gym.Env, actions: np.ndarray, seed: int = 0) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    return np.array([obs] + [env.step(a)[0] for a in actions])


def test_randomized_parameters_are_recorded_seeded_and_inside_their_ranges() -> None:
    env = gym.make("rlctl/QuadHover-v0", sim2real="randomized")
    draws = [env.reset(seed=s)[1]["sim2real"]["dynamics"] for s in (0, 1, 0)]
    assert draws[0] == draws[2] and draws[0] != draws[1]
    nominal = env.unwrapped.nominal
    for name, r in RANDOMIZED_DYNAMICS.items():
        values = np.atleast_1d(draws[1][name])
        ref = np.atleast_1d(getattr(nominal, name)) if r.op == "scale" else 1.0
        assert np.all(values >= r.low * ref - 1e-12) and np.all(values <= r.high * ref + 1e-12), name
    assert env.unwrapped.params.mass == draws[2]["mass"]  # the env flies the vehicle drawn last
    env.close()


def test_strength_moves_each_draw_toward_the_nominal_vehicle_on_the_same_stream() -> None:
    draws = {}
    for strength in (1.0, 0.5, 0.0):
        env = gym.make("rlctl/QuadHover-v0", sim2real="randomized", sim2real_strength=strength)
        info = env.reset(seed=4)[1]["sim2real"]
        draws[strength] = info
        env.close()
    nominal = QuadHoverEnv().nominal
    full, half, none = (draws[s]["dynamics"] for s in (1.0, 0.5, 0.0))
    assert half["mass"] == pytest.approx((full["mass"] + nominal.mass) / 2)  # linear ranges: halfway
    assert half["motor_tau"] == pytest.approx((full["motor_tau"] * nominal.motor_tau) ** 0.5)  # log: geometric
    assert half["thrust_noise"] == pytest.approx(full["thrust_noise"] / 2)  # absolute, nominal 0
    for name in RANDOMIZED_DYNAMICS:
        np.testing.assert_allclose(none[name], getattr(nominal, name), rtol=1e-12, err_msg=name)
    assert np.allclose(draws[0.5]["gyro_bias"], np.array(draws[1.0]["gyro_bias"]) / 2)
    assert draws[0.0]["obs_delay"] == draws[0.0]["action_delay"] == 0
    assert draws[0.5]["obs_delay"] == int(draws[1.0]["obs_delay"] / 2 + 0.5)
    from rlctl.sim2real_eval import without_set

    assert without_set({"sim2real": "randomized", "sim2real_strength": 0.5}) == {}  # evaluations fly full strength


def test_at_strength_zero_the_randomized_set_flies_exactly_like_the_nominal_env() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (300, 4)).astype(np.float32)
    weak = gym.make("rlctl/QuadHover-v0", sim2real="randomized", sim2real_strength=0.0)
    np.testing.assert_array_equal(_rollout(weak, actions, seed=7),
                                  _rollout(gym.make("rlctl/QuadHover-v0"), actions, seed=7))


def test_a_vector_envs_set_attr_reaches_every_perturbation_from_the_next_reset() -> None:
    envs = make_vector_env("rlctl/QuadHover-v0", 2, "sync", {"sim2real": "randomized", "error_integral": True})
    envs.reset(seed=1)
    envs.set_attr("sim2real_strength", 0.0)  # what the training loop's randomization ramp does
    assert envs.get_attr("sim2real_strength") == (0.0, 0.0)
    scaled = [find_wrapper(e, kind) for e in envs.envs
              for kind in (DynamicsRandomization, SensorNoise, RandomPush, ActionDelay, ObservationDelay)]
    assert [w.strength for w in scaled] == [0.0] * 10
    _, infos = envs.reset(seed=2)
    assert infos["sim2real"]["dynamics"]["mass"].tolist() == [QuadHoverEnv().nominal.mass] * 2
    with pytest.raises(ValueError, match="must lie in"):
        envs.envs[0].set_wrapper_attr("sim2real_strength", 1.5)
    envs.close()


def test_at_a_higher_control_rate_the_sets_keep_their_latency_in_seconds() -> None:
    for level, hz, action, obs in [("randomized", 48, (0, 2), (0, 3)), ("randomized", 120, (0, 5), (0, 8)),
                                   ("held-out", 120, (3, 5), (3, 8))]:
        env = gym.make("rlctl/QuadHover-v0", sim2real=level, ctrl_hz=hz)
        assert (find_wrapper(env, ActionDelay).steps, find_wrapper(env, ObservationDelay).steps) == (action, obs)
        delays = [(i["sim2real"]["action_delay"], i["sim2real"]["obs_delay"]) for i in
                  (env.reset(seed=s)[1] for s in range(40))]
        assert (max(d[0] for d in delays), max(d[1] for d in delays)) == (action[1], obs[1])  # the whole range
        env.close()


def test_held_out_ranges_contain_the_training_ranges() -> None:
    for name, r in RANDOMIZED_DYNAMICS.items():
        wide = HELD_OUT_DYNAMICS[name]
        assert wide.low <= r.low and wide.high >= r.high and (wide.low, wide.high) != (r.low, r.high), name


def test_a_heavier_or_weaker_vehicle_sinks_on_the_nominal_hover_command() -> None:
    for name in ("mass", "kf"):
        factor = 1.2 if name == "mass" else 0.8
        env = DynamicsRandomization(QuadHoverEnv(drag=False), {name: Range(factor, factor)})
        env.reset(seed=0)
        base = env.unwrapped
        state = base.get_state()
        state.update(pos=np.array([0.0, 0.0, 1.5]), quat=np.array([0, 0, 0, 1.0]), lin=np.zeros(3), ang=np.zeros(3))
        base.set_state(state)
        for _ in range(24):
            env.step(base.neutral_action)
        assert base.vel[2] < -0.5, name
        env.close()


def test_observation_delay_shows_the_observation_from_d_steps_ago() -> None:
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (15, 4))
    plain = _rollout(QuadHoverEnv(), actions)
    delayed_env = ObservationDelay(QuadHoverEnv(), steps=(2, 2))
    delayed = _rollout(delayed_env, actions)
    assert delayed_env.delay == 2
    np.testing.assert_array_equal(delayed[3:], plain[1:-2])
    np.testing.assert_array_equal(delayed[:3], np.repeat(plain[:1], 3, axis=0))


def test_action_delay_executes_the_previous_action() -> None:
    actions = np.random.default_rng(1).uniform(-0.3, 0.3, (15, 4))
    base = QuadHoverEnv()
    shifted = np.vstack([base.neutral_action[None], actions[:-1]])
    plain = _rollout(base, shifted)
    delayed = _rollout(ActionDelay(QuadHoverEnv(), steps=(1, 1)), actions)
    # the last-action part of the observation differs by design; the flight itself is identical
    flight = slice(0, 18)
    np.testing.assert_array_equal(delayed[:, flight], plain[:, flight])


def test_command_history_shows_commands_the_action_delay_has_not_executed_yet() -> None:
    env = CommandHistory(ActionDelay(QuadHoverEnv(), steps=(2, 2)), steps=3)
    base = env.unwrapped
    width = 4
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (QuadHoverEnv().observation_space.shape[0] + 3 * width,)
    np.testing.assert_array_equal(obs[-3 * width:], np.tile(base.neutral_action, 3))
    commands = np.random.default_rng(2).uniform(-0.5, 0.5, (4, width)).astype(np.float32)
    for t, command in enumerate(commands):
        obs, *_ = env.step(command)
        shown = obs[-3 * width:].reshape(3, width)
        np.testing.assert_array_equal(shown[-1], command)  # the newest, at once, last
        np.testing.assert_array_equal(shown[2 - min(t, 2):], commands[max(0, t - 2):t + 1])  # oldest first
    # the base env's own history (the executed action) is two commands behind
    np.testing.assert_array_equal(base.last_action, commands[1])


def test_command_history_clips_to_the_action_bounds_and_resets_to_neutral() -> None:
    env = CommandHistory(QuadHoverEnv(), steps=2)
    env.reset(seed=0)
    obs, *_ = env.step(np.full(4, 5.0, np.float32))
    np.testing.assert_array_equal(obs[-4:], env.action_space.high)
    np.testing.assert_array_equal(obs[-8:-4], env.unwrapped.neutral_action)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs[-8:], np.tile(env.unwrapped.neutral_action, 2))
    with pytest.raises(ValueError, match="steps"):
        CommandHistory(QuadHoverEnv(), steps=0)


def test_quad_kwarg_command_history_sits_after_the_integral_and_passes_the_env_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    kwargs = {"action_mode": "ctbr", "error_integral": True, "sim2real": "randomized"}
    plain = make_env("rlctl/QuadHover-v0", kwargs)
    env = make_env("rlctl/QuadHover-v0", {**kwargs, "command_history": 5})
    dim = plain.observation_space.shape[0]
    assert env.observation_space.shape == (dim + 5 * 4,)
    np.testing.assert_array_equal(env.reset(seed=3)[0][:dim], plain.reset(seed=3)[0])  # the rest is unchanged
    check_env(make_env("rlctl/QuadHover-v0", {"command_history": 2}), skip_render_check=True)
    with pytest.raises(EnvError, match="command_history"):
        make_env("rlctl/QuadHover-v0", {"command_history": -1})


def test_sensor_noise_has_the_configured_spread_and_a_constant_gyro_bias() -> None:
    std = 0.01
    env = SensorNoise(QuadHoverEnv(drag=False), std={"velocity": std}, gyro_bias=0.05)
    clean = QuadHoverEnv(drag=False)
    obs, info = env.reset(seed=2)
    clean_obs, _ = clean.reset(seed=2)
    noise, bias = [obs[12:15] - clean_obs[12:15]], [obs[15:18] - clean_obs[15:18]]
    for _ in range(200):
        action = clean.neutral_action
        obs = env.step(action)[0]
        clean_obs = clean.step(action)[0]
        noise.append(obs[12:15] - clean_obs[12:15])
        bias.append(obs[15:18] - clean_obs[15:18])
    assert np.std(noise) == pytest.approx(std, rel=0.15)
    np.testing.assert_allclose(np.array(bias), np.tile(info["sim2real"]["gyro_bias"], (201, 1)), atol=1e-6)
    np.testing.assert_array_equal(obs[:12], clean_obs[:12])  # untouched parts stay exact


def test_random_pushes_change_the_velocity_and_are_counted() -> None:
    env = RandomPush(QuadHoverEnv(drag=False), interval_s=(0.25, 0.25), speed=(0.5, 0.5))
    assert env.reset(seed=0)[1]["sim2real"]["first_push_step"] == 12  # 0.25 s at 48 Hz
    base = env.unwrapped
    before = base.vel.copy()
    info: dict = {}
    for _ in range(base.ctrl_hz // 4):
        info = env.step(base.neutral_action)[4]
    assert info["pushes"] == 1
    assert np.linalg.norm(base.vel - before) > 0.3


def test_unknown_sets_and_parameters_are_clear_errors() -> None:
    with pytest.raises(EnvError, match="held-out"):
        make_env("rlctl/QuadHover-v0", {"sim2real": "hard"})
    with pytest.raises(ValueError, match="unknown parameters"):
        DynamicsRandomization(QuadHoverEnv(), {"wingspan": Range(1, 2)})
    with pytest.raises(ValueError, match="no parts named"):
        SensorNoise(QuadHoverEnv(), std={"lidar": 0.1})
    with pytest.raises(EnvError, match="has none"):
        make_env("rlctl/QuadHover-v0", {"sim2real_strength": 0.5})


def test_error_integral_accumulates_a_near_offset_holds_a_far_one_and_resets() -> None:
    from rlctl.envs.uav.integral import TargetErrorIntegral

    env = gym.make("rlctl/QuadHover-v0", error_integral=True).env  # without OrderEnforcing
    assert isinstance(env, TargetErrorIntegral)
    base = env.unwrapped
    assert env.observation_space.shape == (base.observation_space.shape[0] + 3,)
    obs, _ = env.reset(seed=0)
    assert np.all(obs[-3:] == 0.0)

    def hold_at(offset: tuple[float, float, float], steps: int) -> np.ndarray:
        for _ in range(steps):
            state = base.get_state()  # pin the vehicle so the error stays what the test set
            state.update(pos=base.target - np.array(offset), quat=np.array([0, 0, 0, 1.0]), lin=np.zeros(3),
                         ang=np.zeros(3))
            base.set_state(state)
            obs = env.step(base.neutral_action)[0]
        return obs

    obs = hold_at((0.0, 0.0, 0.1), 10)  # error +0.1 m in z, inside the radius: integrates
    expected = 0.1 * 10 * base.dt / env.limit
    assert obs[-1] == pytest.approx(expected, rel=0.05) and np.all(np.abs(obs[-3:-1]) < 1e-3)
    obs = hold_at((0.0, 0.0, -1.0), 10)  # 1 m away: holds
    assert obs[-1] == pytest.approx(expected, rel=0.05)
    obs = hold_at((0.0, 0.0, 0.2), 200)  # clipped at the limit
    assert obs[-1] == pytest.approx(1.0)
    obs, _ = env.reset(seed=1)
    assert np.all(obs[-3:] == 0.0)
    env.close()


class _DelayProbe(gym.Env):
    """One-step episodes that fail exactly when the episode's delays are (3, 2), read back from the wrappers."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.hard = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        options = options or {}
        self.hard = (options.get("obs_delay"), options.get("action_delay")) == (3, 2)
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(1, np.float32), 0.0, False, True, {"is_success": not self.hard}


def test_forced_delays_are_used_in_range_and_rejected_outside_it() -> None:
    env = ObservationDelay(ActionDelay(QuadHoverEnv(), (0, 2)), (0, 3))
    _, info = env.reset(seed=0, options={"obs_delay": 3, "action_delay": 1})
    assert (info["sim2real"]["obs_delay"], info["sim2real"]["action_delay"]) == (3, 1)
    with pytest.raises(ValueError, match="outside"):
        env.reset(seed=0, options={"obs_delay": 4})


def test_latency_priority_moves_episodes_to_the_failing_pair_and_keeps_the_others() -> None:
    from rlctl.envs.uav.sim2real import LatencyPriority

    env = LatencyPriority(ObservationDelay(ActionDelay(_DelayProbe(), (0, 2)), (0, 3)), share=0.5)
    assert len(env.pairs) == 12  # ranges read from the delay wrappers inside
    counts = {pair: 0 for pair in env.pairs}
    env.reset(seed=0)
    for _ in range(3000):
        counts[env.pairs[env._current]] += 1
        env.step(np.zeros(1, np.float32))
        env.reset()
    share_hard = counts[(3, 2)] / 3000
    # uniform would give 1/12; with every other pair succeeding, half the episodes go to the failing one
    assert 0.45 < share_hard < 0.6
    assert min(counts.values()) > 50
    assert env.probabilities()[env.pairs.index((3, 2))] == pytest.approx(0.5 + 0.5 / 12, abs=0.01)


def test_latency_priority_is_seeded_training_only_and_needs_latency() -> None:
    from rlctl.sim2real_eval import without_set

    env = gym.make("rlctl/QuadHover-v0", sim2real="randomized", latency_priority=0.5)
    delays = [(i["sim2real"]["obs_delay"], i["sim2real"]["action_delay"])
              for i in (env.reset(seed=s)[1] for s in range(8))]
    again = gym.make("rlctl/QuadHover-v0", sim2real="randomized", latency_priority=0.5)
    assert delays == [(i["sim2real"]["obs_delay"], i["sim2real"]["action_delay"])
                      for i in (again.reset(seed=s)[1] for s in range(8))]
    assert without_set({"sim2real": "randomized", "latency_priority": 0.5, "error_integral": True}) == {
        "error_integral": True}
    with pytest.raises(EnvError, match="latency_priority"):
        make_env("rlctl/QuadHover-v0", {"latency_priority": 0.5})
    with pytest.raises(ValueError, match="share"):
        from rlctl.envs.uav.sim2real import LatencyPriority

        LatencyPriority(ObservationDelay(ActionDelay(QuadHoverEnv(), (0, 1)), (0, 1)), share=1.5)
    with pytest.raises(ValueError, match="no ObservationDelay"):
        LatencyPriority(ActionDelay(QuadHoverEnv(), (0, 1)))
