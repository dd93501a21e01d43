"""Demonstrations as files: per step, the exact simulator snapshot, observation, action, reward, running
return and success of one or more episodes (Salimans & Chen 2018 need the snapshots to start episodes
from demo states; :mod:`rlctl.envs.demo_start` does that).

File format (``.npz``, loads with ``allow_pickle=False``; nothing in it is code):

* ``format`` = ``"rlctl-demo"``, ``version`` = 1, ``meta``: a JSON string with ``env_id``, ``env_kwargs``,
  ``max_episode_steps``, ``source`` (what acted), ``rlctl_version`` and ``episodes`` (their count);
* per episode ``e`` (``T`` steps): ``e{e}/obs`` ``[T, ...]`` (the observation *before* step ``t``),
  ``e{e}/actions`` ``[T, ...]``, ``e{e}/rewards`` ``[T]``, ``e{e}/returns`` ``[T + 1]`` (the running return
  *before* step ``t``; the last entry is the episode's return), ``e{e}/success`` ``[T]`` (the env's
  ``info["is_success"]`` after step ``t``, false where it reports none), ``e{e}/terminated`` (a scalar);
* snapshots (:func:`rlctl.envs.snapshot.capture_state` of the state before step ``t``):
  ``e{e}/snap_json`` ``[T]`` JSON strings in which every array is ``{"__a__": [offset, dtype, shape]}``
  into the flat byte buffer ``e{e}/snap_blob``; tuples, non-string dict keys and big integers (NumPy's
  generator states) survive the trip.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlctl.envs.errors import EnvError

FORMAT = "rlctl-demo"
VERSION = 1


class DemoError(EnvError):
    """A demo file that cannot be used here (missing, corrupt, another env, pickled objects)."""


@dataclass
class DemoEpisode:
    """One demonstrated episode; ``snapshots[t]`` is the state before step ``t`` (decoded on first use)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    returns: np.ndarray  # [T + 1] running return before step t; returns[-1] is the episode's return
    success: np.ndarray  # [T] bool
    terminated: bool
    snap_json: list[str]
    snap_blob: np.ndarray

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def succeeded(self) -> bool:
        return bool(self.success.any())

    def snapshot(self, t: int) -> dict[str, Any]:
        """The snapshot before step ``t`` (a fresh copy each call: restoring may keep references)."""
        if not 0 <= t < self.length:
            raise IndexError(f"demo step {t} outside 0..{self.length - 1}")
        return decode_tree(json.loads(self.snap_json[t]), self.snap_blob)


