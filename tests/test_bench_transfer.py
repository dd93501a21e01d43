"""``python -m rlctl.bench.transfer``: the agency-transfer page, and the time to goal that its success tables use."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlctl.bench import transfer
from rlctl.evaluate import time_to_goal

pytest.importorskip("pybullet")


def test_time_to_goal_is_the_envs_own_or_the_successful_episodes_length_at_its_control_rate() -> None:
    quad, arm, bare = (SimpleNamespace(unwrapped=SimpleNamespace(ctrl_hz=hz)) for hz in (48, 24, None))
    assert time_to_goal(quad, {"is_success": True, "time_to_goal": 3.5}, 480) == 3.5  # flies on after its goal
    assert time_to_goal(arm, {"is_success": True}, 36) == 1.5  # ends at its goal
    assert time_to_goal(arm, {"is_success": False}, 240) is None
    assert time_to_goal(bare, {"is_success": True}, 10) is None  # no rate to convert with


def test_transfer_page_reports_success_time_to_goal_and_the_sim_to_real_sets(tmp_path: Path) -> None:
    runs, out, kept = tmp_path / "runs", tmp_path / "out", tmp_path / "kept"
    args = ["--tasks", "push,waypoint", "--variants", "ppo,jsrl", "--seeds", "1", "--steps", "4096", "--eval-every",
            "1024", "--episodes", "1", "--jobs", "1"]
    assert transfer.main([*args, "--runs-dir", str(runs), "--out", str(out), "--keep", str(kept)]) == 0
    page = (out / "agency-transfer_tables.md").read_text()
    # what --keep copies (a few KB per run) rebuilds the same tables
    assert transfer.main([*args, "--runs-dir", str(kept), "--out", str(tmp_path / "again"), "--report-only"]) == 0
    assert "Rebuilt from the runs with `python -m rlctl.bench.transfer" in (tmp_path / "again" /
                                                                         "agency-transfer_tables.md").read_text()
    tables = [line for line in page.splitlines() if line.startswith("| ")]
    assert tables == [line for line in (tmp_path / "again" / "agency-transfer_tables.md").read_text().splitlines()
                      if line.startswith("| ")]
    push = page[page.index("## push"):page.index("## waypoint")]
    assert "Budget: 4,096 env steps per run." in push  # from the runs' saved configs
    main_table = push[:push.index("The best learner alone")]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in main_table.splitlines()
            if line.startswith("| ")}
    assert float(rows["baseline alone"][1]) == 1.0 and float(rows["baseline alone"][3]) > 0  # success, time to goal
    # the scripted push controller acts at the start of every jsrl episode: the mixture reaches the goal early on,
    # where plain PPO, at the same 4096 steps, does not
    assert float(rows["jsrl"][4]) > float(rows["ppo"][4]) == 0.0
    assert (out / "agency-transfer_push_success.png").stat().st_size > 5_000
    # jsrl evaluated its learner alone during training: its best one is measured afresh and has its own table
    best = json.loads((runs / "push__jsrl__s101" / "best_eval.json").read_text())
    assert best["episodes"] == 1 and best["step"] % 1024 == 0
    best_rows = push[push.index("The best learner alone"):].splitlines()
    assert best_rows[4].startswith("| jsrl |") and best_rows[4].endswith(f"| {best['step'] // 1000}k | 1 |")
    waypoint = page[page.index("## waypoint"):]
    sets = waypoint[waypoint.index("On the sim-to-real sets"):].splitlines()
    assert sets[2] == "| variant | randomized | held-out | seeds |"
    assert [line.split(" | ")[0] for line in sets[4:8]] == ["| baseline alone", "| ppo", "| jsrl",
                                                            "| jsrl, best learner alone"]  # ppo keeps no best
    assert (runs / "waypoint__jsrl__s101" / "sets_eval.json").is_file()
    # jsrl's 10-second waypoint episodes, the PID flying their start, all end after the transfer phase: dashes,
    # not a crash
    assert any(line.startswith("| jsrl | ") and "| — | — | — |" in line for line in waypoint.splitlines())


def test_bc_variants_imitate_the_baseline_and_are_not_run_by_default(tmp_path: Path) -> None:
    plain, bc = transfer._sets("waypoint", "prob", 101, 1000, 100, 5), transfer._sets("waypoint", "prob-bc", 101, 1000,
                                                                                       100, 5)
    assert "arbiter.mode=prob" in bc and bc[:len(plain)] == plain
    assert bc[len(plain):] == ["arbiter.baseline_steps=bc", f"arbiter.bc_coef={transfer.BC_COEF}"]
    assert not any(item.startswith("arbiter.") for item in transfer._sets("waypoint", "ppo", 101, 1000, 100, 5))
    from rlctl.resolve import resolve_config

    assert resolve_config("rlctl/QuadWaypoint-v0", set_items=bc)[0].arbiter.baseline_steps == "bc"  # valid sets
    assert transfer.main(["--tasks", "pendulum", "--seeds", "1", "--episodes", "1", "--runs-dir", str(tmp_path),
                          "--out", str(tmp_path), "--report-only"]) == 0
    rows = [line.split(" | ")[0] for line in (tmp_path / "agency-transfer_tables.md").read_text().splitlines()
            if line.startswith("| ") and "variant" not in line and "---" not in line]
    assert rows == ["| baseline alone", "| ppo", "| prob", "| calf", "| jsrl", "| residual"]


def test_the_gated_variant_gates_the_share_on_success_and_is_refused_on_a_task_without_a_goal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bc, gated = (transfer._sets("push", v, 101, 1000, 100, 5) for v in ("prob-bc", "prob-gated-bc"))
    assert sorted(gated) == sorted([*bc, "arbiter.schedule=success_gated"])
    from rlctl.resolve import resolve_config

    assert resolve_config("rlctl/ArmPush-v0", set_items=gated)[0].arbiter.schedule == "success_gated"
    code = transfer.main(["--tasks", "pendulum,push", "--variants", "prob-gated-bc", "--seeds", "1", "--episodes", "1",
                          "--runs-dir", str(tmp_path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "pendulum/prob-gated-bc: a success-gated variant needs a task with a goal" in err
    assert not list(tmp_path.iterdir())  # refused before any run started


def test_the_end_variant_never_disconnects_and_its_transfer_phase_is_the_whole_run(tmp_path: Path) -> None:
    sets = transfer._sets("waypoint", "prob-bc-end", 101, 1000, 100, 5)
    assert sorted(sets) == sorted([*transfer._sets("waypoint", "prob-bc", 101, 1000, 100, 5),
                                   "arbiter.transfer_end=1.0"])
    from rlctl.config import Config, save_yaml, with_overrides

    # two hand-made runs whose mixture success dips at 90% of training: inside the transfer phase only when the
    # baseline is never disconnected
    for variant, end in (("prob-bc", 0.8), ("prob-bc-end", 1.0)):
        run = tmp_path / transfer._name("waypoint", variant, 101)
        run.mkdir()
        (run / "config.yaml").write_text(save_yaml(with_overrides(Config(), {"arbiter": {"transfer_end": end}})))
        (run / "final_eval.json").write_text(json.dumps({"mean_return": 0.0}))
        rows = [{"step": step, "tag": "charts/success_rate", "value": 0.2 if step == 900 else 1.0}
                for step in range(100, 1001, 100)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lowest = {v: transfer._Seeds(tmp_path, "waypoint", v, [101]).lowest_mean("charts/success_rate")
              for v in ("prob-bc", "prob-bc-end")}
    assert lowest["prob-bc"] == 1.0 and lowest["prob-bc-end"] < 0.3  # on the 50-point grid, near the dip
    phase = transfer._Seeds(tmp_path, "waypoint", "prob-bc-end", [101]).phase("charts/success_rate", before=True)
    assert phase == [pytest.approx(0.92)]


def test_kept_runs_merge_each_steps_episodes_and_report_the_same_means(tmp_path: Path) -> None:
    from rlctl.config import Config, save_yaml

    runs, kept, again = tmp_path / "runs", tmp_path / "kept", tmp_path / "again"
    run = runs / transfer._name("push", "prob-bc", 101)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(save_yaml(Config()))
    (run / "final_eval.json").write_text(json.dumps({"mean_return": 0.0}))
    values = iter(float(v) for v in range(1000))  # episodes' returns: 0, 1, 2, … (7 per logged step)
    rows = [{"step": step, "tag": "charts/episodic_return", "value": next(values), "time": 1.0 + step}
            for step in range(100, 1001, 100) for _ in range(7)]
    rows += [{"step": step, "tag": "losses/entropy", "value": 0.0, "time": 1.0 + step} for step in (100, 1000)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    transfer._keep(["push"], ["prob-bc"], [101], runs, kept)
    transfer._keep(["push"], ["prob-bc"], [101], kept, again)  # keeping a kept run changes nothing
    lines = (kept / run.name / "metrics.jsonl").read_text().splitlines()
    assert len(lines) < len(rows) and "losses/entropy" not in "".join(lines[1:-1])
    assert lines == (again / run.name / "metrics.jsonl").read_text().splitlines()
    for before in (True, False):  # the mixture over the first 80% of training; the last 20 episodes
        means = [transfer._Seeds(d, "push", "prob-bc", [101]).phase("charts/episodic_return", before)
                 for d in (runs, kept)]
        assert means[0] == [pytest.approx(means[1][0])]
    assert means[0] == [pytest.approx(sum(range(50, 70)) / 20)]
