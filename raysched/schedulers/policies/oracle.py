"""The oracle: a cost model that knows true step times and node speeds, and the policy on it.

An upper reference for the learned policy (what perfect predictions would buy), usable in the
simulator and in tests; never in production, where true values are unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from raysched.schedulers.policies.base import SchedulingPolicy
from raysched.schedulers.policies.learned import learned_policy
from raysched.schedulers.policies.node_speeds import KnownNodeSpeeds
from raysched.schedulers.predictor.cost_model import Prediction, PredictionBatch
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

StepTimes = Callable[[JobView], float] | Mapping[str, float]


class OracleCostModel:
    """Exact predictions (zero-width intervals) with `CostModel`'s predict interface.

    `true_step_time_s` gives a job's step time on speed-1.0 nodes: a function of the job, or a
    mapping from job name (`spec.name`; the job id is tried too). A gang steps at the pace of
    its slowest worker: ``true_step_time / min(true speed of its nodes)``, where a node missing
    from `true_speed` uses its `speed` label. Remaining duration is ``steps_left * step +
    overhead_s`` (no overhead for a running job asked about its own nodes). Peak memory is
    `peak_rss_mb` (a constant or a function of the job; 0 means "never a memory problem").
    """

    source = "oracle"
    uses_node_ids = True  # predictions differ between nodes that carry the same labels

    def __init__(
        self,
        true_step_time_s: StepTimes,
        true_speed: Mapping[str, float],
        overhead_s: float = 0.0,
        *,
        peak_rss_mb: float | Callable[[JobView], float] = 0.0,
    ) -> None:
        self.true_step_time_s = true_step_time_s
        self.true_speed = true_speed  # kept live: a mapping may change (injected slowdowns)
        self.overhead_s = overhead_s
        self.peak_rss_mb = peak_rss_mb

    def step_time(self, job: JobView) -> float:
        """The job's true step time on a speed-1.0 node."""
        f = self.true_step_time_s
        if callable(f):
            return float(f(job))
        if job.spec.name in f:
            return float(f[job.spec.name])
        return float(f[job.job_id])

    def speed(self, node: NodeView) -> float:
        """The node's true speed (the policies also sort nodes by it)."""
        return float(self.true_speed.get(node.node_id, node.speed))

    def _rss(self, job: JobView) -> float:
        r = self.peak_rss_mb
        return float(r(job)) if callable(r) else float(r)

    def predict(self, job: JobView, nodes: Sequence[NodeView], cluster: ClusterView
                ) -> Prediction:
        return self.predict_many([(job, nodes)], cluster)[0]

    def predict_many(
        self, pairs: Sequence[tuple[JobView, Sequence[NodeView]]], cluster: ClusterView
    ) -> PredictionBatch:
        step = np.empty(len(pairs))
        duration = np.empty(len(pairs))
        rss = np.empty(len(pairs))
        batch = np.empty(len(pairs))
        for k, (job, nodes) in enumerate(pairs):
            slowest = min((self.speed(n) for n in nodes), default=1.0)
            step[k] = self.step_time(job) / max(slowest, 1e-9)
            there = (job.state is not JobState.QUEUED and bool(job.node_ids)
                     and tuple(n.node_id for n in nodes) == tuple(job.node_ids))
            duration[k] = job.steps_left * step[k] + (0.0 if there else self.overhead_s)
            rss[k] = self._rss(job)
            batch[k] = job.spec.batch_size
        return PredictionBatch(
            step_time_s=step, step_time_lo_s=step, step_time_hi_s=step,
            duration_s=duration, duration_lo_s=duration, duration_hi_s=duration,
            peak_rss_mb=rss, peak_rss_hi_mb=rss, throughput_sps=batch / step,
            source=self.source,
        )


def oracle_policy(oracle_model: OracleCostModel, *, migration_cost_s: float = 30.0
                  ) -> SchedulingPolicy:
    """The learned policy's ordering, placement and rebalancing on exact predictions.

    Node slowdowns come from the true speeds (`KnownNodeSpeeds`), and the measured straggler
    signals are off: against exact predictions any deviation is contention noise, not a fault
    (acting on it drained healthy nodes in the live benchmark).
    """
    return learned_policy(oracle_model, name="oracle", migration_cost_s=migration_cost_s,
                          node_speeds=KnownNodeSpeeds(oracle_model.true_speed),
                          straggler_factors=(math.inf, math.inf))
