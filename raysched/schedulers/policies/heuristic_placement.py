"""Baseline placements that use no predictor: least-loaded, pack, spread, random, Ray's default.

All count free CPUs per node; for GPU jobs those are `fit.usable_cpus` (capped by free GPUs), so
a GPU worker only goes where a GPU is free.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from raysched.schedulers.decisions import Placement
from raysched.schedulers.fit import job_free_cpus
from raysched.schedulers.policies.base import gang_fit
from raysched.schedulers.types import ClusterView, JobView, NodeView


def _schedulable(cluster: ClusterView) -> list[NodeView]:
    return [n for n in cluster.nodes if n.schedulable and n.cpus_total > 0]


def _gang_fit(nodes: Sequence[NodeView], job: JobView) -> tuple[str, ...] | None:
    spec = job.spec
    return gang_fit(nodes, spec.num_workers, spec.cpus_per_worker, spec.gpus_per_worker)


def _placement(
    job: JobView, nodes: Sequence[str] | None, policy: str, reason: str
) -> Placement | None:
    if nodes is None:
        return None
    return Placement(job_id=job.job_id, node_ids=tuple(nodes), reason=reason, policy=policy)


class LeastLoadedPlacement:
    """Put each worker on the node with the most free CPUs relative to its size (spreads load)."""

    name = "least_loaded"

    def place(self, job: JobView, cluster: ClusterView) -> Placement | None:
        spec = job.spec
        schedulable = _schedulable(cluster)
        free = job_free_cpus(schedulable, spec)
        by_id = {n.node_id: n for n in schedulable}
        chosen: list[str] = []
        for _ in range(spec.num_workers):
            fits = [nid for nid, f in free.items() if f + 1e-9 >= spec.cpus_per_worker]
            if not fits:
                return None
            # Least loaded: highest free fraction, then lowest measured load, then id.
            best = min(fits, key=lambda nid: (-free[nid] / by_id[nid].cpus_total,
                                              by_id[nid].load, nid))
            chosen.append(best)
            free[best] -= spec.cpus_per_worker
        return _placement(job, chosen, self.name, "least-loaded nodes with room for each worker")


class PackPlacement:
    """Fill the fullest nodes first (Ray's PACK strategy, decided by raysched)."""

    name = "pack"

    def place(self, job: JobView, cluster: ClusterView) -> Placement | None:
        schedulable = _schedulable(cluster)
        free = job_free_cpus(schedulable, job.spec)
        nodes = sorted(schedulable, key=lambda n: (free[n.node_id], n.node_id))
        fit = _gang_fit(nodes, job)
        return _placement(job, fit, self.name, "packed onto the fullest nodes that fit")


class SpreadPlacement:
    """One worker per node where possible, emptiest nodes first (Ray's SPREAD strategy)."""

    name = "spread"

    def place(self, job: JobView, cluster: ClusterView) -> Placement | None:
        spec = job.spec
        schedulable = _schedulable(cluster)
        free = job_free_cpus(schedulable, spec)
        nodes = sorted(schedulable, key=lambda n: (-free[n.node_id], n.node_id))
        chosen: list[str] = []
        while len(chosen) < spec.num_workers:
            progress = False
            for n in nodes:
                room = free[n.node_id] + 1e-9 >= spec.cpus_per_worker
                if len(chosen) < spec.num_workers and room:
                    chosen.append(n.node_id)
                    free[n.node_id] -= spec.cpus_per_worker
                    progress = True
            if not progress:
                return None
        return _placement(job, chosen, self.name, "spread across the emptiest nodes")


class RandomPlacement:
    """A random feasible gang placement (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def place(self, job: JobView, cluster: ClusterView) -> Placement | None:
        nodes = _schedulable(cluster)
        self._rng.shuffle(nodes)
        return _placement(job, _gang_fit(nodes, job), self.name, "random feasible nodes")


class RayDefaultPlacement:
    """raysched only queues; Ray places the workers (empty node list) once the gang fits."""

    name = "ray_default"

    def place(self, job: JobView, cluster: ClusterView) -> Placement | None:
        nodes = sorted(_schedulable(cluster), key=lambda n: n.node_id)
        if _gang_fit(nodes, job) is None:
            return None
        return Placement(job_id=job.job_id, node_ids=(), policy=self.name,
                         reason="resources free; Ray's own scheduler picks the nodes")
