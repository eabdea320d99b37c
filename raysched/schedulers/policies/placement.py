"""Placement of the learned policy: each gang where its predicted completion is soonest.

The round's prediction cache and bounds are described in `learned.py`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Sequence, Set
from itertools import compress, count
from operator import is_not
from typing import NamedTuple

from raysched.schedulers.decisions import (
    Candidate,
    Placement,
)
from raysched.schedulers.fit import usable_cpus
from raysched.schedulers.policies.candidates import (
    gang_candidates,
    identity,
    load_bucket,
    mem_bucket,
    node_alike,
    place_key,
    signature,
)
from raysched.schedulers.policies.node_speeds import (
    AdjustView,
)
from raysched.schedulers.policies.prediction import (
    EPS,
    BatchCostModel,
    NodeIds,
    Pred,
    describe_nodes,
    fastest_first,
    model_speed,
    predict,
    short_id,
)
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

_Cand = tuple[NodeIds, Sequence[NodeView]]  # node ids, and the nodes as the model is asked


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
        self.with_room = fastest_first([n for n in self.sched if self.free[n.node_id] > EPS],
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
        if (n.node_id, True) in self._alike or fn not in (signature, identity):
            return self.alike(self.idle(n))
        if fn is identity:
            return n.node_id
        return (n.speed, n.cpus_total, load_bucket(0.0), mem_bucket(0.0))

    def slots(self, cpus_per_worker: float) -> int:
        """Workers of this size the free CPUs could hold (all nodes together)."""
        got = self._slots.get(cpus_per_worker)
        if got is None:
            got = sum(int((f + EPS) // cpus_per_worker) for f in self.free.values())
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
                free, [n for n in self.with_room if free[n.node_id] > EPS])
        return got

    def job_slots(self, spec: JobSpec) -> int:
        """Workers of `spec`'s shape (CPUs and GPUs) the free resources could hold."""
        if spec.gpus_per_worker <= 0:
            return self.slots(spec.cpus_per_worker)
        free, _ = self.room(spec)
        return sum(int((f + EPS) // spec.cpus_per_worker) for f in free.values())

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
                if free + EPS >= total or n.cpus_total + EPS < total:
                    continue
                for end, cpus in ends.get(n.node_id, ()):
                    free += cpus
                    if free + EPS >= total:
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
    view_jobs: tuple[JobView, ...]  # the jobs of the view it was built for
    unique: bool  # no job id twice in them


def _changed_running(old: tuple[JobView, ...], new: tuple[JobView, ...],
                     prev: dict[str, JobView]) -> tuple[dict[str, JobView], list[JobView]] | None:
    """`_node_ends`'s running jobs by id and the changed ones among them (in view order) for
    `new`, from `prev` (the running jobs of `old`, whose job ids are unique): `new` holds the
    same job objects at the same positions except a few, each in its job id's position (a
    launch replaces one job). None where the two are not so aligned (then a full pass)."""
    if len(old) != len(new):
        return None
    running = dict(prev)
    changed: list[JobView] = []
    for i in compress(count(), map(is_not, old, new)):
        was, now = old[i], new[i]
        if was.job_id != now.job_id:
            return None
        running.pop(was.job_id, None)
        if now.state in _RUNNING_STATES and now.node_ids:
            running[now.job_id] = now
            if prev.get(now.job_id) is not now:
                changed.append(now)
    return running, changed


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



class _Prefetch:
    """The part of a prepared round's prefetch not done yet: the round's order, the prepared
    view's node index, the next position in the order, how many jobs that fit were covered,
    and the ids of the jobs already looked at."""

    def __init__(self, order: Sequence[JobView], idx: _NodeIndex, chunk: int) -> None:
        self.order = order
        self.chunk = chunk  # jobs that fit to cover in the next call (doubled after each)
        self.idx = idx
        self.pos = 0
        self.covered = 0
        self.seen: set[str] = set()
        # Durations known at `prepare`, when its view's end times were left to be built later.
        self.dur: dict[tuple[str, int], float] | None = None


class _Scored(NamedTuple):
    """One candidate with its predictions and score."""

    node_ids: NodeIds
    score: float
    pred: Pred
    wait_s: float = 0.0
    busy: bool = False  # a busy node: waiting for it, not placing now
    rejected: str = ""


def _rank(s: _Scored) -> tuple[bool, float]:
    return (bool(s.rejected), s.score)


def _spread(pred: Pred) -> float:
    """(hi - mean) / mean of a predicted duration (0 for a zero or negative mean)."""
    if pred.duration <= 0:
        return 0.0
    return max(pred.duration_hi - pred.duration, 0.0) / pred.duration


class LearnedPlacement:
    """Place a gang where its predicted completion (wait + run time, risk-adjusted) is lowest.

    Each candidate's score is ``wait_s + duration + risk * extra``, where ``extra`` is the
    part of its interval's upper end (``duration_hi - duration``) beyond the relative width of
    the job's surest candidate: with `risk` 1 a node that only wins on an unsure mean loses to
    a sure one. Only the uncertainty one candidate has and another has not counts: a model
    whose intervals are the same multiple of the mean everywhere (a log-space residual
    quantile) adds nothing, where scoring by the upper end itself would multiply every run
    time by that width and make waiting look cheap next to running (the live benchmark's
    model, trained on 24 jobs, had upper ends 3.5x its means).

    Candidates whose predicted peak memory (upper bound, per worker, or the spec's
    `memory_mb_per_worker` if larger) exceeds a node's known free memory are rejected. Up to
    `max_wait_candidates` busy nodes faster than every free option are scored too, with the
    wait until their running jobs are predicted to end (measured step time x steps left, else
    the cost model); when waiting beats the best free candidate by `wait_margin` (relative)
    the job stays queued (None). A job stops waiting after `max_wait_s` in the queue, so
    waiting cannot starve it. A busy node is predicted as it will be once its jobs have left:
    idle, free memory unknown (so not memory-checked).
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
        prefetch_jobs: int = 8,
        policy_name: str = "learned",
        adjust: AdjustView | None = None,
    ) -> None:
        self.adjust = adjust
        self.prefetch_jobs = max(prefetch_jobs, 1)
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
        self._speed = model_speed(model)
        self._alike = node_alike(model)
        self._place_key = place_key(model)
        self._index: _NodeIndex | None = None
        self._round: dict[Hashable, Pred] = {}
        self._prepared = False  # the round's prefetch was the old model's: predict as needed
        self._pending = None
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
        self._pending: _Prefetch | None = None

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

    def _busy(self, job: JobView, idx: _NodeIndex, plan: _Plan,
              reserved: Set[str] | None = None) -> list[tuple[NodeIds, float, _Cand, Hashable]]:
        """The busy candidates worth waiting for, with their prediction keys (no predictions):
        (ids, wait_s, (ids, nodes as predicted), key). `reserved`: nodes taken by waiting
        jobs (default: this round's reservations)."""
        nw = job.spec.num_workers
        out = []
        reserved = self._reserved if reserved is None else reserved
        for ids, wait, after in self._busy_candidates(job, idx, plan.faster_than, reserved):
            cand = (ids, (after,) * nw)
            memo = idx._idle_key
            block = memo.get((ids[0], nw))
            if block is None:
                block = memo[(ids[0], nw)] = self._place_key(*cand)
            out.append((ids, wait, cand, (job.job_id, job.steps_left, block)))
        return out

    def prepare(self, order: Sequence[JobView], view: ClusterView,
                horizon: int | None = None) -> None:
        """Predict every candidate of the jobs this round will evaluate, on this view.

        Those are the first `max_evaluations` jobs of `order` that fit the free capacity now;
        `place` then answers from this cache while launches change the free CPUs. Predicted
        now: the first `prefetch_jobs` of them, and none past the first `horizon` jobs of
        `order` (where the caller expects the queue walk to stop). The others are predicted
        on this same view, in growing batches, when `evaluate` first asks about one of them
        (`_Prefetch`), so the round's predictions are those of predicting them all now,
        wherever the walk stops.
        """
        view = self._adjusted(view)
        self._new_round(view.time, prepared=True)
        idx = self._nodes(view)
        self._pending = _Prefetch(order, idx, self.prefetch_jobs)
        self._prefetch(len(order) if horizon is None else horizon)
        if self._pending is not None and idx.ends is None:
            self._ends_as_full_prepare()

    def _prefetch(self, upto: int, job_id: str | None = None) -> None:
        """Plan and predict more of the prepared round's jobs, in one call, as predicting them
        all in `prepare` would (on the prepared view, with no node reserved yet): until
        `job_id` has been looked at and `prefetch_jobs` more jobs that fit are covered (twice
        as many each call), or position `upto` of the order is reached."""
        pf = self._pending
        assert pf is not None
        idx, order = pf.idx, pf.order
        target = pf.covered + pf.chunk
        pf.chunk *= 2  # a walk that goes deep (filling an empty cluster) takes few calls
        todo: list[tuple[Hashable, JobView, _Cand]] = []
        while pf.pos < len(order) and pf.covered < self.max_evaluations:
            if (job_id is None or job_id in pf.seen) and (pf.pos >= upto
                                                          or pf.covered >= target):
                break
            job = order[pf.pos]
            pf.pos += 1
            pf.seen.add(job.job_id)
            plan = self._plan(job, idx)
            if plan is not None:
                pf.covered += 1
                if idx.ends is None and pf.dur is not None and self._may_wait(job, idx):
                    idx.ends = self._prepared_ends(idx, pf.dur)
                todo += [(k, job, c) for k, c in zip(plan.keys, plan.cands, strict=True)]
                todo += [(k, job, c) for _, _, c, k in self._busy(job, idx, plan, frozenset())]
        if pf.pos >= len(order) or pf.covered >= self.max_evaluations:
            self._pending = None
        self._fill(todo, idx.view)

    def _ends_as_full_prepare(self) -> None:
        """Build the prepared view's end times now if a full `prepare` would have (one of the
        jobs it covers may wait for a busy node) and that build would predict: `_node_ends`
        predicts running jobs without a known duration on the view it is first built for, and
        keeps those predictions. Otherwise when it is first built makes no difference to what
        it returns (its incremental updates equal a rebuild)."""
        pf = self._pending
        assert pf is not None
        idx, covered = pf.idx, pf.covered
        dur = self._running_dur
        if not any(j.state in _RUNNING_STATES and j.node_ids and not j.recent_step_time_s
                   and (j.job_id, j.steps_done) not in dur for j in idx.view.jobs):
            pf.dur = dict(dur)  # for `_prepared_ends`, should a later prefetch need them
            return
        for job in pf.order[pf.pos:]:
            if covered >= self.max_evaluations:
                return
            if self._plan(job, idx) is not None:
                covered += 1
                if self._may_wait(job, idx):
                    self._node_ends(idx)
                    return

    def _key(self, job: JobView, cand: _Cand) -> Hashable:
        return (job.job_id, job.steps_left, self._place_key(cand[0], cand[1]))

    def _fill(self, todo: Sequence[tuple[Hashable, JobView, _Cand]], view: ClusterView) -> None:
        """Predict the candidates of `todo` not in the round's cache yet, in one call."""
        missing: dict[Hashable, tuple[JobView, Sequence[NodeView]]] = {}
        for k, job, (_, nodes) in todo:
            if k not in self._round and k not in missing:
                missing[k] = (job, nodes)
        if not missing:
            return
        preds = predict(self.cost_model, list(missing.values()), view)
        self._round.update(zip(missing, preds, strict=True))

    def _predictions(self, todo: Sequence[tuple[Hashable, JobView, _Cand]], view: ClusterView
                     ) -> list[Pred]:
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
        got = None
        if prev is not None and state is not None and state.unique:
            got = _changed_running(state.view_jobs, view.jobs, prev)
        unique = True
        if got is not None:
            running, changed = got
        else:
            running = {}
            changed = []
            for j in view.jobs:
                if j.state in _RUNNING_STATES and j.node_ids:
                    running[j.job_id] = j
                    if prev is not None and prev.get(j.job_id) is not j:
                        changed.append(j)
            unique = len({j.job_id for j in view.jobs}) == len(view.jobs)
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
        for (j, _), p in zip(pairs, predict(self.cost_model, pairs, view), strict=True):
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
        self._ends_state = _EndsState(view.time, running, entries, ends, pending, finite,
                                      view.jobs, unique)
        idx.ends = ends
        return ends

    def _may_wait(self, job: JobView, idx: _NodeIndex) -> bool:
        """Whether `job` may wait for a busy node at all (then its busy candidates are looked
        for, which needs the view's end times)."""
        if self.max_wait_candidates <= 0 or job.state is not JobState.QUEUED:
            return False
        if job.spec.gpus_per_worker > 0:
            return False  # predicted end times count freed CPUs, not GPUs: a GPU job never waits
        return idx.view.time - job.submit_time < self.max_wait_s

    @staticmethod
    def _prepared_ends(idx: _NodeIndex, dur: dict[tuple[str, int], float]
                       ) -> dict[str, list[tuple[float, float]]]:
        """`_node_ends(idx)` as a rebuild gives it, from the durations `dur` known when the
        round was prepared, without touching the placement's state: a later view of the round
        may already have been built, and `_node_ends` on an older one would undo its updates.
        Only for a view where no running job lacks a duration (nothing to predict)."""
        now = idx.view.time
        ends: dict[str, list[tuple[float, float]]] = {}
        for j in idx.view.jobs:
            if j.state not in _RUNNING_STATES or not j.node_ids:
                continue
            if j.recent_step_time_s:
                left = j.steps_left * j.recent_step_time_s
            else:
                d = dur.get((j.job_id, j.steps_done))
                if d is None:
                    continue
                elapsed = now - j.start_time if j.start_time and not j.steps_done else 0.0
                left = max(d - elapsed, 0.0)
            entry = (now + left, j.spec.cpus_per_worker)
            for nid in j.node_ids:
                ends.setdefault(nid, []).append(entry)
        for v in ends.values():
            v.sort()
        return ends

    def _busy_candidates(self, job: JobView, idx: _NodeIndex, faster_than: float,
                         reserved: Set[str]) -> list[tuple[NodeIds, float, NodeView]]:
        """Busy nodes faster than `faster_than` that could hold the gang alone, soonest first,
        none of them `reserved`: (ids, wait_s, the node as predicted: idle once its jobs have
        left)."""
        if not self._may_wait(job, idx):
            return []
        nw = job.spec.num_workers
        pool: list[tuple[float, NodeView]] = []
        busy = idx.busy(nw * job.spec.cpus_per_worker, self._node_ends(idx), faster_than)
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

    def _memory_problem(self, job: JobView, ids: NodeIds, pred: Pred,
                        by_id: dict[str, NodeView]) -> str:
        per_worker = max(pred.rss_hi, float(job.spec.memory_mb_per_worker))
        counts: dict[str, int] = {}
        for nid in ids:
            counts[nid] = counts.get(nid, 0) + 1
        for nid, c in counts.items():
            have = by_id[nid].memory_free_mb
            if have > 0 and c * per_worker > have:
                return (f"rejected: needs {c * per_worker:.0f} MB on {short_id(nid)}, "
                        f"{have:.0f} MB free")
        return ""

    def score(self, pred: Pred, wait_s: float = 0.0, surest: float = 0.0) -> float:
        """Risk-adjusted predicted completion: wait + mean + risk * the upper end's excess over
        `surest` (the smallest relative spread, (hi - mean) / mean, among the job's
        candidates)."""
        extra = pred.duration_hi - pred.duration * (1.0 + surest)
        return wait_s + pred.duration + self.risk * max(extra, 0.0)

    def evaluate(self, job: JobView, view: ClusterView) -> list[_Scored]:
        """Every candidate considered for `job`, best first (rejected ones last)."""
        view = self._adjusted(view)
        if self._pending is not None and job.job_id not in self._pending.seen:
            self._prefetch(len(self._pending.order), job.job_id)
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
            scored.append(_Scored(ids, 0.0, p, rejected=problem))
        if self._prepared:
            busy = [b for b in busy if b[3] in self._round]
        if busy and any(not s.rejected for s in scored):
            preds = self._predictions([(k, job, c) for _, _, c, k in busy], view)
            for (ids, wait, _, _), p in zip(busy, preds, strict=True):
                scored.append(_Scored(ids, 0.0, p, wait_s=wait, busy=True))
        surest = min((_spread(s.pred) for s in scored if not s.rejected), default=0.0)
        scored = [s._replace(score=self.score(s.pred, s.wait_s, surest)) for s in scored]
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
                  f"{describe_nodes(best.node_ids, by_id)}")
        others = [s for s in scored if s is not best and not s.rejected]
        if others:
            nb = others[0]
            wait = f" after waiting {nb.wait_s:.1f} s" if nb.busy else ""
            reason += (f"; next best {nb.score:.1f} s on {describe_nodes(nb.node_ids, by_id)}"
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
