"""Atari preprocessing: observation format, reward clipping, episodic life, true game scores, fire reset."""

from __future__ import annotations

import sys
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ale_py")

from rlctl.envs.atari import AtariFrames, EpisodicLife, FireReset, _area_taps, make_atari_env
from rlctl.envs.errors import EnvError


def _wrappers(env: gym.Env) -> list[type]:
    out: list[type] = []
    node: Any = env
    while isinstance(node, gym.Wrapper):
        out.append(type(node))
        node = node.env
    return out


def _play(env: gym.Env, rng: np.random.Generator) -> tuple[Any, Any, bool, bool, dict]:
    """One uniformly random action."""
    return env.step(int(rng.integers(cast(gym.spaces.Discrete, env.action_space).n)))


def test_observations_are_uint8_stacks_of_four_84x84_frames_newest_last() -> None:
    env = make_atari_env("ALE/Pong-v5")
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (4, 84, 84) and obs in env.observation_space
    rng = np.random.default_rng(0)
    for _ in range(5):
        new, *_ = _play(env, rng)
        assert new.dtype == np.uint8 and new.shape == (4, 84, 84)
        np.testing.assert_array_equal(new[:3], obs[1:])  # the stack shifts by one frame per step
        obs = new
    assert obs.max() > obs.min()  # a real screen, not a blank
    env.close()


def test_area_resize_averages_covered_pixels() -> None:
    idx, w = _area_taps(168, 84)  # an exact 2x shrink: each output is the mean of two inputs
    np.testing.assert_array_equal(idx[:, :3], [[0, 2, 4], [1, 3, 5]])
    np.testing.assert_allclose(w, 0.5)
    for n_in in (210, 160):
        idx, w = _area_taps(n_in, 84)
        np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-6)  # weights of each output pixel sum to one
        assert idx.max() == n_in - 1


def test_rewards_are_clipped_to_their_sign_and_the_raw_reward_is_kept_in_info() -> None:
    env = make_atari_env("ALE/SpaceInvaders-v5")  # aliens are worth 5 to 30 points
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    raws = []
    for _ in range(300):
        _, reward, terminated, truncated, info = _play(env, rng)
        assert reward == np.sign(info["raw_reward"])
        raws.append(info["raw_reward"])
        if terminated or truncated:
            env.reset()
    assert max(raws) > 1.0
    env.close()


def test_losing_a_life_ends_the_learners_episode_but_not_the_game() -> None:
    env = make_atari_env("ALE/Breakout-v5")
    _, info = env.reset(seed=1)
    assert info["lives"] == 5
    rng = np.random.default_rng(1)
    for _ in range(500):
        _, _, terminated, truncated, info = _play(env, rng)
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["lives"] == 4 and info["game_over"] is False and "game_return" not in info
    frame_at_loss = info["episode_frame_number"]
    _, info = env.reset()
    assert info["lives"] == 4  # same game: a new game would have 5 lives
    assert info["episode_frame_number"] > frame_at_loss  # the emulator's per-game frame counter went on
    env.close()


def test_game_return_is_the_raw_score_of_all_lives_and_only_reported_when_the_game_ends() -> None:
    env = make_atari_env("ALE/SpaceInvaders-v5")
    frame_rewards: list[float] = []  # ground truth: every emulator frame's reward, hidden reset steps included
    base: Any = env.unwrapped
    inner_step = base.step

    def spy(action: Any) -> Any:
        out = inner_step(action)
        frame_rewards.append(float(out[1]))
        return out

    base.step = spy
    _, info = env.reset(seed=2)
    assert info["game_over"] is False
    rng = np.random.default_rng(2)
    life_returns, life_return, steps, life_losses = [], 0.0, 0, 0
    for _ in range(5000):
        _, _, terminated, truncated, info = _play(env, rng)
        steps += 1
        life_return += info["raw_reward"]
        assert isinstance(info["game_over"], bool)
        if not info["game_over"]:
            assert "game_return" not in info and "game_length" not in info
        if terminated or truncated:
            life_returns.append(life_return)
            life_return = 0.0
            if info["game_over"]:
                break
            life_losses += 1
            env.reset()
    assert info["game_over"] and life_losses >= 1
    assert info["game_return"] == pytest.approx(sum(frame_rewards))
    assert info["game_return"] > max(life_returns) > 0  # the whole game's score, not the last life's
    assert info["game_length"] >= steps  # plus the NOOP/FIRE steps taken inside resets
    env.close()


