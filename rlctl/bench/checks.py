"""Up-front checks of a ``rlctl bench`` verb's input.

A benchmark runs its work in worker processes, where a mistake (an unknown env id, a misspelt ``--set`` key)
would surface minutes later as a worker's traceback. Every verb calls these first, so a mistake is one line
(``error: …``, exit 2) before any directory is made or any process starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from rlctl.errors import UserError


def positive(**counts: float | None) -> None:
    """Raise UserError naming each count (``--seeds``, ...) that is not positive; None means unset."""
    bad = [f"--{name.replace('_', '-')} ({value})" for name, value in counts.items()
           if value is not None and value <= 0]
    if bad:
        raise UserError(f"{', '.join(bad)} must be positive")


def env_ids(ids: Sequence[str], flag: str) -> None:
    """Each id must be registered (or importable, ``module:Env-v0``): the env layer's EnvError otherwise."""
    from rlctl.envs.ids import check_env_id

    if not ids:
        raise UserError(f"{flag} names no env id")
    for env_id in ids:
        check_env_id(env_id)


def preset(name: str, envs: Iterable[str] = (), files: bool = True) -> None:
    """``name`` must be a shipped preset or (with ``files``) a preset YAML file with an entry for each env."""
    from rlctl.resolve import preset_for

    if name.endswith((".yaml", ".yml")):
        if not files:
            raise UserError(f"--preset {name}: this verb takes a preset name (see `rlctl presets`), not a file")
        if not Path(name).is_file():
            raise UserError(f"preset file {name} does not exist")
    else:
        preset_for("", name)  # an unknown name raises, with close matches
    for env_id in envs:
        preset_for(env_id, name)


def set_items(items: Sequence[str]) -> None:
    """Parse ``--set`` items and check their keys and types against the config (cross-field rules are checked
    per run, with each env's preset)."""
    from rlctl.config import from_dict
    from rlctl.resolve import parse_set

    from_dict(parse_set(list(items)), check=False)
