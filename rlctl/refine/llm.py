"""Where candidate programs come from: an OpenAI-compatible server, or recorded responses replayed.

The client is the ``openai`` package (``pip install 'rlctl[llm]'``) pointed at any OpenAI-compatible server
(OpenAI, vLLM, Ollama, llama.cpp's server) with ``--base-url``. The key comes from an environment variable
(``OPENAI_API_KEY`` unless ``--api-key-env`` names another), never from the command line or the refine
directory. Transient failures (timeouts, refused connections, HTTP 429 and 5xx, malformed bodies) are retried
with exponential backoff; what retrying cannot fix (a refused key, an unknown model, a rejected request) stops
at once. Every failure is one line naming the server: :class:`LLMError`, which the CLI prints as ``error: …``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Protocol

from rlctl.errors import UserError

CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


class LLMError(UserError):
    """The LLM could not be asked (auth, network, model, malformed response): one line."""


class ChatModel(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], round_: int, index: int) -> tuple[str, dict[str, Any]]:
        """The text of one response to ``messages`` (candidate ``index`` of round ``round_``) and its metadata."""
        ...


def extract_code(text: str) -> str | None:
    """The first fenced code block that defines ``compute_reward`` (or the whole text, if it is bare code)."""
    for block in CODE_BLOCK.findall(text):
        if "def compute_reward" in block:
            return block.strip() + "\n"
    stripped = text.strip()
    if stripped.startswith(("import ", "from ", "def compute_reward")) and "```" not in stripped:
        return stripped + "\n"
    return None


class OpenAIChat:
    """Chat completions with retries; ``complete`` returns the message text."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 1.0, timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 2.0,
                 max_tokens: int | None = None) -> None:
        try:
            import openai
        except ImportError:
            raise LLMError("--llm openai:MODEL needs the openai package: pip install 'rlctl[llm]'") from None
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise LLMError(f"set ${api_key_env} to your API key, or point --base-url at a local "
                               "OpenAI-compatible server")
            key = "EMPTY"  # local servers (vLLM, Ollama, llama.cpp) accept any key
        self.name, self.base_url, self.temperature = model, base_url, temperature
        self.where = base_url or "the OpenAI API"
        self.timeout_s, self.retries, self.backoff_s, self.max_tokens = timeout_s, retries, backoff_s, max_tokens
        self.api_key_env = api_key_env
        self._openai = openai
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=0)

    def complete(self, messages: list[dict[str, str]], round_: int, index: int) -> tuple[str, dict[str, Any]]:
        last = ""
        for attempt in range(1, self.retries + 2):
            t0 = time.perf_counter()
            try:
                create: Any = self._client.chat.completions.create
                response = create(model=self.name, messages=messages, temperature=self.temperature,
                                  **({"max_tokens": self.max_tokens} if self.max_tokens else {}))
                text = _message_text(response)
                usage: Any = getattr(response, "usage", None)
                return text, {"model": getattr(response, "model", None) or self.name, "attempts": attempt,
                              "latency_s": round(time.perf_counter() - t0, 3),
                              "finish_reason": getattr(response.choices[0], "finish_reason", None),
                              "usage": usage.model_dump() if hasattr(usage, "model_dump") else None}
            except Exception as exc:  # sorted into retry or stop by _explain
                retry, last = self._explain(exc)
                if not retry:
                    raise LLMError(last) from None
            if attempt <= self.retries:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 60.0))
        raise LLMError(f"{last} (after {self.retries + 1} tries)")

    def _explain(self, exc: Exception) -> tuple[bool, str]:
        """(worth retrying, one line) for anything the request raised."""
        o, where = self._openai, self.where
        if isinstance(exc, o.AuthenticationError | o.PermissionDeniedError):
            return False, (f"the LLM server at {where} refused the key (HTTP {exc.status_code}); check "
                           f"${self.api_key_env}")
        if isinstance(exc, o.NotFoundError):
            return False, f"model {self.name!r} not found at {where} (HTTP 404); check the model name and --base-url"
        if isinstance(exc, o.BadRequestError | o.UnprocessableEntityError):
            return False, f"the LLM server at {where} rejected the request (HTTP {exc.status_code}): {_short(exc)}"
        if isinstance(exc, o.APITimeoutError):
            return True, f"the LLM server at {where} did not answer within {self.timeout_s:g} s"
        if isinstance(exc, o.APIConnectionError):
            return True, f"cannot reach the LLM server at {where} ({_short(exc.__cause__ or exc)})"
        if isinstance(exc, o.APIStatusError):
            return exc.status_code == 429 or exc.status_code >= 500, \
                f"the LLM server at {where} answered HTTP {exc.status_code}: {_short(exc)}"
        if isinstance(exc, MalformedResponse | o.APIResponseValidationError | ValueError | TypeError
                      | AttributeError | IndexError | KeyError):
            return True, f"malformed response from the LLM server at {where}: {_short(exc)}"
        return False, f"the request to the LLM server at {where} failed: {type(exc).__name__}: {_short(exc)}"


class MalformedResponse(ValueError):
    pass


def _message_text(response: Any) -> str:
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponse("no choices in the response")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str) or not text.strip():
        raise MalformedResponse("the response has no message text")
    return text


def _short(exc: BaseException | object, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


class Replay:
    """Recorded responses of an earlier refine directory (``round_NN/responses/cand_KK.txt``), in order."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        self.name = f"replay:{self.root}"
        if not self.root.is_dir():
            raise LLMError(f"--llm replay:{directory}: no such directory")

    def complete(self, messages: list[dict[str, str]], round_: int, index: int) -> tuple[str, dict[str, Any]]:
        path = response_path(self.root, round_, index)
        if not path.is_file():
            raise LLMError(f"--llm {self.name}: no recorded response for round {round_} candidate {index} "
                           f"({path.relative_to(self.root)})")
        return path.read_text(), {"model": self.name, "replayed_from": str(path)}


def response_path(root: Path, round_: int, index: int) -> Path:
    return root / f"round_{round_:02d}" / "responses" / f"cand_{index:02d}.txt"


def chat_model(spec: str, base_url: str | None, api_key_env: str, temperature: float, timeout_s: float,
               retries: int, backoff_s: float) -> ChatModel | None:
    """``openai:MODEL`` / ``replay:DIR`` / ``none`` (None: the offline evolution strategy proposes)."""
    kind, _, arg = spec.partition(":")
    if kind == "none" and not arg:
        return None
    if kind == "openai" and arg:
        return OpenAIChat(arg, base_url, api_key_env, temperature, timeout_s, retries, backoff_s)
    if kind == "replay" and arg:
        return Replay(arg)
    raise LLMError(f"--llm {spec!r}: expected openai:MODEL, replay:DIR or none")
