"""The learned policy: predicted-remaining ordering, predicted-completion placement, rebalancing.

All three parts ask a cost model (`CostModel`, or anything with the same `predict_many`) and
batch their questions: one `predict_many` call for the queue's ordering, one for the placement
candidates of the jobs a round is likely to place, one for the stragglers check.

Caching and bounds (what is reused between calls, and what a round considers):

- ordering: a queued job's predicted remaining time on the reference node is kept for
  `refresh_s` seconds; at most `refresh_batch` stale entries are recomputed per round, oldest
  first, so a thousand jobs that arrived together do not all expire in the same round;
- placement: `LearnedPlacement.prepare(order, view)` (called by the ordering wrapper that
  `learned_policy` installs) predicts, in one call, every candidate of the first
  `max_evaluations` jobs of the order that fit now. Predictions are keyed by what the model
  sees of a placement (speeds, sizes, load in 0.05 steps, free memory in 500 MB steps; by node
  id for a model that knows nodes by id, like the oracle), so a launch elsewhere does not
  invalidate them. Later in the round `place` scores only candidates already predicted when it
  has any (a launch may have taken the others), so a prepared round costs one model call;
- backfill depth: `place` evaluates at most `max_evaluations` jobs per round (like Slurm's
  `bf_max_job_test`); the rest are considered next round, in order;
- waiting: a job that decides to wait for a busy node reserves it for the round, so the next
  job does not count on the same node;
- rebalancing: the predicted step time of a running job on its own nodes is kept `refresh_s`.

Within a round, placements made earlier change cluster-wide features (free CPUs, load) of later
predictions only at the next round: predictions are taken at the start of the round.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import NamedTuple, Protocol

import numpy as np

from raysched.schedulers.decisions import (
    Candidate,
    Migration,
    NodeFlag,
    Placement,
    RebalanceDecision,
)
from raysched.schedulers.fit import usable_cpus
from raysched.schedulers.policies.base import AdmitAll, SchedulingPolicy
from raysched.schedulers.policies.node_speeds import (
    AdjustView,
    MeasuredNodeSpeeds,
    NodeSpeedSource,
    SpeedAdjustedViews,
)
from raysched.schedulers.policies.straggler_signals import (
    StragglerSignal,
    calibration,
    straggler_signal,
)
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

_EPS = 1e-9
NodeIds = tuple[str, ...]
_Cand = tuple[NodeIds, Sequence[NodeView]]  # node ids, and the nodes as the model is asked


class PredictionArrays(Protocol):
    """The arrays of a `PredictionBatch` the policies read."""

    step_time_s: np.ndarray
    step_time_hi_s: np.ndarray
    duration_s: np.ndarray
    duration_hi_s: np.ndarray
    peak_rss_hi_mb: np.ndarray


class BatchCostModel(Protocol):
    """What the policies need of a cost model: batched predictions for (job, nodes) pairs."""

    def predict_many(
        self, pairs: Sequence[tuple[JobView, Sequence[NodeView]]], cluster: ClusterView
    ) -> PredictionArrays: ...


class _Pred(NamedTuple):
    """One candidate's predictions (floats, cached)."""

    step: float
    step_hi: float
    duration: float
    duration_hi: float
    rss_hi: float


def _predict(
    model: BatchCostModel, pairs: Sequence[tuple[JobView, Sequence[NodeView]]],
    cluster: ClusterView,
) -> list[_Pred]:
    if not pairs:
        return []
    b = model.predict_many(pairs, cluster)
    cols = [np.asarray(c, dtype=float).tolist() for c in (
        b.step_time_s, b.step_time_hi_s, b.duration_s, b.duration_hi_s, b.peak_rss_hi_mb)]
    return [_Pred(*row) for row in zip(*cols, strict=True)]


def _short(node_id: str) -> str:
    return node_id[:8]


def _describe(nodes: NodeIds, view_nodes: dict[str, NodeView]) -> str:
    distinct = list(dict.fromkeys(nodes))
    speed = min(view_nodes[n].speed for n in distinct)
    if len(distinct) == 1:
        return f"{_short(distinct[0])} (speed {speed:g})"
    shown = ", ".join(_short(n) for n in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
    return f"{len(distinct)} nodes {shown} (min speed {speed:g})"


# -- ordering ---------------------------------------------------------------------------------


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
        # job_id -> (time predicted, steps_left then, remaining_s)
        self._cache: dict[str, tuple[float, int, float]] = {}
        self._ref_key: tuple[float, float] | None = None

    def reference_node(self, cluster: ClusterView) -> NodeView:
        """An idle node of the cluster's fastest kind (largest among the fastest)."""
        live = [n for n in cluster.nodes if n.schedulable and n.cpus_total > 0] or [
            n for n in cluster.nodes if n.alive] or list(cluster.nodes)
        if not live:
            return NodeView(node_id="reference", cpus_total=1.0, cpus_free=1.0)
        speed = _model_speed(self.cost_model)
        best = max(live, key=lambda n: (speed(n), n.cpus_total))
        return NodeView(node_id="reference", cpus_total=best.cpus_total,
                        cpus_free=best.cpus_total, speed=speed(best), load=0.0)

    def remaining_s(self, queued: Sequence[JobView], cluster: ClusterView) -> dict[str, float]:
        """Predicted remaining run time of each job on the reference node (cached)."""
        return dict(zip((j.job_id for j in queued), self._remaining(queued, cluster),
                        strict=True))

    def _remaining(self, queued: Sequence[JobView], cluster: ClusterView) -> list[float]:
        """`remaining_s` as a list in `queued` order."""
        ref = self.reference_node(cluster)
        ref_key = (ref.speed, ref.cpus_total)
        cache = self._cache
        if ref_key != self._ref_key:
            cache.clear()
            self._ref_key = ref_key
        now = cluster.time
        hits = [cache.get(j.job_id) for j in queued]
        if len(cache) > len(queued) or None in hits:  # forget jobs no longer queued
            live = {j.job_id for j in queued}
            for stale in [k for k in cache if k not in live]:
                del cache[stale]
        missing: list[JobView] = []
        old: list[tuple[float, JobView]] = []
        for j, hit in zip(queued, hits, strict=True):
            if hit is None or hit[1] != j.steps_left:
                missing.append(j)
            elif now - hit[0] > self.refresh_s:
                old.append((hit[0], j))
        old.sort(key=lambda t: t[0])
        todo = missing + [j for _, j in old[: self.refresh_batch]]
        if not todo:
            return [hit[2] for hit in hits]  # type: ignore[index]
        preds = _predict(
            self.cost_model, [(j, (ref,) * j.spec.num_workers) for j in todo], cluster
        )
        for j, p in zip(todo, preds, strict=True):
            cache[j.job_id] = (now, j.steps_left, p.duration)
        return [cache[j.job_id][2] for j in queued]

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

    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]:
        if not queued:
            return []
        remaining = np.array(self._remaining(queued, cluster), dtype=float)
        now = cluster.time
        submit = np.array([j.submit_time for j in queued], dtype=float)
        weight = np.array([self._weight(j.spec.priority) for j in queued], dtype=float)
        # `key` for every job at once: the same float operations, in the same order.
        keys = remaining * weight - self.aging_rate * np.maximum(now - submit, 0.0)
        if not np.isfinite(keys).all():  # NaN does not sort; leave it to Python as before
            rem = dict(zip((j.job_id for j in queued), remaining.tolist(), strict=True))
            return sorted(queued, key=lambda j: (self.key(j, rem[j.job_id], now),
                                                 j.submit_time, j.job_id))
        ids = np.array([j.job_id for j in queued])
        return [queued[i] for i in np.lexsort((ids, submit, keys)).tolist()]


