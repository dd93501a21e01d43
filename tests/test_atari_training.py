"""Atari through the whole product: spaces, CNN selection, presets, game-score accounting, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

from rlctl.agents.cnn import CnnActorCritic
from rlctl.agents.distributions import ActionSpec
from rlctl.agents.ppo import MinibatchStep, ppo_loss
from rlctl.envs.errors import EnvError
from rlctl.envs.make import make_env, make_vector_env
from rlctl.envs.snapshot import capture_state, restore_state
from rlctl.errors import UserError
from rlctl.evaluate import act, evaluate_policy
from rlctl.resolve import preset_for, resolve_config
from rlctl.runs import build_agent
from rlctl.sampling.collector import Collector
from rlctl.spaces import adapter_for, rollout_for
from rlctl.train.loop import train
from tests.helpers import small_config, weights

PONG = "ALE/Pong-v5"
BREAKOUT = "ALE/Breakout-v5"


def _metrics(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["value"]) for r in rows if r["tag"] == tag]


def test_image_observations_stay_uint8_and_the_rollout_stores_frames() -> None:
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    adapter = adapter_for(space, gym.spaces.Discrete(6))
    assert adapter.image_shape == (4, 84, 84) and adapter.obs_shape == (4, 84, 84)
    batch = np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    out = adapter.obs(batch)
    assert out.dtype == np.uint8 and np.array_equal(out, batch)
    rollout = rollout_for(adapter, 16, 3, torch.device("cpu"))
    assert rollout.obs.shape == (16, 3, 4, 84, 84) and rollout.obs.dtype == torch.uint8
    assert rollout.actions.dtype == torch.int64


def test_channels_last_images_are_rejected_with_a_clear_error() -> None:
    with pytest.raises(UserError, match="channels-first"):
        adapter_for(gym.spaces.Box(0, 255, (84, 84, 4), np.uint8), gym.spaces.Discrete(4))


def test_auto_encoder_picks_the_nature_cnn_for_atari_and_mismatches_are_user_errors() -> None:
    env = make_env(PONG)
    adapter = adapter_for(env.observation_space, env.action_space)
    env.close()
    agent = build_agent(small_config(PONG), adapter, torch.device("cpu"))
    assert isinstance(agent, CnnActorCritic) and type(agent.encoder).__name__ == "NatureCNN"
    impala = build_agent(small_config(PONG, policy={"encoder": "impala"}), adapter, torch.device("cpu"))
    assert type(impala.encoder).__name__ == "ImpalaCNN"
    with pytest.raises(UserError, match="does not fit image observations"):
        build_agent(small_config(PONG, policy={"encoder": "mlp"}), adapter, torch.device("cpu"))
    cartpole = adapter_for(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    with pytest.raises(UserError, match="does not fit vector observations"):
        build_agent(small_config("CartPole-v1", policy={"encoder": "nature"}), cartpole, torch.device("cpu"))
    with pytest.raises(UserError, match="CNN encoders only"):
        build_agent(small_config("CartPole-v1", policy={"precision": "bf16"}), cartpole, torch.device("cpu"))


def test_every_ale_id_gets_the_ppo_paper_atari_preset() -> None:
    name, _ = preset_for(BREAKOUT, None)
    assert name == "atari"
    cfg, _ = resolve_config("ALE/SpaceInvaders-v5")
    assert (cfg.env.num_envs, cfg.ppo.num_steps, cfg.ppo.update_epochs) == (8, 128, 4)
    assert cfg.batch_size // cfg.ppo.minibatch_size == 4
    assert cfg.ppo.learning_rate == pytest.approx(2.5e-4) and cfg.ppo.anneal_lr
    assert cfg.ppo.clip_coef == pytest.approx(0.1) and cfg.ppo.anneal_clip and cfg.ppo.ent_coef == pytest.approx(0.01)
    assert cfg.ppo.total_timesteps == 10_000_000
    assert (cfg.run.sampler, cfg.run.overlap, cfg.policy.precision) == ("process", True, "auto")
    assert preset_for("CartPole-v1", None)[0] == "CartPole-v1"


def test_make_env_builds_the_preprocessed_stack_and_bad_kwargs_are_env_errors() -> None:
    env = make_env(PONG, {"frame_stack": 2}, max_episode_steps=10)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 84, 84) and obs.dtype == np.uint8
    steps = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(0)
        steps += 1
    # The limit counts agent steps of the game, the two FIRE-reset presses included.
    assert info["game_length"] == 10 and steps == 8
    env.close()
    with pytest.raises(EnvError, match="Pong"):
        make_env(PONG, {"no_such_option": 1})


def _untrained_collector(env_id: str, num_envs: int, max_steps: int) -> tuple[Collector, Any]:
    cfg = small_config(env_id, env={"num_envs": num_envs, "max_episode_steps": max_steps})
    envs = make_vector_env(env_id, num_envs, max_episode_steps=max_steps)
    adapter = adapter_for(envs.single_observation_space, envs.single_action_space)
    torch.manual_seed(0)
    agent = build_agent(cfg, adapter, torch.device("cpu"))
    collector = Collector(envs, agent, adapter, cfg.ppo, torch.device("cpu"))
    collector.reset(seed=3)
    return collector, adapter


def test_collector_reports_whole_games_with_raw_scores_not_lives() -> None:
    collector, adapter = _untrained_collector(BREAKOUT, 2, 150)
    rollout = rollout_for(adapter, 160, 2, torch.device("cpu"))
    info = collector.collect(rollout, 0)
    collector.envs.close()
    lives_lost = int(rollout.terminated.sum())
    assert lives_lost > len(info.episodes) >= 2  # Breakout's 5 lives end learner episodes, not games
    for episode in info.episodes:
        assert episode.length == 150 or episode.length > 20  # a game: the 150-step limit, or all lives lost
        assert episode.ret >= 0 and float(episode.ret).is_integer()  # raw Breakout score, not a clipped sum
    assert rollout.obs.dtype == torch.uint8 and int(rollout.obs.max()) > 0


def test_evaluation_plays_each_game_through_every_life() -> None:
    cfg = small_config(BREAKOUT, env={"max_episode_steps": 400})
    env = make_env(BREAKOUT, max_episode_steps=400)
    adapter = adapter_for(env.observation_space, env.action_space)
    torch.manual_seed(0)
    agent = build_agent(cfg, adapter, torch.device("cpu"))
    obs, _ = env.reset(seed=10_000)
    first_life = 0
    while True:  # the learner's first episode: one life
        obs, _, terminated, truncated, info = env.step(act(agent, adapter, obs, deterministic=True))
        first_life += 1
        if terminated or truncated:
            break
    env.close()
    result = evaluate_policy(agent, adapter, cfg, 1, deterministic=True, seed=10_000)
    assert result["lengths"][0] > first_life  # played on after the first lost life
    assert result["lengths"][0] == 400 or not info["game_over"]


def test_short_pong_run_trains_a_cnn_logs_game_scores_and_anneals_the_clip_range(tmp_path: Path) -> None:
    cfg = small_config(PONG, env={"num_envs": 2, "max_episode_steps": 60},
                       ppo={"total_timesteps": 256, "num_steps": 32, "minibatch_size": 32},
                       run={"log_every": 1, "eval_episodes": 1})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.global_step == 256
    lengths = [value for _, value in _metrics(tmp_path / "run", "charts/episodic_length")]
    assert lengths and all(length == 60 for length in lengths)  # games cut at 60 agent steps, not lives
    returns = [value for _, value in _metrics(tmp_path / "run", "charts/episodic_return")]
    assert all(-21 <= r <= 21 for r in returns)
    clips = [value for _, value in _metrics(tmp_path / "run", "charts/clip_coef")]
    assert clips[0] == pytest.approx(0.1) and clips == sorted(clips, reverse=True) and clips[-1] < 0.1
    assert any(key.startswith("encoder.") for key in weights(tmp_path / "run"))
    assert result.final_eval is not None and result.final_eval["lengths"] == [60]


def test_snapshot_restores_an_atari_game_with_its_lives_score_and_frame_stack() -> None:
    env = make_env(BREAKOUT, max_episode_steps=1000)
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    lost = 0
    while lost < 2:  # into the third life, with a score and a full frame stack
        _, _, terminated, _, _ = env.step(int(rng.integers(4)))
        if terminated:
            lost += 1
            env.reset()
    state = capture_state(env)
    actions = rng.integers(4, size=300)

    def play() -> list[Any]:
        out = []
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(int(a))
            out.append((obs.copy(), reward, terminated, truncated, info.get("game_return")))
            if terminated or truncated:
                env.reset()
        return out

    first = play()
    env.step(0)  # move away, then come back
    restore_state(env, state)
    second = play()
    env.close()
    assert any(t[2] for t in first)  # the replay crosses a lost life
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]


def test_a_tensor_clip_range_gives_the_float_one_and_can_be_annealed() -> None:
    g = torch.Generator().manual_seed(0)
    new, old, adv, v, v_old, ret, ent = (torch.randn(64, generator=g) * 0.3 for _ in range(7))
    with_float = ppo_loss(new, old, adv, v, v_old, ret, ent, 0.1, True, 0.01, 0.5)
    with_tensor = ppo_loss(new, old, adv, v, v_old, ret, ent, torch.tensor(0.1), True, 0.01, 0.5)
    assert torch.equal(with_float[0], with_tensor[0])
    cfg = small_config(PONG)
    agent = CnnActorCritic(ActionSpec(kind="discrete", dim=1, nvec=(6,)))
    step = MinibatchStep(agent, torch.optim.Adam(agent.parameters()), cfg.ppo)
    assert float(step.clip_coef) == pytest.approx(0.1)
    step.set_clip(0.05)
    assert float(step.clip_coef) == pytest.approx(0.05)


def test_bf16_encoder_stays_close_to_fp32_with_the_same_weights() -> None:
    spec = ActionSpec(kind="discrete", dim=1, nvec=(6,))
    torch.manual_seed(0)
    fp32 = CnnActorCritic(spec)
    bf16 = CnnActorCritic(spec, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    obs = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        d32, v32 = fp32.dist_and_value(obs)
        d16, v16 = bf16.dist_and_value(obs)
    assert v16.dtype == torch.float32 and d16.logits[0].dtype == torch.float32
    assert torch.allclose(v16, v32, atol=0.05) and not torch.equal(v16, v32)
    assert torch.allclose(d16.logits[0], d32.logits[0], atol=0.01)
    with pytest.raises(ValueError, match="precision"):
        CnnActorCritic(spec, precision="fp16")


def test_auto_precision_takes_bf16_only_where_the_device_computes_it_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlctl.runs as trainer

    env = make_env(PONG)
    adapter = adapter_for(env.observation_space, env.action_space)
    env.close()
    cfg = small_config(PONG, policy={"precision": "auto"})
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(trainer, "fast_bf16", lambda device, native=native: native)
        agent = build_agent(cfg, adapter, torch.device("cpu"))
        assert isinstance(agent, CnnActorCritic) and agent.precision == want
    mlp = adapter_for(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    assert not isinstance(build_agent(small_config("CartPole-v1", policy={"precision": "auto"}), mlp,
                                      torch.device("cpu")), CnnActorCritic)
