"""The reward-refinement page's numbers and plot, from compact copies of the refine directories.

    python results/runs/refine/page.py collect /tmp/rf/exp/hover_s1 ...   # refine dirs -> hover_sN.json here
    python results/runs/refine/page.py report hover                       # tables on stdout + the PNG

``report TASK`` reads ``TASK_s*.json`` (the refine directories' names) and writes
``results/reward-refinement-TASK.png``.

``collect`` keeps, per refine: the settings, every candidate's genome, fitness key (success, survival,
closeness), steps and wall time, and every final run's evaluation summary; nothing is trained.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
KEY = ("success rate", "episode survival", "closeness")


def collect(dirs: list[str]) -> None:
    for d in map(Path, dirs):
        spec = json.loads((d / "refine.json").read_text())
        rounds = []
        for rj in sorted(d.glob("round_*/round.json")):
            rnd = json.loads(rj.read_text())
            cands = []
            for c in rnd["candidates"]:
                res = rj.parent / f"cand_{c['index']:02d}" / "result.json"
                ev = json.loads(res.read_text()).get("eval", {}) if res.exists() else {}
                cands.append({"index": c["index"], "genome": c.get("genome"), "fitness": c.get("fitness"),
                              "key": c.get("key"), "steps": c.get("steps"), "wall_s": c.get("wall_s"),
                              "error": c.get("error"), "failures": ev.get("failures")})
            rounds.append({"round": rnd["round"], "candidates": cands})
        final = {}
        for res in sorted(d.glob("final/*/result.json")):
            name, seed, _ = res.parent.name.rsplit("_", 2)
            name = name.split("-")[0]  # best-<sha> / initial-<sha> / env
            r = json.loads(res.read_text())
            ev = r.get("eval", {})
            final.setdefault(name, []).append({
                "seed": int(seed[1:]), "steps": r.get("steps"), "ok": r.get("ok"), "wall_s": r.get("wall_s"),
                **{k: ev.get(k) for k in ("success_rate", "survival", "closeness", "failures", "mean_return",
                                          "median_final_distance", "episodes")}})
        summary = json.loads((d / "summary.json").read_text())
        out = {"spec": spec["spec"], "isolation": spec["isolation"], "rounds": rounds, "final": final,
               "best": summary["best"], "initial": summary["initial"], "best_program": (d / "best" /
                                                                                       "program.py").read_text()}
        (HERE / f"{d.name}.json").write_text(json.dumps(out, indent=1))
        print(f"wrote {HERE / (d.name + '.json')}")


def _ms(values: list[float]) -> str:
    """mean ± sample std [per refine seed]; a single seed's value alone."""
    if not values:
        return "-"
    per = ", ".join(f"{v:.2f}" for v in values)
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} [{per}]" if len(values) > 1 else per


def report(task: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(HERE.glob(f"{task}_s*.json"))]
    if not runs:
        sys.exit(f"page.py: no {task}_s*.json in {HERE}")
    n_rounds = max(len(run["rounds"]) for run in runs)
    print("| refine seed | " + " | ".join(f"round {i + 1} best (success, survival, closeness)" for i in
                                          range(n_rounds)) + " | winner |")
    print("|---:|" + "---|" * (n_rounds + 1))
    for run in runs:
        cells = []
        for rnd in run["rounds"]:
            keys = [c["key"] for c in rnd["candidates"] if c["key"] is not None]
            best = max(keys) if keys else None
            cells.append("-" if best is None else ", ".join(f"{v:.2f}" for v in best))
        b = run["best"]
        print(f"| {run['spec']['seed']} | {' | '.join(cells)} | round {b['round']} cand {b['index']} |")
    print()
    names = ["initial", "best", "env"]
    print("| reward | success rate | episode survival | closeness | how the episodes ended | median final distance, "
          "m | final runs | wall s per run |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    table: dict[str, dict[str, list[float]]] = {}
    for name in names:
        rows = [r for run in runs for r in run["final"].get(name, []) if r["ok"]]
        if name == "initial":  # an initial identical to the winner was not retrained: its runs are the winner's
            rows += [r for run in runs if "initial" not in run["final"] for r in run["final"].get("best", [])]
        table[name] = {k: [r[k] for r in rows] for k in ("success_rate", "survival", "closeness", "wall_s")}
        t = table[name]
        ended: Counter[str] = Counter()
        for r in rows:  # the eval's failure reasons count the episodes that did not succeed
            ended.update(r["failures"] or {})
            ended["success"] += round(r["success_rate"] * r["episodes"])
        dist = ", ".join("-" if r["median_final_distance"] is None else f"{r['median_final_distance']:.2f}"
                         for r in rows)
        print(f"| {name} | {_ms(t['success_rate'])} | {_ms(t['survival'])} | {_ms(t['closeness'])} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(ended.items()) if v)} | [{dist}] | {len(rows)} | "
              f"{np.mean(t['wall_s']):.0f} |")
    _plot(task, runs, table, n_rounds)


def _plot(task: str, runs: list[dict[str, Any]], table: dict[str, dict[str, list[float]]], n_rounds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # selection on success when any candidate succeeded, else on its first tie-break
    keys = [c["key"] for run in runs for rnd in run["rounds"] for c in rnd["candidates"] if c["key"] is not None]
    k = 0 if any(key[0] > 0 for key in keys) else 1
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in runs:
        xs, ys, best = [], [], -1.0
        for rnd in run["rounds"]:
            for c in rnd["candidates"]:
                if c["key"] is not None:
                    a.scatter(rnd["round"], c["key"][k], color="0.7", s=14)
                    best = max(best, c["key"][k])
            xs.append(rnd["round"])
            ys.append(best)
        a.plot(xs, ys, marker="o", label=f"refine seed {run['spec']['seed']}: best so far")
    a.set_xlabel("round")
    a.set_ylabel(KEY[k] + (" (fraction of the episode)" if k == 1 else ""))
    a.set_title("selection (one training per candidate)")
    a.set_xticks(range(1, n_rounds + 1))
    a.legend(fontsize=8)
    labels = list(table)
    for i, key in enumerate(("success_rate", "survival")):
        means = [np.mean(table[n][key]) if table[n][key] else 0 for n in labels]
        stds = [np.std(table[n][key], ddof=1) if len(table[n][key]) > 1 else 0 for n in labels]
        b.bar(np.arange(len(labels)) + (i - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3,
              label="success rate" if i == 0 else "episode survival")
    b.set_xticks(range(len(labels)), ["initial (all terms, weight 1)", "ES winner", "hand-written"], fontsize=8)
    b.set_ylim(0, 1.05)
    b.set_title(f"final: retrained on fresh seeds (mean ± sample std, n = {len(runs)})", fontsize=10)
    b.legend(fontsize=8)
    spec = runs[0]["spec"]
    fig.suptitle(f"rlctl refine --llm {spec['llm']} on {spec['env_id']}, {spec['steps']:,} steps per training")
    fig.tight_layout()
    png = HERE.parents[1] / f"reward-refinement-{task}.png"
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2:])
    elif sys.argv[1] == "report" and len(sys.argv) == 3:
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
