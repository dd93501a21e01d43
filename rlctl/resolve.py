"""Where a run's config comes from: the shipped presets, a preset file, CLI overrides and ``--set`` items.

:func:`resolve_config` applies them over the dataclass defaults of :mod:`rlctl.config` in order (later wins):
defaults → ``default`` preset entry → the preset named by ``--preset`` (or the entry keyed by the env id) → CLI
flags → ``--set section.key=value``, then validates the result.
"""

from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rlctl.config import Config, _apply, validate
from rlctl.errors import UserError

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def load_presets() -> dict[str, dict[str, Any]]:
    """All presets shipped in ``rlctl/presets/ppo.yaml`` (keys: env ids and named presets)."""
    text = resources.files("rlctl").joinpath("presets/ppo.yaml").read_text()
    data = yaml.safe_load(text)
    return {k: v or {} for k, v in data.items()}


def preset_for(env_id: str, preset: str | None) -> tuple[str, dict[str, Any]]:
    """The preset dict to apply: ``preset`` if named, else the entry for ``env_id`` (``atari`` for an
    ``ALE/*`` id without one), else ``default``.

    ``preset`` may also be a YAML file (e.g. written by ``rlctl tune``): its entry for ``env_id`` is
    used, or its only entry.
    """
    if preset is not None and preset.endswith((".yaml", ".yml")):
        return preset, _preset_from_file(Path(preset), env_id)
    presets = load_presets()
    if preset is not None:
        if preset not in presets:
            close = difflib.get_close_matches(preset, presets, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"unknown preset {preset!r}{hint} (list them with `rlctl presets`)")
        return preset, presets[preset]
    if env_id in presets:
        return env_id, presets[env_id]
    if env_id.startswith("ALE/") and "atari" in presets:
        return "atari", presets["atari"]
    return "default", presets.get("default", {})


def _preset_from_file(path: Path, env_id: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"preset file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"preset file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"preset file {path} must map env ids to settings")
    if env_id in data:
        return data[env_id] or {}
    if len(data) == 1:
        return next(iter(data.values())) or {}
    raise UserError(f"preset file {path} has no entry for {env_id} (entries: {', '.join(map(str, data))})")


def parse_set(items: list[str]) -> dict[str, Any]:
    """Turn ``["ppo.gamma=0.98", "policy.hidden_sizes=[256,256]"]`` into a nested dict.

    Values are parsed as YAML scalars/lists, so ``true``, ``null``, ``3e-4`` and ``[64, 64]`` work.
    """
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"malformed --set {item!r}: expected section.key=value, e.g. ppo.gamma=0.98")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
            if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
                value = float(value)  # YAML 1.1 leaves "3e-4" a string
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", exc)
            raise UserError(f"malformed --set {item!r}: cannot parse value {raw!r} ({problem})") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r} conflicts with an earlier --set of {part!r}")
        node[parts[-1]] = value
    return nested


def resolve_config(
    env_id: str,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    set_items: list[str] | None = None,
) -> tuple[Config, str]:
    """Defaults → preset → explicit overrides → ``--set``; returns the config and the preset name used."""
    name, preset_values = preset_for(env_id, preset)
    cfg = Config()
    defaults = load_presets().get("default", {})
    _apply(cfg, defaults, "")
    _apply(cfg, preset_values, "")
    _apply(cfg, {"env": {"id": env_id}}, "")
    _apply(cfg, overrides or {}, "")
    _apply(cfg, parse_set(set_items or []), "")
    validate(cfg)
    return cfg, name
