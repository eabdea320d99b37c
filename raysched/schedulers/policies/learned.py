"""The learned policy: the ordering, placement and rebalancing parts bundled on one cost model.

The parts live in `ordering.py`, `placement.py` and `rebalance.py`; their shared helpers in
`prediction.py` and `candidates.py`; node speeds as measured in `node_speeds.py`.

All three parts ask a cost model (`CostModel`, or anything with the same `predict_many`) and
batch their questions: one `predict_many` call for the queue's ordering, one for the placement
candidates of the jobs a round is likely to place, one for the stragglers check.

Caching and bounds (what is reused between calls, and what a round considers):

- ordering: a queued job's predicted remaining time on the reference node is kept for
  `refresh_s` seconds; at most `refresh_batch` stale entries are recomputed per round, oldest
  first, so a thousand jobs that arrived together do not all expire in the same round;
- placement: `LearnedPlacement.prepare(order, view)` (called by the ordering wrapper that
  `learned_policy` installs) predicts every candidate of the first `max_evaluations` jobs of
  the order that fit now, all on that view: the first `prefetch_jobs` of them (up to where the
  walk is expected to stop, `walk_end`) at once, the others a few per call as the walk reaches
  them (the walk usually stops within a few jobs, at an overdue gang that does not fit).
  Predictions are keyed by what the model
  sees of a placement (speeds, sizes, load in 0.05 steps, free memory in 500 MB steps; by node
  id for a model that knows nodes by id, like the oracle), so a launch elsewhere does not
  invalidate them. Later in the round `place` scores only candidates already predicted when it
  has any (a launch may have taken the others);
- backfill depth: `place` evaluates at most `max_evaluations` jobs per round (like Slurm's
  `bf_max_job_test`); the rest are considered next round, in order;
- waiting: a job that decides to wait for a busy node reserves it for the round, so the next
  job does not count on the same node;
- rebalancing: the predicted step time of a running job on its own nodes is kept `refresh_s`.

Within a round, placements made earlier change cluster-wide features (free CPUs, load) of later
predictions only at the next round: predictions are taken at the start of the round.
"""

from __future__ import annotations

from collections.abc import Sequence

from raysched.schedulers.policies.base import AdmitAll, SchedulingPolicy, gang_slots
from raysched.schedulers.policies.node_speeds import (
    MeasuredNodeSpeeds,
    NodeSpeedSource,
    SpeedAdjustedViews,
)
from raysched.schedulers.policies.ordering import PredictedRemainingOrder
from raysched.schedulers.policies.placement import LearnedPlacement
from raysched.schedulers.policies.prediction import (
    BatchCostModel,
)
from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.types import ClusterView, JobView


class _PrefetchingOrder:
    """Orders with `ordering`, then lets the placement predict the round's likely candidates."""

    def __init__(self, ordering: PredictedRemainingOrder, placement: LearnedPlacement) -> None:
        self.ordering = ordering
        self.placement = placement

    @property
    def cost_model(self) -> BatchCostModel:
        """The ordering's model; the controller assigns a promoted one here (and to the
        placement and rebalancing parts itself)."""
        return self.ordering.cost_model

    @cost_model.setter
    def cost_model(self, model: BatchCostModel) -> None:
        self.ordering.cost_model = model

    def overdue(self, job: JobView, cluster: ClusterView) -> bool:
        return self.ordering.overdue(job, cluster)

    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]:
        order = self.ordering.order(queued, cluster)
        self.placement.prepare(order, cluster, horizon=self.walk_end(order, cluster))
        return order

    def walk_end(self, order: Sequence[JobView], cluster: ClusterView) -> int:
        """How many jobs of `order` the queue walk reaches at most: it stops at an overdue
        job whose gang does not fit now but would fit the empty nodes (`SchedulingPolicy.
        blocks_backfill`), and launches only take capacity. Only a hint: the placement
        predicts later jobs too if the walk gets there.

        Only the leading jobs the ordering says may be overdue are looked at
        (`PredictedRemainingOrder.overdue_prefix`: its keys are sorted, so none after them is).
        """
        slots: dict[tuple[float, int], tuple[int, int]] = {}
        prefix = self.ordering.overdue_prefix(order)
        for i, job in enumerate(order if prefix is None else order[:prefix]):
            spec = job.spec
            shape = (spec.cpus_per_worker, spec.gpus_per_worker)
            got = slots.get(shape)
            if got is None:
                got = slots[shape] = (gang_slots(spec, cluster, empty=False),
                                      gang_slots(spec, cluster, empty=True))
            if got[0] < spec.num_workers <= got[1] and self.ordering.overdue(job, cluster):
                return i + 1
        return len(order)


def learned_policy(
    cost_model: BatchCostModel,
    *,
    name: str = "learned",
    migration_cost_s: float = 30.0,
    risk: float = 1.0,
    node_speeds: NodeSpeedSource | None | str = "measured",
    straggler_factors: tuple[float, float] = (1.5, 3.0),
) -> SchedulingPolicy:
    """The learned scheduling policy on `cost_model` (AdmitAll admission, backfill on).

    `node_speeds`: where node slowdowns come from ("measured": `MeasuredNodeSpeeds`; None:
    trust the speed labels). Placement and rebalancing then share one adjusted view per
    round. `straggler_factors`: the rebalancer's (slow_factor, self_factor).
    """
    source = MeasuredNodeSpeeds() if node_speeds == "measured" else node_speeds
    if isinstance(source, str):
        raise ValueError(f"node_speeds must be 'measured', None or a source, got {source!r}")
    adjust = SpeedAdjustedViews(source) if source is not None else None
    placement = LearnedPlacement(cost_model, risk=risk, policy_name=name, adjust=adjust)
    slow_factor, self_factor = straggler_factors
    return SchedulingPolicy(
        name=name,
        admission=AdmitAll(),
        ordering=_PrefetchingOrder(PredictedRemainingOrder(cost_model), placement),
        placement=placement,
        rebalancing=StragglerRebalance(
            cost_model, migration_cost_s=migration_cost_s, node_speeds=source, adjust=adjust,
            slow_factor=slow_factor, self_factor=self_factor),
        backfill=True,
    )


def build_learned(cost_model: BatchCostModel) -> SchedulingPolicy:
    """Registry hook: the lead's `make_policy("learned")` loads a fitted model and calls this."""
    return learned_policy(cost_model)
