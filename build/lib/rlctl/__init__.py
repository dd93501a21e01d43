"""rlctl: a PPO toolkit for classic control, MuJoCo, Atari and robotics."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
