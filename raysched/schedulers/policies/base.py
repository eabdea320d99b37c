"""Policy interfaces: admission, ordering, placement and rebalancing, one method each."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from raysched.schedulers.decisions import Admission, Placement, RebalanceDecision
from raysched.schedulers.fit import EPS, could_ever_fit, usable_cpus
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobView, NodeView


class AdmissionPolicy(Protocol):
    def admit(self, job: JobView, cluster: ClusterView) -> Admission: ...


class OrderingPolicy(Protocol):
    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]: ...


class PlacementPolicy(Protocol):
    def place(self, job: JobView, cluster: ClusterView) -> Placement | None: ...


class RebalancePolicy(Protocol):
    def rebalance(self, cluster: ClusterView) -> RebalanceDecision: ...


class AdmitAll:
    """Admit every job whose gang could fit on the cluster when it is empty."""

    def admit(self, job: JobView, cluster: ClusterView) -> Admission:
        refusal = self.refusal(job, cluster)
        return Admission(job_id=job.job_id, admitted=refusal is None,
                         reason=refusal or "fits the cluster")

    @staticmethod
    def refusal(job: JobView, cluster: ClusterView) -> str | None:
        """Why the job could never fit this cluster, or None if it could."""
        spec = job.spec
        biggest = cluster.max_node_cpus
        if spec.cpus_per_worker > biggest:
            return f"{spec.cpus_per_worker} CPUs per worker; largest node has {biggest}"
        alive = [n for n in cluster.nodes if n.alive]
        if spec.gpus_per_worker > 0 and not any(could_ever_fit(n, spec) for n in alive):
            return (f"{spec.cpus_per_worker} CPUs and {spec.gpus_per_worker} GPUs per worker; "
                    f"no node has both (most GPUs on a node: {cluster.max_node_gpus:g})")
        total = sum(n.cpus_total for n in alive)
        if spec.total_cpus > total:
            return f"needs {spec.total_cpus} CPUs; the cluster has {total}"
        gpus = sum(n.gpus_total for n in alive)
        if spec.total_gpus > gpus:
            return f"needs {spec.total_gpus} GPUs; the cluster has {gpus:g}"
        return None


class FifoOrder:
    """First submitted, first considered."""

    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]:
        return sorted(queued, key=lambda j: (j.submit_time, j.job_id))


class NoRebalance:
    """Never moves anything."""

    def rebalance(self, cluster: ClusterView) -> RebalanceDecision:
        return RebalanceDecision()


@dataclasses.dataclass(frozen=True)
class SchedulingPolicy:
    """A named bundle of the four policies; what the controller and simulator drive."""

    name: str
    admission: AdmissionPolicy
    ordering: OrderingPolicy
    placement: PlacementPolicy
    rebalancing: RebalancePolicy = dataclasses.field(default_factory=NoRebalance)
    # Backfill: when the head of the queue cannot be placed, try the jobs behind it.
    backfill: bool = True

    def blocks_backfill(self, job: JobView, cluster: ClusterView) -> bool:
        """Whether `job`, not placed this round, stops the jobs behind it from being placed.

        Without backfill every unplaced job does. With it, a job the ordering calls overdue
        (waited past its aging window; orderings without `overdue` never say so) does when
        its gang does not fit the schedulable nodes' free capacity now but would fit them
        empty: otherwise narrower jobs could take every CPU it needs as each frees, and a
        gang would wait without bound. An overdue job that fits now and was not placed (it
        waits for a busy faster node, which placement reserves, or the round's evaluation
        cap was reached) does not stop the others.
        """
        if not self.backfill:
            return True
        overdue = getattr(self.ordering, "overdue", None)
        return bool(overdue is not None and overdue(job, cluster)
                    and not _gang_fits(job, cluster, empty=False)
                    and _gang_fits(job, cluster, empty=True))


def place_in_order(
    policy: SchedulingPolicy, view: ClusterView,
    launch: Callable[[JobView, Placement, ClusterView], ClusterView],
) -> tuple[list[Placement], ClusterView]:
    """One round's placements: walk the queue in the policy's order, placing what it places.

    `launch` starts a placed job and returns the view after it; the last view is returned
    with the placements. An unplaced job is skipped (backfill) unless
    `policy.blocks_backfill` says the walk stops there. The controller's round, the decision
    latency benchmark and the unit tests share this loop.
    """
    placed = []
    for job in policy.ordering.order(view.queued, view):
        placement = policy.placement.place(job, view)
        if placement is None:
            if policy.blocks_backfill(job, view):
                break
            continue
        placed.append(placement)
        view = launch(job, placement, view)
    return placed, view


def _gang_fits(job: JobView, cluster: ClusterView, *, empty: bool) -> bool:
    """Whether the gang fits the schedulable nodes' free capacity (or their totals: `empty`)."""
    return gang_slots(job.spec, cluster, empty=empty) >= job.spec.num_workers


def gang_slots(spec: JobSpec, cluster: ClusterView, *, empty: bool) -> int:
    """Workers of `spec`'s shape the schedulable nodes' free capacity (or their totals:
    `empty`) could hold, counted per node, which is what `gang_fit`'s greedy fill finds.

    Remembered for the last view asked about (views are immutable): the queue walk asks
    about every overdue job it does not place, and `walk_end` about each worker shape."""
    return _SLOT_COUNTS.get(spec.cpus_per_worker, spec.gpus_per_worker, cluster, empty)


class _SlotCounts:
    """`gang_slots` per worker shape for one view: the last one asked about (held, so that
    no other view object can take its id while it is remembered)."""

    def __init__(self) -> None:
        self._view: ClusterView | None = None
        self._counts: dict[tuple[float, float, bool], int] = {}

    def get(self, cpw: float, gpw: float, cluster: ClusterView, empty: bool) -> int:
        if cluster is not self._view:
            self._view, self._counts = cluster, {}
        key = (cpw, gpw, empty)
        got = self._counts.get(key)
        if got is None:
            got = self._counts[key] = _count_slots(cpw, gpw, cluster, empty)
        return got


_SLOT_COUNTS = _SlotCounts()


def _count_slots(cpw: float, gpw: float, cluster: ClusterView, empty: bool) -> int:
    """`gang_slots`, counted."""
    slots = 0
    for n in cluster.nodes:
        if n.schedulable:
            cpus, gpus = (n.cpus_total, n.gpus_total) if empty else (n.cpus_free, n.gpus_free)
            slots += max(int((usable_cpus(cpus, gpus, cpw, gpw) + EPS) // cpw), 0)
    return slots


def gang_fit(
    nodes: Sequence[NodeView], num_workers: int, cpus_per_worker: float,
    gpus_per_worker: int = 0,
) -> tuple[str, ...] | None:
    """Greedily assign workers to `nodes` in the given order; None if the gang does not fit.

    GPU workers also need their GPUs free: the free CPUs counted are `usable_cpus`.
    """
    free = {n.node_id: usable_cpus(n.cpus_free, n.gpus_free, cpus_per_worker, gpus_per_worker)
            for n in nodes}
    chosen: list[str] = []
    for n in nodes:
        while len(chosen) < num_workers and free[n.node_id] + 1e-9 >= cpus_per_worker:
            chosen.append(n.node_id)
            free[n.node_id] -= cpus_per_worker
        if len(chosen) == num_workers:
            return tuple(chosen)
    return None
