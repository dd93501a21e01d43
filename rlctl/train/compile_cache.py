"""Where ``torch.compile`` keeps what it compiled, so a machine pays the compilation once, not every run.

Inductor caches compiled graphs (and AOT autograd its traced backward) on disk, keyed by the graph, the torch
version and the machine; by default under ``/tmp``, which a reboot or a tmp cleaner empties. rlctl points it at
the user's cache directory instead (``$XDG_CACHE_HOME/rlctl/torchinductor``, else ``~/.cache/...``) unless
``TORCHINDUCTOR_CACHE_DIR`` is already set. What is left on a warm start is dynamo's tracing (a few seconds).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "TORCHINDUCTOR_CACHE_DIR"


def use_compile_cache() -> Path:
    """Set (unless the user did) and return the directory Inductor caches compiled graphs in; call it before the
    first compilation. torch writes its ``/tmp`` default into the environment the first time it looks, so that
    value is taken as unset."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get(ENV, "") in ("", os.path.abspath(default_cache_dir())):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        os.environ[ENV] = str(base / "rlctl" / "torchinductor")
    return Path(os.environ[ENV])


def cache_counts() -> tuple[int, int]:
    """Compiled graphs loaded from the cache and compiled afresh in this process so far (Inductor's counters)."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return int(inductor["fxgraph_cache_hit"]), int(inductor["fxgraph_cache_miss"])
