"""Which seeds a benchmark table may use: never the seeds that screens and tuning chose settings on.

A preset screen or an ``rlctl tune`` study keeps the setting that did best on its seeds. A table that reuses
those seeds, or the screen's winning runs themselves, reports the winner's luck as the setting's merit
(selection bias; issue 23 found "target met" on Ant and Hopper resting on the screen's seed-1 run). So the two
draw from ranges that cannot overlap, fixed here and nowhere else: screens, tuning trials and development
runs use seeds 1–99, tables 101 and up (100 is left unused, so an off-by-one lands in neither).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rlctl.errors import UserError

SCREEN_SEEDS = range(1, 100)
"""``bench suite --preset NAME`` / ``--screen``, ``rlctl tune`` trials, one-off development runs"""
TABLE_FIRST_SEED = 101
"""the first seed of every benchmark table (``bench suite``, ``bench returns``, ``bench uav``)"""


def table_seeds(n: int) -> list[int]:
    """The seeds of an ``n``-seed table: 101, 102, …"""
    return list(range(TABLE_FIRST_SEED, TABLE_FIRST_SEED + n))


def screen_seeds(n: int) -> list[int]:
    """The seeds of an ``n``-seed screen: 1, 2, … (at most 99, the size of the range)."""
    if n > len(SCREEN_SEEDS):
        raise UserError(f"a screen takes at most {len(SCREEN_SEEDS)} seeds (1–99); {n} would reach table seeds")
    return list(SCREEN_SEEDS[:n])


def tune_seed(trial_number: int) -> int:
    """The run seed of ``rlctl tune`` trial ``trial_number`` (0, 1, …): 1–99, cycling in very long studies."""
    return SCREEN_SEEDS[trial_number % len(SCREEN_SEEDS)]


def is_table_seed(seed: int) -> bool:
    return seed >= TABLE_FIRST_SEED


def refusal(result: dict[str, Any], table_preset: str = "-") -> str | None:
    """Why a bench result may not stand in a table of ``table_preset`` (None when it may): a screening seed, a
    screen's run adopted by the table (``reused_from``), or a run a screen trained with another preset."""
    if result.get("reused_from"):
        return f"a screen's run (reused from {result['reused_from']})"
    if result.get("preset", table_preset) != table_preset:
        return f"trained by a screen of preset {result['preset']!r}"
    if not is_table_seed(int(result["seed"])):
        return f"seed {result['seed']} is a screening seed ({SCREEN_SEEDS[0]}–{SCREEN_SEEDS[-1]})"
    return None


def span(seeds: Iterable[int]) -> str:
    """``1–5`` for a contiguous run of seeds, else ``1, 3, 7``."""
    s = sorted(set(seeds))
    if not s:
        return ""
    if len(s) > 1 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ", ".join(map(str, s))
