"""The refine loop: rounds of candidates → checks → parallel PPO trainings → fitness → reflection → next prompt.

Everything lands in the refine directory as it happens, and a file that exists is never produced again, so
running the same command after an interruption (Ctrl-C, a crash, an LLM outage) resumes where it stopped (a
candidate killed while training goes on from its last checkpoint; on Ray, where it trained in a node's scratch
directory, it starts over):

    refine.json                 the settings (a resume must match them) and the sandbox's isolation
    schema.json, states.npz     the env's variables, and the recorded states every program is dry-run on
    round_NN/prompt.json        the messages sent to the LLM (LLM proposers)
    round_NN/responses/         each raw response (cand_KK.txt) and its metadata (.json): replayable
    round_NN/cand_KK/           program.py, check.json, job.json, train.log, sandbox.log, run/, result.json
    round_NN/round.json         the round's scores; feedback.md, the reflection the next prompt carries
    best/                       the winner: reward.py (``rlctl train --set env.reward=best/reward.py:reward``)
    final/NAME_sSEED/           the winner (and baselines) retrained on fresh seeds; summary.json, summary.md
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlctl import __version__
from rlctl.checkpoint import atomic_write_text
from rlctl.errors import UserError
from rlctl.refine import evolve, prompts
from rlctl.refine.hook import validate, winner_file
from rlctl.refine.llm import ChatModel, chat_model, extract_code, response_path
from rlctl.refine.report import run_final
from rlctl.refine.sandbox import Limits, describe_isolation
from rlctl.refine.schema import Schema, record_states, schema_for
from rlctl.resolve import resolve_config
from rlctl.sim2real_eval import without_set

# settings a resume must share with the run it continues (the rest may change between invocations)
FIXED = ("env_id", "task", "llm", "candidates", "steps", "seed", "preset", "set_items", "fitness_episodes",
         "temperature")


@dataclass(frozen=True)
class RefineSpec:
    env_id: str
    task: str
    llm: str = "none"
    iterations: int = 5
    candidates: int = 4
    steps: int = 100_000
    eval_seeds: int = 5
    final_steps: int | None = None
    final_episodes: int = 20
    compare: tuple[str, ...] = ("initial", "env")
    seed: int = 1
    preset: str | None = None
    set_items: tuple[str, ...] = ()
    fitness_episodes: int = 20
    temperature: float = 1.0
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    llm_timeout_s: float = 120.0
    llm_retries: int = 4
    llm_backoff_s: float = 2.0
    jobs: int = 0  # 0: one per CPU core
    backend: str = "process"  # process: local processes, --jobs at a time; ray: Ray tasks, one core each
    ray_address: str | None = None  # with ray: the cluster to join; none starts a private local one

    def check(self) -> None:
        for name in ("iterations", "candidates", "steps", "fitness_episodes"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_seeds < 0 or self.final_episodes < 1:
            raise UserError("--eval-seeds must be >= 0 and --final-episodes >= 1")
        if self.backend not in ("process", "ray"):
            raise UserError(f"--backend takes process or ray, not {self.backend!r}")
        if self.ray_address and self.backend != "ray":
            raise UserError("--ray-address joins a Ray cluster: add --backend ray")
        bad = [c for c in self.compare if c not in ("initial", "env")]
        if bad:
            raise UserError(f"--compare takes initial and env, not {bad}")


Progress = Callable[[str], None]


class Refine:
    def __init__(self, spec: RefineSpec, out: Path, progress: Progress = print) -> None:
        spec.check()
        self.spec, self.out, self.say = spec, Path(out), progress
        cfg, _ = resolve_config(spec.env_id, spec.preset, None, list(spec.set_items))
        self.env_kwargs = without_set(cfg.env.kwargs)
        self.max_episode_steps = cfg.env.max_episode_steps
        self.jobs = spec.jobs or max(1, min(spec.candidates, os.cpu_count() or 1))
        self.limits = Limits()
        self.llm: ChatModel | None = chat_model(spec.llm, spec.base_url, spec.api_key_env, spec.temperature,
                                                spec.llm_timeout_s, spec.llm_retries, spec.llm_backoff_s)
        self._open_dir()

    def _open_dir(self) -> None:
        spec, meta_path = self.spec, self.out / "refine.json"
        schema: Schema | None = None
        if meta_path.exists():
            saved = json.loads(meta_path.read_text())["spec"]
            diff = [k for k in FIXED if _norm(saved.get(k)) != _norm(getattr(spec, k))]
            if diff:
                raise UserError(f"{self.out} holds a refine started with other settings ({', '.join(diff)}: "
                                f"{', '.join(repr(saved.get(k)) for k in diff)}); pass the same ones to resume it, "
                                "or another --out")
            self.say(f"rlctl refine: resuming {self.out}")
        else:
            schema = schema_for(spec.env_id, self.env_kwargs, self.max_episode_steps)
            if self.llm is None:
                evolve.initial_genome(schema)  # refuses envs without named reward terms, before any file
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta_path, json.dumps({
                "spec": asdict(spec), "isolation": describe_isolation(self.limits), "rlctl": __version__,
                "python": sys.version.split()[0], "started": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        if not (self.out / "schema.json").exists():
            schema = schema or schema_for(spec.env_id, self.env_kwargs, self.max_episode_steps)
            states = record_states(schema, self.env_kwargs, 512, spec.seed, self.max_episode_steps)
            np.savez_compressed(self.out / "states.npz", rows=states)
            atomic_write_text(self.out / "schema.json", schema.to_json())
        self.schema = Schema.from_json((self.out / "schema.json").read_text())
        self.states = np.load(self.out / "states.npz")["rows"]
        self.user0 = prompts.initial_user(self.schema, spec.task)

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        spec = self.spec
        proposer = self.llm.name if self.llm else "evolution strategy over the env's reward terms"
        where = f"{self.jobs} in parallel" if spec.backend == "process" else \
            f"as Ray tasks on {spec.ray_address or 'a local cluster'}"
        self.say(f"rlctl refine: {spec.env_id}, {spec.iterations} rounds x {spec.candidates} candidates x "
                 f"{spec.steps} steps, {where}; proposer: {proposer}; fitness: "
                 f"{self.schema.fitness}; sandbox: {describe_isolation(self.limits)}")
        rounds = [self.round(r) for r in range(1, spec.iterations + 1)]
        ranked = [c for rnd in rounds for c in rnd["candidates"] if c.get("key") is not None]
        if not ranked:
            self.say("rlctl refine: no candidate trained successfully; nothing to select")
            return {"best": None, "rounds": rounds}
        best = max(ranked, key=lambda c: (tuple(c["key"]), -c["round"], -c["index"]))
        self._write_winner(best)
        initial = self._initial(rounds)
        return run_final(self, best, initial, rounds)

    def round(self, r: int) -> dict[str, Any]:
        rdir = self.out / f"round_{r:02d}"
        if (rdir / "round.json").exists():
            done = json.loads((rdir / "round.json").read_text())
            self.say(f"round {r}/{self.spec.iterations}: done earlier, best {_fmt(done['best_fitness'])}")
            return done
        rdir.mkdir(parents=True, exist_ok=True)
        sources = self._propose(r, rdir)
        cands: list[dict[str, Any]] = []
        to_train: list[Path] = []
        for k, (source, why, extra) in enumerate(sources, start=1):
            cdir = rdir / f"cand_{k:02d}"
            cdir.mkdir(exist_ok=True)
            cand = {"round": r, "index": k, **extra}
            if source is None:
                cand.update(ok=False, error=why)
            else:
                atomic_write_text(cdir / "program.py", source)
                check = self._check(cdir, source)
                cand["check"] = check
                if not check["ok"]:
                    cand.update(ok=False, error=check["reason"])
                elif not (cdir / "result.json").exists():
                    self._write_job(cdir, "program.py", self.spec.seed, self.spec.steps,
                                    {"kind": self.schema.fitness, "episodes": self.spec.fitness_episodes,
                                     "seed": 10_000})
                    to_train.append(cdir)
            if "error" in cand:
                self.say(f"round {r} candidate {k}/{len(sources)}: rejected: {cand['error']}")
            cands.append(cand)
        self.run_jobs(to_train, f"round {r}")
        for cand in cands:
            cdir = rdir / f"cand_{cand['index']:02d}"
            if "error" not in cand and (cdir / "result.json").exists():
                res = json.loads((cdir / "result.json").read_text())
                cand.update({k: res.get(k) for k in ("ok", "fitness", "key", "error", "steps", "wall_s", "resumed")})
        summary = self._round_summary(r, cands)
        if self.llm is not None:
            atomic_write_text(rdir / "feedback.md", self._feedback(rdir, cands)[1])
        atomic_write_text(rdir / "round.json", json.dumps(summary, indent=1))
        return summary

    def _propose(self, r: int, rdir: Path) -> list[tuple[str | None, str, dict[str, Any]]]:
        """Each candidate's program (or None and why not), with what produced it."""
        spec = self.spec
        if self.llm is None:
            history = [json.loads((self.out / f"round_{i:02d}" / "round.json").read_text())["candidates"]
                       for i in range(1, r)]
            genomes = evolve.propose(self.schema, spec.seed, r, spec.candidates, history)
            return [(evolve.program(g), "", {"genome": g.to_dict()}) for g in genomes]
        prompt_path = rdir / "prompt.json"
        if prompt_path.exists():
            messages = json.loads(prompt_path.read_text())["messages"]
        else:
            feedback = self._feedback(self.out / f"round_{r - 1:02d}", None) if r > 1 else None
            messages = prompts.messages_for(prompts.SYSTEM, self.user0, feedback)
            atomic_write_text(prompt_path, json.dumps({"model": self.llm.name, "temperature": spec.temperature,
                                                       "messages": messages}, indent=1))
        out: list[tuple[str | None, str, dict[str, Any]]] = []
        for k in range(1, spec.candidates + 1):
            path = response_path(self.out, r, k)
            if not path.exists():
                self.say(f"round {r} candidate {k}/{spec.candidates}: asking {self.llm.name}")
                text, meta = self.llm.complete(messages, r, k)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
                atomic_write_text(path, text)
            code = extract_code(path.read_text())
            out.append((code, "no ```python block defining compute_reward in the response", {}))
        return out

    def _feedback(self, rdir: Path, cands: list[dict[str, Any]] | None) -> tuple[str, str]:
        """(the response the next prompt quotes, the feedback on it) for the round in ``rdir``."""
        if cands is None:
            cands = json.loads((rdir / "round.json").read_text())["candidates"]
        r = int(rdir.name.split("_")[1])
        trained = [c for c in cands if c.get("key") is not None]
        rejected = [f"candidate {c['index']}: {c['error']}" for c in cands if c.get("error")]
        if trained:
            best = max(trained, key=lambda c: tuple(c["key"]))
            result = json.loads((rdir / f"cand_{best['index']:02d}" / "result.json").read_text())
            text = prompts.reflection(result, self.schema.fitness, rejected)
        else:
            best = cands[0]
            text = prompts.REJECTED.format(reason=best.get("error", "unknown")) + (
                "\n\nThe other programs of the round failed too:\n" + "\n".join(rejected[1:]) if rejected[1:] else "")
        response = response_path(self.out, r, best["index"])
        return (response.read_text() if response.exists() else ""), text

    def _check(self, cdir: Path, source: str) -> dict[str, Any]:
        path = cdir / "check.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("sha256") == _sha(source):
                return dict(saved)
        check = validate(source, self.schema, self.states, self.limits, cdir / "sandbox.log").to_dict()
        check["sha256"] = _sha(source)
        atomic_write_text(path, json.dumps(check, indent=1))
        return check

    def _write_job(self, cdir: Path, program: str | None, seed: int, steps: int, fitness: dict[str, Any]) -> None:
        job = {"env_id": self.spec.env_id, "preset": self.spec.preset, "set": list(self.spec.set_items),
               "overrides": {"ppo": {"total_timesteps": steps}, "run": {"seed": seed, "eval_episodes": 0}},
               "program": program, "schema": json.loads(self.schema.to_json()), "limits": asdict(self.limits),
               "fitness": fitness}
        atomic_write_text(cdir / "job.json", json.dumps(job, indent=1))

    def run_jobs(self, dirs: list[Path], label: str) -> None:
        """Train the candidates in ``dirs``, ``self.jobs`` processes at a time (or as Ray tasks); each writes its
        result.json."""
        if self.spec.backend == "ray":
            from rlctl.refine.ray_jobs import run_on_ray

            run_on_ray(dirs, self.spec.ray_address, lambda event, cdir: self.say(f"{label} {cdir.name}: {event}"),
                       lambda cdir, code, wall: self.say(f"{label} {cdir.name}: {self._outcome(cdir, code, wall)}"))
            return
        pending = list(dirs)
        running: dict[subprocess.Popen[bytes], tuple[Path, Any, float]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    cdir = pending.pop(0)
                    log = open(cdir / "train.log", "ab")  # noqa: SIM115 - closed when the process ends
                    proc = subprocess.Popen([sys.executable, "-m", "rlctl.refine.candidate", str(cdir)],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, "OMP_NUM_THREADS": "1"})
                    running[proc] = (cdir, log, time.perf_counter())
                    self.say(f"{label} {cdir.name}: training")
                for proc in [p for p in running if p.poll() is not None]:
                    cdir, log, t0 = running.pop(proc)
                    log.close()
                    self.say(f"{label} {cdir.name}: {self._outcome(cdir, proc.returncode, time.perf_counter() - t0)}")
                time.sleep(0.2)
        finally:
            for proc, (_, log, _) in running.items():  # interrupted: stop the trainings (resumed from checkpoints)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                log.close()

    @staticmethod
    def _outcome(cdir: Path, code: int, wall: float) -> str:
        path = cdir / "result.json"
        if not path.exists():
            tail = (cdir / "train.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            atomic_write_text(path, json.dumps({"ok": False, "error": f"the training process exited with status "
                                                f"{code}: {tail[0][:300]}", "wall_s": wall}))
        res = json.loads(path.read_text())
        if not res.get("ok"):
            return f"failed: {res.get('error')}"
        return f"fitness {_fmt(res['fitness'])} ({res['steps']} steps in {wall:.0f} s)"

    def _round_summary(self, r: int, cands: list[dict[str, Any]]) -> dict[str, Any]:
        trained = [c for c in cands if c.get("key") is not None]
        best = max(trained, key=lambda c: tuple(c["key"])) if trained else None
        line = (f"round {r}/{self.spec.iterations}: best candidate {best['index']}, fitness {_fmt(best['fitness'])}; "
                if best else f"round {r}/{self.spec.iterations}: no candidate trained; ")
        self.say(line + f"{len(trained)} trained, {len(cands) - len(trained)} rejected or failed")
        return {"round": r, "candidates": cands, "best_index": best["index"] if best else None,
                "best_fitness": best["fitness"] if best else None}

    def _initial(self, rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The evolution strategy's starting genome; for an LLM, its best program before any feedback."""
        first = [c for c in rounds[0]["candidates"] if c.get("key") is not None]
        if self.llm is None:
            return next((c for c in rounds[0]["candidates"] if c["index"] == 1), None)
        return max(first, key=lambda c: tuple(c["key"])) if first else None

    def program_of(self, cand: dict[str, Any]) -> str:
        return (self.out / f"round_{cand['round']:02d}" / f"cand_{cand['index']:02d}" / "program.py").read_text()

    def _write_winner(self, best: dict[str, Any]) -> None:
        source = self.program_of(best)
        note = (f"Reward written by `rlctl refine` for {self.spec.env_id}: round {best['round']}, candidate "
                f"{best['index']}, fitness {_fmt(best['fitness'])} (task: {self.spec.task})")
        (self.out / "best").mkdir(exist_ok=True)
        atomic_write_text(self.out / "best" / "program.py", source)
        atomic_write_text(self.out / "best" / "reward.py", winner_file(source, self.schema, note))
        self.say(f"winner: round {best['round']} candidate {best['index']}, fitness {_fmt(best['fitness'])} → "
                 f"{self.out / 'best' / 'reward.py'}\n  train with it: rlctl train --env {self.spec.env_id} "
                 f"--set env.reward={self.out / 'best' / 'reward.py'}:reward")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"
