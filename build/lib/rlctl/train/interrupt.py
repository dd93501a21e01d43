"""Ctrl-C during training: the first press finishes the update and checkpoints, a second aborts at once."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any


class GracefulStop:
    """While active, the first SIGINT sets :attr:`requested` (the loop checkpoints and stops after the
    current update); the second raises KeyboardInterrupt as usual. Off the main thread it does nothing:
    Python delivers signals to the main thread only."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        print("\nrlctl: stopping after this update and writing a checkpoint (Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
