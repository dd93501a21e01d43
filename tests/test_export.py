"""Policy export: ONNX / TorchScript / NumPy files reproduce ``agent(obs)``, and misuse is a clear UserError.

Agents are built directly from gymnasium spaces (no training) with non-trivial normalizer statistics and
an actor scaled up so the action clip is hit; one test trains a tiny run and exports it through the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rlctl.agents.distributions import DiagGaussian
from rlctl.agents.policy import ActorCritic
from rlctl.config import Config, from_dict
from rlctl.errors import UserError
from rlctl.export import TOLERANCE, ExportMismatchError, NumpyPolicy, export_policy, verification_obs
from rlctl.spaces import SpaceAdapter, adapter_for

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

PENDULUM_OBS = spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_ACT = spaces.Box(-2.0, 2.0, (1,), np.float32)


def make_agent(action_space: spaces.Space, obs_space: spaces.Space = PENDULUM_OBS, activation: str = "tanh",
               seed: int = 0, hidden: tuple[int, ...] = (64, 64)) -> tuple[ActorCritic, SpaceAdapter]:
    """A policy whose normalizer and output scale make the export's normalization and clipping matter."""
    torch.manual_seed(seed)
    adapter = adapter_for(obs_space, action_space)
    agent = ActorCritic(adapter.obs_dim, adapter.action, list(hidden), activation=activation)
    gen = torch.Generator().manual_seed(seed)
    agent.obs_rms.mean.copy_(torch.randn(adapter.obs_dim, generator=gen, dtype=torch.float64) * 3.0)
    agent.obs_rms.var.copy_(torch.rand(adapter.obs_dim, generator=gen, dtype=torch.float64) * 20.0 + 0.05)
    agent.obs_rms.count.fill_(1234.0)
    head = agent.actor[-1]
    assert isinstance(head, nn.Linear)
    with torch.no_grad():  # the 0.01-gain output init would keep every action far inside the bounds
        head.weight.mul_(300.0)
    return agent.eval(), adapter


def pendulum_cfg() -> Config:
    return from_dict({"env": {"id": "Pendulum-v1"}})


