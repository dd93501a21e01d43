"""One typed config tree for a training run: its sections, their checks, and YAML in and out.

Where the values come from (presets, CLI flags, ``--set``) and in which order is :mod:`rlctl.resolve`. The
resolved tree is frozen (assigning a field raises ``dataclasses.FrozenInstanceError``), so the config a run saves
to ``RUN/config.yaml`` is the one it trained with; :func:`with_overrides` derives a changed copy, with the same
checks as ``--set``. (``env.kwargs`` is still a dict: read it, never change it in place.)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from rlctl.errors import UserError


@dataclass(frozen=True)
class EnvConfig:
    """Which environment, how many copies, and how they are stepped."""

    id: str = "CartPole-v1"
    """gymnasium id; ``module:Env-v0`` imports ``module`` first (third-party registrations)"""
    num_envs: int = 1
    """number of environment copies stepped as one vector env"""
    vectorization: str = "sync"
    """``sync`` (in-process, deterministic), ``async`` (one subprocess per env) or ``envpool`` (Atari on
    EnvPool's C++ threads; needs the envpool extra)"""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """extra keyword arguments for ``gymnasium.make``"""
    max_episode_steps: int | None = None
    """override the registered time limit (``None`` keeps it)"""
    reward: str | None = None
    """``FILE.py:fn``: a reward function that replaces the env's reward (see :mod:`rlctl.envs.reward`); its
    sha256 is recorded with the run, and a resume refuses a changed file unless forced"""
    randomization_ramp: float = 0.0
    """a curriculum on the strength of the quadrotor's sim-to-real set (``kwargs.sim2real``): it rises linearly
    from ``randomization_start`` to full over this fraction of the training budget (0: full from the start)"""
    randomization_start: float = 0.0
    """the strength the ramp starts from (0: the nominal vehicle)"""

    def strength(self, progress: float) -> float:
        """The randomization strength at ``progress`` (steps done ÷ budget) of training."""
        if self.randomization_ramp <= 0:
            return 1.0
        done = min(1.0, progress / self.randomization_ramp)
        return self.randomization_start + (1.0 - self.randomization_start) * done


@dataclass(frozen=True)
class PolicyConfig:
    """The actor-critic network and the normalizers that live inside it."""

    encoder: str = "auto"
    """network body: ``mlp`` (vector observations), ``nature`` or ``impala`` CNN (image observations,
    one encoder shared by actor and critic); ``auto`` picks mlp or nature from the observation space"""
    precision: str = "fp32"
    """CNN encoders: ``bf16`` runs the convolutions under bfloat16 autocast (2x faster updates on CPUs
    with AMX/AVX512-BF16 and on GPUs; weights, heads and losses stay fp32), ``auto`` takes bf16 where the
    device computes it natively; MLPs are always fp32"""
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """MLP hidden layer widths, used for both the actor and the critic (separate networks)"""
    activation: str = "tanh"
    """``tanh``, ``relu`` or ``elu``"""
    ortho_init: bool = True
    """orthogonal init (gain √2 hidden, 0.01 actor head, 1 critic head), as in the PPO baselines"""
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (continuous actions)"""
    normalize_obs: bool = True
    """running mean/std observation normalization, stored in the policy and its checkpoint"""
    clip_obs: float = 10.0
    """normalized observations are clipped to ±clip_obs"""
    recurrent: str = "none"
    """``lstm`` or ``gru``: a policy with memory (the encoder, then one recurrent core shared by actor and
    critic; its state is carried per env and reset at episode starts); ``none``: feed-forward"""
    recurrent_size: int = 128
    """units of the recurrent core"""
    recurrent_layers: int = 1
    """stacked layers of the recurrent core"""


@dataclass(frozen=True)
class PPOConfig:
    """PPO and GAE hyperparameters, named as in the papers and CleanRL."""

    total_timesteps: int = 1_000_000
    """environment steps (summed over all envs) to train for"""
    learning_rate: float = 3e-4
    """Adam step size at the start of training"""
    anneal_lr: bool = False
    """linearly anneal the learning rate to 0 over the run"""
    num_steps: int = 2048
    """rollout length per env; a rollout holds num_steps × num_envs transitions"""
    minibatch_size: int = 64
    """transitions per gradient step (SB3's ``batch_size``)"""
    update_epochs: int = 10
    """passes over each rollout"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE λ; 1.0 gives Monte Carlo returns minus the baseline"""
    clip_coef: float = 0.2
    """PPO ratio clipping ε"""
    per_dim_ratio: bool = False
    """clip one likelihood ratio per action dimension, ``Σ_i min(r_i·A, clip(r_i, 1±ε)·A)``, instead of the joint
    ratio (factorized baselines always do). With many dimensions the joint ratio leaves the clip range after tiny
    per-dimension changes, so this alone changes how far an update moves the policy"""
    anneal_clip: bool = False
    """linearly anneal clip_coef to 0 over the run (the PPO paper's Atari setting)"""
    clip_vloss: bool = False
    """clip the value loss around the old values with clip_coef (off in SB3, on in CleanRL)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient; the value loss is ``mean((V − R)²)`` as in SB3 (CleanRL's has a ½ in front, so
    its vf_coef is twice rlctl's for the same weight)"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    target_kl: float | None = None
    """stop the update's remaining epochs once the approximate KL of an epoch exceeds this"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    bptt_steps: int = 0
    """recurrent policies: training sequences of this many steps, each replayed from the state stored at
    collection (must divide num_steps); a minibatch holds max(1, minibatch_size // bptt_steps) of them;
    0: the whole rollout"""
    recompute_adv: bool = False
    """recompute values, advantages and returns with the current critic before every epoch after the first
    (Tianshou's default; recommended by Andrychowicz et al. 2021, "What matters in on-policy RL")"""
    normalize_reward: bool = True
    """scale rewards by the running std of the discounted return (VecNormalize-style)"""
    clip_reward: float = 10.0
    """scaled rewards are clipped to ±clip_reward"""
    smooth_temporal: float = 0.0
    """CAPS temporal smoothness λ_T (Mysore et al. 2021): penalize ``|μ(s_t) − μ(s_{t+1})|²`` within episodes
    (Gaussian policies); fewer jittery commands, the chatter a real actuator cannot follow"""
    smooth_spatial: float = 0.0
    """CAPS spatial smoothness λ_S: penalize ``|μ(s) − μ(s + δ)|²``, δ ~ N(0, smooth_sigma²) in normalized
    observation units: a flatter policy that amplifies sensor noise and model error less"""
    smooth_sigma: float = 0.05
    """std of the spatial-smoothness perturbation, in normalized observation units"""
    adam_eps: float = 1e-5
    """Adam ε (1e-5 as in the PPO baselines; torch's default is 1e-8)"""


@dataclass(frozen=True)
class RunConfig:
    """Everything outside the algorithm: seeding, device, logging, checkpoints, evaluation."""

    seed: int = 1
    """one seed gives one run: torch, numpy, python and env seeds derive from it"""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``; auto takes CUDA when present"""
    torch_threads: int = 1
    """torch CPU threads; 1 is fastest for small MLPs and keeps runs deterministic"""
    compile: bool = False
    """run the minibatch loss and the optimizer step through torch.compile (~2x faster updates, ~20 s to compile)"""
    sampler: str = "inline"
    """``inline`` (collect in the learner's process), ``process`` (sampler processes with policy copies)
    or ``ray`` (the same workers as Ray actors)"""
    ray_address: str | None = None
    """with ``sampler=ray``: the cluster to join (``HOST:6379``); none starts a local one on 127.0.0.1"""
    overlap: bool = False
    """with ``sampler=process|ray``: collect rollout i+1 while updating on rollout i (policy lag 1)"""
    num_workers: int = 1
    """with ``sampler=process|ray``: sampler workers, each stepping num_envs / num_workers envs"""
    worker_timeout: float = 120.0
    """seconds a sampler process may take for one rollout before it is deemed hung and restarted"""
    max_worker_restarts: int = 3
    """restarts of a failed sampler process before training stops with its error"""
    checkpoint_every: int = 50_000
    """environment steps between checkpoints (one is always written at the end)"""
    keep_checkpoints: bool = False
    """also keep each checkpoint as ``checkpoints/step_<N>.pt`` (N = its step), to evaluate or measure
    (``rlctl variance``) a run at several points; the resumable one stays ``checkpoint.pt``"""
    log_every: int = 2048
    """environment steps between scalar log writes (rounded up to whole rollouts)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end of training (0 skips it)"""


@dataclass(frozen=True)
class ArbiterConfig:
    """A baseline controller that acts inside the collector, and how agency passes to the learned policy
    (:mod:`rlctl.agents.arbiter`)."""

    baseline: str | None = None
    """the controller: ``controller:NAME`` (``pid``, ``ik``, ``push``, ``energy``), an rlctl run directory, or
    ``sb3:PATH.zip``; none lets the learned policy act at every step"""
    mode: str = "prob"
    """who acts: ``prob`` (the learner with probability p), ``calf`` (the learner when its critic certifies an
    improvement, else with the relax probability), ``jsrl`` (the baseline for the first ⌈H·(1−p)⌉ steps of each
    episode) or ``residual`` (the env gets learner + (1−p)·baseline)"""
    schedule: str = "linear"
    """how the learner's share p moves: ``fixed`` (share_start throughout), ``linear`` (share_start → 1 at
    transfer_end), ``multiplicative`` (× factor per update) or ``success_gated`` (raised by gate_step when the
    learner alone reaches the goal in gate_success of its evaluation episodes)"""
    share_start: float = 0.0
    """the learner's share p at the start of training (and the floor of the ``success_gated`` share)"""
    transfer_end: float = 0.8
    """fraction of the step budget after which the baseline is disconnected (p = 1)"""
    factor: float = 1.05
    """``multiplicative``: p's factor per update"""
    gate_success: float = 0.8
    """``success_gated``: learner-alone success rate that raises p"""
    gate_step: float = 0.1
    """``success_gated``: how much one evaluation moves p"""
    eval_every: int = 0
    """env steps between evaluations of the learner alone (baseline disconnected); 0: never (needed by
    ``success_gated``)"""
    eval_episodes: int = 10
    """episodes per learner-alone evaluation"""
    nu: float = 5e-4
    """``calf``: the critic improvement ν that certifies the learner's step"""
    relax_init: float = 0.5
    """``calf``: relax probability λ₀ of the first episode"""
    relax_step_factor: float = 0.9
    """``calf``: λ's factor per step within an episode"""
    relax_episode_factor: float = 0.1
    """``calf``: λ₀ grows by this fraction per episode"""
    horizon: int = 0
    """``jsrl``: the guide horizon H in steps (0: the env's time limit)"""
    baseline_steps: str = "off_policy"
    """what PPO does with the baseline's steps: ``off_policy`` (trains on them with the learner's log-prob of
    the executed action and the clipped ratio), ``mask`` (value loss only) or ``bc`` (value loss, plus an
    imitation term bc_coef·(−log π(a_baseline|s)))"""
    bc_coef: float = 0.1
    """``bc``: weight of the imitation term"""


@dataclass(frozen=True)
class BaselineConfig:
    """What the policy gradient subtracts from the return: the state critic, or one baseline per action factor."""

    type: str = "state"
    """``state``: GAE with the critic V(s); ``factorized``: per-dimension baselines b_i(s, a^{-i}) (Wu et al. 2018),
    per-dimension ratios and advantages ``A^i = R^λ − b_i`` (Gaussian and MultiDiscrete policies on vector
    observations)"""
    mode: str = "regress"
    """with ``factorized``: ``regress`` (b_i fit to the return from [s, t/H, a^{-i}]), ``q_mean`` (a learned Q(s, a)
    with a^i set to the policy mean) or ``q_mc`` (Q averaged over mc_samples draws of a^i)"""
    mc_samples: int = 4
    """draws M of a^i per row for ``q_mc`` (its cost: D·M Q evaluations per row)"""
    fit: str = "previous"
    """``previous``: each batch's baselines come from the networks fit up to the previous batch; ``crossfit``: two
    networks, each fit on half the batch's episodes and predicting the other half"""
    fit_dims: int = 32
    """``regress``: factors per row in each fitting step, drawn at random (0: all); keeps fitting cheap at D = 2000"""


@dataclass(frozen=True)
class CurriculumConfig:
    """Episodes that start from demonstration states, moving back as the agent succeeds (Salimans & Chen 2018;
    :mod:`rlctl.envs.demo_start`, :mod:`rlctl.train.curriculum`). Distances count env steps before a demo's end."""

    demos: list[str] = field(default_factory=list)
    """demo files (``rlctl demo record``); their episodes are sampled per training episode; none: no curriculum"""
    window: int = 10
    """start points spread over this many steps before the current one"""
    threshold: float = 0.2
    """move back while the successes summed over the window's start points reach threshold·window"""
    backoff: int = 10
    """steps the start point moves forward (easier) when success collapses"""
    frac_sample: float = 0.2
    """share of episodes that start uniformly between the current start point and the demo's end"""
    warmup_steps: int = 0
    """demo steps replayed before each start (demo actions, masked out of every loss)"""
    extra_steps: int = 50
    """an episode is truncated L ≤ extra_steps steps after the demo's horizon (L = ⌊e^{U·ln(extra_steps+1)}⌋)"""
    start_back: int = 1
    """the first start point, in steps before the demo's end"""
    min_episodes: int = 20
    """episodes from demo starts needed before the start point may move"""
    eval_every: int = 0
    """env steps between evaluations from the env's own initial states (no demo); 0: never"""
    eval_episodes: int = 20
    """episodes per evaluation"""
    solve_success: float = 0.0
    """stop training once an evaluation's success rate reaches this (0: never stop early)"""

    @property
    def replays_demo_steps(self) -> bool:
        """Whether episodes begin with replayed demo steps, which every loss term leaves out."""
        return bool(self.demos and self.warmup_steps)


@dataclass(frozen=True)
class Config:
    """The whole run: ``env``, ``policy``, ``ppo``, ``arbiter``, ``baseline``, ``curriculum`` and ``run`` sections."""

    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    arbiter: ArbiterConfig = field(default_factory=ArbiterConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (num_steps × num_envs)."""
        return self.ppo.num_steps * self.env.num_envs

    @property
    def num_updates(self) -> int:
        """Rollout/update iterations that fit in total_timesteps (at least one)."""
        return max(1, self.ppo.total_timesteps // self.batch_size)


_CHOICES: dict[str, tuple[str, ...]] = {
    "env.vectorization": ("sync", "async", "envpool"),
    "policy.activation": ("tanh", "relu", "elu"),
    "policy.encoder": ("auto", "mlp", "nature", "impala"),
    "policy.precision": ("auto", "fp32", "bf16"),
    "policy.recurrent": ("none", "lstm", "gru"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.sampler": ("inline", "process", "ray"),
    "arbiter.mode": ("prob", "calf", "jsrl", "residual"),
    "arbiter.schedule": ("fixed", "linear", "multiplicative", "success_gated"),
    "arbiter.baseline_steps": ("off_policy", "mask", "bc"),
    "baseline.type": ("state", "factorized"),
    "baseline.mode": ("regress", "q_mean", "q_mc"),
    "baseline.fit": ("previous", "crossfit"),
}


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass with type checking
# ---------------------------------------------------------------------------------------------


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (YAML- and JSON-safe)."""
    return dataclasses.asdict(cfg)


def _check_value(path: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` or raise UserError naming ``path``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(path, value, inner[0])
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            choices = _CHOICES.get(path)
            if choices and value not in choices:
                raise UserError(f"{path}: {value!r} is not one of {', '.join(choices)}")
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_check_value(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - a new field type must be taught here
        raise TypeError(f"unsupported config type {hint} at {path}")
    expected = getattr(hint, "__name__", str(hint))
    raise UserError(f"{path}: expected {expected}, got {value!r} ({type(value).__name__})")


def _apply(section: Any, values: dict[str, Any], prefix: str) -> None:
    """Set ``values`` on ``section`` (a config being built, not yet handed out), type-checked key by key."""
    hints = typing.get_type_hints(type(section))
    names = [f.name for f in dataclasses.fields(section)]
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UserError(f"unknown config key {path!r}{hint}; valid keys: {', '.join(prefix + n for n in names)}")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"{path}: expected a mapping of {key} settings, got {value!r}")
            _apply(current, value, f"{path}.")
        elif isinstance(current, dict) and isinstance(value, dict):
            # a mapping field (env kwargs, reward weights) merges, so `--set env.kwargs.sim2real=randomized`
            # keeps the preset's other kwargs
            object.__setattr__(section, key, _check_value(path, {**current, **value}, hints[key]))
        else:  # the dataclasses are frozen for everyone else
            object.__setattr__(section, key, _check_value(path, value, hints[key]))


def from_dict(values: dict[str, Any], base: Config | None = None, check: bool = True) -> Config:
    """Build a Config from a nested dict (on a copy of ``base``, which is left as it is), validating every key
    and type (and, with ``check``, the cross-field rules of :func:`validate`)."""
    cfg = copy.deepcopy(base) if base is not None else Config()
    _apply(cfg, values, "")
    if check:
        validate(cfg)
    return cfg


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with ``overrides`` (nested, as ``{"run": {"device": "cpu"}}``) applied and validated.

    The way to change a resolved config, which is frozen: the same type checks and cross-field rules as
    ``--set``, and ``cfg`` itself stays as it was.
    """
    return from_dict(overrides, base=cfg)


def validate(cfg: Config) -> None:
    """Cross-field checks that a single type check cannot express."""
    positive = {
        "env.num_envs": cfg.env.num_envs,
        "ppo.total_timesteps": cfg.ppo.total_timesteps,
        "ppo.num_steps": cfg.ppo.num_steps,
        "ppo.minibatch_size": cfg.ppo.minibatch_size,
        "ppo.update_epochs": cfg.ppo.update_epochs,
        "ppo.learning_rate": cfg.ppo.learning_rate,
        "run.torch_threads": cfg.run.torch_threads,
        "run.checkpoint_every": cfg.run.checkpoint_every,
        "run.log_every": cfg.run.log_every,
    }
    for path, value in positive.items():
        if value <= 0:
            raise UserError(f"{path} must be positive, got {value}")
    for path, value in {"ppo.gamma": cfg.ppo.gamma, "ppo.gae_lambda": cfg.ppo.gae_lambda}.items():
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{path} must lie in [0, 1], got {value}")
    if cfg.ppo.minibatch_size > cfg.batch_size:
        raise UserError(
            f"ppo.minibatch_size ({cfg.ppo.minibatch_size}) exceeds the rollout size "
            f"num_steps × num_envs = {cfg.batch_size}"
        )
    if cfg.run.overlap and cfg.run.sampler == "inline":
        raise UserError("run.overlap=true needs run.sampler=process or ray (inline collection cannot overlap)")
    if cfg.run.num_workers < 1 or cfg.env.num_envs % cfg.run.num_workers:
        raise UserError(f"run.num_workers ({cfg.run.num_workers}) must be >= 1 and divide env.num_envs "
                        f"({cfg.env.num_envs})")
    if cfg.run.num_workers > 1 and cfg.run.sampler == "inline":
        raise UserError("run.num_workers > 1 needs run.sampler=process or ray")
    for path, value in {"ppo.smooth_temporal": cfg.ppo.smooth_temporal,
                        "ppo.smooth_spatial": cfg.ppo.smooth_spatial}.items():
        if value < 0:
            raise UserError(f"{path} must be >= 0, got {value}")
    if cfg.ppo.smooth_sigma <= 0:
        raise UserError(f"ppo.smooth_sigma must be positive, got {cfg.ppo.smooth_sigma}")
    arbiter = cfg.arbiter
    for path, value in {"arbiter.share_start": arbiter.share_start, "arbiter.transfer_end": arbiter.transfer_end,
                        "arbiter.gate_success": arbiter.gate_success, "arbiter.relax_init": arbiter.relax_init,
                        "arbiter.gate_step": arbiter.gate_step}.items():
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{path} must lie in [0, 1], got {value}")
    if arbiter.schedule == "success_gated" and arbiter.eval_every <= 0 and arbiter.baseline is not None:
        raise UserError("arbiter.schedule=success_gated needs arbiter.eval_every > 0 (evaluations raise the share)")
    if min(arbiter.eval_every, arbiter.eval_episodes, arbiter.horizon, arbiter.nu, arbiter.bc_coef) < 0 \
            or arbiter.factor <= 0:
        raise UserError("arbiter.eval_every, eval_episodes, horizon, nu and bc_coef must be >= 0 and factor > 0")
    if cfg.run.eval_episodes < 0:
        raise UserError(f"run.eval_episodes must be >= 0, got {cfg.run.eval_episodes}")
    if cfg.baseline.mc_samples < 1 or cfg.baseline.fit_dims < 0:
        raise UserError(f"baseline.mc_samples must be >= 1 and baseline.fit_dims >= 0, got {cfg.baseline.mc_samples} "
                        f"and {cfg.baseline.fit_dims}")
    _validate_curriculum(cfg)
    _validate_recurrent(cfg)
    _validate_randomization(cfg.env)
    if not cfg.policy.hidden_sizes or min(cfg.policy.hidden_sizes) <= 0:
        raise UserError(f"policy.hidden_sizes must be a non-empty list of positive ints, got {cfg.policy.hidden_sizes}")


def _validate_randomization(env: EnvConfig) -> None:
    for path, value in {"env.randomization_ramp": env.randomization_ramp,
                        "env.randomization_start": env.randomization_start}.items():
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{path} must lie in [0, 1], got {value}")
    if env.randomization_ramp > 0 and env.kwargs.get("sim2real", "nominal") == "nominal":
        raise UserError("env.randomization_ramp ramps up a sim-to-real set; name one with "
                        "env.kwargs.sim2real=randomized (a quadrotor env)")
    if env.randomization_ramp > 0 and "sim2real_strength" in env.kwargs:
        raise UserError("env.randomization_ramp sets the strength of the training envs; drop "
                        "env.kwargs.sim2real_strength")


def _validate_recurrent(cfg: Config) -> None:
    p, ppo = cfg.policy, cfg.ppo
    if p.recurrent_size < 1 or p.recurrent_layers < 1 or ppo.bptt_steps < 0:
        raise UserError("policy.recurrent_size and recurrent_layers must be >= 1, ppo.bptt_steps >= 0")
    if p.recurrent == "none":
        return
    if ppo.bptt_steps and ppo.num_steps % ppo.bptt_steps:
        raise UserError(f"ppo.bptt_steps ({ppo.bptt_steps}) must divide ppo.num_steps ({ppo.num_steps})")
    unsupported = {"baseline.type=factorized": cfg.baseline.type == "factorized",
                   "arbiter.baseline": cfg.arbiter.baseline is not None,
                   "run.compile": cfg.run.compile,
                   "curriculum.warmup_steps": cfg.curriculum.replays_demo_steps}
    if used := [name for name, on in unsupported.items() if on]:
        raise UserError(f"policy.recurrent={p.recurrent} does not work with {', '.join(used)} yet")


def _validate_curriculum(cfg: Config) -> None:
    c = cfg.curriculum
    if min(c.window, c.start_back, c.backoff) < 1 or min(c.warmup_steps, c.extra_steps, c.min_episodes,
                                                         c.eval_every, c.eval_episodes) < 0:
        raise UserError("curriculum.window, start_back and backoff must be >= 1; warmup_steps, extra_steps, "
                        "min_episodes, eval_every and eval_episodes >= 0")
    for path, value in {"curriculum.threshold": c.threshold, "curriculum.frac_sample": c.frac_sample,
                        "curriculum.solve_success": c.solve_success}.items():
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{path} must lie in [0, 1], got {value}")
    if c.demos and cfg.env.vectorization == "envpool":
        raise UserError("curriculum.demos needs env.vectorization sync or async: EnvPool cannot restore states")
    if c.replays_demo_steps and cfg.ppo.recompute_adv:
        raise UserError("curriculum.warmup_steps drops replayed steps from the batch, which ppo.recompute_adv "
                        "cannot follow: set one of them off")
    if c.solve_success > 0 and c.eval_every <= 0:
        raise UserError("curriculum.solve_success needs curriculum.eval_every > 0 (the evaluations decide it)")


def config_diff(a: Config, b: Config) -> list[str]:
    """Dotted keys (``ppo.smooth_temporal``, ``env.kwargs.sim2real``) whose values differ between two configs."""

    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
        return {prefix[:-1]: value}

    fa, fb = flat(to_dict(a), ""), flat(to_dict(b), "")
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def save_yaml(cfg: Config) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def load_yaml(text: str) -> Config:
    """Parse a saved ``config.yaml`` back into a Config (validated)."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise UserError("config file is not a mapping")
    return from_dict(data)
