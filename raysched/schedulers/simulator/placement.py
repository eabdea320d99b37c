"""Free-capacity bookkeeping of one simulated partition, with O(log n) best-fit placement.

Placement rule (documented in the simulator package too): a job asking for `d` units with
`d <= ` the partition's largest node takes `d` units on ONE node (consolidated; best fit, fastest
speed class first); a larger job takes whole idle nodes (fastest first) until their capacity
covers `d`, e.g. 16 GPUs on 8-GPU nodes = 2 whole nodes, 12 GPUs = 2 whole nodes (16 held).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

EPS = 1e-9

Alloc = tuple[tuple[int, float], ...]  # (local node index, units held)


class PartitionState:
    """Nodes of one partition: free units per node, bucketed by speed class and free amount."""

    def __init__(
        self,
        index: int,
        name: str,
        node_ids: list[str],
        caps: list[float],
        speeds: list[float],
        quota: float | None = None,
    ) -> None:
        self.index = index
        self.name = name
        self.node_ids = node_ids
        self.cap = list(caps)
        self.free = list(caps)
        self.speed = list(speeds)
        self.n = len(caps)
        self.capacity = float(sum(caps))
        self.limit = self.capacity if quota is None else min(self.capacity, float(quota))
        self.max_cap = max(caps) if caps else 0.0
        self.used = 0.0
        self.speeds = sorted(set(speeds), reverse=True)  # speed classes, fastest first
        cls_of = {s: k for k, s in enumerate(self.speeds)}
        self.node_class = [cls_of[s] for s in speeds]
        self.buckets: list[dict[float, set[int]]] = [{} for _ in self.speeds]
        self.keys: list[list[float]] = [[] for _ in self.speeds]
        self.idle: list[set[int]] = [set() for _ in self.speeds]
        self.idle_cap = 0.0
        self.occ: list[dict[int, float]] = [{} for _ in caps]  # node -> {job idx: units}
        for node in range(self.n):
            self._add(node)
        # Scheduling state owned by the engine.
        # demand -> sorted (key, submit, job idx): one list per distinct demand, so a pass can
        # skip every job of a size that does not fit without walking past them one by one
        self.queues: dict[float, list[tuple]] = {}
        self.running: dict[int, None] = {}
        self.min_demand = math.inf

    @property
    def queued(self) -> int:
        """Number of waiting jobs."""
        return sum(len(q) for q in self.queues.values())

    def best_queued(self) -> tuple | None:
        """The highest-priority waiting entry, if any."""
        return min((q[0] for q in self.queues.values() if q), default=None)

    def fits(self, demand: float) -> bool:
        """Whether `place(demand)` would succeed now (exact: same tests as `place`)."""
        if self.used + self.alloc_size(demand) > self.limit + EPS:
            return False
        if demand <= self.max_cap + EPS:
            return self.max_free() + EPS >= demand
        return self.idle_cap + EPS >= demand

    # -- buckets ---------------------------------------------------------------------------
    def _add(self, node: int) -> None:
        c, f = self.node_class[node], self.free[node]
        b = self.buckets[c].get(f)
        if b is None:
            self.buckets[c][f] = {node}
            insort(self.keys[c], f)
        else:
            b.add(node)
        if f >= self.cap[node] - EPS and f > 0:
            self.idle[c].add(node)
            self.idle_cap += self.cap[node]

    def _remove(self, node: int) -> None:
        c, f = self.node_class[node], self.free[node]
        b = self.buckets[c][f]
        b.discard(node)
        if not b:
            del self.buckets[c][f]
            keys = self.keys[c]
            del keys[bisect_left(keys, f)]
        if node in self.idle[c]:
            self.idle[c].discard(node)
            self.idle_cap -= self.cap[node]

    def _take(self, node: int, units: float, job: int) -> None:
        self._remove(node)
        f = self.free[node] - units
        self.free[node] = 0.0 if f < EPS else f
        self._add(node)
        self.occ[node][job] = self.occ[node].get(job, 0.0) + units
        self.used += units

    # -- queries -----------------------------------------------------------------------------
    def alloc_size(self, demand: float) -> float:
        """Units a job of `demand` holds once placed (whole nodes above the largest node)."""
        if demand <= self.max_cap + EPS:
            return demand
        return math.ceil(demand / self.max_cap - EPS) * self.max_cap

    def max_free(self) -> float:
        """Largest free amount on any single node."""
        return max((k[-1] for k in self.keys if k), default=0.0)

    def can_fit_now(self, demand: float) -> bool:
        """Cheap necessary check before `place` (exact for homogeneous partitions)."""
        if self.used + self.alloc_size(demand) > self.limit + EPS:
            return False
        if demand <= self.max_cap + EPS:
            return self.max_free() + EPS >= demand
        return self.idle_cap + EPS >= demand

    # -- allocation --------------------------------------------------------------------------
    def place(self, demand: float, job: int, *, faster_than: float = 0.0) -> Alloc | None:
        """Allocate `demand` units for `job` by the placement rule; None when it does not fit."""
        if self.used + self.alloc_size(demand) > self.limit + EPS:
            return None
        if demand <= self.max_cap + EPS:
            for c, s in enumerate(self.speeds):
                if s <= faster_than:
                    break
                keys = self.keys[c]
                pos = bisect_left(keys, demand - EPS)
                if pos < len(keys):
                    node = next(iter(self.buckets[c][keys[pos]]))
                    self._take(node, demand, job)
                    return ((node, demand),)
            return None
        if self.idle_cap + EPS < demand:
            return None
        chosen: list[int] = []
        got = 0.0
        for c, s in enumerate(self.speeds):
            if s <= faster_than:
                break
            for node in self.idle[c]:
                chosen.append(node)
                got += self.cap[node]
                if got + EPS >= demand:
                    break
            if got + EPS >= demand:
                break
        if got + EPS < demand:
            return None
        return self.take_whole(chosen, job)

    def take_on(self, node: int, units: float, job: int) -> Alloc:
        """Allocate `units` on a given node (the caller checked it fits)."""
        self._take(node, units, job)
        return ((node, units),)

    def take_whole(self, nodes: list[int], job: int) -> Alloc:
        """Allocate the given idle nodes whole to `job`."""
        out = []
        for node in nodes:
            units = self.cap[node]
            self._take(node, units, job)
            out.append((node, units))
        return tuple(out)

    def release(self, alloc: Alloc, job: int) -> None:
        """Give back what `job` held."""
        for node, units in alloc:
            self._remove(node)
            f = self.free[node] + units
            self.free[node] = self.cap[node] if f > self.cap[node] - EPS else f
            self._add(node)
            left = self.occ[node].pop(job) - units
            if left > EPS:
                self.occ[node][job] = left
            self.used -= units
        if self.used < EPS:
            self.used = 0.0

    def job_speed(self, alloc: Alloc) -> float:
        """A gang runs at the pace of its slowest node."""
        return min(self.speed[node] for node, _ in alloc)

    def check(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent or over capacity."""
        total = 0.0
        for node in range(self.n):
            held = sum(self.occ[node].values())
            assert -EPS <= self.free[node] <= self.cap[node] + EPS, (self.name, node)
            assert abs(self.free[node] + held - self.cap[node]) < 1e-6, (self.name, node)
            total += held
        assert abs(total - self.used) < 1e-6, (self.name, total, self.used)
        assert self.used <= self.limit + 1e-6, (self.name, self.used, self.limit)
