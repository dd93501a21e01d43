"""Demo-seeded curricula: where episodes start, when they end, what counts as success, how the start point
moves, that replayed steps reach no loss, and that a run with a curriculum resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rlctl.agents.curriculum import next_start
from rlctl.agents.rollout import DEMO_ACTOR
from rlctl.config import with_overrides
from rlctl.demos import record_demo
from rlctl.envs.demo import load_demo
from rlctl.envs.demo_start import DemoStarts, StartSettings
from rlctl.envs.make import make_env
from rlctl.logger import read_metrics
from rlctl.sampling.collector import Episode
from rlctl.train import train
from rlctl.train.curriculum import DemoCurriculum
from rlctl.train.learner import Learner
from tests.helpers import assert_same_weights, small_config, stop_after, weights

REACHER = "rlctl/ReacherSparse-v0"
EASY = {"success_distance": 0.05, "max_speed": 100.0}  # success from near the demo's end is almost certain


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "reacher.npz"
    record_demo(REACHER, "controller:reacher", 2, path, seed=0)
    return path


@pytest.fixture(scope="module")
def easy_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "easy.npz"
    record_demo(REACHER, "controller:reacher", 1, path, seed=0, kwargs=EASY)
    return path


def _wrapped(path: Path, **settings: object) -> DemoStarts:
    return DemoStarts(make_env(REACHER), [load_demo(path)], StartSettings((str(path),), **settings))  # type: ignore[arg-type]


# ---- the rule -------------------------------------------------------------------------------------------------

def test_uniform_success_moves_the_window_back_by_w_times_one_minus_threshold_over_p() -> None:
    window = 10
    for p, back in ((1.0, 8), (0.5, 6), (0.25, 2)):  # back 1 → 1 + W(1 − 0.2/p)
        success = {d: p for d in range(1, 1 + window)}
        assert next_start(success, 1, window, 0.2, 5, limit=100) == 1 + round(window * (1 - 0.2 / p))
        assert next_start(success, 1, window, 0.2, 5, limit=100) == 1 + back


def test_collapsed_success_moves_the_window_forward_but_never_past_the_end() -> None:
    assert next_start({30: 0.0, 31: 0.05}, 30, 10, 0.2, 5, limit=100) == 25
    assert next_start({2: 0.0}, 2, 10, 0.2, 5, limit=100) == 1
    assert next_start({}, 7, 10, 0.2, 5, limit=100) == 2


def test_the_start_point_stops_past_the_demos_beginning() -> None:
    assert next_start({d: 1.0 for d in range(40, 50)}, 40, 10, 0.2, 5, limit=45) == 45


def test_the_curriculum_pools_episodes_from_all_workers_before_it_moves() -> None:
    cfg = small_config(REACHER)
    curriculum = DemoCurriculum.__new__(DemoCurriculum)
    curriculum.cfg = with_overrides(cfg, {"curriculum": {"min_episodes": 10, "window": 4}})
    curriculum.demo_length, curriculum.back, curriculum.wins, curriculum.counts = 14, 1, {}, {}
    curriculum.last_eval, curriculum.solved = 0, False
    wins = [Episode(0, 0.0, 1, start=(d, True, False)) for d in (1, 2, 3, 4)]
    curriculum.observe(wins)  # 4 episodes, fewer than min_episodes: no move yet
    assert curriculum.after_update(None, None, 0)[0]["curriculum/start_point"] == 1  # type: ignore[arg-type]
    curriculum.observe(wins + wins[:2])  # 10 in all, every one a success
    scalars, solved = curriculum.after_update(None, None, 0)  # type: ignore[arg-type]
    assert curriculum.back == 4 and scalars["curriculum/success_rate"] == 1.0 and not solved
    assert curriculum.counts == {}  # a new period starts


# ---- the env side ---------------------------------------------------------------------------------------------

def test_episodes_start_inside_the_window_at_exactly_the_demos_state(demo: Path) -> None:
    env = _wrapped(demo, window=3, frac_sample=0.0)
    episodes = env.episodes
    env.demo_back = 2
    seen = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        k = env.wrapper_state["run"]["demo"]
        start = info["demo_step"]
        assert episodes[k].length - 4 <= start <= episodes[k].length - 2
        np.testing.assert_array_equal(obs, episodes[k].obs[start])
        seen.add(episodes[k].length - start)
    assert seen == {2, 3, 4}


def test_past_the_demos_beginning_episodes_start_from_the_envs_own_reset(demo: Path) -> None:
    env = _wrapped(demo, window=3, frac_sample=0.0)
    env.demo_back = env.demo_length + 1
    obs, info = env.reset(seed=5)
    plain = make_env(REACHER)
    np.testing.assert_array_equal(obs, plain.reset(seed=5)[0])
    assert "demo_step" not in info and env.wrapper_state["run"]["own"]


def test_replaying_the_demo_from_its_start_point_is_a_success(demo: Path) -> None:
    env = _wrapped(demo, window=1, frac_sample=0.0)
    env.demo_back = 5
    env.reset(seed=0)
    ep = env.episodes[env.wrapper_state["run"]["demo"]]
    start = ep.length - 5
    for t in range(start, ep.length):
        _, _, terminated, truncated, info = env.step(ep.actions[t])
    assert terminated and not truncated
    assert info["demo_start"].tolist() == [5, 1, 0]  # 5 steps before the end, success, not an own start


def test_an_episode_past_the_demos_horizon_is_truncated_not_terminated(demo: Path) -> None:
    env = _wrapped(demo, window=1, frac_sample=0.0, extra_steps=3)
    env.demo_back = 4
    env.reset(seed=1)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))  # no torque: never succeeds
        steps += 1
        if terminated or truncated:
            break
    assert truncated and not terminated and 5 <= steps <= 4 + 3
    assert info["demo_start"].tolist() == [4, 0, 0]


def test_without_a_success_flag_matching_the_demos_return_is_success(tmp_path: Path) -> None:
    path = tmp_path / "pendulum.npz"
    record_demo("Pendulum-v1", "controller:energy", 1, path, seed=0, max_episode_steps=60)
    env = DemoStarts(make_env("Pendulum-v1", max_episode_steps=60), [load_demo(path)],
                     StartSettings((str(path),), window=1, frac_sample=0.0))
    ep = env.episodes[0]
    for actions, won in ((ep.actions, 1), (np.full_like(ep.actions, 2.0), 0)):
        env.demo_back = 20
        env.reset(seed=0)
        for a in actions[ep.length - 20:]:
            *_, _terminated, truncated, info = env.step(a)
        assert truncated and info["demo_start"].tolist() == [20, won, 0]


def test_warm_up_steps_replay_the_demo_whatever_the_policy_does(demo: Path) -> None:
    env = _wrapped(demo, window=1, frac_sample=0.0, warmup_steps=3)
    env.demo_back = 4
    obs, info = env.reset(seed=0)
    ep = env.episodes[env.wrapper_state["run"]["demo"]]
    start = ep.length - 4
    assert info["demo_step"] == start and np.array_equal(obs, ep.obs[start - 3])
    for _ in range(3):
        obs, *_, info = env.step(np.ones(2, dtype=np.float32))  # ignored: the demo acts
        assert info["demo_replay"]
    np.testing.assert_array_equal(obs, ep.obs[start])
    *_, info = env.step(ep.actions[start])
    assert "demo_replay" not in info


def test_the_wrappers_state_is_part_of_the_envs_snapshot(demo: Path) -> None:
    from rlctl.envs.snapshot import Snapshot

    env = Snapshot(_wrapped(demo, window=3))
    env.reset(seed=3)
    env.step(np.zeros(2, dtype=np.float32))
    saved = env.snapshot_state
    runs = []
    for _ in range(2):
        env.snapshot_state = saved
        runs.append([env.reset()[0] for _ in range(3)])  # the wrapper's stream decides these starts
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- the learner side -----------------------------------------------------------------------------------------

def test_replayed_steps_reach_no_loss(easy_demo: Path) -> None:
    from rlctl.spaces import adapter_for_env, rollout_for

    cfg = small_config(REACHER, env={"num_envs": 2}, ppo={"num_steps": 8, "minibatch_size": 4, "update_epochs": 1},
                       curriculum={"demos": [str(easy_demo)], "warmup_steps": 3})
    env = make_env(REACHER)
    adapter = adapter_for_env(env)
    torch.manual_seed(0)
    from rlctl.runs import build_agent

    agent = build_agent(cfg, adapter, torch.device("cpu"))
    rollout = rollout_for(adapter, 8, 2, torch.device("cpu"))
    rollout.obs.normal_()
    rollout.rewards.normal_()
    rollout.actor[:3] = DEMO_ACTOR
    rollout.obs[:3] = float("nan")  # any loss term that saw these rows would turn NaN
    rollout.actions[:3] = float("nan")
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    Learner(cfg, agent).update(rollout)
    after = agent.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # runs that replay nothing do not search their batches for replayed rows (a host sync per update on a GPU)
    assert not Learner(small_config(REACHER), agent).drops_replayed


def _curriculum_cfg(demo: Path, sampler: str = "inline", **curriculum: object) -> object:
    return small_config(REACHER, env={"num_envs": 4, "kwargs": EASY},
                        ppo={"total_timesteps": 2048, "num_steps": 64, "minibatch_size": 64, "update_epochs": 2},
                        curriculum={"demos": [str(demo)], "window": 3, "min_episodes": 8, **curriculum},
                        run={"checkpoint_every": 256, "log_every": 256, "sampler": sampler,
                             "num_workers": 2 if sampler != "inline" else 1})


def test_the_start_point_moves_back_when_the_agent_succeeds_from_it(tmp_path: Path, easy_demo: Path) -> None:
    result = train(_curriculum_cfg(easy_demo), tmp_path, progress=False)  # type: ignore[arg-type]
    rows = read_metrics(tmp_path / "metrics.jsonl")
    starts = [r["value"] for r in rows if r["tag"] == "curriculum/start_point"]
    assert starts[0] >= 1 and max(starts) > starts[0] + 2
    assert any(r["tag"] == "curriculum/episodic_return" for r in rows)
    assert result.global_step == 2048


@pytest.mark.parametrize("sampler", ["process", "ray"])
def test_sampler_workers_get_the_start_point(sampler: str, easy_demo: Path) -> None:
    from rlctl.runs import build_agent
    from rlctl.sampling import make_sampler
    from rlctl.spaces import adapter_for_env, rollout_for

    if sampler == "ray":
        pytest.importorskip("ray")
    cfg = _curriculum_cfg(easy_demo, sampler, frac_sample=0.0)
    adapter = adapter_for_env(make_env(REACHER, EASY))
    agent = build_agent(cfg, adapter, torch.device("cpu"))  # type: ignore[arg-type]
    sampler = make_sampler(cfg, agent, adapter, rollout_for(adapter, 64, 4, torch.device("cpu")),  # type: ignore[arg-type]
                           torch.device("cpu"))
    try:
        sampler.publish(agent)
        sampler.set_env_attr("demo_back", 6)
        sampler.launch(0)
        sampler.wait()
        sampler.launch(256)  # episodes that began in the first rollout started before the change reached them
        _, info = sampler.wait()
    finally:
        sampler.close()
    starts = [ep.start[0] for ep in info.episodes if ep.start is not None]
    assert starts and all(6 <= d <= 8 for d in starts[-4:])


def test_a_curriculum_run_resumes_exactly(tmp_path: Path, easy_demo: Path) -> None:
    cfg = _curriculum_cfg(easy_demo, warmup_steps=2)
    full = train(cfg, tmp_path / "full", progress=False)  # type: ignore[arg-type]
    train(cfg, tmp_path / "part", on_update=stop_after(3), progress=False)  # type: ignore[arg-type]
    train(cfg, tmp_path / "part", resume=True, progress=False)  # type: ignore[arg-type]
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))

    def curve(run: Path) -> list[tuple[int, str, float]]:
        return [(r["step"], r["tag"], r["value"]) for r in read_metrics(run / "metrics.jsonl")
                if r["tag"].startswith("curriculum/") and r["tag"] != "curriculum/episodic_return"]

    assert curve(tmp_path / "part") == curve(tmp_path / "full") and full.global_step == 2048


def test_training_stops_once_the_task_is_solved_from_the_envs_own_starts(tmp_path: Path, easy_demo: Path) -> None:
    cfg = _curriculum_cfg(easy_demo, eval_every=256, eval_episodes=2, solve_success=0.0001)
    cfg = with_overrides(cfg, {"env": {"kwargs": {"success_distance": 0.5, "max_speed": 100.0}},  # type: ignore[arg-type]
                               "curriculum": {"demos": []}})
    # A demo must match the env's kwargs; record one for this easier variant.
    path = tmp_path / "trivial.npz"
    record_demo(REACHER, "controller:reacher", 1, path, seed=0, kwargs={"success_distance": 0.5, "max_speed": 100.0})
    cfg = with_overrides(cfg, {"curriculum": {"demos": [str(path)]}, "run": {"eval_episodes": 2}})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.global_step < 2048 and result.final_eval is not None


def test_an_atari_run_starts_episodes_from_demo_frames(tmp_path: Path) -> None:
    path = tmp_path / "pong.npz"
    record_demo("ALE/Pong-v5", "random", 1, path, seed=0, max_episode_steps=40)
    cfg = small_config("ALE/Pong-v5", env={"num_envs": 2, "max_episode_steps": 40},
                       ppo={"total_timesteps": 128, "num_steps": 32, "minibatch_size": 32, "update_epochs": 1},
                       curriculum={"demos": [str(path)], "window": 3, "min_episodes": 1, "frac_sample": 0.0},
                       run={"log_every": 64})
    train(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    from_demo = [r["value"] for r in rows if r["tag"] == "curriculum/episodic_return"]
    assert len(from_demo) >= 4  # episodes that began 1–3 steps before the demo's 40-step end are short
    assert any(r["tag"] == "curriculum/start_point" for r in rows)
