"""Recurrent policy export: the state is an input and an output of every format, the exported step reproduces the
torch policy over whole episodes (each side carrying its own state), and a wrong export is refused unwritten.

Agents are built from Pendulum's spaces with non-trivial normalizer statistics and a scaled-up actor head (so
the action clip is hit), and checked here by replaying episodes against the files, independently of the
exporter's own verification.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.cli import main
from rlctl.config import Config, from_dict
from rlctl.export import TOLERANCE, ExportMismatchError, export_policy
from rlctl.export.recurrent import NumpyRecurrentPolicy
from rlctl.spaces import SpaceAdapter, adapter_for

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def _agent(cell: str, layers: int = 2, seed: int = 0) -> tuple[RecurrentActorCritic, SpaceAdapter, Config]:
    env = gym.make("Pendulum-v1")
    adapter = adapter_for(env.observation_space, env.action_space)
    env.close()
    torch.manual_seed(seed)
    agent = RecurrentActorCritic((adapter.obs_dim,), adapter.action, cell=cell, size=16, layers=layers,
                                 hidden_sizes=[32])
    with torch.no_grad():
        agent.obs_rms.mean.copy_(torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64))
        agent.obs_rms.var.copy_(torch.tensor([0.5, 0.4, 9.0], dtype=torch.float64))
        agent.actor.weight.mul_(200.0)  # the 0.01-gain init would keep every action far inside ±2
    cfg = from_dict({"env": {"id": "Pendulum-v1"}, "policy": {"recurrent": cell, "recurrent_size": 16,
                                                              "recurrent_layers": layers, "hidden_sizes": [32]}})
    return agent.eval(), adapter, cfg


def _loaded(fmt: str, out: Path) -> Any:
    """A step function ``(obs, state) → (action, state)`` read back from the written file alone."""
    if fmt == "numpy":
        return NumpyRecurrentPolicy.load(out / "policy.npz")
    if fmt == "torchscript":
        module = torch.jit.load(str(out / "policy.pt"))
        return lambda o, s: tuple(t.numpy() for t in module(torch.from_numpy(o), torch.from_numpy(s)))
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    return lambda o, s: tuple(session.run(["action", "state_out"], {"obs": o, "state": s}))


def _episode_diff(agent: RecurrentActorCritic, step: Any, seed: int, carry: bool = True) -> tuple[float, float]:
    """Max |Δaction| and |Δstate| between ``step`` and the torch policy over one Pendulum episode (200 steps)."""
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    mine = agent.initial_state(1)
    theirs = np.zeros((1, agent.state_size), np.float32)
    worst_action = worst_state = 0.0
    done = False
    while not done:
        x = np.asarray(obs, np.float32)[None]
        with torch.no_grad():
            want, mine = agent.act(torch.from_numpy(x), mine, torch.zeros(1, dtype=torch.bool), deterministic=True)
        got, after = step(x, theirs if carry else np.zeros_like(theirs))
        theirs = np.asarray(after, np.float32)
        worst_action = max(worst_action, float(np.abs(np.asarray(got) - want.numpy()).max()))
        worst_state = max(worst_state, float(np.abs(theirs - mine.numpy()).max()))
        obs, _, terminated, truncated, _ = env.step(want.numpy()[0])
        done = terminated or truncated
    env.close()
    return worst_action, worst_state


@pytest.mark.parametrize(("fmt", "cell"), [("onnx", "lstm"), ("torchscript", "gru"), ("numpy", "lstm"),
                                           ("numpy", "gru")])
def test_a_recurrent_export_reproduces_the_policy_over_whole_episodes(tmp_path: Path, fmt: str, cell: str) -> None:
    agent, adapter, cfg = _agent(cell)
    meta = export_policy(agent, adapter, cfg, tmp_path, fmt)
    sidecar = json.loads((tmp_path / "policy.json").read_text())
    assert sidecar["recurrent"]["state_size"] == agent.state_size == 16 * 2 * (2 if cell == "lstm" else 1)
    assert sidecar["io"]["state_input"] == "state" and sidecar["io"]["state_shape"] == ["batch", agent.state_size]
    assert meta["verification"]["env_episodes"] == 2 and meta["verification"]["max_abs_diff"] <= TOLERANCE
    step = _loaded(fmt, tmp_path)
    action_diff, state_diff = _episode_diff(agent, step, seed=7)
    assert action_diff <= TOLERANCE and state_diff <= TOLERANCE
    # The memory is really in the loop: zeroing the state every step acts differently.
    assert _episode_diff(agent, step, seed=7, carry=False)[0] > 1e-3


def test_a_numpy_recurrent_step_matches_torch_on_a_batch_of_streams() -> None:
    agent, _, _ = _agent("lstm", layers=1)
    runner = NumpyRecurrentPolicy.from_agent(agent)
    rng = np.random.default_rng(0)
    mine, theirs = agent.initial_state(5), runner.initial_state(5)
    for _ in range(30):
        obs = rng.normal(0.0, 3.0, (5, 3)).astype(np.float32)
        with torch.no_grad():
            want, mine = agent.act(torch.from_numpy(obs), mine, torch.zeros(5, dtype=torch.bool), True)
        got, theirs = runner(obs, theirs)
        np.testing.assert_allclose(got, want.numpy(), atol=TOLERANCE)
        np.testing.assert_allclose(theirs, mine.numpy(), atol=TOLERANCE)


def test_a_recurrent_export_that_drifts_is_refused_and_nothing_is_written(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    agent, adapter, cfg = _agent("gru")
    original = NumpyRecurrentPolicy.__call__

    def leaky(self: NumpyRecurrentPolicy, obs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, after = original(self, obs, state)
        return action, after * np.float32(0.999)  # a memory that forgets a little each step

    monkeypatch.setattr(NumpyRecurrentPolicy, "__call__", leaky)
    with pytest.raises(ExportMismatchError, match="nothing was written"):
        export_policy(agent, adapter, cfg, tmp_path / "out", "numpy")
    assert not (tmp_path / "out").exists()


def test_a_trained_recurrent_run_exports_through_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--env", "Pendulum-v1", "--steps", "512", "--num-envs", "2", "--run-dir", str(run),
                 "--quiet", "--set", "policy.recurrent=gru", "--set", "policy.recurrent_size=8",
                 "--set", "ppo.num_steps=128", "--set", "ppo.bptt_steps=32"]) == 0
    assert main(["export", str(run), "--format", "numpy", "--out", str(tmp_path / "exported")]) == 0
    sidecar = json.loads((tmp_path / "exported" / "policy.json").read_text())
    assert sidecar["recurrent"]["cell"] == "gru" and sidecar["verification"]["env_episodes"] == 2