@dataclass
class Demo:
    env_id: str
    env_kwargs: dict[str, Any]
    max_episode_steps: int | None
    source: str
    rlctl_version: str
    episodes: list[DemoEpisode]

    def check_env(self, env_id: str, env_kwargs: dict[str, Any] | None, max_episode_steps: int | None,
                  path: str | Path) -> None:
        """DemoError unless the demo was made on this env id, kwargs and time limit."""
        ours = (env_id, dict(env_kwargs or {}), max_episode_steps)
        theirs = (self.env_id, self.env_kwargs, self.max_episode_steps)
        if _canonical(ours) != _canonical(theirs):
            raise DemoError(f"demo {path} was recorded on {self.env_id} with kwargs {self.env_kwargs} and "
                            f"max_episode_steps {self.max_episode_steps}; this run has {env_id} with kwargs "
                            f"{dict(env_kwargs or {})} and max_episode_steps {max_episode_steps}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------------------------
# nested snapshot data <-> JSON + one byte buffer
# ---------------------------------------------------------------------------------------------------------------

def encode_tree(tree: Any, blob: bytearray) -> Any:
    """JSON-able form of ``tree``; arrays are appended to ``blob`` and referenced by offset."""
    if isinstance(tree, np.ndarray):
        if tree.dtype.kind not in "biufc":
            raise DemoError(f"cannot store an array of dtype {tree.dtype} in a demo")
        data = np.ascontiguousarray(tree)
        offset = len(blob)
        blob.extend(data.tobytes())
        return {"__a__": [offset, data.dtype.str, list(data.shape)]}
    if isinstance(tree, np.generic):
        return {"__s__": [tree.dtype.str, tree.item() if tree.dtype.kind != "c" else [tree.real, tree.imag]]}
    if isinstance(tree, bool) or tree is None or isinstance(tree, (str, float)):
        return tree
    if isinstance(tree, int):
        return tree if abs(tree) < 2**53 else {"__i__": str(tree)}
    if isinstance(tree, bytes):
        return encode_tree(np.frombuffer(tree, dtype=np.uint8), blob) | {"__b__": 1}
    if isinstance(tree, tuple):
        return {"__t__": [encode_tree(v, blob) for v in tree]}
    if isinstance(tree, list):
        return [encode_tree(v, blob) for v in tree]
    if isinstance(tree, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in tree):
            return {k: encode_tree(v, blob) for k, v in tree.items()}
        return {"__d__": [[encode_tree(k, blob), encode_tree(v, blob)] for k, v in tree.items()]}
    raise DemoError(f"cannot store a {type(tree).__name__} in a demo snapshot")


def decode_tree(tree: Any, blob: np.ndarray) -> Any:
    """Inverse of :func:`encode_tree`."""
    if isinstance(tree, list):
        return [decode_tree(v, blob) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__a__" in tree:
        offset, dtype, shape = tree["__a__"]
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        end = offset + count * dt.itemsize
        if end > len(blob):
            raise DemoError("demo snapshot data is truncated")
        arr = np.frombuffer(blob[offset:end].tobytes(), dtype=dt).reshape(shape).copy()
        return arr.tobytes() if "__b__" in tree else arr
    if "__s__" in tree:
        dtype, value = tree["__s__"]
        return np.dtype(dtype).type(complex(*value) if isinstance(value, list) else value)
    if "__i__" in tree:
        return int(tree["__i__"])
    if "__t__" in tree:
        return tuple(decode_tree(v, blob) for v in tree["__t__"])
    if "__d__" in tree:
        return {decode_tree(k, blob): decode_tree(v, blob) for k, v in tree["__d__"]}
    return {k: decode_tree(v, blob) for k, v in tree.items()}


# ---------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------

def episode_arrays(snapshots: list[dict[str, Any]], obs: list[Any], actions: list[Any], rewards: list[float],
                   success: list[bool], terminated: bool) -> dict[str, np.ndarray]:
    """One recorded episode as the arrays a demo file holds (without the ``e{e}/`` prefix)."""
    blob = bytearray()
    snap_json = [json.dumps(encode_tree(s, blob), separators=(",", ":")) for s in snapshots]
    rew = np.asarray(rewards, dtype=np.float64)
    return {"obs": np.stack([np.asarray(o) for o in obs]), "actions": np.stack([np.asarray(a) for a in actions]),
            "rewards": rew, "returns": np.concatenate([[0.0], np.cumsum(rew)]),
            "success": np.asarray(success, dtype=bool), "terminated": np.asarray(bool(terminated)),
            "snap_json": np.asarray(snap_json, dtype=str), "snap_blob": np.frombuffer(bytes(blob), dtype=np.uint8)}


def demo_arrays(meta: dict[str, Any], episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Everything a demo file holds, by name (``np.savez_compressed(fh, **demo_arrays(...))`` writes one)."""
    arrays: dict[str, np.ndarray] = {"format": np.asarray(FORMAT), "version": np.asarray(VERSION),
                                     "meta": np.asarray(json.dumps({**meta, "episodes": len(episodes)}))}
    for e, ep in enumerate(episodes):
        arrays.update({f"e{e}/{k}": v for k, v in ep.items()})
    return arrays


_CACHE: dict[str, tuple[tuple[float, int], Demo]] = {}  # path → (mtime, size) of the version read, and it


def load_demo(path: str | Path) -> Demo:
    """Read a demo file; :class:`DemoError` with one line for anything that is not a valid rlctl demo.

    Loads are cached per process and file (every env of a vector env reads the same files); a file changed on
    disk is read again."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise DemoError(f"demo {path}: no such file") from None
    name, version = str(path.resolve()), (stat.st_mtime, stat.st_size)
    cached = _CACHE.get(name)
    if cached is not None and cached[0] == version:
        return cached[1]
    try:
        with np.load(path, allow_pickle=False) as data:
            files = {name: data[name] for name in data.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DemoError(f"demo {path}: it holds pickled objects, which rlctl never loads") from None
        raise DemoError(f"demo {path}: not a demo file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DemoError(f"demo {path}: not a readable .npz file, truncated or corrupt ({exc})") from None
    demo = _parse(files, path)
    _CACHE[name] = (version, demo)  # one version per file: an older one is dropped
    return demo


def _parse(files: dict[str, np.ndarray], path: Path) -> Demo:
    if str(files.get("format", "")) != FORMAT:
        raise DemoError(f"demo {path}: not an rlctl demo (no format marker {FORMAT!r})")
    version = int(files["version"]) if "version" in files else -1
    if version != VERSION:
        raise DemoError(f"demo {path}: format version {version}, this rlctl reads version {VERSION}")
    try:
        meta = json.loads(str(files["meta"]))
        episodes = []
        for e in range(int(meta["episodes"])):
            get = lambda k, e=e: files[f"e{e}/{k}"]
            ep = DemoEpisode(obs=get("obs"), actions=get("actions"), rewards=get("rewards"), returns=get("returns"),
                             success=get("success").astype(bool), terminated=bool(get("terminated")),
                             snap_json=[str(s) for s in get("snap_json")], snap_blob=get("snap_blob"))
            if not (len(ep.obs) == len(ep.rewards) == len(ep.success) == len(ep.snap_json) == ep.length
                    and len(ep.returns) == ep.length + 1) or ep.length == 0:
                raise ValueError(f"episode {e} has fields of different lengths")
            episodes.append(ep)
        return Demo(env_id=str(meta["env_id"]), env_kwargs=dict(meta.get("env_kwargs") or {}),
                    max_episode_steps=meta.get("max_episode_steps"), source=str(meta.get("source", "?")),
                    rlctl_version=str(meta.get("rlctl_version", "?")), episodes=episodes)
    except (KeyError, ValueError, TypeError) as exc:
        raise DemoError(f"demo {path}: corrupt ({exc})") from None


__all__ = ["Demo", "DemoEpisode", "DemoError", "demo_arrays", "episode_arrays", "load_demo"]
