"""The EnvPool Atari backend: the same emulation and preprocessing as the gymnasium stack, SAME_STEP semantics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("envpool")

import ale_py

from rlctl.envs.errors import EnvError
from rlctl.envs.make import make_vector_env
from rlctl.train.loop import train
from tests.helpers import small_config, stop_after

# Options under which the two backends run the very same frames: one no-op frame at reset, no sticky
# actions, no FIRE presses and no life-loss resets (those two differ, see envs/atari/envpool.py).
SAME = {"noop_max": 1, "repeat_action_probability": 0.0, "fire_reset": False, "terminal_on_life_loss": False}


def _pair(game: str, rom: str, max_steps: int) -> tuple[Any, Any]:
    pool = make_vector_env(f"ALE/{game}-v5", 1, "envpool", SAME, max_episode_steps=max_steps)
    gym_envs: Any = make_vector_env(f"ALE/{game}-v5", 1, "sync", SAME, max_episode_steps=max_steps)
    ale = gym_envs.envs[0].unwrapped.ale  # EnvPool seeds env 0's ALE with the pool's seed: do the same
    ale.setInt("random_seed", 0)
    ale.loadROM(ale_py.roms.get_rom_path(rom))
    pool.reset(seed=0)
    gym_envs.reset()
    return pool, gym_envs


@pytest.mark.parametrize(("game", "rom"), [("Breakout", "breakout"), ("Pong", "pong")])
def test_both_backends_agree_on_a_fixed_action_sequence(game: str, rom: str) -> None:
    pool, gym_envs = _pair(game, rom, max_steps=200)
    rng = np.random.default_rng(0)
    games = 0
    for _ in range(450):  # crosses game ends (Breakout: all lives lost) and time limits
        action = rng.integers(gym_envs.single_action_space.n, size=1)
        a, b = pool.step(action), gym_envs.step(action)
        assert np.abs(a[0].astype(int) - b[0]).max() <= 1  # the resize's rounding
        for x, y in zip(a[1:4], b[1:4], strict=True):  # clipped rewards, terminated, truncated
            assert np.array_equal(x, y)
        assert np.array_equal(a[4]["game_over"], b[4]["game_over"])
        fa, fb = a[4].get("final_info", {}), b[4].get("final_info", {})
        assert bool(fa.get("_game_return", [False])[0]) == bool(fb.get("_game_return", [False])[0])
        if fb.get("_game_return", [False])[0]:
            games += 1
            assert fa["game_return"][0] == fb["game_return"][0] and fa["game_length"][0] == fb["game_length"][0]
            if b[3][0]:  # a time limit: the bootstrap observation must agree too
                assert np.abs(a[4]["final_obs"][0].astype(int) - b[4]["final_obs"][0]).max() <= 1
    assert games >= 2
    pool.close()
    gym_envs.close()


def test_lost_lives_end_learner_episodes_and_games_are_reported_whole() -> None:
    envs = make_vector_env("ALE/Breakout-v5", 2, "envpool", {"repeat_action_probability": 0.0})
    obs, _ = envs.reset(seed=1)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    lives_lost, games, lengths = 0, 0, []
    for _ in range(1200):
        obs, _, terminated, truncated, info = envs.step(rng.integers(4, size=2))
        done = terminated | truncated
        lives_lost += int(done.sum())
        if done.any():
            assert set(np.nonzero(info["_final_obs"])[0]) == set(np.nonzero(done)[0])
            assert not info["game_over"][done].any()  # the returned observation starts the next life or game
            final = info["final_info"]
            for i in np.nonzero(final["_game_return"])[0]:
                games += 1
                lengths.append(int(final["game_length"][i]))
    envs.close()
    assert games >= 1 and lives_lost >= 5 * games  # five lives per game
    assert min(lengths) > 50  # a game spans its lives; the counter is not reset by a lost life


def test_short_training_run_on_envpool_and_a_resume_with_new_games(tmp_path: Path) -> None:
    cfg = small_config("ALE/Pong-v5", env={"num_envs": 2, "vectorization": "envpool", "max_episode_steps": 50},
                       ppo={"total_timesteps": 256, "num_steps": 32, "minibatch_size": 32},
                       run={"checkpoint_every": 64, "sampler": "inline", "overlap": False})
    part = train(cfg, tmp_path / "run", on_update=stop_after(2), progress=False)
    assert part.global_step == 128 and part.episode_returns  # 50-step games ended and were logged
    resumed = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert resumed.global_step == 256 and resumed.episode_returns


def test_bad_uses_of_the_envpool_backend_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnvError, match="ALE/<Game>-v5"):
        make_vector_env("CartPole-v1", 2, "envpool")
    with pytest.raises(EnvError, match="does not take"):
        make_vector_env("ALE/Pong-v5", 2, "envpool", {"grayscale": False})
    with pytest.raises(EnvError, match="reward hooks"):
        make_vector_env("ALE/Pong-v5", 2, "envpool", reward_fn=lambda *a: (0.0, {}))
    monkeypatch.setitem(sys.modules, "envpool", None)
    with pytest.raises(EnvError, match=r"rlctl\[envpool\]"):
        make_vector_env("ALE/Pong-v5", 2, "envpool")
