"""Queue ordering of the learned policy: predicted remaining time, priority and aging."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from raysched.schedulers.policies.prediction import (
    BatchCostModel,
    model_speed,
    predict,
)
from raysched.schedulers.types import ClusterView, JobView, NodeView


class PredictedRemainingOrder:
    """Shortest predicted remaining time first, weighted by priority, with aging.

    A queued job's key (lower goes first) is::

        key = remaining_s * exp(-priority_weight * priority) - aging_rate * waited_s

    where `remaining_s` is the predicted remaining run time of the job on an idle node of the
    cluster's fastest kind (a property of the job, not of the momentary cluster state) and
    `waited_s = view.time - submit_time`.

    Starvation bound: a newly arriving job has a key >= 0, so a job A is ordered ahead of every
    job submitted more than ``W_A = remaining_A * exp(-priority_weight * priority_A) /
    aging_rate`` seconds after it. Only the finitely many jobs submitted before ``submit_A +
    W_A`` can be ordered ahead of A; on a non-preemptive cluster A therefore starts at the
    latest when those have been placed and the capacity A needs is free. With the defaults
    (`aging_rate` 0.5, priority 0) a job is overtaken by newcomers for at most twice its own
    predicted remaining time. `aging_rate=0` turns aging off (pure SRPT, which can starve).

    "The capacity A needs is free" needs one more rule with backfill: narrower jobs behind a
    gang could take each CPU as it frees, one at a time. A job past its window (key < 0) is
    `overdue`, and the policy stops backfilling past an overdue job that does not fit yet
    (`SchedulingPolicy.blocks_backfill`), so running jobs drain until it does.
    """

    name = "predicted_remaining"

    def __init__(
        self,
        cost_model: BatchCostModel,
        *,
        priority_weight: float = 0.5,
        aging_rate: float = 0.5,
        refresh_s: float = 60.0,
        refresh_batch: int = 32,
    ) -> None:
        if aging_rate < 0:
            raise ValueError(f"aging_rate must be >= 0, got {aging_rate}")
        self.priority_weight = priority_weight
        self.aging_rate = aging_rate
        self.refresh_s = refresh_s
        self.refresh_batch = refresh_batch
        # (priority_weight, priority) -> exp(-priority_weight * priority)
        self._weights: dict[tuple[float, int], float] = {}
        self.cost_model = cost_model

    @property
    def cost_model(self) -> BatchCostModel:
        """The model asked; assigning a new one (a promoted version) empties the cache."""
        return self._cost_model

    @cost_model.setter
    def cost_model(self, model: BatchCostModel) -> None:
        self._cost_model = model
        self._cache: dict[str, _Remaining] = {}
        self._ref_key: tuple[float, float] | None = None
        self._last: tuple[list[JobView], int] | None = None  # see `overdue_prefix`

    def reference_node(self, cluster: ClusterView) -> NodeView:
        """An idle node of the cluster's fastest kind (largest among the fastest)."""
        live = [n for n in cluster.nodes if n.schedulable and n.cpus_total > 0] or [
            n for n in cluster.nodes if n.alive] or list(cluster.nodes)
        if not live:
            return NodeView(node_id="reference", cpus_total=1.0, cpus_free=1.0)
        speed = model_speed(self.cost_model)
        best = max(live, key=lambda n: (speed(n), n.cpus_total))
        return NodeView(node_id="reference", cpus_total=best.cpus_total,
                        cpus_free=best.cpus_total, speed=speed(best), load=0.0)

    def remaining_s(self, queued: Sequence[JobView], cluster: ClusterView) -> dict[str, float]:
        """Predicted remaining run time of each job on the reference node (cached)."""
        return dict(zip((j.job_id for j in queued), self._remaining(queued, cluster),
                        strict=True))

    def _remaining(self, queued: Sequence[JobView], cluster: ClusterView) -> list[float]:
        """`remaining_s` as a list in `queued` order."""
        return self._columns(queued, cluster)[0]

    def _columns(self, queued: Sequence[JobView], cluster: ClusterView
                 ) -> tuple[list[float], list[float], list[float]]:
        """Each job's remaining time (`remaining_s`), submit time and priority weight, in
        `queued` order.

        One pass over the queue: a cache entry made from the very same (immutable) job object
        is a hit without recomputing its `steps_left`, and holds its submit time and weight.
        """
        ref = self.reference_node(cluster)
        ref_key = (ref.speed, ref.cpus_total)
        cache = self._cache
        if ref_key != self._ref_key:
            cache.clear()
            self._ref_key = ref_key
        now = cluster.time
        refresh_s = self.refresh_s
        pw = self.priority_weight
        get = cache.get
        out: list[float] = []
        submit: list[float] = []
        weight: list[float] = []
        missing: list[tuple[int, JobView]] = []  # (position, job) without a usable entry
        old: list[tuple[float, int, JobView]] = []  # (predicted at, position, job): expired
        found = 0
        for i, j in enumerate(queued):
            hit = get(j.job_id)
            if hit is not None and hit.job is j and hit.priority_weight == pw:
                found += 1
                if now - hit.time > refresh_s:
                    old.append((hit.time, i, j))
                out.append(hit.remaining_s)
                submit.append(hit.submit_time)
                weight.append(hit.weight)
                continue
            submit.append(j.submit_time)
            weight.append(self._weight(j.spec.priority))
            if hit is None:
                missing.append((i, j))
                out.append(0.0)
                continue
            found += 1
            if hit.steps_left != j.steps_left:
                missing.append((i, j))
            elif now - hit.time > refresh_s:
                old.append((hit.time, i, j))
            out.append(hit.remaining_s)
        old.sort(key=lambda t: t[0])  # stable: equal times keep queue order, as before
        todo = missing + [(i, j) for _, i, j in old[: self.refresh_batch]]
        if found < len(cache) or todo:
            live = {j.job_id for j in queued}
            if found < len(cache):  # forget jobs no longer queued
                for stale in [k for k in cache if k not in live]:
                    del cache[stale]
        if not todo:
            return out, submit, weight
        preds = predict(
            self.cost_model, [(j, (ref,) * j.spec.num_workers) for _, j in todo], cluster
        )
        for (i, j), p in zip(todo, preds, strict=True):
            cache[j.job_id] = _Remaining(now, j.steps_left, p.duration, j, submit[i],
                                         pw, weight[i])
        if len(live) < len(queued):  # a job id queued twice: each takes its last prediction
            return [cache[j.job_id].remaining_s for j in queued], submit, weight
        for i, j in todo:
            out[i] = cache[j.job_id].remaining_s
        return out, submit, weight

    def _weight(self, priority: int) -> float:
        k = (self.priority_weight, priority)
        w = self._weights.get(k)
        if w is None:
            w = self._weights[k] = math.exp(-self.priority_weight * priority)
        return w

    def key(self, job: JobView, remaining_s: float, now: float) -> float:
        """The sort key of the class docstring (lower goes first)."""
        waited = max(now - job.submit_time, 0.0)
        weight = math.exp(-self.priority_weight * job.spec.priority)
        return remaining_s * weight - self.aging_rate * waited

    def overdue(self, job: JobView, cluster: ClusterView) -> bool:
        """Whether `job` has waited past its aging window (its key is below 0).

        Reads the round's cached remaining time (`order` filled it); a job not in the cache
        is predicted alone, without touching the cache.
        """
        if self.aging_rate <= 0:
            return False
        hit = self._cache.get(job.job_id)
        if hit is not None and hit.steps_left == job.steps_left:
            remaining = hit.remaining_s
        else:
            ref = self.reference_node(cluster)
            (pred,) = predict(self.cost_model, [(job, (ref,) * job.spec.num_workers)], cluster)
            remaining = pred.duration
        return self.key(job, remaining, cluster.time) < 0

    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]:
        self._last = None
        if not queued:
            return []
        columns = self._columns(queued, cluster)
        remaining, submit, weight = (np.array(c, dtype=float) for c in columns)
        now = cluster.time
        # `key` for every job at once: the same float operations, in the same order.
        keys = remaining * weight - self.aging_rate * np.maximum(now - submit, 0.0)
        if not np.isfinite(keys).all():  # NaN does not sort; leave it to Python as before
            rem = dict(zip((j.job_id for j in queued), remaining.tolist(), strict=True))
            return sorted(queued, key=lambda j: (self.key(j, rem[j.job_id], now),
                                                 j.submit_time, j.job_id))
        idx = np.lexsort((submit, keys))
        k, t = keys[idx], submit[idx]
        if ((k[1:] == k[:-1]) & (t[1:] == t[:-1])).any():  # a tie: the job id decides
            ids = np.array([j.job_id for j in queued])
            idx = np.lexsort((ids, submit, keys))
            k = keys[idx]
        out = [queued[i] for i in idx.tolist()]
        if len({j.job_id for j in queued}) == len(queued):
            self._last = (out, int(np.searchsorted(k, 0.0, side="left")))
        return out

    def overdue_prefix(self, order: Sequence[JobView]) -> int | None:
        """How many leading jobs of `order` may be `overdue`, when `order` is the list the
        last `order` call returned (else None): its keys are sorted, and each is what
        `overdue` computes for that job (the cached remaining time `order` just used, the
        same submit time, weight and float operations), so no job after the first with a
        key >= 0 is overdue. None too where a job id was queued twice (`overdue` may then
        predict a job afresh)."""
        last = self._last
        if last is None or last[0] is not order:
            return None
        return last[1] if self.aging_rate > 0 else 0


class _Remaining(NamedTuple):
    """A queued job's cached prediction: when, its steps left then, the remaining time, and
    the job object it was made for, with that job's order columns."""

    time: float
    steps_left: int
    remaining_s: float
    job: JobView
    submit_time: float  # the job's, and its weight for `priority_weight` then
    priority_weight: float
    weight: float