def test_time_limit_counts_agent_steps_per_game_across_lives() -> None:
    env = make_atari_env("ALE/Breakout-v5", max_episode_steps=100)
    assert env.unwrapped.ale.getInt("max_num_frames_per_episode") == 0  # type: ignore[attr-defined]
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    life_losses = 0
    for _ in range(300):
        _, _, terminated, truncated, info = _play(env, rng)
        if info["game_over"]:
            break
        if terminated:
            life_losses += 1
            env.reset()
    assert truncated and info["game_over"] and info["game_length"] == 100
    assert life_losses >= 1  # the limit did not restart with each life
    _, info = env.reset()
    assert info["lives"] == 5  # truncation starts a new game
    env.close()


def test_a_game_that_ends_inside_a_reset_is_reported_on_the_next_step() -> None:
    def play_to_first_life_loss(env: gym.Env) -> dict:
        env.reset(seed=5)
        rng = np.random.default_rng(5)
        while True:
            _, _, terminated, _, info = _play(env, rng)
            if terminated:
                return info

    probe = make_atari_env("ALE/Breakout-v5")
    play_to_first_life_loss(probe)
    steps_to_loss = probe.get_wrapper_attr("game_length")  # FIRE presses of the first reset included
    probe.close()

    env = make_atari_env("ALE/Breakout-v5", max_episode_steps=steps_to_loss + 1)  # the limit hits the NOOP
    info = play_to_first_life_loss(env)  # the same game again, up to the life loss
    assert info["game_over"] is False
    _, reset_info = env.reset()  # NOOP after the life loss: the game is truncated in there
    assert reset_info["game_over"] is False and "game_return" not in reset_info
    _, reward, _, truncated, info = env.step(3)
    assert truncated and info["game_over"] and info["game_length"] == steps_to_loss + 1 and reward == 0
    assert info["episode_frame_number"] == reset_info["episode_frame_number"]  # nothing more was played
    _, info = env.reset()
    assert info["lives"] == 5
    env.close()


def test_fire_reset_launches_the_ball_in_breakout_after_every_life() -> None:
    def lives_lost_doing_nothing(fire_reset: bool) -> int:
        env = make_atari_env("ALE/Breakout-v5", fire_reset=fire_reset, noop_max=0, repeat_action_probability=0.0)
        env.reset(seed=0)
        lost = 0
        for _ in range(300):
            _, _, terminated, _, _ = env.step(0)  # NOOP only: the agent itself never fires
            if terminated:
                lost += 1
                env.reset()
        env.close()
        return lost

    assert lives_lost_doing_nothing(fire_reset=True) >= 2  # served after the reset and after the lost life
    assert lives_lost_doing_nothing(fire_reset=False) == 0  # without FIRE the ball never comes


def test_fire_reset_applies_to_games_with_fire_pong_included_and_not_to_others() -> None:
    breakout, pong, freeway = (make_atari_env(f"ALE/{g}-v5") for g in ("Breakout", "Pong", "Freeway"))
    assert FireReset in _wrappers(breakout) and EpisodicLife in _wrappers(breakout)
    assert FireReset in _wrappers(pong)  # harmless there, and what the published baselines did
    assert FireReset not in _wrappers(freeway)  # Freeway's actions are NOOP, UP, DOWN
    assert FireReset not in _wrappers(make_atari_env("ALE/Breakout-v5", fire_reset=False))
    assert AtariFrames in _wrappers(pong)
    for env in (breakout, pong, freeway):
        env.close()


def test_same_seed_gives_the_same_observations() -> None:
    def trajectory(seed: int) -> list[np.ndarray]:
        env = make_atari_env("ALE/Breakout-v5")  # sticky actions and noop resets both draw from the seed
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(150):
            obs, _, terminated, truncated, _ = _play(env, rng)
            out.append(obs)
            if terminated or truncated:
                out.append(env.reset()[0])
        env.close()
        return out

    first, again = trajectory(3), trajectory(3)
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_game_return_reaches_a_same_step_vector_env_through_final_info() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: make_atari_env("ALE/Breakout-v5")] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=4)
    rng = np.random.default_rng(4)
    for _ in range(600):
        _, _, terminated, truncated, infos = envs.step(rng.integers(4, size=2))
        final = infos.get("final_info", {})
        if final.get("_game_return", np.zeros(2, bool)).any():
            break
    done_game = final["_game_return"]
    assert (terminated | truncated)[done_game].all()
    assert final["game_over"][done_game].all() and (final["game_length"][done_game] > 0).all()
    assert not infos["game_over"][done_game].any()  # the top level is the new game's reset info
    envs.close()


def test_bad_ids_and_missing_ale_py_raise_env_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnvError, match="not an Atari"):
        make_atari_env("CartPole-v1")
    with pytest.raises(EnvError, match="ALE/Pong-v5"):
        make_atari_env("ALE/Pongg-v5")  # the message suggests the close match
    monkeypatch.setitem(sys.modules, "ale_py", None)  # what `import ale_py` sees when it is not installed
    with pytest.raises(EnvError, match=r"rlctl\[atari\]"):
        make_atari_env("ALE/Pong-v5")
