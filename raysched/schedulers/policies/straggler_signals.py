"""When a running job is a straggler, and what its step would cost elsewhere, from measurements.

The cost model's interval says how slow is too slow for a job it predicts well. A model trained
on little or unlike history can be far off, though (ten times too pessimistic is common right
after a cold start), and then no slowdown ever exceeds its interval; too optimistic, and every
step does, so a job whose first steps already exceeded the interval gets no evidence from it.
So a job is also judged against its own yardstick: the median step time it measured on the same
nodes just after it started. A node that slows down mid-run (a noisy neighbour) shows as the
job's recent steps running `self_factor` times slower than that baseline, whatever the model
thinks. Only slower than the other jobs slowed at the same time, though: when a shared resource
(the host's cores, the network, storage) slows every job at once, a job whose baseline was
measured while it was quiet crosses `self_factor` on a node that is fine (the live benchmark on
a 2-core host drained two nodes so). Its slowdown ratio (recent over baseline) is therefore
divided by the median ratio of the measured jobs on nodes it does not share (at least 1), and a
lone job, with no such jobs to compare with, keeps its raw ratio.

The same yardstick calibrates predictions for migration targets: the model's relative view of
the nodes (target over own nodes) is kept, its absolute scale is replaced by what the job
measured, so the predicted saving of a move is in the job's own units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from raysched.schedulers.types import JobView


@dataclasses.dataclass(frozen=True)
class StragglerSignal:
    """Why a job counts as a straggler (for the decision log)."""

    measured_s: float
    limit_s: float
    source: str  # "prediction" (beyond the model's interval) or "baseline" (its own early steps)
    baseline_s: float | None = None  # its own early steps (source "baseline")
    peers: float | None = None  # the slowdown of jobs on other nodes it was compared with

    def describe(self) -> str:
        if self.source == "baseline" and self.baseline_s:  # `straggler_signal` always sets it
            own = (f"steps in {self.measured_s:.3g} s, {self.measured_s / self.baseline_s:.2g}x "
                   f"its own early steps on these nodes ({self.baseline_s:.3g} s)")
            if self.peers is None:
                return f"{own}, with no other job measured to compare; over {self.limit_s:.3g} s"
            return (f"{own} while jobs on other nodes slowed {self.peers:.2g}x; "
                    f"over {self.limit_s:.3g} s (tolerance times the larger of that and 1)")
        return (f"steps in {self.measured_s:.3g} s, over {self.limit_s:.3g} s "
                "(the predicted interval's upper end, with tolerance)")


def slowdown(job: JobView) -> float | None:
    """Recent step time over the job's own baseline, or None when either is unmeasured."""
    recent, baseline = job.recent_step_time_s, job.baseline_step_time_s
    if not recent or recent <= 0 or not baseline or baseline <= 0:
        return None
    return recent / baseline


def peer_slowdowns(jobs: Sequence[JobView]) -> dict[str, float | None]:
    """Per job id, the median slowdown of the other jobs on nodes it does not share.

    What the rest of the cluster saw over about the same time: a slowdown they share is the
    host's or a shared resource's, not the job's nodes'. None where no such job has a slowdown.
    One sort, then per job a walk over only the jobs it shares nodes with (not all pairs: a
    round with a thousand running jobs would pay a million comparisons).
    """
    ranked = sorted((r, j.job_id) for j in jobs if (r := slowdown(j)) is not None)
    ratios = [r for r, _ in ranked]
    position = {jid: i for i, (_, jid) in enumerate(ranked)}
    on_node: dict[str, list[str]] = {}
    for j in jobs:
        for n in dict.fromkeys(j.node_ids):
            on_node.setdefault(n, []).append(j.job_id)
    by_nodes: dict[frozenset[str], float | None] = {}  # the answer depends on the nodes only
    out: dict[str, float | None] = {}
    for j in jobs:
        key = frozenset(j.node_ids)
        if key not in by_nodes:
            sharing = {k for n in key for k in on_node[n]}  # j itself among them
            skip = sorted(position[k] for k in sharing if k in position)
            left = len(ratios) - len(skip)
            by_nodes[key] = None if left <= 0 else (
                _kth_skipping(ratios, skip, (left - 1) // 2)
                + _kth_skipping(ratios, skip, left // 2)) / 2
        out[j.job_id] = by_nodes[key]
    return out


def _kth_skipping(values: Sequence[float], skip: Sequence[int], k: int) -> float:
    """The k-th (0-based) of the sorted `values` once the positions `skip` (sorted) are out."""
    index = k
    for p in skip:
        if p <= index:
            index += 1
        else:
            break
    return values[index]


def straggler_signal(
    job: JobView, predicted_hi_s: float, *, slow_factor: float, self_factor: float,
    peer_slowdown: float | None = None,
) -> StragglerSignal | None:
    """The evidence that `job` runs too slowly on its nodes, or None when it is on time.

    `peer_slowdown` (see `peer_slowdowns`) scales the own-baseline tolerance: the job must have
    slowed `self_factor` times more than the jobs on other nodes (floored at 1); None keeps the
    raw ratio (a lone job).
    """
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
    if baseline and baseline > 0:
        own_limit = baseline * self_factor * max(peer_slowdown or 1.0, 1.0)
        if measured > own_limit:
            return StragglerSignal(measured, own_limit, "baseline", baseline, peer_slowdown)
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
