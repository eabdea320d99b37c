"""When a running job is a straggler, and what its step would cost elsewhere, from measurements.

The cost model's interval says how slow is too slow for a job it predicts well. A model trained
on little or unlike history can be far off, though (ten times too pessimistic is common right
after a cold start), and then no slowdown ever exceeds its interval; too optimistic, and every
step does, so a job whose first steps already exceeded the interval gets no evidence from it.
So a job is also judged against its own yardstick: the median step time it measured on the same
nodes just after it started. A node that slows down mid-run (a noisy neighbour) shows as the
job's recent steps running `self_factor` times slower than that baseline, whatever the model
thinks.

The same yardstick calibrates predictions for migration targets: the model's relative view of
the nodes (target over own nodes) is kept, its absolute scale is replaced by what the job
measured, so the predicted saving of a move is in the job's own units.
"""

from __future__ import annotations

import dataclasses

from raysched.schedulers.types import JobView


@dataclasses.dataclass(frozen=True)
class StragglerSignal:
    """Why a job counts as a straggler (for the decision log)."""

    measured_s: float
    limit_s: float
    source: str  # "prediction" (beyond the model's interval) or "baseline" (its own early steps)

    def describe(self) -> str:
        if self.source == "baseline":
            return (f"steps in {self.measured_s:.3g} s, over {self.limit_s:.3g} s "
                    "(its own early steps on these nodes, with tolerance)")
        return (f"steps in {self.measured_s:.3g} s, over {self.limit_s:.3g} s "
                "(the predicted interval's upper end, with tolerance)")


def straggler_signal(
    job: JobView, predicted_hi_s: float, *, slow_factor: float, self_factor: float
) -> StragglerSignal | None:
    """The evidence that `job` runs too slowly on its nodes, or None when it is on time."""
    measured = job.recent_step_time_s
    if not measured or measured <= 0:
        return None
    baseline = job.baseline_step_time_s
    limit = predicted_hi_s * slow_factor
    # A job already over the limit in its first steps shows the model wrong about it, not its
    # nodes slow (a cold model on a contended 2-core host drained a node for it): only its own
    # baseline, and other jobs' evidence (`node_speeds`), can then say its nodes slowed down.
    model_held = not baseline or baseline <= limit
    if predicted_hi_s > 0 and measured > limit and model_held:
        return StragglerSignal(measured, limit, "prediction")
    if baseline and baseline > 0 and measured > baseline * self_factor:
        return StragglerSignal(measured, baseline * self_factor, "baseline")
    return None


def calibration(job: JobView, predicted_own_s: float, measured_s: float | None = None) -> float:
    """Factor that turns this job's predicted step times into its measured scale (1 if unknown).

    Measured (its baseline on its own nodes, or `measured_s` when given) over the prediction
    there; clipped to [0.01, 100] so one odd measurement cannot make a move look free or
    impossible.
    """
    measured = job.baseline_step_time_s if measured_s is None else measured_s
    if not measured or measured <= 0 or predicted_own_s <= 0:
        return 1.0
    return min(max(measured / predicted_own_s, 0.01), 100.0)
