from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlctl.checkpoint import atomic_write_text, load_checkpoint, prepare_output, save_checkpoint
from rlctl.errors import UserError


def test_round_trip_keeps_tensors_arrays_and_plain_data(tmp_path: Path) -> None:
    payload = {
        "w": torch.randn(3, 4),
        "arr": np.arange(6, dtype=np.int16).reshape(2, 3),
        "nested": {"big_int": 2**100, "tuple": (1, 2.5, None), "list": [np.float32(1.5)]},
    }
    save_checkpoint(tmp_path / "c.pt", payload)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["w"], payload["w"])
    assert back["arr"].dtype == np.int16 and np.array_equal(back["arr"], payload["arr"])
    assert back["nested"] == {"big_int": 2**100, "tuple": (1, 2.5, None), "list": [1.5]}


def test_failed_write_leaves_previous_checkpoint_and_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})

    def boom(obj, fh):  # type: ignore[no-untyped-def]
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_output_files_are_checked_before_the_work_and_replaced_whole(tmp_path: Path) -> None:
    out = prepare_output(tmp_path / "new" / "deeper" / "eval.json", force=False)
    assert out.parent.is_dir()  # a missing folder is made, not a traceback after the evaluation
    atomic_write_text(out, "first")
    with pytest.raises(UserError, match="exists; pass --force"):
        prepare_output(out, force=False)
    assert prepare_output(out, force=True) == out
    with pytest.raises(UserError, match="is a directory"):
        prepare_output(tmp_path / "new", force=True)
    with pytest.raises(UserError, match="cannot create the folder"):
        prepare_output(out / "below-a-file.json", force=False)

    class DiskFull(str):
        def encode(self, *args: object, **kwargs: object) -> bytes:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(out, DiskFull("second"))
    assert out.read_text() == "first"  # a failed rewrite leaves the old file
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.json"]  # and no temp file


def test_sigkill_at_any_moment_never_corrupts_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    script = textwrap.dedent(f"""
        import pathlib, torch
        from rlctl.checkpoint import save_checkpoint
        i = 0
        while True:
            i += 1
            save_checkpoint(pathlib.Path({str(path)!r}), {{"i": i, "w": torch.full((400_000,), float(i))}})
    """)
    for delay in (0.0, 0.013, 0.031):
        mtime = path.stat().st_mtime_ns if path.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.time() + 60
        while (not path.exists() or path.stat().st_mtime_ns == mtime) and time.time() < deadline:
            time.sleep(0.005)  # wait until this process is mid-way through its write loop
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = load_checkpoint(path)
        assert torch.all(data["w"] == float(data["i"]))


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "rlctl-checkpoint", "version": 1, "x": _Evil()}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(path)


def test_truncated_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.randn(1000)})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(UserError, match="not an rlctl checkpoint"):
        load_checkpoint(other)
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UserError):
        load_checkpoint(plain)


def test_loading_a_policy_acts_with_the_runs_torch_threads(tmp_path: Path) -> None:
    # torch's default (a thread per core) made each control step of a loaded policy wait on the other cores
    from rlctl.runs import load_policy
    from rlctl.train.loop import train
    from tests.helpers import small_config

    train(small_config("CartPole-v1", ppo={"total_timesteps": 128, "num_steps": 64, "minibatch_size": 64,
                                           "update_epochs": 1}), tmp_path / "run", progress=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_policy(tmp_path / "run")
        assert torch.get_num_threads() == 1  # the run's run.torch_threads
    finally:
        torch.set_num_threads(before)
