"""The sim-to-real evaluation protocol: intervals, the CLI, and policy vs baseline on the same episodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlctl.config import load_yaml
from rlctl.sim2real_eval import wilson_interval
from tests.test_cli import assert_user_error, rlctl

pytest.importorskip("pybullet")


def test_wilson_interval_matches_known_values_and_stays_inside_0_1() -> None:
    low, high = wilson_interval(10, 20)
    assert low == pytest.approx(0.2993, abs=1e-3) and high == pytest.approx(0.7007, abs=1e-3)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-3)
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(20, 20)[0] == pytest.approx(0.8389, abs=1e-3)


def test_pid_baseline_eval_reports_success_per_set_and_the_gap(tmp_path: Path) -> None:
    out = tmp_path / "evals" / "pid.json"  # the folder is made
    proc = rlctl("eval", "--env", "rlctl/QuadHover-v0", "--baseline", "pid", "--env-set", "nominal,held-out",
                 "--episodes", "4", "--out", str(out))
    result = json.loads(out.read_text())["results"]["pid"]
    assert result["nominal"]["episodes"] == 4 and result["nominal"]["success_rate"] >= 0.75
    assert 0.0 <= result["held-out"]["success_ci95"][0] <= result["held-out"]["success_ci95"][1] <= 1.0
    assert "gap_held_out_over_nominal" in result
    assert "held-out / nominal" in proc.stdout
    # a folder given as --out fails before any episode is flown
    assert_user_error(rlctl("eval", "--env", "rlctl/QuadHover-v0", "--baseline", "pid", "--env-set", "nominal",
                            "--out", str(out.parent), "--force", check=False), "is a directory")


def test_timeouts_say_whether_the_controller_reached_the_last_target_and_how_it_ended() -> None:
    from rlctl.envs.make import make_env
    from rlctl.sim2real_eval import _timeout_note, baseline_actor, run_episodes, summarize

    def timeouts(env_id: str, **kwargs: object) -> dict:
        env = make_env(env_id, {"action_mode": "ctbr", **kwargs})
        act, reset = baseline_actor("pid")(env)
        summary = summarize(run_episodes(env, act, 2, 10_000, reset))
        env.close()
        assert summary["successes"] == 0 and summary["failures"] == {"timeout": 2}
        return summary

    # the hold takes longer than the episode: the PID is at the target, still, when time runs out
    held = timeouts("rlctl/QuadHover-v0", episode_s=3.0, hold_s=5.0)
    assert held["timeouts"]["at_final_target"] == 2
    assert held["timeouts"]["median_final_distance_m"] < 0.1 and held["timeouts"]["median_final_speed_mps"] < 0.2
    assert "2 at the last target" in _timeout_note(held)
    # one second is too short to pass the first of three waypoints
    late = timeouts("rlctl/QuadWaypoint-v0", episode_s=1.0)
    assert late["timeouts"] == {"count": 2, "at_final_target": 0, "median_final_distance_m": None,
                                "median_final_speed_mps": None}
    assert _timeout_note(late) == " (none at the last target)"


def test_policy_and_baseline_share_the_same_seeded_episodes(tmp_path: Path) -> None:
    run = tmp_path / "quad"
    rlctl("train", "--env", "rlctl/QuadHover-v0", "--steps", "2048", "--run-dir", str(run), "--quiet",
          "--set", "run.eval_episodes=0")
    out = tmp_path / "sets.json"
    rlctl("eval", str(run), "--baseline", "pid", "--env-set", "nominal,randomized", "--episodes", "2",
          "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"policy", "pid"}
    for per_set in result["results"].values():
        assert per_set["nominal"]["episodes"] == per_set["randomized"]["episodes"] == 2
    assert result["seed"] == 10_000
    tags = {json.loads(line)["tag"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert "charts/success_rate" in tags and "reward/proximity" in tags
    assert not [t for t in tags if t.startswith("reward/_")]  # the vector env's masks are not components


def test_bad_env_set_requests_are_clear_errors() -> None:
    assert_user_error(rlctl("eval", "--env", "rlctl/QuadHover-v0", "--baseline", "pid", "--env-set", "windy",
                            check=False), "unknown --env-set")
    assert_user_error(rlctl("eval", "--env", "CartPole-v1", "--baseline", "pid", "--env-set", "nominal",
                            check=False), "Quad")
    assert_user_error(rlctl("eval", "--env-set", "nominal", check=False), "--baseline")


def test_bench_uav_trains_evaluates_and_reports_on_a_tiny_budget(tmp_path: Path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"  # 4096 steps: two updates, two points on the curves
    rlctl("bench", "uav", "--tasks", "hover", "--train-sets", "nominal", "--seeds", "1", "--steps", "4096",
          "--episodes", "2", "--jobs", "1", "--out", str(out), "--runs-dir", str(runs))
    report = (out / "uav.md").read_text()
    assert "| PID (nominal gains) |" in report and "| PPO | nominal | 1 (101) |" in report  # table seeds: 101…
    assert "hover trained on nominal: 1 seed × 4,096 steps" in report
    assert (out / "uav_hover_curves.png").stat().st_size > 5_000
    policy = json.loads((out / "runs" / "uav" / "hover__nominal__s101.eval.json").read_text())
    assert policy["results"]["policy"]["held-out"]["episodes"] == 2
    assert "Each controller flies 2 episodes of each set." in report
    # a rerun with another --episodes reuses the training but not the evaluations
    rlctl("bench", "uav", "--tasks", "hover", "--train-sets", "nominal", "--seeds", "1", "--steps", "4096",
          "--episodes", "3", "--jobs", "1", "--out", str(out), "--runs-dir", str(runs))
    for name in ("hover__nominal__s101", "hover__pid"):
        again = json.loads((out / "runs" / "uav" / f"{name}.eval.json").read_text())["results"]
        assert {s["episodes"] for sets in again.values() for s in sets.values() if isinstance(s, dict)} == {3}
    assert "Each controller flies 3 episodes of each set." in (out / "uav.md").read_text()
    # a finished run whose config no longer matches what the bench would train is not silently reused
    saved = runs / "hover__nominal__s101" / "config.yaml"
    saved.write_text(saved.read_text().replace("learning_rate: 0.0003", "learning_rate: 0.001"))
    assert_user_error(rlctl("bench", "uav", "--tasks", "hover", "--train-sets", "nominal", "--seeds", "1", "--steps",
                            "4096", "--episodes", "2", "--out", str(out), "--runs-dir", str(runs), check=False),
                      "ppo.learning_rate")
    assert_user_error(rlctl("bench", "uav", "--tasks", "fly", check=False), "unknown --tasks")


def test_bench_uav_ramped_and_rate120_sets_train_as_documented_and_get_their_own_rows(tmp_path: Path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    rlctl("bench", "uav", "--tasks", "hover", "--train-sets", "ramped,rate120", "--seeds", "1", "--steps", "2048",
          "--randomized-factor", "2", "--episodes", "1", "--jobs", "1", "--out", str(out), "--runs-dir", str(runs))
    ramped = load_yaml((runs / "hover__ramped__s101" / "config.yaml").read_text())
    trained = (ramped.env.kwargs["sim2real"], ramped.env.randomization_ramp, ramped.ppo.total_timesteps)
    assert trained == ("randomized", 0.5, 4096)
    fast = load_yaml((runs / "hover__rate120__s101" / "config.yaml").read_text())
    assert (fast.env.kwargs["ctrl_hz"], fast.ppo.num_steps, fast.ppo.total_timesteps) == (120, 640, 10240)
    assert fast.ppo.gamma ** 2.5 == pytest.approx(0.99, abs=1e-4)  # the same horizon in seconds
    report = (out / "uav.md").read_text()
    assert "| PPO | randomized, ramped 0→1 over ½ | 1 (101) |" in report
    assert "| PPO | randomized, 120 Hz control | 1 (101) |" in report
    assert "nan" not in report  # policies without a success have no time to goal: a dash
    assert "hover trained on randomized, ramped 0→1 over ½: 1 seed × 4,096 steps" in report
    assert_user_error(rlctl("bench", "uav", "--train-sets", "harder", check=False), "nominal, randomized, ramped")


def test_gap_interval_covers_the_mean_and_widens_with_fewer_episodes_or_disagreeing_seeds() -> None:
    from rlctl.bench.uav import gap_interval

    def seed(nominal: int, held_out: int, episodes: int = 200) -> dict:
        return {"nominal": {"successes": nominal, "episodes": episodes},
                "held-out": {"successes": held_out, "episodes": episodes}}

    alike = gap_interval([seed(200, 160)] * 5)
    assert alike[0] < 0.8 < alike[1] and alike[1] - alike[0] < 0.08
    assert gap_interval([seed(200, 160)] * 5) == alike  # seeded
    fewer = gap_interval([seed(50, 40, 50)] * 5)
    apart = gap_interval([seed(200, h) for h in (120, 200, 160, 140, 180)])
    for wider in (fewer, apart):
        assert wider[0] < 0.8 < wider[1] and wider[1] - wider[0] > 1.5 * (alike[1] - alike[0])
