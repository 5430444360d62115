"""How long a training run lasts: minutes of wall clock, or an exact number of optimiser steps.

A time budget suits a shared machine (the run ends when promised, however busy the cores are), but its
step count, and so its weights, depend on the machine's speed. A step budget makes a run repeatable: the
same seed, steps and thread count give the same weights. Either way the learning rate follows the
run's progress from 0 to 1.
"""
from __future__ import annotations

import time


class Budget:
    def __init__(self, minutes: float, steps: int | None = None):
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if steps is None and not minutes > 0:
            raise ValueError(f"minutes must be positive, got {minutes}")
        self.seconds, self.steps, self.start = minutes * 60, steps, time.time()

    def elapsed(self) -> float:
        return time.time() - self.start

    def progress(self, step: int) -> float:
        """The fraction of the run done before `step` (0-based), in [0, 1]."""
        return step / self.steps if self.steps else min(1.0, self.elapsed() / self.seconds)

    def done(self, step: int) -> bool:
        return step >= self.steps if self.steps else self.elapsed() >= self.seconds
