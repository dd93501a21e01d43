"""The offline proposer (``--llm none``): an evolution strategy over the env's named reward terms.

A genome is a coefficient and an on/off switch per term of the env's own reward (``env_progress``,
``env_crash``, ...; unit weight, sign built in, :mod:`rlctl.refine.schema`). It is written out as an ordinary
reward program and goes through the same checks, sandbox, training and selection as an LLM's, so the whole loop
runs, and is measured, without any LLM.

Search: a (1+λ) elitist strategy in log-coefficient space. Round 1 trains the initial genome (every term on,
coefficient 1: a reward written without knowing the scales) and λ-1 mutants of it; each later round trains λ
mutants of the best genome so far. A mutant multiplies each coefficient by ``exp(σ z)`` and flips each switch
with probability 1/terms (one term always stays on). σ grows by 1.5 after a round that found a new best and
shrinks by 0.7 otherwise (a 1/5th-rule-like step size), between 0.1 and 2. The random draws depend only on
the seed and the round, and the parent and σ only on recorded results, so an interrupted refine proposes the
same candidates again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlctl.errors import UserError
from rlctl.refine.schema import Schema


@dataclass(frozen=True)
class Genome:
    coef: dict[str, float]
    on: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef, "on": self.on}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Genome:
        return Genome({k: float(v) for k, v in data["coef"].items()}, {k: bool(v) for k, v in data["on"].items()})


def initial_genome(schema: Schema) -> Genome:
    if not schema.terms:
        raise UserError(f"--llm none searches over the env's named reward terms; {schema.env_id} reports none "
                        "(info['reward_components']): use --llm openai:MODEL")
    return Genome({t: 1.0 for t in schema.terms}, {t: True for t in schema.terms})


def hand_written_genome(schema: Schema) -> Genome:
    """The env's own reward as a genome (its weights): the baseline the search is compared with."""
    return Genome(dict(schema.terms), {t: True for t in schema.terms})


def mutate(parent: Genome, sigma: float, rng: np.random.Generator) -> Genome:
    names = list(parent.coef)
    coef = {n: float(np.clip(parent.coef[n] * np.exp(sigma * rng.standard_normal()), 1e-3, 1e3)) for n in names}
    flips = rng.random(len(names)) < 1.0 / len(names)
    on = {n: parent.on[n] != bool(f) for n, f in zip(names, flips, strict=True)}
    if not any(on.values()):
        on[names[int(rng.integers(len(names)))]] = True
    return Genome(coef, on)


def propose(schema: Schema, seed: int, round_: int, count: int, history: list[list[dict[str, Any]]]
            ) -> list[Genome]:
    """``count`` genomes for round ``round_`` (1-based); ``history[r]`` = round r+1's records
    (``{"genome", "key"}``, key None when the candidate failed)."""
    sigma = 0.7
    best: tuple[Any, Genome] | None = None
    for records in history[:round_ - 1]:
        improved = False
        for rec in records:
            if rec.get("key") is not None and (best is None or tuple(rec["key"]) > tuple(best[0])):
                best, improved = (rec["key"], Genome.from_dict(rec["genome"])), True
        sigma = float(np.clip(sigma * (1.5 if improved else 0.7), 0.1, 2.0))
    rng = np.random.default_rng([seed, round_])
    if round_ == 1 or best is None:
        start = initial_genome(schema)
        return [start] + [mutate(start, sigma, rng) for _ in range(count - 1)]
    return [mutate(best[1], sigma, rng) for _ in range(count)]


def program(genome: Genome, note: str = "") -> str:
    """The genome as a reward program: a weighted sum of the switched-on terms, each a named component."""
    terms = [t for t in genome.coef if genome.on[t]]
    args = ", ".join(f"env_{t}" for t in terms)
    body = "\n".join(f"        {t!r}: {genome.coef[t]:.6g} * env_{t}," for t in terms)
    head = f'    """{note}"""\n' if note else ""
    return (f"def compute_reward({args}):\n{head}    components = {{\n{body}\n    }}\n"
            "    total = sum(components.values())\n    return total, components\n")
