from __future__ import annotations

import dataclasses

import pytest

from rlctl.config import Config, from_dict, load_yaml, save_yaml, with_overrides
from rlctl.errors import UserError
from rlctl.resolve import load_presets, parse_set, resolve_config


def test_env_preset_then_overrides_then_set_in_that_order() -> None:
    cfg, name = resolve_config("HalfCheetah-v5", None, {"ppo": {"total_timesteps": 1234}},
                               ["ppo.gamma=0.5", "policy.hidden_sizes=[8, 8]"])
    assert name == "HalfCheetah-v5"
    assert cfg.ppo.num_steps == 512  # from the preset
    assert cfg.ppo.total_timesteps == 1234  # explicit override
    assert cfg.ppo.gamma == 0.5 and cfg.policy.hidden_sizes == [8, 8]  # --set wins


def test_set_on_a_mapping_merges_with_the_preset_mapping() -> None:
    cfg, _ = resolve_config("Pendulum-v1", None, {"env": {"kwargs": {"a": 1, "b": 2}}}, ["env.kwargs.b=3"])
    assert cfg.env.kwargs == {"a": 1, "b": 3}
    cfg, _ = resolve_config("Pendulum-v1", None, {"env": {"kwargs": {"a": 1}}}, ["env.kwargs={c: 4}"])
    assert cfg.env.kwargs == {"a": 1, "c": 4}


def test_unknown_env_gets_default_preset_and_named_preset_applies() -> None:
    cfg, name = resolve_config("MountainCarContinuous-v0")
    assert name == "default" and cfg.ppo.num_steps == Config().ppo.num_steps
    cfg, name = resolve_config("MountainCarContinuous-v0", "sb3-default")
    assert name == "sb3-default" and cfg.policy.normalize_obs is False and cfg.ppo.normalize_reward is False


def test_every_shipped_preset_resolves() -> None:
    for name in load_presets():
        resolve_config("CartPole-v1", name)


def test_env_kwargs_of_every_env_entry_are_accepted_by_its_env() -> None:
    """A misspelt keyword in a preset would otherwise only surface when someone trains that task."""
    import gymnasium as gym

    import rlctl.envs  # noqa: F401  (registers the rlctl/* ids)
    from rlctl.envs.make import make_env

    checked = []
    for name, entry in load_presets().items():
        if name in gym.registry and (entry.get("env") or {}).get("kwargs"):
            cfg = resolve_config(name)[0]
            make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps).close()
            checked.append(name)
    assert {"Ant-v5", "rlctl/QuadHover-v0", "rlctl/QuadWaypoint-v0"} <= set(checked)


def test_saved_yaml_round_trips() -> None:
    cfg, _ = resolve_config("Hopper-v5", None, None, ["ppo.target_kl=0.02"])
    assert load_yaml(save_yaml(cfg)) == cfg


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["run.seed=1.5"], "run.seed: expected int"),
        (["ppo.anneal_lr=yes please"], "ppo.anneal_lr: expected bool"),
        (["ppo.gamma=1.5"], "ppo.gamma must lie in [0, 1]"),
        (["ppo.num_steps=0"], "ppo.num_steps must be positive"),
        (["policy.activation=gelu"], "tanh, relu, elu"),
        (["policy.hidden_sizes=[]"], "policy.hidden_sizes"),
        (["ppo=3"], "expected a mapping of ppo settings"),
        (["nosection.x=1"], "unknown config key 'nosection'"),
        (["ppo.learning_rat=1"], "did you mean ppo.learning_rate"),
        (["=3"], "malformed --set"),
        (["ppo.gamma=[1, 2"], "cannot parse value"),
        (["env.randomization_ramp=0.5"], "env.kwargs.sim2real=randomized"),
        (["env.randomization_ramp=1.5"], "env.randomization_ramp must lie in [0, 1]"),
        (["env.randomization_ramp=0.5", "env.kwargs.sim2real=randomized", "env.kwargs.sim2real_strength=0.5"],
         "drop env.kwargs.sim2real_strength"),
    ],
)
def test_invalid_values_name_the_key(items: list[str], message: str) -> None:
    with pytest.raises(UserError, match=pytest.importorskip("re").escape(message)):
        resolve_config("CartPole-v1", None, None, items)


def test_parse_set_builds_nested_values_with_yaml_types() -> None:
    assert parse_set(["a.b=1e-3", "a.c=true", "d.e=null", "d.f=[1, 2]"]) == {
        "a": {"b": 1e-3, "c": True}, "d": {"e": None, "f": [1, 2]}}


@pytest.mark.parametrize("section", ["env", "policy", "ppo", "arbiter", "run"])
def test_a_resolved_config_cannot_be_assigned_to(section: str) -> None:
    cfg, _ = resolve_config("CartPole-v1")
    part = getattr(cfg, section)
    name = dataclasses.fields(part)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(part, name, getattr(part, name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ppo = cfg.ppo  # type: ignore[misc]


def test_with_overrides_derives_a_checked_copy_and_leaves_the_original() -> None:
    cfg, _ = resolve_config("Pendulum-v1", None, {"env": {"kwargs": {"a": 1}}})
    before = save_yaml(cfg)
    changed = with_overrides(cfg, {"run": {"device": "cpu"}, "env": {"kwargs": {"b": 2}}})
    assert changed.run.device == "cpu" and changed.env.kwargs == {"a": 1, "b": 2}  # mappings merge, as --set does
    assert save_yaml(cfg) == before and cfg.env.kwargs == {"a": 1}
    assert changed.ppo == cfg.ppo and changed.ppo is not cfg.ppo  # a copy, sharing nothing mutable
    with pytest.raises(UserError, match=r"run\.device"):
        with_overrides(cfg, {"run": {"device": "tpu"}})
    with pytest.raises(UserError, match=r"unknown config key 'run\.devise'"):
        with_overrides(cfg, {"run": {"devise": "cpu"}})
    with pytest.raises(UserError, match=r"overlap=true needs run\.sampler"):  # cross-field rules, too
        with_overrides(cfg, {"run": {"overlap": True}})


def test_from_dict_leaves_its_base_as_it_was() -> None:
    base = Config()
    derived = from_dict({"ppo": {"gamma": 0.5}}, base)
    assert derived.ppo.gamma == 0.5 and base.ppo.gamma == Config().ppo.gamma


def test_randomization_ramp_rises_linearly_from_its_start_and_then_holds_full_strength() -> None:
    env = resolve_config("rlctl/QuadHover-v0", None, None, ["env.kwargs.sim2real=randomized",
                                                           "env.randomization_ramp=0.5",
                                                           "env.randomization_start=0.2"])[0].env
    assert [env.strength(p) for p in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    assert resolve_config("rlctl/QuadHover-v0")[0].env.strength(0.0) == 1.0  # no ramp: full throughout


def test_every_config_key_is_named_in_the_readme() -> None:
    import dataclasses
    import re
    from pathlib import Path

    from rlctl.config import Config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    keys = [f"{section.name}.{key.name}" for section in dataclasses.fields(Config)
            for key in dataclasses.fields(getattr(Config(), section.name))]
    assert [k for k in keys if not re.search(rf"`{re.escape(k)}\b", readme)] == []
