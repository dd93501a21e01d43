"""Run directories: the policy a config describes, and loading a run's config and trained policy.

``load_policy`` is what eval, enjoy, export and the benchmarks share to get a trained policy back.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from rlctl.agents.cnn import CnnActorCritic
from rlctl.agents.policies import Policy
from rlctl.agents.policy import ActorCritic
from rlctl.agents.recurrent import RecurrentActorCritic
from rlctl.checkpoint import load_checkpoint
from rlctl.config import Config, config_diff, load_yaml
from rlctl.device import fast_bf16
from rlctl.envs.make import make_env
from rlctl.envs.reward import RewardSource
from rlctl.errors import UserError
from rlctl.rundir import CHECKPOINT, CONFIG, RESUMES
from rlctl.spaces import SpaceAdapter, adapter_for_env


def build_agent(cfg: Config, adapter: SpaceAdapter, device: torch.device) -> Policy:
    """The policy module a config describes (also used by eval, enjoy and export).

    ``policy.encoder=auto`` takes an MLP for vector observations and the Nature CNN for images;
    ``policy.precision=auto`` runs a CNN encoder in bf16 where ``device`` computes bf16 natively.
    """
    p = cfg.policy
    image = adapter.image_shape is not None
    encoder = p.encoder if p.encoder != "auto" else ("nature" if image else "mlp")
    if image != (encoder != "mlp"):
        kind = f"image observations {adapter.image_shape}" if image else f"vector observations ({adapter.obs_dim},)"
        raise UserError(f"policy.encoder={encoder} does not fit {kind} of {cfg.env.id}; "
                        f"use {'nature or impala' if image else 'mlp'} (or auto)")
    if p.recurrent != "none":
        if adapter.critic_only_obs:
            raise UserError(f"{cfg.env.id}: critic-only observations need a feed-forward policy (policy.recurrent)")
        if image and adapter.action.kind == "continuous":
            raise UserError(f"{cfg.env.id}: CNN policies need discrete actions, got {adapter.action_space}")
        return RecurrentActorCritic(adapter.obs_shape, adapter.action, p.recurrent, p.recurrent_size,
                                    p.recurrent_layers, p.hidden_sizes, p.activation, encoder, p.normalize_obs,
                                    p.clip_obs, p.log_std_init, p.ortho_init).to(device)
    if image:
        if adapter.critic_only_obs:
            raise UserError(f"{cfg.env.id}: critic-only observations need an MLP policy on vector observations")
        if adapter.action.kind == "continuous":
            raise UserError(f"{cfg.env.id}: CNN policies need discrete actions, got {adapter.action_space}")
        channels, height, width = adapter.obs_shape
        if height != width:
            raise UserError(f"{cfg.env.id}: CNN policies need square frames, got {height}x{width}")
        precision = p.precision if p.precision != "auto" else "bf16" if fast_bf16(device) else "fp32"
        return CnnActorCritic(adapter.action, in_channels=channels, encoder=encoder, screen_size=height,
                              precision=precision).to(device)
    if p.precision == "bf16":
        raise UserError(f"policy.precision={p.precision} applies to CNN encoders only; MLPs run in fp32")
    return ActorCritic(
        adapter.obs_dim, adapter.action, p.hidden_sizes, p.activation, p.ortho_init, p.log_std_init,
        p.normalize_obs, p.clip_obs, actor_obs_dim=adapter.obs_dim - adapter.critic_only_obs,
    ).to(device)


def was_resumed(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` was continued from a checkpoint at least once."""
    return (Path(run_dir) / RESUMES).is_file()


def saved_config_diff(run_dir: Path, cfg: Config) -> list[str] | None:
    """Config keys on which the run in ``run_dir`` was trained differently from ``cfg`` (empty when they agree), or
    None when ``run_dir`` holds no saved config."""
    saved = Path(run_dir) / CONFIG
    return config_diff(load_yaml(saved.read_text()), cfg) if saved.is_file() else None


def can_resume(run_dir: Path, cfg: Config) -> bool:
    """Whether ``run_dir`` holds a checkpoint of a run with config ``cfg`` (which ``train(resume=True)`` continues
    exactly), rather than nothing or a run of another config."""
    return (Path(run_dir) / CHECKPOINT).is_file() and saved_config_diff(run_dir, cfg) == []


def load_run_config(run_dir: Path) -> Config:
    """The saved config of a run directory, with a clear error when it is not one."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise UserError(f"{run_dir} is not an rlctl run directory (no {CONFIG})")
    return load_yaml(path.read_text())


class LoadedPolicy(NamedTuple):
    """A trained policy with what it takes to run it (unpacks as ``cfg, agent, adapter, checkpoint, reward``)."""

    cfg: Config
    agent: Policy
    adapter: SpaceAdapter
    checkpoint: Path
    reward: RewardSource | None = None
    """the ``env.reward`` code the policy was trained with (kept in the checkpoint), if any"""


def load_policy(target: str | Path) -> LoadedPolicy:
    """The trained policy of a run directory or checkpoint file, on the CPU in eval mode.

    Sets torch's CPU threads to the run's ``run.torch_threads`` (1 unless the run chose more), as training did:
    one control step is a few tiny matrix products, and with torch's default of one thread per core each step
    waits on the others (an LSTM step took 19x longer with 2 threads than with 1 on a busy 2-core machine)."""
    path = Path(target)
    if not path.exists():
        raise UserError(f"{target}: no such run directory or checkpoint")
    ckpt_path = path / CHECKPOINT if path.is_dir() else path
    ckpt = load_checkpoint(ckpt_path)
    cfg = load_yaml(ckpt["config"])
    torch.set_num_threads(cfg.run.torch_threads)
    env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    adapter = adapter_for_env(env)
    env.close()
    agent = build_agent(cfg, adapter, torch.device("cpu"))
    try:
        agent.load_state_dict(ckpt["agent"])
    except RuntimeError as exc:
        raise UserError(f"{ckpt_path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    agent.eval()
    saved = ckpt.get("reward")
    reward = RewardSource(saved["spec"], saved["source"], saved["function"]) if saved else None
    return LoadedPolicy(cfg, agent, adapter, ckpt_path, reward)
