"""What the sandbox costs per reward call: ``python -m rlctl.refine.overhead [--out FILE.json]``.

The hover task's hand-written reward, written as a program, is called on recorded hover states five ways:
in-process with no isolation (what the program itself costs), in the sandbox one step per call, in the
sandbox 64 steps per call (how the dry run calls it), and through the reward hook (packing the step's
variables too), one step per call (a single env: evaluation, ``rlctl enjoy``) or the 8 steps of one vector step
of the preset's 8 envs per call (how training calls it, :class:`rlctl.envs.reward.BatchedRewardHook`). Next to
them, one step of the env itself, for scale. The ways are
interleaved and repeated, and the median repeat is reported, so load that comes and goes on a shared machine
hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.envs.make import make_env
from rlctl.refine.evolve import hand_written_genome, program
from rlctl.refine.hook import SandboxedReward
from rlctl.refine.sandbox import Sandbox, describe_isolation
from rlctl.refine.schema import record_states, schema_for
from rlctl.refine.static import check_program
from rlctl.sim2real_eval import preset_env_kwargs

ENV = "rlctl/QuadHover-v0"


def measure(calls: int = 4000, repeats: int = 5) -> dict[str, Any]:
    kwargs = preset_env_kwargs(ENV)
    schema = schema_for(ENV, kwargs)
    rows = record_states(schema, kwargs, n=512, seed=0)
    source = program(hand_written_genome(schema))
    params = check_program(source, [v.name for v in schema.variables()])
    namespace: dict[str, Any] = {}
    exec(compile(source, "reward_program.py", "exec"), namespace)  # trusted here: our own generated program
    fn = namespace["compute_reward"]
    layout = schema.layout()

    def direct(i: int) -> None:
        row = rows[i % len(rows)][None]
        fn(**{p: row[:, layout[p][0]] for p in params})

    box = Sandbox(source, layout, params, schema.row_size).start()
    hook = SandboxedReward(source, schema)
    env = make_env(ENV, kwargs)
    env.reset(seed=0)
    obs = env.observation_space.sample()
    info = {"reward_components": {t: 0.1 for t in schema.terms}, "distance": 0.3, "speed": 0.1}
    neutral = getattr(env.unwrapped, "neutral_action", np.zeros(4, dtype=np.float32))

    def env_step(i: int) -> None:
        if env.step(neutral)[2:4] != (False, False):
            env.reset(seed=i)

    ways: dict[str, tuple[Callable[[int], Any], int]] = {
        "in-process call, 1 step": (direct, 1),
        "sandbox call, 1 step": (lambda i: box.call(rows[i % 512][None]), 1),
        "sandbox call, 64 steps": (lambda i: box.call(rows[(i % 8) * 64:(i % 8) * 64 + 64]), 64),
        "reward hook (pack + sandbox call), 1 step": (lambda i: hook(obs, neutral, obs, 0.0, info, False, False), 1),
        "reward hook, 8 envs' steps per call (training)": (
            lambda i: hook.batch(np.stack([hook.pack(obs, neutral, obs, 0.0, info, False, False) for _ in range(8)])),
            8),
        "QuadHover env.step, 1 step (for scale)": (env_step, 1),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, (call, per) in ways.items():
            n = calls if per == 1 else max(1, calls // per)
            t0 = time.perf_counter()
            for i in range(n):
                call(i)
            times[name].append((time.perf_counter() - t0) / (n * per))
    box.close()
    hook.close()
    env.close()
    per_step = {name: float(np.median(v)) for name, v in times.items()}
    return {"env": ENV, "program": "the hand-written hover reward as a program (9 terms)", "calls": calls,
            "repeats": repeats, "per_step_us": {k: round(v * 1e6, 2) for k, v in per_step.items()},
            "per_million_steps_s": {k: round(v * 1e6, 1) for k, v in per_step.items()},
            "all_repeats_us": {k: [round(t * 1e6, 2) for t in v] for k, v in times.items()},
            "isolation": describe_isolation(), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores", "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="write the result here as JSON")
    args = parser.parse_args(argv)
    result = measure(args.calls, args.repeats)
    for name, us in result["per_step_us"].items():
        print(f"{name:45s} {us:9.2f} µs per step   {result['per_million_steps_s'][name]:8.1f} s per million")
    print(f"load average during the run: {result['load_average']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
