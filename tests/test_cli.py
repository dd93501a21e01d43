"""End-to-end CLI tests: real processes, real envs, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def rlctl(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "rlctl.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"rlctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.mark.slow
def test_cartpole_preset_reaches_475_then_eval_and_enjoy_work(tmp_path: Path) -> None:
    run = tmp_path / "cp"
    out = rlctl("train", "--env", "CartPole-v1", "--run-dir", str(run), "--seed", "1")
    assert "final deterministic eval" in out.stdout
    final = json.loads((run / "final_eval.json").read_text())
    assert final["mean_return"] >= 475, final

    ev = rlctl("eval", str(run), "--episodes", "5", "--deterministic", "--out", str(tmp_path / "e.json"))
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["episodes"] == 5 and result["mean_return"] >= 475
    assert "±" in ev.stdout

    video = tmp_path / "cp.mp4"
    rlctl("enjoy", str(run), "--video", str(video))
    assert video.stat().st_size > 10_000
    import imageio.v2 as imageio

    reader = imageio.get_reader(video)
    frames = sum(1 for _ in reader)
    assert frames >= 475  # one frame per step of a ≥475-step episode
    again = rlctl("enjoy", str(run), "--video", str(video), check=False)
    assert_user_error(again, "exists", "--force")


def test_mujoco_run_writes_the_run_directory_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "hop"
    rlctl("train", "--env", "Hopper-v5", "--steps", "3000", "--num-envs", "1", "--run-dir", str(run), "--quiet",
          "--set", "ppo.num_steps=500", "--set", "ppo.minibatch_size=100", "--set", "run.eval_episodes=1",
          "--set", "policy.hidden_sizes=[32,32]")
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "checkpoint.pt", "metrics.jsonl", "final_eval.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    cfg = (run / "config.yaml").read_text()
    assert "Hopper-v5" in cfg and "- 32" in cfg and "num_steps: 500" in cfg
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["global_step"] == 3000 and ckpt["update"] == 6

    video = tmp_path / "hop.mp4"
    shown = rlctl("enjoy", str(run), "--video", str(video))
    frames = int(shown.stdout.split("wrote ")[1].split()[0])
    import imageio.v2 as imageio

    reader = imageio.get_reader(video)
    first = reader.get_data(0)
    assert sum(1 for _ in reader) == frames > 0
    assert first.shape[2] == 3 and first.std() > 10  # a rendered scene, not a blank frame

    # The same directory again is refused without --force, and replaced with it.
    again = rlctl("train", "--env", "Hopper-v5", "--steps", "1000", "--run-dir", str(run), check=False)
    assert_user_error(again, "already holds files", "--force")
    # --resume of a finished run is a no-op that keeps the files.
    rlctl("train", "--resume", str(run), "--quiet")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["global_step"] == 3000


def test_sigkilled_cli_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    args = ["--env", "CartPole-v1", "--steps", "12288", "--quiet", "--set", "ppo.num_steps=64",
            "--set", "run.checkpoint_every=1024", "--set", "run.eval_episodes=0", "--set", "ppo.update_epochs=4"]
    rlctl("train", *args, "--run-dir", str(tmp_path / "full"))

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "rlctl.cli", "train", *args, "--run-dir", str(run)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoint.pt").exists() and torch.load(run / "checkpoint.pt", weights_only=True)[
                "global_step"] >= 2048:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(run / "checkpoint.pt", weights_only=True)["global_step"]
    assert 2048 <= killed_at < 12288, "the run should be killed part-way"

    rlctl("train", "--resume", str(run), "--quiet")
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(run / "checkpoint.pt", weights_only=True)
    assert resumed["global_step"] == full["global_step"] == 12288
    for key, value in full["agent"].items():
        assert torch.equal(value, resumed["agent"][key]), key
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    full_steps = [json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert steps == full_steps  # rows the killed process wrote after its checkpoint were dropped

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def tb_steps(path: Path) -> list[int]:
        acc = EventAccumulator(str(path))
        acc.Reload()
        return [e.step for e in acc.Scalars("losses/value_loss")]

    assert tb_steps(run) == tb_steps(tmp_path / "full")  # one clean TensorBoard curve after the resume


def test_help_documents_every_verb_and_option() -> None:
    top = rlctl("--help").stdout
    for verb in ("train", "eval", "enjoy", "presets", "bench", "tune", "export"):
        assert verb in top
    train = rlctl("train", "--help").stdout
    for flag in ("--env", "--preset", "--steps", "--seed", "--num-envs", "--device", "--set", "--run-dir",
                 "--resume", "--force"):
        assert flag in train
    assert "--deterministic" in rlctl("eval", "--help").stdout and "--env-set" in rlctl("eval", "--help").stdout
    assert "--video" in rlctl("enjoy", "--help").stdout


def test_presets_lists_and_shows_entries() -> None:
    listing = rlctl("presets").stdout
    assert "HalfCheetah-v5" in listing and "CartPole-v1" in listing
    shown = rlctl("presets", "HalfCheetah-v5").stdout
    assert "num_steps: 512" in shown


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train", "--env", "HalfCheetah-v9"], ["unknown environment id", "HalfCheetah-v5"]),
        (["train", "--env", "NoSuchEnv-v0"], ["unknown environment id"]),
        (["train", "--env", "ALE/Pong-v5", "--set", "policy.encoder=mlp"], ["encoder=mlp does not fit image"]),
        (["train", "--env", "LunarLander-v3"], ["box2d"]),
        (["train", "--env", "nosuchmodule:Env-v0"], ["cannot import 'nosuchmodule'"]),
        (["train", "--env", "CartPole-v1", "--set", "ppo.gamma"], ["malformed --set", "section.key=value"]),
        (["train", "--env", "CartPole-v1", "--set", "ppo.gama=0.9"], ["unknown config key 'ppo.gama'", "ppo.gamma"]),
        (["train", "--env", "CartPole-v1", "--set", "ppo.num_steps=abc"], ["ppo.num_steps", "expected int"]),
        (["train", "--env", "CartPole-v1", "--set", "env.vectorization=threads"], ["sync, async"]),
        (["train", "--env", "CartPole-v1", "--set", "ppo.minibatch_size=100000"], ["exceeds the rollout size"]),
        (["train", "--env", "CartPole-v1", "--preset", "nope"], ["unknown preset 'nope'"]),
        (["train", "--env", "rlctl-test/DictObs-v0"], ["observation space Dict", "FlattenObservation"]),
        (["train", "--resume", "/nonexistent/run"], ["does not exist"]),
        (["train", "--resume", "/tmp", "--steps", "5"], ["drop --steps"]),
        (["eval", "/nonexistent/run"], ["no such run directory"]),
        (["enjoy", "/nonexistent/run"], ["no such run directory"]),
        (["train"], ["needs --env"]),
        (["train", "--env", "CartPole-v1", "--fast", "--backend", "inline"], ["--fast", "--backend inline"]),
        (["train", "--resume", "/tmp", "--fast"], ["drop --fast"]),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    if "rlctl-test/DictObs-v0" in args:
        args = ["train", "--env", "tests.toy_envs:rlctl-test/DictObs-v0", "--run-dir", str(tmp_path / "r")]
    elif args[:1] == ["train"] and "--resume" not in args and len(args) > 2:
        args = [*args, "--run-dir", str(tmp_path / "r")]  # errors found after the run directory is made
    proc = rlctl(*args, cwd=Path(__file__).resolve().parents[1], check=False)
    assert_user_error(proc, *fragments)


def test_missing_atari_extra_names_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ale_py'] = None; from rlctl.cli import main; "
            "sys.exit(main(['train', '--env', 'ALE/Pong-v5']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV)
    assert_user_error(proc, "cannot import 'ale_py'", "rlctl[atari]")


def test_corrupt_and_pickled_checkpoints_are_refused_by_eval(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert_user_error(rlctl("eval", str(bad), check=False), "corrupt or truncated")

    evil = tmp_path / "evil.pt"
    torch.save({"format": "rlctl-checkpoint", "version": 1, "x": Path("/")}, evil)
    assert_user_error(rlctl("eval", str(evil), check=False), "refusing to load")


def test_debug_flag_shows_the_traceback() -> None:
    proc = rlctl("--debug", "train", "--env", "NoSuchEnv-v0", check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


@pytest.mark.parametrize(("extra", "sampler"), [([], "process"), (["--backend", "ray"], "ray")])
def test_fast_flag_turns_on_the_sampler_process_overlap_and_compile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], sampler: str) -> None:
    import rlctl.train
    from rlctl.cli import main

    seen = {}
    monkeypatch.setattr(rlctl.train, "train", lambda cfg, run_dir, **_: seen.setdefault("run", cfg.run))
    assert main(["train", "--env", "CartPole-v1", "--fast", *extra, "--run-dir", str(tmp_path / "r"), "--quiet",
                 "--set", "run.num_workers=2"]) == 0
    run = seen["run"]
    assert (run.sampler, run.overlap, run.compile, run.num_workers) == (sampler, True, True, 2)
