"""Demo files: exact snapshots survive the trip to disk, and a file that cannot be used is one clear error."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rlctl.cli import main
from rlctl.demos import record_demo, save_demo
from rlctl.envs.demo import DemoError, decode_tree, encode_tree, load_demo
from rlctl.envs.make import make_env
from rlctl.envs.snapshot import restore_state


def test_nested_snapshot_data_round_trips_with_types_kept() -> None:
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "big": 2**100 + 7, "t": (1, 2.5, None),
            "keys": {3: "three", (1, 2): [True, np.int64(4)]}, "raw": b"\x00\x01\xff", "scalar": np.float64(0.1),
            "__tricky": "x"}
    blob = bytearray()
    encoded = json.loads(json.dumps(encode_tree(tree, blob)))
    back = decode_tree(encoded, np.frombuffer(bytes(blob), dtype=np.uint8))
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["a"].dtype == np.float32
    assert back["big"] == 2**100 + 7 and back["t"] == (1, 2.5, None) and back["raw"] == b"\x00\x01\xff"
    assert back["keys"] == {3: "three", (1, 2): [True, 4]} and type(back["keys"][(1, 2)][1]) is np.int64
    assert back["scalar"] == np.float64(0.1) and back["__tricky"] == "x"


@pytest.mark.parametrize("env_id,source", [("rlctl/ReacherSparse-v0", "controller:reacher"),
                                           ("rlctl/ArmPushSparse-v0", "controller:push"),
                                           ("Pendulum-v1", "controller:energy"),
                                           ("ALE/Pong-v5", "random")])
def test_every_recorded_state_continues_exactly_as_the_demo_did(tmp_path: Path, env_id: str, source: str) -> None:
    path = tmp_path / "demo.npz"
    kwargs = {"max_episode_steps": 40} if env_id in ("Pendulum-v1", "ALE/Pong-v5") else {}
    record_demo(env_id, source, 1, path, seed=3, **kwargs)  # type: ignore[arg-type]
    ep = load_demo(path).episodes[0]
    assert ep.returns[-1] == pytest.approx(ep.rewards.sum()) and len(ep.returns) == ep.length + 1
    env = make_env(env_id, max_episode_steps=kwargs.get("max_episode_steps"))
    for t in sorted({0, ep.length // 2, ep.length - 1}):
        env.reset(seed=999)  # somewhere else entirely
        restore_state(env, ep.snapshot(t))
        for k in range(t, ep.length):
            obs, reward, *_ = env.step(ep.actions[k])
            assert reward == ep.rewards[k]
            if k + 1 < ep.length:
                np.testing.assert_array_equal(obs, ep.obs[k + 1])
    env.close()


def _demo(tmp_path: Path) -> Path:
    path = tmp_path / "r.npz"
    record_demo("rlctl/ReacherSparse-v0", "controller:reacher", 2, path, seed=0)
    return path


def test_show_summarizes_env_source_length_return_and_success(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _demo(tmp_path)
    assert main(["demo", "show", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["env_id"] == "rlctl/ReacherSparse-v0" and info["source"] == "controller:reacher"
    assert len(info["episodes"]) == 2 and all(ep["success"] and ep["return"] == 1.0 for ep in info["episodes"])
    assert info["rlctl_version"]


def test_record_through_the_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "d.npz"
    args = ["demo", "record", "--env", "rlctl/ReacherSparse-v0", "--from", "controller:reacher", "--out", str(out)]
    assert main(args) == 0 and out.is_file()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err


def _error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_unusable_demo_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _demo(tmp_path)
    assert "no such file" in _error(["demo", "show", str(tmp_path / "none.npz")], capsys)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "corrupt" in _error(["demo", "show", str(truncated)], capsys)

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.asarray("rlctl-demo"), version=np.asarray(1), meta=np.array([{"x": 1}], dtype=object))
    assert "pickled" in _error(["demo", "show", str(pickled)], capsys)

    other = tmp_path / "other.npz"
    np.savez(other, stuff=np.zeros(3))
    assert "not an rlctl demo" in _error(["demo", "show", str(other)], capsys)

    broken = tmp_path / "broken.npz"  # right marker, an episode with a missing field
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.namelist():
            if item != "e1/actions.npy":
                dst.writestr(item, src.read(item))
    assert "corrupt" in _error(["demo", "show", str(broken)], capsys)


def test_a_demo_of_another_env_or_kwargs_is_refused_before_training(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    path = _demo(tmp_path)
    base = ["train", "--steps", "64", "--run-dir", str(tmp_path / "run"), "--quiet", "--demo", str(path)]
    assert "was recorded on rlctl/ReacherSparse-v0" in _error([*base, "--env", "Reacher-v5"], capsys)
    err = _error([*base, "--env", "rlctl/ReacherSparse-v0", "--set", "env.kwargs.success_distance=0.05"], capsys)
    assert "success_distance" in err


def test_a_demo_write_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    save_demo(path, {"env_id": "x"}, [])
    before = path.read_bytes()

    class Boom(Exception):
        pass

    def explode(*_: object, **__: object) -> None:
        raise Boom

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "savez_compressed", explode)
        with pytest.raises(Boom):
            save_demo(path, {"env_id": "y"}, [])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["d.npz"]


def test_loading_a_demo_for_a_missing_file_raises_demo_error(tmp_path: Path) -> None:
    with pytest.raises(DemoError):
        load_demo(tmp_path / "missing.npz")