def test_onnx_export_matches_torch_with_normalization_in_the_graph(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    agent, adapter = make_agent(PENDULUM_ACT)
    meta = export_policy(agent, adapter, None, tmp_path, "onnx")
    assert meta["verification"]["max_abs_diff"] <= TOLERANCE

    model = onnx.load(str(tmp_path / "policy.onnx"))
    onnx.checker.check_model(model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["obs"] and [o.name for o in model.graph.output] == ["action"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch dimension

    session = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    obs = np.concatenate([verification_obs(agent, 64, seed=5),
                          rng.uniform(-50, 50, (64, 3)).astype(np.float32)])
    want = agent(torch.from_numpy(obs)).numpy()
    for batch in (obs, obs[:1], obs[:7]):
        got = session.run(["action"], {"obs": batch})[0]
        np.testing.assert_allclose(got, want[: len(batch)], rtol=0, atol=TOLERANCE)
    assert np.any(np.abs(want) == 2.0) and np.any(np.abs(want) < 2.0)  # the action clip was exercised

    # The statistics are inside the graph: the same weights with a fresh normalizer act differently.
    plain = ActorCritic(adapter.obs_dim, adapter.action, [64, 64])
    plain.load_state_dict({k: v for k, v in agent.state_dict().items() if not k.startswith("obs_rms.")},
                          strict=False)
    assert not np.allclose(plain.eval()(torch.from_numpy(obs)).numpy(), want, atol=1e-3)


def test_onnx_export_of_a_multidiscrete_policy_gives_the_argmax_indices(tmp_path: Path) -> None:
    import onnxruntime as ort

    agent, adapter = make_agent(spaces.MultiDiscrete([3, 5, 2]), spaces.Box(-1, 1, (4,), np.float32))
    meta = export_policy(agent, adapter, None, tmp_path, "onnx")
    assert meta["verification"]["max_abs_diff"] == 0.0
    assert meta["action"]["dtype"] == "int64" and meta["action"]["nvec"] == [3, 5, 2]
    obs = verification_obs(agent, 100, seed=3)
    got = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"]).run(
        ["action"], {"obs": obs})[0]
    assert got.dtype == np.int64 and got.shape == (len(obs), 3)
    np.testing.assert_array_equal(got, agent(torch.from_numpy(obs)).numpy())


@pytest.mark.parametrize("action_space", [PENDULUM_ACT, spaces.Discrete(4), spaces.MultiBinary(3)],
                         ids=["box", "discrete", "multibinary"])
def test_torchscript_export_matches_torch(tmp_path: Path, action_space: spaces.Space) -> None:
    agent, adapter = make_agent(action_space, activation="relu")
    meta = export_policy(agent, adapter, None, tmp_path, "torchscript")
    assert meta["verification"]["max_abs_diff"] <= TOLERANCE
    loaded = torch.jit.load(str(tmp_path / "policy.pt"))
    obs = torch.from_numpy(verification_obs(agent, 128, seed=9))
    want = agent(obs)
    for batch in (obs, obs[:1]):
        got = loaded(batch)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want[: len(batch)], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    ("action_space", "activation"),
    [(PENDULUM_ACT, "tanh"), (spaces.Box(-1, 1, (3,), np.float32), "relu"), (spaces.Box(-np.inf, np.inf, (2,)), "elu"),
     (spaces.Discrete(5), "tanh"), (spaces.MultiDiscrete([2, 4]), "elu")],
    ids=["box-tanh", "box3-relu", "unbounded-elu", "discrete-tanh", "multidiscrete-elu"],
)
def test_numpy_runner_matches_torch(tmp_path: Path, action_space: spaces.Space, activation: str) -> None:
    agent, adapter = make_agent(action_space, activation=activation, hidden=(32, 16, 8))
    obs = np.concatenate([verification_obs(agent, 200, seed=4),
                          np.random.default_rng(2).normal(0, 30, (50, 3)).astype(np.float32)])
    want = agent(torch.from_numpy(obs)).numpy()

    direct = NumpyPolicy.from_agent(agent)(obs)
    assert direct.dtype == want.dtype and direct.shape == want.shape
    np.testing.assert_allclose(direct, want, rtol=0, atol=TOLERANCE)

    meta = export_policy(agent, adapter, None, tmp_path, "numpy")
    assert meta["verification"]["max_abs_diff"] <= TOLERANCE
    with np.load(tmp_path / "policy.npz", allow_pickle=False) as data:  # plain arrays only, no pickles
        assert {"W0", "b0", "W3", "obs_mean", "obs_var", "clip_obs"} <= set(data.files)
    runner = NumpyPolicy.load(tmp_path / "policy.npz")
    np.testing.assert_allclose(runner(obs), want, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(runner(obs[0]), want[0], rtol=0, atol=TOLERANCE)  # one unbatched observation


@pytest.mark.parametrize("layer", [nn.Sigmoid(), nn.ELU(alpha=0.5), nn.Identity()], ids=["sigmoid", "elu-alpha", "id"])
def test_numpy_export_refuses_a_policy_it_cannot_represent(tmp_path: Path, layer: nn.Module) -> None:
    agent, adapter = make_agent(PENDULUM_ACT)
    agent.actor[1] = layer
    with pytest.raises(UserError, match="NumPy runner") as err:
        export_policy(agent, adapter, None, tmp_path, "numpy")
    assert "onnx or torchscript" in str(err.value)
    assert not any(tmp_path.iterdir())
    conv, _ = make_agent(PENDULUM_ACT)
    conv.actor[0] = nn.Conv1d(1, 64, 3)
    with pytest.raises(UserError, match="Linear/activation MLPs only"):
        NumpyPolicy.from_agent(conv)


def test_sidecar_records_normalizer_bounds_control_and_verification(tmp_path: Path) -> None:
    agent, adapter = make_agent(PENDULUM_ACT)
    meta = export_policy(agent, adapter, pendulum_cfg(), tmp_path, "torchscript", ckpt_path=Path("run/checkpoint.pt"))
    side = json.loads((tmp_path / "policy.json").read_text())
    assert side["format"] == "torchscript" and side["file"] == "policy.pt" and side["env_id"] == "Pendulum-v1"
    assert side["normalizer"]["mean"] == agent.obs_rms.mean.tolist()  # float64 round-trips exactly through JSON
    assert side["normalizer"]["var"] == agent.obs_rms.var.tolist()
    assert side["normalizer"]["clip"] == 10.0 and side["normalizer"]["enabled"] is True
    assert side["action"] == {**side["action"], "kind": "continuous", "dim": 1, "low": [-2.0], "high": [2.0],
                              "clipped_to_bounds": True}
    assert side["observation"]["dim"] == 3 and side["observation"]["shape"] == [3]
    assert side["io"]["input"] == "obs" and side["io"]["output"] == "action"
    assert side["control"]["ctrl_hz"] == pytest.approx(20.0)  # Pendulum-v1 steps with dt = 0.05 s
    assert side["verification"]["passed"] is True and side["verification"]["max_abs_diff"] <= TOLERANCE
    assert side["rlctl_version"] and side["checkpoint"] == str(Path("run/checkpoint.pt"))
    import hashlib

    assert side["sha256"] == hashlib.sha256((tmp_path / "policy.pt").read_bytes()).hexdigest()
    assert meta["model_path"] == str(tmp_path / "policy.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_onnx_is_a_user_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    agent, adapter = make_agent(PENDULUM_ACT)
    with pytest.raises(UserError, match=r"rlctl\[export\]"):
        export_policy(agent, adapter, None, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_a_user_error(tmp_path: Path) -> None:
    agent, adapter = make_agent(PENDULUM_ACT)
    with pytest.raises(UserError, match=r"unknown export format 'tflite'.*onnx, torchscript, numpy"):
        export_policy(agent, adapter, None, tmp_path, "tflite")


def test_existing_export_is_refused_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    agent, adapter = make_agent(PENDULUM_ACT)
    export_policy(agent, adapter, None, tmp_path, "numpy")
    before = (tmp_path / "policy.npz").read_bytes()
    with pytest.raises(UserError, match=r"already holds an exported policy.*--force"):
        export_policy(agent, adapter, None, tmp_path, "torchscript")
    assert (tmp_path / "policy.npz").read_bytes() == before and not (tmp_path / "policy.pt").exists()

    export_policy(agent, adapter, None, tmp_path, "torchscript", force=True)
    # The directory describes one export: the stale model of another format is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.pt"]
    assert json.loads((tmp_path / "policy.json").read_text())["format"] == "torchscript"


def test_failed_verification_raises_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rlctl.export.exporter as export

    def off_by_a_bit(agent: ActorCritic) -> tuple[bytes, Any, str]:
        runner = NumpyPolicy.from_agent(agent)
        return b"npz", lambda obs: runner(obs) + np.float32(1e-3), "numpy (perturbed)"

    monkeypatch.setattr(export, "_numpy_bytes", off_by_a_bit)
    agent, adapter = make_agent(PENDULUM_ACT)
    with pytest.raises(ExportMismatchError, match="disagrees") as err:
        export_policy(agent, adapter, None, tmp_path / "out", "numpy")
    assert err.value.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    assert not (tmp_path / "out").exists()


def test_exported_action_is_the_deterministic_mean_not_a_sample(tmp_path: Path) -> None:
    agent, adapter = make_agent(spaces.Box(-100, 100, (2,), np.float32))
    with torch.no_grad():
        agent.log_std.fill_(1.0)  # samples would land far from the mean
    export_policy(agent, adapter, None, tmp_path, "torchscript")
    loaded = torch.jit.load(str(tmp_path / "policy.pt"))
    obs = torch.from_numpy(verification_obs(agent, 64, seed=7))
    dist = agent.dist(agent.normalize_obs(obs))
    assert isinstance(dist, DiagGaussian)
    first, second = loaded(obs), loaded(obs)
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # no randomness in the graph
    torch.testing.assert_close(first, agent(obs), rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(first, dist.mean.clamp(-100, 100), rtol=0, atol=TOLERANCE)
    sample = dist.sample()
    assert (first - sample).abs().max() > 0.1


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _export_verb_is_wired() -> bool:
    from rlctl.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "export" in sub.choices


def run_export_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``rlctl export ...`` through ``rlctl.cli.main`` once the verb is wired, else through this module's
    own parser and command function (with main's UserError → exit 2 contract emulated)."""
    if _export_verb_is_wired():
        from rlctl.cli import main

        code = main(["export", *argv])
    else:
        from rlctl.cli.export import add_parser

        parser = argparse.ArgumentParser(prog="rlctl")
        add_parser(parser.add_subparsers(dest="verb"))
        args = parser.parse_args(["export", *argv])
        try:
            code = int(args.func(args))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_trains_a_tiny_run_and_exports_it_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlctl.cli import main

    run = tmp_path / "pend"
    start = time.perf_counter()
    assert main(["train", "--env", "Pendulum-v1", "--steps", "256", "--num-envs", "1", "--run-dir", str(run),
                 "--quiet", "--set", "ppo.num_steps=128", "--set", "ppo.minibatch_size=64",
                 "--set", "ppo.update_epochs=1", "--set", "run.eval_episodes=0"]) == 0
    capsys.readouterr()

    code, out, err = run_export_cli([str(run), "--format", "numpy"], capsys)
    assert code == 0, err
    assert str(run / "export" / "policy.npz") in out and "max abs diff" in out
    side = json.loads((run / "export" / "policy.json").read_text())
    assert side["env_id"] == "Pendulum-v1" and side["normalizer"]["count"] > 200  # trained statistics
    assert side["checkpoint"] == str(run / "checkpoint.pt")

    # The exported runner drives the real env like the checkpoint's policy does.
    from rlctl.runs import load_policy

    agent = load_policy(str(run)).agent
    runner = NumpyPolicy.load(run / "export" / "policy.npz")
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        action = runner(obs)
        np.testing.assert_allclose(action, agent(torch.from_numpy(obs[None]))[0].numpy(), rtol=0, atol=TOLERANCE)
        obs, *_ = env.step(action)
    env.close()

    code, _, err = run_export_cli([str(run), "--format", "torchscript"], capsys)
    assert code == 2 and "already holds an exported policy" in err and "Traceback" not in err
    code, out, err = run_export_cli([str(run / "checkpoint.pt"), "--format", "torchscript", "--force"], capsys)
    assert code == 0, err
    assert (run / "export" / "policy.pt").exists() and not (run / "export" / "policy.npz").exists()
    code, _, err = run_export_cli(["/nonexistent/run"], capsys)
    assert code == 2 and "no such run directory" in err
    assert time.perf_counter() - start < 30


def test_sidecar_control_info_describes_the_quadrotor_observation_and_its_integral_state() -> None:
    pytest.importorskip("pybullet")
    from rlctl.export import control_info

    info = control_info("rlctl/QuadHover-v0", {"action_mode": "ctbr", "error_integral": True})
    assert info is not None and info["ctrl_hz"] == 48.0
    assert info["observation_layout"]["target"] == [0, 3]
    dim = info["observation_layout"]["actions"][1] + 3
    assert info["error_integral"]["obs"] == [dim - 3, dim] and info["error_integral"]["dt"] == pytest.approx(1 / 48)
    assert info["env_kwargs"] == {"action_mode": "ctbr", "error_integral": True}
    assert "error_integral" not in (control_info("rlctl/QuadHover-v0", {}) or {})
    assert "command_history" not in info


def test_sidecar_control_info_describes_the_command_history_slice() -> None:
    pytest.importorskip("pybullet")
    from rlctl.export import control_info

    info = control_info("rlctl/QuadHover-v0", {"action_mode": "ctbr", "error_integral": True, "command_history": 3})
    assert info is not None
    dim = info["observation_layout"]["actions"][1] + 3  # the integral comes first
    history = info["command_history"]
    assert history["obs"] == [dim, dim + 3 * 4] and history["steps"] == 3 and history["width"] == 4
    assert len(history["neutral"]) == 4
