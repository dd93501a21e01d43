"""Training: the loop (:mod:`.loop`), the learner stage (:mod:`.learner`), the advantage stage
(:mod:`.advantages`), the optimizer (:mod:`.optim`) and run state (:mod:`.state`)."""

from __future__ import annotations

from rlctl.train.loop import TrainResult, train

__all__ = ["TrainResult", "train"]
