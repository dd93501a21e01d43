"""The one exception type that the CLI turns into a clean message and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad id, bad flag, missing extra, corrupt file).

    The CLI prints ``error: <message>`` on stderr and exits with status 2, without a traceback
    unless ``--debug`` is given. Library callers get an ordinary exception they can catch.
    """
