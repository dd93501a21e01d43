"""The LLM client against a scripted OpenAI-compatible server on 127.0.0.1 (no other network, nothing downloaded).

:class:`ScriptedLLM` answers ``POST /v1/chat/completions`` from a script, one entry per request: a completion,
an HTTP error, a delay (for timeouts), a body that is not JSON, or one without choices. The loop tests in
``test_refine_loop.py`` drive whole refines with it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rlctl.refine.llm import LLMError, OpenAIChat, extract_code


class ScriptedLLM:
    """``script``: ("ok", text) | ("status", code) | ("sleep", seconds, text) | ("garbage",) | ("nochoices",)."""

    def __init__(self, script: list[tuple[Any, ...]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                step = owner.script.pop(0) if owner.script else ("status", 500)
                if step[0] == "sleep":
                    time.sleep(step[1])
                    step = ("ok", step[2])
                if step[0] == "status":
                    self._send(step[1], json.dumps({"error": {"message": f"scripted {step[1]}", "type": "x"}}))
                elif step[0] == "garbage":
                    self._send(200, "this is not json{")
                elif step[0] == "nochoices":
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                "model": body["model"], "choices": []}))
                else:
                    self._send(200, json.dumps({
                        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": step[1]}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}))

            def _send(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    yield server
    server.close()


def _client(server: ScriptedLLM, **kw: Any) -> OpenAIChat:
    args = {"timeout_s": 0.5, "retries": 4, "backoff_s": 0.01, **kw}
    return OpenAIChat("scripted-model", server.url, api_key_env="RLCTL_TEST_KEY", **args)


MESSAGES = [{"role": "user", "content": "write a reward"}]


def test_transient_failures_are_retried_with_backoff_until_an_answer(llm_server: ScriptedLLM,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLCTL_TEST_KEY", "sk-test")
    llm_server.script = [("status", 500), ("garbage",), ("nochoices",), ("sleep", 1.5, "late"), ("status", 429),
                         ("ok", "```python\ndef compute_reward(obs):\n    return obs[:, 0], {}\n```")]
    text, meta = _client(llm_server, retries=5).complete(MESSAGES, 1, 1)
    assert "def compute_reward" in text and meta["attempts"] == 6 and meta["model"] == "scripted-model"
    assert len(llm_server.requests) == 6
    assert llm_server.requests[0]["auth"] == "Bearer sk-test"  # the key from the environment variable
    assert llm_server.requests[0]["body"]["messages"] == MESSAGES


@pytest.mark.parametrize(("code", "words"), [(401, "refused the key (HTTP 401); check $RLCTL_TEST_KEY"),
                                             (403, "refused the key (HTTP 403)"),
                                             (404, "model 'scripted-model' not found"),
                                             (400, "rejected the request (HTTP 400)")])
def test_what_retrying_cannot_fix_stops_at_once_in_one_line(llm_server: ScriptedLLM, code: int, words: str) -> None:
    llm_server.script = [("status", code)]
    with pytest.raises(LLMError) as err:
        _client(llm_server).complete(MESSAGES, 1, 1)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize(("step", "words"), [(("status", 503), "answered HTTP 503"),
                                             (("sleep", 1.0, "late"), "did not answer within 0.3 s"),
                                             (("garbage",), "malformed response"),
                                             (("nochoices",), "malformed response")])
def test_a_failure_that_persists_is_one_line_after_the_retries(llm_server: ScriptedLLM, step: tuple[Any, ...],
                                                               words: str) -> None:
    llm_server.script = [step] * 3
    with pytest.raises(LLMError) as err:
        _client(llm_server, retries=2, timeout_s=0.3).complete(MESSAGES, 1, 1)
    assert words in str(err.value) and str(err.value).endswith("(after 3 tries)")
    assert "\n" not in str(err.value) and len(llm_server.requests) == 3


def test_an_unreachable_server_is_one_line() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(LLMError, match=r"cannot reach the LLM server at http://127.0.0.1:\d+/v1 .*\(after 2 tries\)"):
        OpenAIChat("m", f"http://127.0.0.1:{port}/v1", timeout_s=1, retries=1, backoff_s=0.01).complete(MESSAGES, 1, 1)


def test_the_openai_api_without_a_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLCTL_TEST_KEY", raising=False)
    with pytest.raises(LLMError, match=r"set \$RLCTL_TEST_KEY"):
        OpenAIChat("gpt-x", None, api_key_env="RLCTL_TEST_KEY")


def test_the_program_is_the_fenced_block_that_defines_compute_reward() -> None:
    text = ("Analysis first.\n```python\nx = 1\n```\nThen the reward:\n```python\nimport numpy as np\n\n"
            "def compute_reward(obs):\n    return obs[:, 0], {}\n```\n")
    assert extract_code(text) == "import numpy as np\n\ndef compute_reward(obs):\n    return obs[:, 0], {}\n"
    assert extract_code("def compute_reward(obs):\n    return obs, {}") is not None  # bare code
    assert extract_code("I cannot help with that.") is None


def test_the_reflection_lists_components_and_task_metrics_over_training_as_eureka_does() -> None:
    from rlctl.refine.prompts import reflection

    result = {"series_every": 2048, "series": {"reward/near": [0.1 * i for i in range(30)],
                                               "charts/success_rate": [0.0] * 29 + [0.5],
                                               "charts/episodic_length": [40.0] * 30,
                                               "charts/shaped_return": [1.0] * 30},
              "eval": {"success_rate": 0.25, "episodes": 8, "failures": {"timeout": 6}, "median_final_distance": 0.4}}
    text = reflection(result, "success", ["candidate 2: rejected before running: import of 'os' is not allowed"])
    near = next(line for line in text.splitlines() if line.startswith("near: ["))
    assert len(near.split("]")[0].split(",")) == 10 and near.endswith("Max: 2.9, Mean: 1.45, Min: 0")
    assert "success_rate (training episodes): [" in text and "episode_length: [" in text
    assert "shaped_return" not in text  # the generated reward's own return is not a task metric
    assert "task score: success rate 0.25 over 8 evaluation episodes" in text
    assert "timeout 6" in text and "import of 'os' is not allowed" in text
    assert "If the success rates are always near zero" in text and "```python" in text
