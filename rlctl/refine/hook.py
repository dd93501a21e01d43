"""A generated program as a training reward: checked, dry-run on recorded states, then called per step.

:func:`validate` is what happens to every candidate before it may train: the static checks, then the program
in its sandbox on the recorded states (one batch, twice: outputs finite, one per transition, within range,
deterministic, and the same for a transition alone as inside the batch, since training batches whatever
transitions a vector step has). :class:`SandboxedReward` is the reward hook: a
:class:`rlctl.envs.reward.BatchedReward`, so a training vector env packs each sub-env's step into a row and
sends the step's rows to the program's sandbox process in one call; called as
``fn(obs, action, next_obs, env_reward, info, ...)`` (a single env) it sends one row.
"""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.refine.sandbox import Limits, Sandbox, SandboxError
from rlctl.refine.schema import Schema
from rlctl.refine.static import ProgramRejected, check_program

MAX_ABS_REWARD = 1e6


@dataclass
class Validation:
    ok: bool
    reason: str = ""
    params: list[str] = field(default_factory=list)
    components: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> min/mean/max on the states

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "params": self.params, "components": self.components}


def validate(source: str, schema: Schema, states: np.ndarray, limits: Limits | None = None,
             log_path: Path | None = None) -> Validation:
    """Static checks, then a dry run on ``states [n, row_size]``; never raises for a bad program."""
    try:
        params = check_program(source, [v.name for v in schema.variables()])
    except ProgramRejected as exc:
        return Validation(False, f"rejected before running: {exc.reason}")
    try:
        with Sandbox(source, schema.layout(), params, schema.row_size, limits, log_path) as box:
            total, comps = box.call(states)
            again, _ = box.call(states)
            alone = [box.call(states[i:i + 1])[0][0] for i in range(min(4, len(states)))]
    except SandboxError as exc:
        return Validation(False, f"failed on recorded states: {exc}", params)
    if not np.array_equal(total, again):
        return Validation(False, "the reward is not deterministic: two calls on the same states differ", params)
    if not np.allclose(alone, total[:len(alone)], rtol=1e-6, atol=1e-9):
        return Validation(False, "a transition's reward depends on the other transitions in the batch (training "
                                 "computes it one step at a time): compute it per row, without batch statistics",
                          params)
    peak = float(np.max(np.abs(total)))
    if peak > MAX_ABS_REWARD:
        return Validation(False, f"the reward reaches {peak:.3g} on recorded states (at most {MAX_ABS_REWARD:g} "
                                 "in magnitude)", params)
    stats = {name: {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}
             for name, v in {"total": total, **comps}.items()}
    return Validation(True, "", params, stats)


class SandboxedReward:
    """The reward hook for a generated program: one sandbox process per trainer process, started on first use.

    Picklable (for sampler processes and Ray workers): the process is not pickled, each copy starts its own.
    """

    def __init__(self, source: str, schema: Schema | dict[str, Any] | str, limits: Limits | None = None,
                 log_path: str | Path | None = None) -> None:
        self.source = source
        self.schema = schema if isinstance(schema, Schema) else Schema.from_json(schema)
        self.limits = limits or Limits()
        self.log_path = Path(log_path) if log_path else None
        self.params = check_program(source, [v.name for v in self.schema.variables()])
        self._box: Sandbox | None = None

    def __call__(self, obs: Any, action: Any, next_obs: Any, env_reward: float, info: dict[str, Any],
                 terminated: bool = False, truncated: bool = False) -> tuple[float, dict[str, float]]:
        total, comps = self.batch(self.pack(obs, action, next_obs, env_reward, info, terminated, truncated)[None])
        return float(total[0]), {k: float(v[0]) for k, v in comps.items()}

    def pack(self, obs: Any, action: Any, next_obs: Any, env_reward: float, info: dict[str, Any],
             terminated: bool, truncated: bool) -> np.ndarray:
        return self.schema.pack(obs, action, next_obs, env_reward, info, terminated, truncated)

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rewards and components of ``rows [n, row_size]``, one round trip to the sandbox process."""
        if self._box is None:
            self._box = Sandbox(self.source, self.schema.layout(), self.params, self.schema.row_size, self.limits,
                                self.log_path).start()
        return self._box.call(rows)

    @property
    def calls(self) -> int:
        return self._box.calls if self._box is not None else 0

    def close(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_box": None}

    def __del__(self) -> None:
        self.close()


def winner_file(source: str, schema: Schema, note: str) -> str:
    """A reward file for ``rlctl train --set env.reward=FILE.py:reward``: the program runs in the sandbox."""
    literal = f"r'''{source}'''" if "'''" not in source and not source.endswith("\\") else repr(source)
    schema_literal = pprint.pformat(json.loads(schema.to_json()), width=110, sort_dicts=False)
    return (f'"""{note}\n\nTrain with it: rlctl train --env {schema.env_id} --set env.reward=THIS_FILE.py:reward\n'
            'The program (PROGRAM) runs in rlctl\'s sandbox (rlctl.refine.sandbox), not in the trainer."""\n\n'
            "from rlctl.refine.hook import SandboxedReward\n\n"
            f"PROGRAM = {literal}\n\nSCHEMA = {schema_literal}\n\n"
            "reward = SandboxedReward(PROGRAM, SCHEMA)\n")


__all__ = ["SandboxError", "SandboxedReward", "Validation", "validate", "winner_file"]
