"""The sandbox: a corpus of malicious and broken programs, each refused or contained with a clear reason.

``tests/sandbox_corpus/*.prog``: the first line says ``# expect: <words of the reason>``. The first half never
runs (static checks); the rest pass them and are contained by the process (limits, timeouts, output checks).
The dynamic layer is also tested alone: programs that reach ``os`` through the classic ``__subclasses__``
escape (run without the static checks) still cannot write a file, open a socket, or leave processes behind.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from rlctl.refine.hook import SandboxedReward, validate
from rlctl.refine.sandbox import Limits, Sandbox, SandboxError, isolation
from rlctl.refine.schema import Schema
from rlctl.refine.static import ProgramRejected, check_program

CORPUS = sorted((Path(__file__).parent / "sandbox_corpus").glob("*.prog"))
SCHEMA = Schema("toy", obs_dim=3, act_dim=1)
LIMITS = Limits(call_timeout_s=1.5, start_timeout_s=6.0, memory_mb=512)
SENTINEL = Path("/tmp/rlctl-sandbox-pwned")
ESCAPE = ("OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
          ".__init__.__globals__\n")


def _states(n: int = 64) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, SCHEMA.row_size))


def _nobody_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if "\nUid:\t65534" in (entry / "status").read_text():
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_the_corpus_is_large_and_covers_both_layers() -> None:
    assert len(CORPUS) >= 30
    names = {p.stem for p in CORPUS}
    assert {"import_os", "import_subprocess", "import_socket", "subclasses_escape", "frame_walk", "open_write",
            "infinite_loop", "memory_bomb", "nan_reward", "wrong_shape", "enormous_dict"} <= names


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_every_corpus_program_is_refused_with_its_reason_and_writes_nothing(path: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = path.read_text()
    expect = source.splitlines()[0].removeprefix("# expect: ")
    t0 = time.perf_counter()
    result = validate(source, SCHEMA, _states(), LIMITS, tmp_path / "sandbox.log")
    assert not result.ok
    assert expect in result.reason, result.reason
    assert "\n" not in result.reason and len(result.reason) < 600  # one line, fit to go back to the LLM
    assert time.perf_counter() - t0 < 30
    assert not SENTINEL.exists() and not Path(str(SENTINEL) + ".npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["sandbox.log"])


def test_a_good_program_passes_and_its_components_are_summarized() -> None:
    source = ("import numpy as np\n\ndef compute_reward(next_obs, env_reward, terminated):\n"
              "    temp = 0.5\n    near = np.exp(-np.linalg.norm(next_obs, axis=1) / temp)\n"
              "    return env_reward + near - terminated, {'near': near, 'crash': -terminated}\n")
    result = validate(source, SCHEMA, _states(), LIMITS)
    assert result.ok, result.reason
    assert result.params == ["next_obs", "env_reward", "terminated"]
    assert set(result.components) == {"total", "near", "crash"}
    assert 0.0 < result.components["near"]["max"] <= 1.0


def test_static_checks_name_the_available_variables_for_an_unknown_one() -> None:
    with pytest.raises(ProgramRejected, match="the env provides: obs, action, next_obs"):
        check_program("def compute_reward(position):\n    return position, {}\n", ["obs", "action", "next_obs"])


# -- the dynamic layer alone: the static checks are skipped, the program escapes to the os module ------------

def _escaped(body: str) -> Sandbox:
    source = ESCAPE + "def compute_reward(env_reward):\n" + body + "    return env_reward, {}\n"
    return Sandbox(source, SCHEMA.layout(), ["env_reward"], SCHEMA.row_size, LIMITS)


def _reason(box: Sandbox) -> str:
    with box, pytest.raises(SandboxError) as err:
        box.call(_states(1))
    return str(err.value)


def test_an_escaped_program_cannot_open_a_file_anywhere(tmp_path: Path) -> None:
    target = tmp_path / "written"
    reason = _reason(_escaped(f"    OS['open']({str(target)!r}, OS['O_CREAT'] | OS['O_WRONLY'])\n"))
    assert "Too many open files" in reason
    assert not target.exists()


def test_an_escaped_program_cannot_reach_a_server_on_localhost() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    body = (f"    imp = OS['__builtins__']['__import__']\n    imp('socket').create_connection(('127.0.0.1', {port}))\n")
    try:
        reason = _reason(_escaped(body))
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    assert "Error" in reason


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops to nobody only when started as root")
def test_an_escaped_program_runs_as_nobody_and_its_fork_bomb_dies_with_it() -> None:
    with _escaped("    return float(OS['getuid']()), {}\n") as box:
        assert box.call(_states(1))[0][0] == 65534
    box = _escaped("    while True:\n        OS['fork']()\n")
    box.start()
    marker = str(box._scratch)  # in every forked copy's command line
    with pytest.raises(SandboxError):
        box.call(_states(1))
    box.close()
    time.sleep(0.5)
    assert not [p for p in _nobody_pids() if marker in _cmdline(p)]  # every forked process died with the sandbox


def test_cpu_time_is_limited_even_when_the_wall_clock_would_allow_more() -> None:
    box = Sandbox("def compute_reward(env_reward):\n    while True:\n        pass\n", SCHEMA.layout(), ["env_reward"],
                  SCHEMA.row_size, Limits(call_timeout_s=30, cpu_s=1))
    t0 = time.perf_counter()
    assert "CPU-time limit" in _reason(box)
    assert time.perf_counter() - t0 < 15


def test_isolation_uses_namespaces_where_the_machine_grants_them() -> None:
    iso = isolation()
    if iso.namespaces is None:
        pytest.skip("no unshare here: the README's security notes say what is then not protected")
    assert "--net" in iso.prefix and "--pid" in iso.prefix


def test_the_reward_hook_survives_pickling_and_each_copy_starts_its_own_sandbox() -> None:
    source = "def compute_reward(obs, env_reward):\n    return env_reward + obs[:, 0], {'x': obs[:, 0]}\n"
    hook = SandboxedReward(source, SCHEMA, LIMITS)
    obs = np.array([0.5, 0.0, 0.0], dtype=np.float32)
    assert hook(obs, np.zeros(1), obs, 1.0, {}) == (1.5, {"x": 0.5})
    copy = pickle.loads(pickle.dumps(hook))
    assert copy.calls == 0
    assert copy(obs * 2, np.zeros(1), obs, 2.0, {}) == (3.0, {"x": 1.0})
    hook.close()
    copy.close()
