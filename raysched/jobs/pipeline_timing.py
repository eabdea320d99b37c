"""A pipeline stage's bubble clock: compute time and schedule time, nothing outside the schedule.

GPipe's bubble is the idle time of a stage *within* the schedule's execution. So the clock
counts as busy only the stage's compute (forward, backward and loss of each micro-batch) and
as the denominator only the time spent inside `schedule.step` -- not data loading, the
optimizer step, the loss all-reduce, stop votes, telemetry or checkpoints between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


class StageClock:
    """Accumulates busy (compute) and schedule (schedule.step) seconds of one stage."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.busy_s = 0.0
        self.schedule_s = 0.0
        self._depth = 0

    def reset(self) -> None:
        """Forget what was counted so far (e.g. after the shape-inferring first step)."""
        self.busy_s = 0.0
        self.schedule_s = 0.0

    def compute(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` wrapped so that its run time counts as busy (nested calls count once)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy_s += self.clock() - t0
                self._depth -= 1

        return wrapper

    def schedule(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` (a schedule's step) wrapped so that its run time counts as schedule time."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.schedule_s += self.clock() - t0

        return wrapper

    def bubble(self) -> float:
        """1 - busy / schedule time (nan before any schedule time was counted)."""
        return 1.0 - self.busy_s / self.schedule_s if self.schedule_s > 0 else float("nan")


def bubble_given_stage_compute(stage_busy_s: Sequence[float], micro_batches: int) -> float:
    """The mean idle fraction that unequal stages leave even with free communication.

    A GPipe or 1F1B step takes about (M+S-1) micro-batch slots of the slowest stage, of which
    stage i computes during M of its own: it idles 1 - busy_i / ((M+S-1)/M * max busy). Equals
    `ideal_bubble` for equal stages."""
    stages, slowest = len(stage_busy_s), max(stage_busy_s, default=0.0)
    if slowest <= 0:
        return float("nan")
    span = (micro_batches + stages - 1) / micro_batches * slowest
    return sum(1.0 - b / span for b in stage_busy_s) / stages
