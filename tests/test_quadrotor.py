"""The PyBullet quadrotor: physics sanity, task semantics, determinism, snapshots and the PID baseline."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("pybullet")

from rlctl import envs
from rlctl.envs.controllers.quad_pid import QuadPID
from rlctl.envs.snapshot import capture_state, restore_state
from rlctl.envs.uav.model import QuadParams
from rlctl.envs.uav.tasks import QuadGatesEnv, QuadHoverEnv, QuadWaypointEnv


def _place(env: QuadHoverEnv, pos: tuple[float, float, float], omega: float | None = None) -> None:
    """Put the vehicle level and at rest at ``pos`` (motors at ``omega``, default hover speed)."""
    state = env.get_state()
    state.update(pos=np.array(pos, dtype=float), quat=np.array([0.0, 0.0, 0.0, 1.0]), lin=np.zeros(3),
                 ang=np.zeros(3), omega=np.full(4, env.params.hover_omega if omega is None else omega))
    env.set_state(state)


@pytest.mark.parametrize("cls", [QuadHoverEnv, QuadWaypointEnv, QuadGatesEnv])
def test_env_passes_gymnasium_checker(cls: type) -> None:
    env = cls()
    check_env(env, skip_render_check=True)
    env.close()


def test_free_fall_accelerates_at_g() -> None:
    env = QuadHoverEnv(drag=False, params=QuadParams(motor_tau=0.0))
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 2.0), omega=0.0)
    for _ in range(10):
        env.step(-np.ones(4))  # zero thrust
    t = 10 * env.dt
    assert env.vel[2] / t == pytest.approx(-env.params.gravity, rel=0.01)
    env.close()


def test_open_loop_hover_command_holds_altitude_for_one_second() -> None:
    env = QuadHoverEnv(drag=False)
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 1.0))
    for _ in range(env.ctrl_hz):
        env.step(env.neutral_action)
    assert abs(env.vel[2]) < 1e-3 and abs(env.pos[2] - 1.0) < 1e-3
    # and the hover command really is the balance point: 5% more thrust climbs
    _place(env, (0.0, 0.0, 1.0))
    for _ in range(env.ctrl_hz // 2):
        env.step(env.neutral_action + 0.05)
    assert env.vel[2] > 0.1
    env.close()


def test_raising_motors_1_and_3_yaws_positive() -> None:
    env = QuadHoverEnv(drag=False, params=QuadParams(motor_tau=0.0))
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 1.0))
    action = env.neutral_action.copy()
    action[[1, 3]] += 0.05
    action[[0, 2]] -= 0.05
    for _ in range(5):
        env.step(action)
    assert env.rates[2] > 0.1  # yaw rate, body z
    assert np.all(np.abs(env.rates[:2]) < 1e-6)  # a pure yaw torque: no roll or pitch
    env.close()


def test_raising_the_left_motors_rolls_right_side_down() -> None:
    # motors 2 and 3 sit at +y; more thrust there is a positive roll torque about body x
    env = QuadHoverEnv(drag=False, params=QuadParams(motor_tau=0.0))
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 1.0))
    action = env.neutral_action.copy()
    action[[2, 3]] += 0.02
    env.step(action)
    assert env.rates[0] > 0 and abs(env.rates[1]) < 1e-6 * abs(env.rates[0]) + 1e-9


def test_motor_lag_is_first_order_with_the_configured_time_constant() -> None:
    tau = 0.05
    env = QuadHoverEnv(params=QuadParams(motor_tau=tau), ctrl_hz=240)
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 1.0), omega=0.0)
    target = np.sqrt(env.params.max_thrust / env.params.kf)
    steps = round(tau * 240)
    for _ in range(steps):
        env.step(np.ones(4))
    assert env.omega[0] / target == pytest.approx(1 - np.exp(-1), abs=0.01)
    env.close()


def test_same_seed_gives_the_same_trajectory() -> None:
    def rollout(seed: int) -> np.ndarray:
        env = gym.make("rlctl/QuadWaypoint-v0", sim2real="randomized")
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        out = [obs]
        for _ in range(60):
            obs, *_ = env.step(env.action_space.sample() * 0.1 + env.unwrapped.neutral_action)
            out.append(obs)
        env.close()
        return np.array(out)

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_crash_terminates_with_a_reason_and_timeout_truncates() -> None:
    env = QuadHoverEnv(episode_s=1.0)
    env.reset(seed=0)
    done, info = False, {}
    while not done:  # motors off: falls to the ground
        _, _reward, terminated, truncated, info = env.step(-np.ones(4))
        done = terminated or truncated
    assert terminated and not truncated
    assert info["failure_reason"] == "crash_ground" and not info["is_success"]
    assert info["reward_components"]["crash"] < 0

    pid = QuadPID(env)
    obs, _ = env.reset(seed=1)
    steps, done = 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(pid.act(obs))
        steps += 1
        done = terminated or truncated
    assert truncated and not terminated and steps == env.ctrl_hz  # 1 s
    assert "failure_reason" not in info
    env.close()


def test_tilting_past_the_limit_terminates() -> None:
    env = QuadHoverEnv(max_tilt=0.5)
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 1.5))
    info: dict = {}
    for _ in range(100):
        _, _, terminated, _, info = env.step(np.array([-1.0, -1.0, 1.0, 1.0]))  # full roll
        if terminated:
            break
    assert info["failure_reason"] == "over_tilt"


def test_reward_is_the_sum_of_its_named_components() -> None:
    env = gym.make("rlctl/QuadHover-v0")
    env.reset(seed=0)
    for _ in range(20):
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(sum(info["reward_components"].values()))
    env.close()


@pytest.mark.parametrize(("action_mode", "ctrl_hz"), [("motors", 48), ("ctbr", 48), ("ctbr", 120)])
def test_pid_holds_hover_within_5cm_for_5s(action_mode: str, ctrl_hz: int) -> None:
    env = QuadHoverEnv(episode_s=8.0, action_mode=action_mode, ctrl_hz=ctrl_hz)
    pid = QuadPID(env)
    obs, _ = env.reset(seed=0)
    errors = []
    for step in range(8 * env.ctrl_hz):
        obs, _, terminated, _, info = env.step(pid.act(obs))
        assert not terminated
        if step >= 3 * env.ctrl_hz:  # after 3 s of settling, 5 s of hover
            errors.append(info["distance"])
    assert max(errors) < 0.05
    env.close()


def test_pid_refuses_an_env_that_is_not_a_quadrotor() -> None:
    with pytest.raises(ValueError, match="quadrotor"):
        QuadPID(gym.make("CartPole-v1"))


def test_pid_succeeds_on_waypoints_and_random_actions_do_not() -> None:
    env = QuadWaypointEnv()
    pid = QuadPID(env)
    wins = {"pid": 0, "random": 0}
    env.action_space.seed(0)
    for seed in range(5):
        for who in wins:
            obs, _ = env.reset(seed=seed)
            pid.reset()
            done = False
            while not done:
                action = pid.act(obs) if who == "pid" else env.action_space.sample()
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            wins[who] += info["is_success"]
    assert wins == {"pid": 5, "random": 0}
    env.close()


def test_snapshot_restores_the_flight_exactly() -> None:
    env = envs.env_factory("rlctl/QuadHover-v0")()
    env.reset(seed=5)
    actions = np.random.default_rng(0).uniform(-0.2, 0.2, (40, 4))
    for a in actions[:10]:
        env.step(a)
    state = capture_state(env)
    first = [env.step(a)[0] for a in actions[10:]]
    restore_state(env, state)
    second = [env.step(a)[0] for a in actions[10:]]
    assert np.array_equal(np.array(first), np.array(second))
    env.close()


def test_ctbr_mode_tracks_a_body_rate_command() -> None:
    env = QuadHoverEnv(action_mode="ctbr", drag=False, max_tilt=3.0)
    env.reset(seed=0)
    _place(env, (0.0, 0.0, 1.5))
    action = env.neutral_action.copy()
    action[1] = 1.0 / env.max_body_rate  # 1 rad/s roll
    rates = []
    for _ in range(30):
        env.step(action)
        rates.append(env.rates[0])
    assert rates[6] > 0.8 and max(rates) < 1.3 and rates[-1] == pytest.approx(1.0, abs=0.06)
    env.close()


def test_ctbr_rate_loop_integral_cancels_an_uneven_motor(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlctl.envs.uav.quadrotor as quadrotor

    def residual_roll_rate() -> float:
        env = QuadHoverEnv(action_mode="ctbr", drag=False, max_tilt=3.0,
                           params=QuadParams(motor_scale=(1.08, 1.0, 1.0, 1.0)))
        env.reset(seed=0)
        _place(env, (0.0, 0.0, 1.5))
        for _ in range(64):  # 1.3 s of "hold zero body rates"
            env.step(env.neutral_action)
        rates = env.rates.copy()
        env.close()
        return float(np.linalg.norm(rates[:2]))

    assert residual_roll_rate() < 0.06
    monkeypatch.setattr(quadrotor, "RATE_KI", np.zeros(3))  # a P-only loop leaves a steady rotation
    assert residual_roll_rate() > 0.5


@pytest.mark.parametrize("kwargs", [{"ctrl_hz": 50}, {"action_mode": "rpm"}, {"reward_weights": {"speed": 1.0}}])
def test_bad_settings_raise_clear_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        QuadHoverEnv(**kwargs)


def test_gates_count_only_inside_the_opening() -> None:
    env = QuadGatesEnv()
    pid = QuadPID(env)
    wins = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        pid.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(pid.act(obs))
            done = terminated or truncated
        wins += info["is_success"]
    assert wins == 3

    def fly_through(lateral: float, vertical: float) -> dict:
        env.reset(seed=0)
        centre, n = env.waypoints[0], env.normals[0]
        side = np.array([-n[1], n[0], 0.0])
        state = env.get_state()
        state.update(pos=centre - 0.15 * n + lateral * side + np.array([0, 0, vertical]), lin=1.0 * n,
                     ang=np.zeros(3), quat=np.array([0.0, 0.0, 0.0, 1.0]))
        env.set_state(state)
        info: dict = {}
        for _ in range(20):
            _, _, terminated, _, info = env.step(env.neutral_action)
            if terminated or info["waypoint"] > 0:
                break
        return info

    assert fly_through(0.0, 0.0)["waypoint"] == 1
    assert fly_through(0.6, 0.0)["failure_reason"] == "missed_gate"
    assert fly_through(0.28, 0.0)["failure_reason"] == "collision"  # into the side bar
    env.close()
