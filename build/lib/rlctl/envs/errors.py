"""Errors the env layer raises for user mistakes (unknown id, missing simulator, unsupported space)."""

from __future__ import annotations


class EnvError(Exception):
    """An environment could not be made or used as asked; the message says what to do."""