# -- candidates -------------------------------------------------------------------------------


def _model_speed(model: object) -> Callable[[NodeView], float]:
    """How fast the model believes a node is: its `speed(node)` if it has one, else the label."""
    speed = getattr(model, "speed", None)
    return speed if callable(speed) else _label_speed


def _label_speed(n: NodeView) -> float:
    return n.speed


def fastest_first(nodes: Iterable[NodeView], speed: Callable[[NodeView], float]
                  ) -> list[NodeView]:
    """Nodes by speed (highest first), then lowest load, then id."""
    return sorted(nodes, key=lambda n: (-speed(n), n.load, n.node_id))


class _NodeIndex:
    """Per-view node lists and memos the candidate generator uses (built once per view)."""

    def __init__(self, view: ClusterView, speed: Callable[[NodeView], float],
                 alike: Callable[[NodeView], Hashable]) -> None:
        self.view = view
        self.by_id = {n.node_id: n for n in view.nodes}
        self.sched = [n for n in view.nodes if n.schedulable and n.cpus_total > 0]
        self.speed = speed
        self.free = {n.node_id: max(n.cpus_free, 0.0) for n in self.sched}
        # Nodes with free CPUs, fastest first (the order of all nodes, without the full ones).
        self.with_room = fastest_first([n for n in self.sched if self.free[n.node_id] > _EPS],
                                       speed)
        self._alike_fn = alike
        self._alike: dict[tuple[str, bool], Hashable] = {}
        self._idle: dict[str, NodeView] = {}
        self._slots: dict[float, int] = {}
        self._gpu_room: dict[tuple[float, int], tuple[dict[str, float], list[NodeView]]] = {}
        self._busy: dict[tuple[float, float], dict[float, _BusyGroup]] = {}
        self._speeds: list[tuple[NodeView, float]] | None = None
        self._idle_key: dict[tuple[str, int], Hashable] = {}
        self.ends: dict[str, list[tuple[float, float]]] | None = None
        self.plans: dict[str, tuple[JobView, _Plan | None]] = {}  # job_id -> (job, plan)
        self.blocks: dict[NodeIds, Hashable] = {}  # candidate node ids -> placement key

    def alike(self, n: NodeView) -> Hashable:
        key = (n.node_id, n.load == 0.0 and n.cpus_free == n.cpus_total)
        got = self._alike.get(key)
        if got is None:
            got = self._alike[key] = self._alike_fn(n)
        return got

    def idle(self, n: NodeView) -> NodeView:
        """`n` as it will be once its jobs have left: idle, free memory unknown."""
        got = self._idle.get(n.node_id)
        if got is None:
            got = self._idle[n.node_id] = dataclasses.replace(
                n, cpus_free=n.cpus_total, load=0.0, memory_free_mb=0.0)
        return got

    def idle_kind(self, n: NodeView) -> Hashable:
        """``alike(idle(n))``; for the two signatures the policies use, without the copy."""
        fn = self._alike_fn
        if (n.node_id, True) in self._alike or fn not in (_signature, _identity):
            return self.alike(self.idle(n))
        if fn is _identity:
            return n.node_id
        return (n.speed, n.cpus_total, _load_bucket(0.0), _mem_bucket(0.0))

    def slots(self, cpus_per_worker: float) -> int:
        """Workers of this size the free CPUs could hold (all nodes together)."""
        got = self._slots.get(cpus_per_worker)
        if got is None:
            got = sum(int((f + _EPS) // cpus_per_worker) for f in self.free.values())
            self._slots[cpus_per_worker] = got
        return got

    def room(self, spec: JobSpec) -> tuple[dict[str, float], list[NodeView]]:
        """Free CPUs `spec`'s workers can use per node, and the nodes with room, fastest first:
        `free` and `with_room` for a CPU job; capped by free GPUs (`fit.usable_cpus`) for a
        GPU job, memoised per worker shape."""
        if spec.gpus_per_worker <= 0:
            return self.free, self.with_room
        shape = (spec.cpus_per_worker, spec.gpus_per_worker)
        got = self._gpu_room.get(shape)
        if got is None:
            free = {nid: usable_cpus(f, self.by_id[nid].gpus_free, *shape)
                    for nid, f in self.free.items()}
            got = self._gpu_room[shape] = (
                free, [n for n in self.with_room if free[n.node_id] > _EPS])
        return got

    def job_slots(self, spec: JobSpec) -> int:
        """Workers of `spec`'s shape (CPUs and GPUs) the free resources could hold."""
        if spec.gpus_per_worker <= 0:
            return self.slots(spec.cpus_per_worker)
        free, _ = self.room(spec)
        return sum(int((f + _EPS) // spec.cpus_per_worker) for f in free.values())

    def busy(self, total: float, ends: dict[str, list[tuple[float, float]]],
             faster_than: float = -math.inf) -> dict[float, _BusyGroup]:
        """Per node speed above `faster_than`: (wait_s, node, its kind once idle) for nodes too
        full for `total` CPUs now, soonest free first, and how many kinds the group holds."""
        got = self._busy.get((total, faster_than))
        if got is None:
            if self._speeds is None:
                self._speeds = [(n, self.speed(n)) for n in self.sched]
            lists: dict[float, list[tuple[float, NodeView, Hashable]]] = {}
            for n, speed in self._speeds:
                if speed <= faster_than:
                    continue
                free = self.free[n.node_id]
                if free + _EPS >= total or n.cpus_total + _EPS < total:
                    continue
                for end, cpus in ends.get(n.node_id, ()):
                    free += cpus
                    if free + _EPS >= total:
                        wait = max(end - self.view.time, 0.0)
                        lists.setdefault(speed, []).append((wait, n, self.idle_kind(n)))
                        break
            got = {}
            for speed, v in lists.items():
                v.sort(key=lambda t: (t[0], t[1].node_id))
                got[speed] = _BusyGroup(v, len({kind for _, _, kind in v}))
            self._busy[(total, faster_than)] = got
        return got


_RUNNING_STATES = (JobState.RUNNING, JobState.PLACED)


class _EndsState(NamedTuple):
    """What `LearnedPlacement._node_ends` built for the last view, to update for the next one:
    the running jobs (view objects) by id, each one's (end, CPUs) entry where known, the
    per-node lists, the running jobs still without an end time, and whether all are finite."""

    time: float
    jobs: dict[str, JobView]
    entries: dict[str, tuple[float, float]]
    ends: dict[str, list[tuple[float, float]]]
    pending: set[str]
    finite: bool


class _BusyGroup(NamedTuple):
    """Busy nodes of one speed, soonest free first: (wait_s, node, kind once idle)."""

    nodes: list[tuple[float, NodeView, Hashable]]
    n_kinds: int


class _Plan(NamedTuple):
    """A job's free candidates on one view, their prediction keys, and the speed a busy node
    must beat to be worth waiting for (computed once per view: `prepare`, then `place`)."""

    cands: list[_Cand]
    keys: list[Hashable]
    faster_than: float


def _signature(n: NodeView) -> Hashable:
    """What the model sees of a node (nodes with equal signatures get equal predictions)."""
    return (n.speed, n.cpus_total, _load_bucket(n.load), _mem_bucket(n.memory_free_mb))


def _load_bucket(load: float) -> float:
    return round(load * 20) / 20  # 0.05 steps


def _mem_bucket(mb: float) -> float:
    return round(mb / 500) * 500.0


def _identity(n: NodeView) -> Hashable:
    return n.node_id


def _alike(model: object) -> Callable[[NodeView], Hashable]:
    """Node signature for de-duplication; a model that knows nodes by id sees every node."""
    return _identity if getattr(model, "uses_node_ids", False) else _signature


def _block(ids: NodeIds, nodes: Sequence[NodeView]) -> Hashable:
    """What a label-reading model sees of a placement (`features.node_block`, rounded)."""
    distinct = list({n.node_id: n for n in nodes}.values())
    speeds = [n.speed for n in nodes]
    return (len(nodes), len(distinct), min(speeds), round(sum(speeds) / len(speeds), 3),
            min(n.cpus_total for n in nodes),
            _load_bucket(sum(n.load for n in distinct) / len(distinct)),
            _mem_bucket(min(n.memory_free_mb for n in distinct)))


def _ids(ids: NodeIds, nodes: Sequence[NodeView]) -> Hashable:
    return ids


def _place_key(model: object) -> Callable[[NodeIds, Sequence[NodeView]], Hashable]:
    """Cache key of a placement's prediction: what the model sees of it."""
    return _ids if getattr(model, "uses_node_ids", False) else _block


def gang_candidates(
    job: JobView,
    fastest: Sequence[NodeView],
    free: dict[str, float],
    *,
    max_single: int,
    extra: Iterable[NodeIds] = (),
    alike: Callable[[NodeView], Hashable] = _signature,
) -> list[NodeIds]:
    """A bounded set of gang placements (one node id per worker) that fit `free` CPUs.

    Single-node placements (best fit among nodes that look alike to the model, fastest kinds
    first, at most `max_single`), greedy fastest-first, greedy most-free-first, one worker per
    node across the fastest nodes, plus `extra` (e.g. a job's current nodes) where it fits.
    """
    nw, cpw = job.spec.num_workers, job.spec.cpus_per_worker
    total = nw * cpw
    out: list[NodeIds] = []
    seen: set[NodeIds] = set()

    def add(ids: Sequence[str] | None) -> None:
        if ids is None or len(ids) != nw:
            return
        key = tuple(sorted(ids))
        if key not in seen:
            seen.add(key)
            out.append(tuple(ids))

    best_fit: dict[Hashable, NodeView] = {}
    for n in fastest:
        if free.get(n.node_id, 0.0) + _EPS >= total:
            sig = alike(n)
            cur = best_fit.get(sig)
            if cur is None:
                if len(best_fit) >= max_single:
                    continue
                best_fit[sig] = n
            elif free[n.node_id] < free[cur.node_id]:
                best_fit[sig] = n
    for n in best_fit.values():
        add((n.node_id,) * nw)
    if nw > 1:
        add(_greedy(fastest, free, nw, cpw))
        most_free = sorted(fastest, key=lambda n: -free.get(n.node_id, 0.0))
        add(_greedy(most_free, free, nw, cpw))
        add(_spread(fastest, free, nw, cpw))
    for ids in extra:
        need: dict[str, float] = {}
        for nid in ids:
            need[nid] = need.get(nid, 0.0) + cpw
        if all(free.get(nid, 0.0) + _EPS >= c for nid, c in need.items()):
            add(ids)
    return out


def _greedy(nodes: Sequence[NodeView], free: dict[str, float], nw: int, cpw: float
            ) -> NodeIds | None:
    chosen: list[str] = []
    for n in nodes:
        room = free.get(n.node_id, 0.0)
        while len(chosen) < nw and room + _EPS >= cpw:
            chosen.append(n.node_id)
            room -= cpw
        if len(chosen) == nw:
            return tuple(chosen)
    return None


def _spread(nodes: Sequence[NodeView], free: dict[str, float], nw: int, cpw: float
            ) -> NodeIds | None:
    left = {n.node_id: free.get(n.node_id, 0.0) for n in nodes}
    chosen: list[str] = []
    while len(chosen) < nw:
        progress = False
        for n in nodes:
            if len(chosen) < nw and left[n.node_id] + _EPS >= cpw:
                chosen.append(n.node_id)
                left[n.node_id] -= cpw
                progress = True
        if not progress:
            return None
    return tuple(chosen)


# -- placement --------------------------------------------------------------------------------


class _Scored(NamedTuple):
    """One candidate with its predictions and score."""

    node_ids: NodeIds
    score: float
    pred: _Pred
    wait_s: float = 0.0
    busy: bool = False  # a busy node: waiting for it, not placing now
    rejected: str = ""


def _rank(s: _Scored) -> tuple[bool, float]:
    return (bool(s.rejected), s.score)


class LearnedPlacement:
    """Place a gang where its predicted completion (wait + run time, risk-adjusted) is lowest.

    Each candidate's score is ``wait_s + duration + risk * (duration_hi - duration)``: with
    `risk` 1 a candidate is judged by the upper end of its prediction interval, so a node that
    only wins on an unsure mean loses to a sure one. Candidates whose predicted peak memory
    (upper bound, per worker, or the spec's `memory_mb_per_worker` if larger) exceeds a node's
    known free memory are rejected. Up to `max_wait_candidates` busy nodes faster than every
    free option are scored too, with the wait until their running jobs are predicted to end
    (measured step time x steps left, else the cost model); when waiting beats the best free
    candidate by `wait_margin` (relative) the job stays queued (None). A job stops waiting
    after `max_wait_s` in the queue, so waiting cannot starve it. A busy node is predicted as
    it will be once its jobs have left: idle, free memory unknown (so not memory-checked).
    At most `max_evaluations` jobs are evaluated per round (`round_ttl_s` of view time, or from
    one `prepare` to the next); see the module docstring for the round's prediction cache.
    A GPU job's candidates count free CPUs capped by free GPUs (`fit.usable_cpus`), so each
    worker gets a free GPU; it never waits for a busy node (end times track CPUs only).
    With `adjust` (see `node_speeds.SpeedAdjustedViews`) every view is first replaced by one
    whose node speeds are what they are measured to be now, not what the labels say.
    """

    name = "learned"

    def __init__(
        self,
        cost_model: BatchCostModel,
        *,
        risk: float = 1.0,
        max_candidates: int = 12,
        max_wait_candidates: int = 2,
        wait_margin: float = 0.1,
        max_wait_s: float = 600.0,
        max_evaluations: int = 64,
        round_ttl_s: float = 5.0,
        policy_name: str = "learned",
        adjust: AdjustView | None = None,
    ) -> None:
        self.adjust = adjust
        self.risk = risk
        self.max_candidates = max(max_candidates, 4)
        self.max_wait_candidates = max_wait_candidates
        self.wait_margin = wait_margin
        self.max_wait_s = max_wait_s
        self.max_evaluations = max_evaluations
        self.round_ttl_s = round_ttl_s
        self.policy_name = policy_name
        self._new_round(-math.inf)
        self.cost_model = cost_model

    @property
    def cost_model(self) -> BatchCostModel:
        """The model asked; assigning a new one (a promoted version) empties the caches."""
        return self._cost_model

    @cost_model.setter
    def cost_model(self, model: BatchCostModel) -> None:
        self._cost_model = model
        self._speed = _model_speed(model)
        self._alike = _alike(model)
        self._place_key = _place_key(model)
        self._index: _NodeIndex | None = None
        self._round: dict[Hashable, _Pred] = {}
        self._prepared = False  # the round's prefetch was the old model's: predict as needed
        self._running_dur: dict[tuple[str, int], float] = {}
        self._ends_state: _EndsState | None = None  # see `_node_ends`
        self._dur_set: set[str] = set()  # jobs `place` gave a duration since the last build

    # -- per-view and per-round caches ------------------------------------------------------

    def _adjusted(self, view: ClusterView) -> ClusterView:
        return self.adjust(view) if self.adjust is not None else view

    def _nodes(self, view: ClusterView) -> _NodeIndex:
        if self._index is None or self._index.view is not view:
            self._index = _NodeIndex(view, self._speed, self._alike)
        return self._index

    def _candidates(self, job: JobView, idx: _NodeIndex) -> list[NodeIds]:
        extra = (job.node_ids,) if job.node_ids else ()
        free, with_room = idx.room(job.spec)
        return gang_candidates(job, with_room, free, max_single=self.max_candidates - 3,
                               extra=extra, alike=idx.alike)

    def _new_round(self, now: float, *, prepared: bool = False) -> None:
        self._round = {}
        self._round_time = now
        self._evaluated = 0
        self._prepared = prepared
        self._reserved: set[str] = set()

    def _plan(self, job: JobView, idx: _NodeIndex) -> _Plan | None:
        """The free candidates of `job` on this view (no predictions), memoised per view;
        None when it fits nowhere now."""
        seen = idx.plans.get(job.job_id)
        if seen is not None and seen[0] is job:
            return seen[1]
        spec = job.spec
        got = None
        if idx.job_slots(spec) >= spec.num_workers:
            cands = [(ids, tuple(idx.by_id[n] for n in ids))
                     for ids in self._candidates(job, idx)]
            if cands:
                speed = self._speed
                faster_than = max(min(speed(n) for n in nodes) for _, nodes in cands)
                blocks = idx.blocks
                head = (job.job_id, job.steps_left)
                keys = []
                for c in cands:
                    block = blocks.get(c[0])
                    if block is None:
                        block = blocks[c[0]] = self._place_key(c[0], c[1])
                    keys.append((*head, block))
                got = _Plan(cands, keys, faster_than)
        idx.plans[job.job_id] = (job, got)
        return got

    def _busy(self, job: JobView, idx: _NodeIndex, plan: _Plan
              ) -> list[tuple[NodeIds, float, _Cand, Hashable]]:
        """The busy candidates worth waiting for, with their prediction keys (no predictions):
        (ids, wait_s, (ids, nodes as predicted), key)."""
        nw = job.spec.num_workers
        out = []
        for ids, wait, after in self._busy_candidates(job, idx, plan.faster_than):
            cand = (ids, (after,) * nw)
            memo = idx._idle_key
            block = memo.get((ids[0], nw))
            if block is None:
                block = memo[(ids[0], nw)] = self._place_key(*cand)
            out.append((ids, wait, cand, (job.job_id, job.steps_left, block)))
        return out

    def prepare(self, order: Sequence[JobView], view: ClusterView) -> None:
        """Predict, in one call, every candidate of the jobs this round will evaluate.

        Those are the first `max_evaluations` jobs of `order` that fit the free capacity now;
        `place` then answers from this cache while launches change the free CPUs.
        """
        view = self._adjusted(view)
        self._new_round(view.time, prepared=True)
        idx = self._nodes(view)
        todo: list[tuple[Hashable, JobView, _Cand]] = []
        covered = 0
        for job in order:
            if covered >= self.max_evaluations:
                break
            plan = self._plan(job, idx)
            if plan is None:
                continue
            covered += 1
            todo += [(k, job, c) for k, c in zip(plan.keys, plan.cands, strict=True)]
            todo += [(k, job, c) for _, _, c, k in self._busy(job, idx, plan)]
        self._fill(todo, view)

    def _key(self, job: JobView, cand: _Cand) -> Hashable:
        return (job.job_id, job.steps_left, self._place_key(cand[0], cand[1]))

    def _fill(self, todo: Sequence[tuple[Hashable, JobView, _Cand]], view: ClusterView) -> None:
        missing: dict[Hashable, tuple[JobView, Sequence[NodeView]]] = {}
        for k, job, (_, nodes) in todo:
            if k not in self._round and k not in missing:
                missing[k] = (job, nodes)
        if not missing:
            return
        preds = _predict(self.cost_model, list(missing.values()), view)
        self._round.update(zip(missing, preds, strict=True))

    def _predictions(self, todo: Sequence[tuple[Hashable, JobView, _Cand]], view: ClusterView
                     ) -> list[_Pred]:
        """Predictions for (key, job, candidate) triples, from the round's cache."""
        if view.time - self._round_time > self.round_ttl_s:
            self._new_round(view.time)
        self._fill(todo, view)
        return [self._round[k] for k, _, _ in todo]

    # -- waiting for busy nodes -------------------------------------------------------------

    def _node_ends(self, idx: _NodeIndex) -> dict[str, list[tuple[float, float]]]:
        """Per node: (predicted end time, CPUs it frees) of the jobs running there, sorted.

        Built from scratch for the first view of a round; for later views at the same time
        (one per launch) only the jobs whose view object changed, appeared or left, those still
        without an end time and those `place` gave a new duration are redone, and only their
        nodes re-sorted (`_EndsState`). A node's list is its jobs' entries sorted; with finite
        entries that sort has one answer, so the result is the one a rebuild gives (a state
        holding a non-finite entry is rebuilt instead).
        """
        if idx.ends is not None:
            return idx.ends
        view = idx.view
        state = self._ends_state
        prev = state.jobs if state is not None and state.time == view.time \
            and state.finite else None
        running: dict[str, JobView] = {}
        changed: list[JobView] = []
        for j in view.jobs:
            if j.state in _RUNNING_STATES and j.node_ids:
                running[j.job_id] = j
                if prev is not None and prev.get(j.job_id) is not j:
                    changed.append(j)
        dur = self._running_dur
        for k in [k for k in dur if (j := running.get(k[0])) is None or j.steps_done != k[1]]:
            del dur[k]
        if prev is None or state is None:
            redo = list(running.values())
        else:
            again = state.pending | self._dur_set
            redo = changed + [running[k] for k in again
                              if k in running and prev.get(k) is running[k]]
        self._dur_set = set()
        unknown = [j for j in redo if not j.recent_step_time_s
                   and (j.job_id, j.steps_done) not in dur]
        pairs = [(j, tuple(idx.by_id[n] for n in j.node_ids if n in idx.by_id)) for j in unknown]
        pairs = [(j, ns) for j, ns in pairs if len(ns) == len(j.node_ids)]
        for (j, _), p in zip(pairs, _predict(self.cost_model, pairs, view), strict=True):
            dur[(j.job_id, j.steps_done)] = p.duration
        fresh: dict[str, tuple[float, float]] = {}
        pending: set[str] = set()
        for j in redo:
            if j.recent_step_time_s:
                left = j.steps_left * j.recent_step_time_s
            else:
                d = dur.get((j.job_id, j.steps_done))
                if d is None:
                    pending.add(j.job_id)
                    continue
                elapsed = view.time - j.start_time if j.start_time and not j.steps_done else 0.0
                left = max(d - elapsed, 0.0)
            fresh[j.job_id] = (view.time + left, j.spec.cpus_per_worker)
        finite = all(math.isfinite(e) and math.isfinite(c) for e, c in fresh.values())
        if prev is None or state is None or not finite:
            if prev is not None:  # a non-finite entry: redo every job, in view order
                self._ends_state = None
                return self._node_ends(idx)
            entries = fresh
            ends: dict[str, list[tuple[float, float]]] = {}
            for j in redo:
                entry = fresh.get(j.job_id)
                if entry is not None:
                    for nid in j.node_ids:
                        ends.setdefault(nid, []).append(entry)
            for v in ends.values():
                v.sort()
        else:
            entries = state.entries
            ends = dict(state.ends)
            touched: set[str] = set()
            for k in [j.job_id for j in redo] + [k for k in prev if k not in running]:
                old = entries.pop(k, None)  # take out the entries of jobs that changed or left
                if old is not None:
                    for nid in prev[k].node_ids:
                        if nid not in touched:
                            touched.add(nid)
                            ends[nid] = list(ends[nid])
                        ends[nid].remove(old)
            for j in redo:
                entry = fresh.get(j.job_id)
                if entry is None:
                    continue
                entries[j.job_id] = entry
                for nid in j.node_ids:
                    if nid not in touched:
                        touched.add(nid)
                        ends[nid] = list(ends.get(nid, ()))
                    ends[nid].append(entry)
            for nid in touched:
                if ends[nid]:
                    ends[nid].sort()
                else:
                    del ends[nid]
        self._ends_state = _EndsState(view.time, running, entries, ends, pending, finite)
        idx.ends = ends
        return ends

    def _busy_candidates(self, job: JobView, idx: _NodeIndex, faster_than: float
                         ) -> list[tuple[NodeIds, float, NodeView]]:
        """Busy nodes faster than `faster_than` that could hold the gang alone, soonest first:
        (ids, wait_s, the node as predicted: idle once its jobs have left)."""
        if self.max_wait_candidates <= 0 or job.state is not JobState.QUEUED:
            return []
        if job.spec.gpus_per_worker > 0:
            return []  # predicted end times count freed CPUs, not GPUs: a GPU job never waits
        if idx.view.time - job.submit_time >= self.max_wait_s:
            return []
        nw = job.spec.num_workers
        pool: list[tuple[float, NodeView]] = []
        busy = idx.busy(nw * job.spec.cpus_per_worker, self._node_ends(idx), faster_than)
        reserved = self._reserved
        for speed, (soonest, n_kinds) in busy.items():
            if speed <= faster_than:
                continue
            taken: set[Hashable] = set()
            # Past `n_kinds` taken no later node can be added: stop there (same result).
            most = min(self.max_wait_candidates, n_kinds)
            for wait, n, kind in soonest:
                if wait > self.max_wait_s or len(taken) >= most:
                    break
                if n.node_id not in reserved and kind not in taken:
                    taken.add(kind)
                    pool.append((wait, n))
        pool.sort(key=lambda t: (t[0], t[1].node_id))
        out: list[tuple[NodeIds, float, NodeView]] = []
        seen: set[Hashable] = set()
        for wait, n in pool:
            idle = idx.idle(n)
            kind = idx.alike(idle)
            if kind not in seen and len(out) < self.max_wait_candidates:
                seen.add(kind)
                out.append(((n.node_id,) * nw, wait, idle))
        return out

    # -- the decision -------------------------------------------------------------------------

    def _memory_problem(self, job: JobView, ids: NodeIds, pred: _Pred,
                        by_id: dict[str, NodeView]) -> str:
        per_worker = max(pred.rss_hi, float(job.spec.memory_mb_per_worker))
        counts: dict[str, int] = {}
        for nid in ids:
            counts[nid] = counts.get(nid, 0) + 1
        for nid, c in counts.items():
            have = by_id[nid].memory_free_mb
            if have > 0 and c * per_worker > have:
                return (f"rejected: needs {c * per_worker:.0f} MB on {_short(nid)}, "
                        f"{have:.0f} MB free")
        return ""

    def score(self, pred: _Pred, wait_s: float = 0.0) -> float:
        """Risk-adjusted predicted completion: wait + mean + risk * (hi - mean)."""
        return wait_s + pred.duration + self.risk * max(pred.duration_hi - pred.duration, 0.0)

    def evaluate(self, job: JobView, view: ClusterView) -> list[_Scored]:
        """Every candidate considered for `job`, best first (rejected ones last)."""
        view = self._adjusted(view)
        idx = self._nodes(view)
        plan = self._plan(job, idx)
        if plan is None:
            return []
        busy = self._busy(job, idx, plan)
        todo = [(k, job, c) for k, c in zip(plan.keys, plan.cands, strict=True)]
        if self._prepared:  # later in a prepared round: keep to what was predicted, if any
            known = [t for t in todo if t[0] in self._round]
            todo = known or todo
        scored = []
        for (_, _, (ids, _)), p in zip(todo, self._predictions(todo, view), strict=True):
            problem = self._memory_problem(job, ids, p, idx.by_id)
            scored.append(_Scored(ids, self.score(p), p, rejected=problem))
        if self._prepared:
            busy = [b for b in busy if b[3] in self._round]
        if busy and any(not s.rejected for s in scored):
            preds = self._predictions([(k, job, c) for _, _, c, k in busy], view)
            for (ids, wait, _, _), p in zip(busy, preds, strict=True):
                scored.append(_Scored(ids, self.score(p, wait), p, wait_s=wait, busy=True))
        scored.sort(key=_rank)
        return scored

    def place(self, job: JobView, cluster: ClusterView) -> Placement | None:
        cluster = self._adjusted(cluster)
        if cluster.time - self._round_time > self.round_ttl_s:
            self._new_round(cluster.time)
        if self._evaluated >= self.max_evaluations:
            return None  # backfill depth reached: later jobs wait for the next round
        idx = self._index
        if idx is None or idx.view is not cluster:
            idx = self._nodes(cluster)
        spec = job.spec
        if idx.job_slots(spec) < spec.num_workers:
            return None  # fits nowhere now (what `evaluate` would find, without the work)
        scored = self.evaluate(job, cluster)
        if scored:
            self._evaluated += 1
        free_ok = [s for s in scored if not s.rejected and not s.busy]
        if not free_ok:
            return None
        best = free_ok[0]
        waits = [s for s in scored if s.busy]
        if waits and waits[0].score < best.score * (1.0 - self.wait_margin):
            self._reserved.update(waits[0].node_ids)  # one waiting job per busy node a round
            return None  # a busy faster node frees soon enough: stay queued
        by_id = self._nodes(cluster).by_id
        reason = (f"fastest predicted completion: {best.score:.1f} s on "
                  f"{_describe(best.node_ids, by_id)}")
        others = [s for s in scored if s is not best and not s.rejected]
        if others:
            nb = others[0]
            wait = f" after waiting {nb.wait_s:.1f} s" if nb.busy else ""
            reason += (f"; next best {nb.score:.1f} s on {_describe(nb.node_ids, by_id)}"
                       f"{wait}")
        self._running_dur[(job.job_id, 0)] = best.pred.duration  # for later waits
        self._dur_set.add(job.job_id)
        return Placement(
            job_id=job.job_id,
            node_ids=best.node_ids,
            reason=reason,
            policy=self.policy_name,
            candidates=tuple(_candidate(s) for s in scored),
            predicted_duration_s=best.pred.duration,
        )


def _candidate(s: _Scored) -> Candidate:
    if s.rejected:
        note = s.rejected
    else:
        note = f"run {s.pred.duration:.1f} s (hi {s.pred.duration_hi:.1f} s)"
        if s.busy:
            note = f"wait {s.wait_s:.1f} s for a busy node; {note}"
    return Candidate(node_ids=s.node_ids, predicted_completion_s=round(s.score, 3), note=note)


# -- rebalancing ------------------------------------------------------------------------------


class StragglerRebalance:
    """Find jobs running slower than predicted, flag their nodes, migrate when it pays.

    A running job with at least `min_steps` steps whose measured step time exceeds ``step_time_hi *
    slow_factor`` (its predicted interval's upper end on its own nodes), or ``self_factor`` times
    its own baseline (its early steps on the same nodes; see `straggler_signals`), is a straggler,
    and its nodes are suspects; a suspect node also running an on-time job is cleared (the slowness
    is then the straggler's own). Suspects are flagged degraded. A straggler is migrated to the
    free, healthy candidate with the lowest predicted step time when ``steps_left * (observed_step -
    predicted_step_there) > migration cost`` (predictions rescaled to the job's measured baseline;
    the cost measured on the cluster when the view carries it, else `migration_cost_s`); the
    migration's `predicted_gain_s` is that saving minus the cost. A job is not migrated again
    within `cooldown_s`.

    Node-level evidence, with `node_speeds` (see `node_speeds.py`): each round the running jobs'
    measured and predicted step times update the source's per-node slowdowns. A node slowed
    `drain_factor` times or more is flagged degraded whatever its jobs' own yardsticks say, and
    every job on a node slowed `move_factor` times or more may move even though it measured its
    own early steps there (it started after the slowdown). Targets are then predicted on the
    view with measured speeds, and a mover's predictions are rescaled to its recent steps on
    the speeds measured now (not to its baseline, which may predate the slowdown).

    Stateful, deliberately: the view carries no memory of when a node was last seen slow, so the
    rebalancer remembers, per node it flagged, the time of the latest evidence, and flags the node
    healthy again after `recovery_s` seconds without new evidence (a drained node whose jobs have
    moved produces none, so this is its probation); and, per job, when it was last migrated.
    """

    def __init__(
        self,
        cost_model: BatchCostModel,
        *,
        slow_factor: float = 1.5,
        self_factor: float = 3.0,  # 2x drained nodes on load noise in the live benchmark
        min_steps: int = 5,
        migration_cost_s: float = 30.0,
        recovery_s: float = 300.0,
        cooldown_s: float = 600.0,
        refresh_s: float = 60.0,
        max_candidates: int = 8,
        node_speeds: NodeSpeedSource | None = None,
        move_factor: float = 2.0,
        drain_factor: float = 3.0,
        adjust: AdjustView | None = None,
    ) -> None:
        self.node_speeds = node_speeds
        self.move_factor = move_factor
        self.drain_factor = drain_factor
        self.adjust = adjust if adjust is not None or node_speeds is None \
            else SpeedAdjustedViews(node_speeds)
        self.slow_factor = slow_factor
        self.self_factor = self_factor
        self.min_steps = min_steps
        self.migration_cost_s = migration_cost_s
        self.recovery_s = recovery_s
        self.cooldown_s = cooldown_s
        self.refresh_s = refresh_s
        self.max_candidates = max(max_candidates, 4)
        self.flagged_at: dict[str, float] = {}  # node -> time of the latest slowness evidence
        self.migrated_at: dict[str, float] = {}  # job -> time of its last migration
        self.cost_model = cost_model

    @property
    def cost_model(self) -> BatchCostModel:
        """The model asked; assigning a new one (a promoted version) empties the cache of
        expected step times (the observations behind flags and cooldowns are kept)."""
        return self._cost_model

    @cost_model.setter
    def cost_model(self, model: BatchCostModel) -> None:
        self._cost_model = model
        self._expected: dict[tuple[str, NodeIds], tuple[float, float, float]] = {}
        self._speed = _model_speed(model)
        self._alike = _alike(model)

    def _expected_steps(self, jobs: Sequence[JobView], view: ClusterView,
                        by_id: dict[str, NodeView]) -> dict[str, tuple[float, float]]:
        """(predicted step, its upper bound) of each job on its own nodes (cached)."""
        now = view.time
        live = {(j.job_id, j.node_ids) for j in jobs}
        for k in [k for k in self._expected if k not in live]:
            del self._expected[k]
        todo = [j for j in jobs if (hit := self._expected.get((j.job_id, j.node_ids))) is None
                or now - hit[0] > self.refresh_s]
        pairs = [(j, tuple(by_id[n] for n in j.node_ids)) for j in todo]
        for j, p in zip(todo, _predict(self.cost_model, pairs, view), strict=True):
            self._expected[(j.job_id, j.node_ids)] = (now, p.step, p.step_hi)
        return {j.job_id: self._expected[(j.job_id, j.node_ids)][1:] for j in jobs}

    def rebalance(self, cluster: ClusterView) -> RebalanceDecision:
        now = cluster.time
        by_id = {n.node_id: n for n in cluster.nodes}
        measured = [j for j in cluster.running
                    if j.recent_step_time_s and j.steps_done >= self.min_steps and j.node_ids
                    and all(n in by_id for n in j.node_ids)]
        expected = self._expected_steps(measured, cluster, by_id)
        slowed: dict[str, float] = {}  # node -> measured slowdown (node-level evidence)
        if self.node_speeds is not None:
            self.node_speeds.update(cluster, {k: v[0] for k, v in expected.items()})
            for n in cluster.nodes:
                factor = self.node_speeds.slowdown(n)
                if factor >= self.move_factor:
                    slowed[n.node_id] = factor
        slow: list[tuple[JobView, StragglerSignal]] = []
        cleared: set[str] = set()
        for j in measured:
            signal = straggler_signal(j, expected[j.job_id][1], slow_factor=self.slow_factor,
                                      self_factor=self.self_factor)
            if signal is not None:
                slow.append((j, signal))
            else:
                cleared.update(j.node_ids)
        flags: list[NodeFlag] = []
        suspects: set[str] = set()

        def suspect(nid: str, reason: str) -> None:
            suspects.add(nid)
            if nid not in self.flagged_at and not by_id[nid].degraded:
                flags.append(NodeFlag(node_id=nid, degraded=True, reason=reason))
            self.flagged_at[nid] = now

        for j, signal in slow:
            for nid in dict.fromkeys(j.node_ids):
                if nid not in cleared:
                    suspect(nid, f"job {j.job_id} {signal.describe()}")
        for nid, factor in slowed.items():
            if factor >= self.drain_factor and nid not in suspects:
                node = by_id[nid]
                suspect(nid, f"node {factor:.2g}x slower than its speed label "
                             f"{node.speed:g}: {self.node_speeds.evidence(node)}")  # type: ignore[union-attr]
        for nid, t in list(self.flagged_at.items()):
            if nid not in suspects and now - t >= self.recovery_s:
                del self.flagged_at[nid]
                if nid in by_id and by_id[nid].degraded:
                    flags.append(NodeFlag(node_id=nid, degraded=False, reason=(
                        f"no slowness seen for {now - t:.0f} s (recovery after "
                        f"{self.recovery_s:g} s)")))
        movers = {j.job_id: (j, "straggler") for j, _ in slow}
        for j in measured:
            on = [n for n in dict.fromkeys(j.node_ids) if n in slowed]
            if j.job_id not in movers and on:
                movers[j.job_id] = (j, f"on {_short(on[0])}, measured {slowed[on[0]]:.2g}x "
                                       "slower than its label")
        migrations = self._migrations(movers, cluster, by_id, suspects, set(slowed), expected)
        return RebalanceDecision(migrations=tuple(migrations), node_flags=tuple(flags))

    def _migrations(self, candidates: dict[str, tuple[JobView, str]], view: ClusterView,
                    by_id: dict[str, NodeView], suspects: set[str], slowed: set[str],
                    expected: dict[str, tuple[float, float]]) -> list[Migration]:
        """Moves whose saving (in the job's measured units) beats one migration's cost.

        The cost is the cluster's measured one when the view carries it, else the default.
        A job on a node measured slow (`slowed`) is rescaled to its recent steps on the
        adjusted view; any other to its baseline (its own yardstick, from before it slowed).
        """
        bad = suspects | slowed
        now = view.time
        cost = view.migration_cost_s if view.migration_cost_s is not None \
            else self.migration_cost_s
        for k in [k for k, t in self.migrated_at.items() if now - t >= self.cooldown_s]:
            del self.migrated_at[k]
        movable = [j for j, _ in candidates.values() if j.job_id not in self.migrated_at]
        if not movable:
            return []
        if self.adjust is not None:  # predict on the speeds measured now
            view = self.adjust(view)
            by_id = {n.node_id: n for n in view.nodes}
        healthy = [n for n in by_id.values()
                   if n.schedulable and n.cpus_total > 0 and n.node_id not in bad]
        free = {n.node_id: max(n.cpus_free, 0.0) for n in healthy}
        gpus = {n.node_id: n.gpus_free for n in healthy}
        # A full node is in no candidate: leave it out of the (then shorter) sort.
        fastest = fastest_first([n for n in healthy if free[n.node_id] > _EPS], self._speed)
        options: list[tuple[JobView, NodeIds]] = []
        for j in movable:
            cpw, gpw = j.spec.cpus_per_worker, j.spec.gpus_per_worker
            room = free if gpw <= 0 else {
                nid: usable_cpus(f, gpus[nid], cpw, gpw) for nid, f in free.items()}
            for ids in gang_candidates(j, fastest, room, max_single=self.max_candidates - 3,
                                       alike=self._alike):
                options.append((j, ids))
        on_slowed = [j for j in movable if slowed.intersection(j.node_ids)]
        own = [(j, tuple(by_id[n] for n in j.node_ids)) for j in on_slowed]
        pairs = [(j, tuple(by_id[n] for n in ids)) for j, ids in options]
        preds = _predict(self.cost_model, own + pairs, view)
        scale = {j.job_id: calibration(j, expected[j.job_id][0]) for j in movable}
        for j, p in zip(on_slowed, preds[:len(own)], strict=True):
            # Its recent steps over its prediction on the speeds measured now.
            scale[j.job_id] = min(max((j.recent_step_time_s or 0.0) / p.step, 0.01), 100.0) \
                if p.step > 0 else 1.0
        best: dict[str, tuple[float, NodeIds]] = {}
        for (j, ids), p in zip(options, preds[len(own):], strict=True):
            step = p.step * scale[j.job_id]
            if j.job_id not in best or step < best[j.job_id][0]:
                best[j.job_id] = (step, ids)
        out: list[Migration] = []
        for j in sorted(movable, key=lambda j: -j.steps_left * (j.recent_step_time_s or 0.0)):
            if j.job_id not in best:
                continue
            step, ids = best[j.job_id]
            need: dict[str, float] = {}
            for nid in ids:
                need[nid] = need.get(nid, 0.0) + j.spec.cpus_per_worker
            gpw = j.spec.gpus_per_worker
            gpu_need = {nid: ids.count(nid) * gpw for nid in need} if gpw > 0 else {}
            if any(free[nid] + _EPS < c for nid, c in need.items()) or any(
                    gpus[nid] + _EPS < g for nid, g in gpu_need.items()):
                continue  # taken by an earlier migration this round
            saving = j.steps_left * ((j.recent_step_time_s or 0.0) - step)
            if saving <= cost:
                continue
            for nid, c in need.items():
                free[nid] -= c
            for nid, g in gpu_need.items():
                gpus[nid] -= g
            self.migrated_at[j.job_id] = now
            out.append(Migration(
                job_id=j.job_id, from_node_ids=j.node_ids, to_node_ids=ids,
                predicted_gain_s=saving - cost,
                reason=(f"{candidates[j.job_id][1]}: {j.recent_step_time_s:.3g} s/step measured, "
                        f"{step:.3g} s/step predicted on {_describe(ids, by_id)}; "
                        f"{j.steps_left} steps left save {saving:.1f} s > migration cost "
                        f"{cost:.1f} s"
                        f"{' (measured)' if view.migration_cost_s is not None else ''}"),
            ))
        return out


# -- the bundle -------------------------------------------------------------------------------


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

    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]:
        order = self.ordering.order(queued, cluster)
        self.placement.prepare(order, cluster)
        return order


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
