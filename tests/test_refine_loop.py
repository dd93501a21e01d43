"""Whole refine loops through the CLI, on the toy env (``test_refine_toyenv.py``), with tiny PPO budgets.

The LLM is :class:`tests.test_refine_llm.ScriptedLLM` on 127.0.0.1: it answers with good programs, a malicious
one, malformed bodies, an HTTP 500 and, mid-run, an HTTP 401 that stops the refine with one line; the same
command then resumes without asking again for what was answered. Replaying the directory reproduces the
programs without any server; the offline evolution strategy resumes and extends its rounds. Each test trains
several tiny candidates in subprocesses (about a minute on 2 cores), so both are marked slow.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from rlctl.cli import main
from rlctl.envs.reward import load_reward_source
from rlctl.resolve import resolve_config
from rlctl.train import train
from tests.test_refine_llm import ScriptedLLM
from tests.test_refine_toyenv import ENV_ID

TINY = ["--set", "env.num_envs=2", "--set", "ppo.num_steps=64", "--set", "ppo.minibatch_size=64",
        "--set", "ppo.update_epochs=2", "--set", "run.log_every=128", "--steps-per-candidate", "1024",
        "--fitness-episodes", "3", "--final-episodes", "3", "--jobs", "2"]
GOOD = ("Let me analyze the task.\n```python\nimport numpy as np\n\n"
        "def compute_reward(position, velocity, env_effort, is_success):\n    temperature = 0.3\n"
        "    near = np.exp(-np.abs(position[:, 0]) / temperature)\n    calm = -0.1 * velocity[:, 0] ** 2\n"
        "    return near + calm + 0.1 * env_effort + 5.0 * is_success, {'near': near, 'calm': calm}\n```\n")
EVIL = "```python\nimport os\n\ndef compute_reward(env_reward):\n    os.system('id')\n    return env_reward, {}\n```"
GOOD2 = GOOD.replace("temperature = 0.3", "temperature = 0.2")


def _refine(out: Path, *extra: str) -> list[str]:
    return ["refine", "--env", ENV_ID, "--task", "reach 0 and stay there", "--out", str(out), *TINY, *extra]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_an_llm_refine_survives_bad_answers_stops_on_auth_errors_and_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = ScriptedLLM([("ok", GOOD), ("status", 500), ("ok", EVIL),  # round 1
                          ("garbage",), ("ok", GOOD2), ("status", 401)])  # round 2: the key is refused
    out = tmp_path / "refine"
    args = _refine(out, "--llm", "openai:scripted", "--base-url", server.url, "--iterations", "2", "--candidates",
                   "2", "--eval-seeds", "1", "--llm-retries", "2", "--llm-backoff", "0.01", "--llm-timeout", "5")
    try:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: the LLM server at http://127.0.0.1:") and "(HTTP 401)" in err[-1]
        assert (out / "round_01" / "round.json").exists() and not (out / "round_02" / "round.json").exists()
        asked = len(server.requests)
        server.script = [("ok", "Sorry, I will not write code today.")]
        assert main(args) == 0  # the same command resumes
        assert len(server.requests) == asked + 1  # only the unanswered candidate was asked
    finally:
        server.close()
    printed = capsys.readouterr().out
    assert "resuming" in printed and "round 2/2" in printed

    r1 = json.loads((out / "round_01" / "round.json").read_text())
    assert [c.get("ok") for c in r1["candidates"]] == [True, False]
    assert "import of 'os' is not allowed" in r1["candidates"][1]["error"]
    r2 = json.loads((out / "round_02" / "round.json").read_text())
    assert "no ```python block" in r2["candidates"][1]["error"]
    prompt1 = json.loads((out / "round_01" / "prompt.json").read_text())["messages"]
    assert "reach 0 and stay there" in prompt1[1]["content"] and "env_progress" in prompt1[1]["content"]
    prompt2 = json.loads((out / "round_02" / "prompt.json").read_text())["messages"]
    assert [m["role"] for m in prompt2] == ["system", "user", "assistant", "user"]
    assert prompt2[2]["content"] == GOOD  # the best response of round 1, and the reflection on it
    assert "task score: success rate" in prompt2[3]["content"] and "near: [" in prompt2[3]["content"]
    assert "import of 'os' is not allowed" in prompt2[3]["content"]  # a rejected program is feedback too
    meta = json.loads((out / "round_01" / "responses" / "cand_02.json").read_text())
    assert meta["attempts"] == 2 and meta["model"] == "scripted"

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["final"]["results"]) == {"best", "initial", "env"}
    assert all(len(row["fitness"]) == 1 for row in summary["final"]["results"].values())
    assert (out / "summary.md").read_text().startswith("# rlctl refine")

    # the winner is a reward file `rlctl train --set env.reward=...` takes; it runs in the sandbox
    source = load_reward_source(f"{out / 'best' / 'reward.py'}:reward")
    cfg, _ = resolve_config(ENV_ID, None, {"ppo": {"total_timesteps": 256, "num_steps": 64, "minibatch_size": 64},
                                           "run": {"eval_episodes": 0, "log_every": 64},
                                           "env": {"reward": source.spec}})
    train(cfg, tmp_path / "run", progress=False)
    tags = {json.loads(line)["tag"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()}
    assert {"reward/near", "reward/calm", "charts/shaped_return"} <= tags

    # replaying the directory proposes the same programs, with no server at all
    replay = tmp_path / "replay"
    assert main(_refine(replay, "--llm", f"replay:{out}", "--iterations", "2", "--candidates", "2",
                        "--eval-seeds", "0")) == 0
    for r, k in ((1, 1), (2, 1)):
        name = f"round_{r:02d}/cand_{k:02d}/program.py"
        assert _sha(replay / name) == _sha(out / name)


@pytest.mark.slow
def test_the_offline_strategy_resumes_extends_and_refuses_other_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "es"
    assert main(_refine(out, "--iterations", "1", "--candidates", "2", "--eval-seeds", "0")) == 0
    result = out / "round_01" / "cand_01" / "result.json"
    first: dict[str, Any] = json.loads(result.read_text())
    assert first["ok"] and 0.0 <= first["fitness"] <= 1.0 and first["steps"] == 1024
    program = (out / "round_01" / "cand_01" / "program.py").read_text()
    assert "'progress': 1 * env_progress" in program  # the initial genome: every term on, weight 1
    stamp = result.stat().st_mtime_ns
    assert main(_refine(out, "--iterations", "2", "--candidates", "2", "--eval-seeds", "0")) == 0
    assert result.stat().st_mtime_ns == stamp  # round 1 was not trained again
    assert (out / "round_02" / "round.json").exists() and (out / "best" / "reward.py").exists()
    capsys.readouterr()
    assert main(_refine(out, "--iterations", "2", "--candidates", "3", "--eval-seeds", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "candidates" in err and "\n" not in err
    assert main(["refine", "--env", "CartPole-v1", "--task", "x", "--out", str(tmp_path / "cp")]) == 2
    assert "reports none" in capsys.readouterr().err
    assert main(["refine", "--env", "CartPole-v1", "--task", "x", "--llm", "gpt", "--out", str(tmp_path / "cp")]) == 2
    assert "expected openai:MODEL, replay:DIR or none" in capsys.readouterr().err
    assert not (tmp_path / "cp").exists()  # settings refused before any file is written
