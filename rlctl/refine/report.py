"""The end of a refine: the winner retrained on fresh seeds next to its baselines, and the summary.

Selection picks the argmax of one noisy training per candidate, so its fitness is optimistic (Eureka's
pitfall); the number to report is this one: the winner, the initial reward and the env's own reward each trained
for ``final_steps`` on ``eval_seeds`` seeds that no candidate used, and scored on episodes the selection never
saw (seeds 20000+).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.checkpoint import atomic_write_text


def final_seeds(seed: int, count: int) -> list[int]:
    """Seeds for the final trainings: disjoint from the candidates' ``seed``."""
    return [1000 * seed + 1 + i for i in range(count)]


def run_final(ref: Any, best: dict[str, Any], initial: dict[str, Any] | None,
              rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """``ref`` is the :class:`rlctl.refine.loop.Refine` (not imported: the loop imports this module)."""
    spec = ref.spec
    steps = spec.final_steps or spec.steps
    entries: dict[str, str | None] = {"best": ref.program_of(best)}
    if "initial" in spec.compare and initial is not None:
        entries["initial"] = ref.program_of(initial)
    if "env" in spec.compare:
        entries["env"] = None  # the env's own reward, no hook
    fitness = {"kind": ref.schema.fitness, "episodes": spec.final_episodes, "seed": 20_000}
    todo: list[Path] = []
    for name, source in entries.items():
        if name == "initial" and source == entries["best"]:
            continue  # the same program: its runs are the winner's
        for seed in final_seeds(spec.seed, spec.eval_seeds):
            cdir = ref.out / "final" / f"{_tag(name, source)}_s{seed}_{steps}"
            if (cdir / "result.json").exists():
                continue
            cdir.mkdir(parents=True, exist_ok=True)
            if source is not None:
                atomic_write_text(cdir / "program.py", source)
            ref._write_job(cdir, "program.py" if source is not None else None, seed, steps, fitness)
            todo.append(cdir)
    if todo:
        ref.say(f"final: {len(todo)} trainings of {steps} steps (the winner"
                + "".join(f", {n}" for n in entries if n != "best") + f" on seeds "
                f"{', '.join(map(str, final_seeds(spec.seed, spec.eval_seeds)))})")
    ref.run_jobs(todo, "final")
    table: dict[str, Any] = {}
    for name in entries:
        runs = name if not (name == "initial" and entries["initial"] == entries["best"]) else "best"
        paths = sorted((ref.out / "final").glob(f"{_tag(runs, entries[runs])}_s*_{steps}/result.json"))
        results = [json.loads(p.read_text()) for p in paths]
        ok = [r for r in results if r.get("ok")]
        values = [r["fitness"] for r in ok]
        table[name] = {"fitness": values, "mean": float(np.mean(values)) if values else None,
                       "std": float(np.std(values)) if values else None, "failed": len(results) - len(ok),
                       "wall_s": float(sum(r.get("wall_s", 0) for r in results)),
                       "key": [r["key"] for r in ok]}  # success: (success rate, survival, closeness)
    cands = [c for rnd in rounds for c in rnd["candidates"]]
    summary = {
        "env": spec.env_id, "task": spec.task, "llm": spec.llm, "fitness_kind": ref.schema.fitness,
        "best": {k: best.get(k) for k in ("round", "index", "fitness", "key")},
        "initial": {k: initial.get(k) for k in ("round", "index", "fitness", "key")} if initial else None,
        "rounds": [{"round": r["round"], "best_fitness": r["best_fitness"],
                    "best_key": max((c["key"] for c in r["candidates"] if c.get("key") is not None), default=None),
                    "fitness": [c.get("fitness") for c in r["candidates"]]} for r in rounds],
        "candidates": len(cands), "trained": sum(1 for c in cands if c.get("key") is not None),
        "candidate_steps": int(sum(c.get("steps") or 0 for c in cands)),
        "candidate_wall_s": float(sum(c.get("wall_s") or 0 for c in cands)),
        "candidates_resumed": sum(1 for c in cands if c.get("resumed")),  # their wall_s is the last part's
        "final": {"steps": steps, "seeds": final_seeds(spec.seed, spec.eval_seeds), "episodes": spec.final_episodes,
                  "results": table},
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_text(ref.out / "summary.json", json.dumps(summary, indent=1))
    atomic_write_text(ref.out / "summary.md", summary_markdown(summary))
    ref.say(summary_markdown(summary))
    return summary


def _tag(name: str, source: str | None) -> str:
    """A final run's folder names the program it trained: a resume with more rounds may pick another winner."""
    return name if source is None else f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


def summary_markdown(s: dict[str, Any]) -> str:
    kind = "success rate" if s["fitness_kind"] == "success" else "return"
    lines = [f"# rlctl refine: {s['env']}", "", f"Task: {s['task']}  ", f"Proposer: {s['llm']}; fitness: {kind} of "
             "the deterministic policy (never the generated reward)", "", "| round | best fitness | candidates |",
             "|---:|---:|---|"]
    if s["fitness_kind"] == "success":
        lines[-2:] = ["| round | best (success, survival, closeness) | candidates' success |", "|---:|---|---|"]
    for r in s["rounds"]:
        fits = ", ".join("-" if f is None else f"{f:.2f}" for f in r["fitness"])
        best = "-" if r["best_fitness"] is None else f"{r['best_fitness']:.2f}"
        if r.get("best_key"):
            best = ", ".join(f"{v:.2f}" for v in r["best_key"])
        lines.append(f"| {r['round']} | {best} | {fits} |")
    fin = s["final"]
    lines += ["", f"Retrained for {fin['steps']} steps on seeds {fin['seeds']}, {fin['episodes']} fresh episodes "
              "each (mean ± std over seeds):", "", f"| reward | {kind} | per seed |", "|---|---:|---|"]
    for name, row in fin["results"].items():
        per = ", ".join(f"{v:.2f}" for v in row["fitness"])
        cell = "-" if row["mean"] is None else f"{row['mean']:.2f} ± {row['std']:.2f}"
        if s["fitness_kind"] == "success" and row.get("key"):
            keys = np.array(row["key"])
            cell += f" (survival {keys[:, 1].mean():.2f}, closeness {keys[:, 2].mean():.2f})"
        lines.append(f"| {name} | {cell} | {per}{' (' + str(row['failed']) + ' failed)' if row['failed'] else ''} |")
    lines += ["", f"Cost: {s['candidates']} candidates ({s['trained']} trained), {s['candidate_steps']} env steps, "
              f"{s['candidate_wall_s'] / 60:.1f} min of training (summed over processes"
              + (f"; {s['candidates_resumed']} resumed after an interruption count only their last part"
                 if s.get("candidates_resumed") else "") + ")."]
    return "\n".join(lines) + "\n"
