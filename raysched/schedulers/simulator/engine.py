"""The discrete-event loop: replays a trace on a cluster under one policy, event by event.

Events are job arrivals (read in submit order), finishes and policy wake-ups (a running job's
priority changes, e.g. a Tiresias demotion, or a waiting one's, e.g. a Tiresias starvation
promotion), kept in a heap; nothing is ticked. After all
events of one instant are applied, each partition they touched gets one scheduling pass:
- non-preemptive policies: walk the partition's queue in key order and start every job that
  fits (backfill; with `backfill=False` the walk stops at the first job that does not fit);
- preemptive policies: merge running and queued jobs by key, pick the highest-priority set
  that fits the partition's capacity, start its queued members, preempting lower-priority
  running jobs only where that is what makes room for a specific job; then backfill.
Preemption and migration cost a configurable restart overhead: the job holds its resources for
that many seconds without progress when it runs again. Migration moves a running single-node
job onto a faster idle node of its partition when nothing waits there (heterogeneous speeds).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time as _time
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence

import numpy as np

from raysched.schedulers.simulator.cluster import ClusterSpec
from raysched.schedulers.simulator.jobstate import DONE, QUEUED, RUNNING, SimJob, SimPolicy
from raysched.schedulers.simulator.placement import EPS, Alloc, PartitionState
from raysched.schedulers.simulator.traces import Trace, TraceJob

FINISH, WAKE, QWAKE = 0, 1, 2  # QWAKE: a waiting job's key changes


class SimulationError(RuntimeError):
    """The simulation cannot run (e.g. jobs that fit nowhere with `strict=True`)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Knobs of one simulation run."""

    preempt_cost_s: float = 0.0  # restart overhead after a preemption
    migrate_cost_s: float = 0.0  # restart overhead after a migration
    backfill: bool = True
    migrate: bool = True  # only acts in partitions with several node speeds
    migrate_min_age_s: float = 600.0  # only move jobs that already ran this long
    record_events: bool = True
    check_invariants: bool = False  # assert capacity/bookkeeping after every instant (tests)
    strict: bool = False  # raise instead of skipping jobs that cannot run on the cluster


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimEvent:
    """One thing that happened to a job."""

    time: float
    kind: str  # submit | start | preempt | migrate | finish
    job_id: str
    nodes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimResult:
    """Everything a run produced: per-job times, the event log and the utilisation timeline."""

    policy: str
    resource: str
    capacity: float
    job_ids: tuple[str, ...]
    partitions: tuple[str, ...]
    submit: np.ndarray
    start: np.ndarray  # first start
    finish: np.ndarray
    duration: np.ndarray  # trace run time at speed 1.0
    demand: np.ndarray
    held: np.ndarray  # wall seconds holding resources (all runs, overheads included)
    preemptions: np.ndarray
    migrations: np.ndarray
    timeline_t: np.ndarray
    timeline_used: np.ndarray
    timeline_queued: np.ndarray
    timeline_running: np.ndarray
    events: tuple[SimEvent, ...]
    skipped: dict[str, int]
    wall_s: float

    @property
    def jct(self) -> np.ndarray:
        """Job completion time: finish - submit."""
        return self.finish - self.submit


class Simulator:
    """Replays traces on one cluster under one policy."""

    def __init__(
        self, cluster: ClusterSpec, policy: SimPolicy, config: EngineConfig | None = None
    ) -> None:
        self.cluster = cluster
        self.policy = policy
        self.cfg = config or EngineConfig()

    # -- setup -------------------------------------------------------------------------------
    def _build_partitions(self) -> list[PartitionState]:
        groups: dict[str, list[int]] = {}
        for k, node in enumerate(self.cluster.nodes):
            groups.setdefault(node.partition, []).append(k)
        parts = []
        for p, (name, idxs) in enumerate(groups.items()):
            nodes = [self.cluster.nodes[k] for k in idxs]
            parts.append(
                PartitionState(
                    p,
                    name,
                    [n.node_id for n in nodes],
                    [self.cluster.units(n) for n in nodes],
                    [n.speed for n in nodes],
                    self.cluster.quotas.get(name),
                )
            )
        return parts

    def _admit(
        self, trace: Sequence[TraceJob], parts: list[PartitionState]
    ) -> tuple[list[SimJob], dict[str, int]]:
        by_name = {p.name: p for p in parts}
        res = self.cluster.resource
        unit = "GPUs" if res == "gpu" else "CPUs"
        jobs: list[SimJob] = []
        skipped: dict[str, int] = {}
        first: dict[str, str] = {}

        def skip(reason: str, detail: str) -> None:
            skipped[reason] = skipped.get(reason, 0) + 1
            first.setdefault(reason, detail)

        last = -math.inf
        for tj in trace:
            if tj.submit_s < last:
                raise SimulationError(f"job {tj.job_id}: trace is not sorted by submit time")
            last = tj.submit_s
            demand = float(tj.gpus) if res == "gpu" else float(tj.cpus)
            part = by_name.get(tj.vc)
            if part is None and len(parts) == 1:
                part = parts[0]
            if part is None:
                skip("partition (VC) not in the cluster", f"job {tj.job_id}: VC {tj.vc!r}")
                continue
            if demand <= 0:
                skip(f"asks for no {unit}", f"job {tj.job_id}")
                continue
            size = part.alloc_size(demand)
            whole_nodes = demand > part.max_cap + EPS
            too_big = size > part.limit + EPS or (
                whole_nodes and sum(part.cap) + EPS < demand
            )
            if too_big:
                skip(
                    f"asks for more {unit} than its partition has",
                    f"job {tj.job_id}: {demand:g} {unit}; partition {part.name} has "
                    f"{part.limit:g}",
                )
                continue
            job = SimJob(len(jobs), tj, demand, part.index)
            part.min_demand = min(part.min_demand, demand)
            jobs.append(job)
        if skipped and self.cfg.strict:
            lines = [f"{n} job(s): {r} (e.g. {first[r]})" for r, n in skipped.items()]
            raise SimulationError("jobs that cannot run on this cluster: " + "; ".join(lines))
        return jobs, skipped

    # -- run -----------------------------------------------------------------------------------
    def run(
        self,
        trace: Trace | Sequence[TraceJob],
        progress: Callable[[int], None] | None = None,
    ) -> SimResult:
        """Simulate until every admitted job finished; `progress(n)` gets finished-job deltas."""
        t0 = _time.perf_counter()
        trace_jobs = trace.jobs if isinstance(trace, Trace) else tuple(trace)
        skipped_in = dict(trace.skipped) if isinstance(trace, Trace) else {}
        parts = self._build_partitions()
        jobs, skipped = self._admit(trace_jobs, parts)
        self.parts, self.jobs = parts, jobs
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.rekey = False
        self.rekey_jobs: list[int] = []  # jobs whose key a policy changed (e.g. new evidence)
        self.events: list[SimEvent] = []
        self.n_queued = 0
        self.n_running = 0
        self.n_done = 0
        pol, cfg = self.policy, self.cfg
        self.queued_change = getattr(pol, "queued_change", None)
        tl_t: list[float] = []
        tl_used: list[float] = []
        tl_q: list[int] = []
        tl_r: list[int] = []
        heap = self.heap
        n, ai = len(jobs), 0
        reported = 0
        while ai < n or heap:
            if heap and (ai >= n or heap[0][0] <= jobs[ai].submit):
                now = heap[0][0]
            else:
                now = jobs[ai].submit
            dirty: set[int] = set()
            while heap and heap[0][0] <= now:
                _, kind, _, idx, run_id = heapq.heappop(heap)
                job = jobs[idx]
                if job.run_id != run_id or job.state != (QUEUED if kind == QWAKE else RUNNING):
                    continue  # stale: the job was stopped or restarted since
                dirty.add(job.part)
                if kind == FINISH:
                    self._finish(job, now)
                elif kind == WAKE:
                    self._arm_wake(job, now)
                else:
                    part = self.parts[job.part]
                    self._dequeue(part, job.qentry)
                    pol.on_queued_change(job, now)
                    self._enqueue(part, job, now)
            while ai < n and jobs[ai].submit <= now:
                self._arrive(jobs[ai], now)
                dirty.add(jobs[ai].part)
                ai += 1
            if self.rekey:
                self._rekey_all(now)
                dirty.update(p.index for p in parts if p.queued)
            elif self.rekey_jobs:
                dirty.update(self._rekey_some(now))
            if not dirty:
                continue  # only stale events at this instant
            for p in sorted(dirty):
                self._schedule(parts[p], now)
            if cfg.check_invariants:
                self._check()
            tl_t.append(now)
            tl_used.append(self._used())
            tl_q.append(self.n_queued)
            tl_r.append(self.n_running)
            if progress is not None and self.n_done - reported >= 500:
                progress(self.n_done - reported)
                reported = self.n_done
        if progress is not None and self.n_done > reported:
            progress(self.n_done - reported)
        for reason, count in skipped.items():
            skipped_in[reason] = skipped_in.get(reason, 0) + count
        return SimResult(
            policy=getattr(pol, "name", type(pol).__name__),
            resource=self.cluster.resource,
            capacity=self.cluster.capacity(),
            job_ids=tuple(j.trace.job_id for j in jobs),
            partitions=tuple(parts[j.part].name for j in jobs),
            submit=np.array([j.submit for j in jobs], dtype=float),
            start=np.array([j.first_start for j in jobs], dtype=float),
            finish=np.array([j.finish for j in jobs], dtype=float),
            duration=np.array([j.duration for j in jobs], dtype=float),
            demand=np.array([j.demand for j in jobs], dtype=float),
            held=np.array([j.held_s for j in jobs], dtype=float),
            preemptions=np.array([j.preemptions for j in jobs], dtype=int),
            migrations=np.array([j.migrations for j in jobs], dtype=int),
            timeline_t=np.array(tl_t, dtype=float),
            timeline_used=np.array(tl_used, dtype=float),
            timeline_queued=np.array(tl_q, dtype=int),
            timeline_running=np.array(tl_r, dtype=int),
            events=tuple(self.events),
            skipped=skipped_in,
            wall_s=_time.perf_counter() - t0,
        )

    def _used(self) -> float:
        return float(sum(p.used for p in self.parts))

    # -- job transitions ---------------------------------------------------------------------------
    def _log(self, now: float, kind: str, job: SimJob, alloc: Alloc = ()) -> None:
        if self.cfg.record_events:
            part = self.parts[job.part]
            nodes = tuple(part.node_ids[k] for k, _ in alloc)
            self.events.append(SimEvent(time=now, kind=kind, job_id=job.trace.job_id, nodes=nodes))

    def _arrive(self, job: SimJob, now: float) -> None:
        changed = self.policy.on_submit(job, now)
        if changed:  # e.g. a new burst member changed how its waiting siblings rank
            self.rekey_jobs.extend(changed)
        job.state = QUEUED
        self.n_queued += 1
        self._enqueue(self.parts[job.part], job, now)
        self._log(now, "submit", job)

    def _push(self, t: float, kind: int, job: SimJob) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, job.idx, job.run_id))

    def _arm_wake(self, job: SimJob, now: float) -> None:
        if self.policy.preemptive:
            t = self.policy.next_change(job, now)
            if t is not None and t > now:
                self._push(t, WAKE, job)

    def _start(self, job: SimJob, part: PartitionState, alloc: Alloc, now: float) -> None:
        overhead, job.pending_overhead = job.pending_overhead, 0.0
        job.state = RUNNING
        job.run_start = now
        job.progress_start = now + overhead
        job.speed = part.job_speed(alloc)
        job.alloc = alloc
        job.alloc_units = sum(u for _, u in alloc)
        if job.first_start < 0:
            job.first_start = now
        job.run_id += 1
        self._push(job.progress_start + (job.duration - job.work_done) / job.speed, FINISH, job)
        self._arm_wake(job, now)
        part.running[job.idx] = None
        self.n_queued -= 1
        self.n_running += 1

    def _stop(self, job: SimJob, part: PartitionState, now: float) -> None:
        job.work_done = job.executed(now)
        job.held_s += now - job.run_start
        part.release(job.alloc, job.idx)
        job.run_id += 1
        del part.running[job.idx]
        self.n_running -= 1

    def _finish(self, job: SimJob, now: float) -> None:
        part = self.parts[job.part]
        self._stop(job, part, now)
        job.work_done = job.duration
        job.state = DONE
        job.finish = now
        self.n_done += 1
        self._log(now, "finish", job, job.alloc)
        job.alloc = ()
        changed = self.policy.on_finish(job, now)
        if changed is True:
            self.rekey = True
        elif changed:
            self.rekey_jobs.extend(changed)

    def _preempt(self, job: SimJob, part: PartitionState, now: float) -> None:
        alloc = job.alloc
        self._stop(job, part, now)
        job.alloc = ()
        job.state = QUEUED
        job.preemptions += 1
        job.pending_overhead = self.cfg.preempt_cost_s
        self.n_queued += 1
        self._log(now, "preempt", job, alloc)

    def _enqueue(self, part: PartitionState, job: SimJob, now: float) -> None:
        q = part.queues.get(job.demand)
        if q is None:
            q = part.queues[job.demand] = []
        entry = (self.policy.key(job, now), job.submit, job.idx)
        job.qentry = entry
        insort(q, entry)
        if self.queued_change is not None:
            t = self.queued_change(job, now)
            if t is not None and t > now:
                self._push(t, QWAKE, job)

    def _dequeue(self, part: PartitionState, entry: tuple) -> None:
        q = part.queues[self.jobs[entry[2]].demand]
        del q[bisect_left(q, entry)]

    def _rekey_all(self, now: float) -> None:
        self.rekey = False
        for part in self.parts:
            for d, q in part.queues.items():
                part.queues[d] = q = sorted(
                    (self.policy.key(self.jobs[i], now), s, i) for _, s, i in q
                )
                for entry in q:
                    self.jobs[entry[2]].qentry = entry

    def _rekey_some(self, now: float) -> set[int]:
        """Re-file the waiting jobs among `rekey_jobs`; returns the partitions touched."""
        touched: set[int] = set()
        for i in dict.fromkeys(self.rekey_jobs):
            job = self.jobs[i]
            if job.state == QUEUED:
                part = self.parts[job.part]
                self._dequeue(part, job.qentry)
                self._enqueue(part, job, now)
                touched.add(job.part)
            elif job.state == RUNNING:
                touched.add(job.part)
        self.rekey_jobs.clear()
        return touched

    # -- scheduling passes -------------------------------------------------------------------------
    def _schedule(self, part: PartitionState, now: float) -> None:
        if self.policy.preemptive and part.queued:
            self._schedule_preemptive(part, now)
        else:
            self._fill(part, now)
        if self.cfg.migrate and len(part.speeds) > 1 and not part.queued and part.running:
            self._migrate_pass(part, now)

    def _fill(self, part: PartitionState, now: float) -> None:
        """Start queued jobs in key order wherever they fit (no preemption). With backfill, the
        best waiting job among the demand sizes that fit starts next; without, the walk stops
        at the first job that does not fit. O(started x distinct demands)."""
        queues = part.queues
        backfill = self.cfg.backfill
        while True:
            best: tuple | None = None
            best_q: list[tuple] | None = None
            for d, q in queues.items():
                if q and (best is None or q[0] < best) and (not backfill or part.fits(d)):
                    best, best_q = q[0], q
            if best is None or best_q is None:
                return
            job = self.jobs[best[2]]
            alloc = part.place(job.demand, job.idx)
            if alloc is None:
                return  # without backfill: the head does not fit
            del best_q[0]
            self._start(job, part, alloc, now)
            self._log(now, "start", job, alloc)

    def _schedule_preemptive(self, part: PartitionState, now: float) -> None:
        pol, jobs = self.policy, self.jobs
        runs = sorted((pol.key(jobs[i], now), jobs[i].submit, i) for i in part.running)
        head = part.best_queued()
        if not runs or head is None or head > runs[-1]:
            self._fill(part, now)  # every queued job ranks below every running one
            return
        cap_left = part.limit
        keep: set[int] = set()
        desired: list[tuple] = []
        waiting = heapq.merge(*(q for q in part.queues.values() if q))
        nxt = next(waiting, None)
        ri, nr = 0, len(runs)
        while cap_left + EPS >= part.min_demand and (ri < nr or nxt is not None):
            if nxt is None or (ri < nr and runs[ri] <= nxt):
                idx = runs[ri][2]
                ri += 1
                size = jobs[idx].alloc_units
                if size <= cap_left + EPS:
                    keep.add(idx)
                    cap_left -= size
            else:
                size = part.alloc_size(jobs[nxt[2]].demand)
                if size <= cap_left + EPS:
                    desired.append(nxt)
                    cap_left -= size
                elif not self.cfg.backfill:
                    break
                nxt = next(waiting, None)
        # victims, lowest priority first, with their sort entries
        rank = {e[2]: e for e in reversed(runs) if e[2] not in keep}
        preempted: list[int] = []
        for entry in desired:
            job = jobs[entry[2]]
            alloc = part.place(job.demand, job.idx)
            if alloc is None and rank:
                alloc = self._make_room(part, job, entry, rank, preempted, now)
            if alloc is None:
                continue
            self._dequeue(part, entry)
            self._start(job, part, alloc, now)
            self._log(now, "start", job, alloc)
        if self.cfg.backfill:
            self._fill(part, now)
        for idx in preempted:
            self._enqueue(part, jobs[idx], now)

    def _make_room(
        self,
        part: PartitionState,
        job: SimJob,
        entry: tuple,
        victims: dict[int, tuple],
        preempted: list[int],
        now: float,
    ) -> Alloc | None:
        """Preempt the fewest lowest-priority victims that let `job` start; None if none do.
        Only running jobs ranked below `job` (sort entry above `entry`) may be preempted."""
        rank = {i: e for i, e in victims.items() if e > entry}
        if not rank:
            return None
        d = job.demand
        if part.limit - part.used + sum(self.jobs[i].alloc_units for i in rank) + EPS < (
            part.alloc_size(d)
        ):
            return None
        if d <= part.max_cap + EPS:
            best: tuple[float, int, list[int]] | None = None
            for node in range(part.n):
                if part.cap[node] + EPS < d:
                    continue
                free = part.free[node]
                vs = sorted(((rank[i], i) for i in part.occ[node] if i in rank), reverse=True)
                chosen: list[int] = []
                lost = 0.0
                for _, i in vs:
                    if free + EPS >= d:
                        break
                    chosen.append(i)
                    free += part.occ[node][i]
                    lost += self.jobs[i].alloc_units
                if free + EPS >= d and chosen:
                    cand = (lost, node, chosen)
                    if best is None or cand[:2] < best[:2]:
                        best = cand
            if best is None:
                return None
            _, node, chosen = best
            self._evict(part, chosen, victims, preempted, now)
            if part.used + d > part.limit + EPS:
                return None
            return part.take_on(node, d, job.idx)
        # whole nodes: nodes whose occupants are all victims, least occupied first
        cands = []
        for node in range(part.n):
            occ = part.occ[node]
            if all(i in rank for i in occ):
                cands.append((sum(self.jobs[i].alloc_units for i in occ), node))
        cands.sort()
        chosen_nodes, got = [], 0.0
        for _, node in cands:
            chosen_nodes.append(node)
            got += part.cap[node]
            if got + EPS >= d:
                break
        if got + EPS < d:
            return None
        evicted = sorted({i for node in chosen_nodes for i in part.occ[node]})
        self._evict(part, evicted, victims, preempted, now)
        if part.used + part.alloc_size(d) > part.limit + EPS:
            return None
        return part.take_whole(chosen_nodes, job.idx)

    def _evict(
        self,
        part: PartitionState,
        victims: list[int],
        victims_left: dict[int, tuple],
        preempted: list[int],
        now: float,
    ) -> None:
        for i in victims:
            self._preempt(self.jobs[i], part, now)
            del victims_left[i]
            preempted.append(i)

    def _migrate_pass(self, part: PartitionState, now: float) -> None:
        """Move long-running single-node jobs from slow nodes to idle faster ones."""
        cands = sorted(
            (self.jobs[i].speed, i) for i in part.running
            if len(self.jobs[i].alloc) == 1 and self.jobs[i].speed < part.speeds[0]
        )
        for _, i in cands:
            job = self.jobs[i]
            if job.executed(now) < self.cfg.migrate_min_age_s:
                continue
            alloc = part.place(job.demand, job.idx, faster_than=job.speed)
            if alloc is None:
                continue
            old = job.alloc
            # release the old node, keep the new allocation, restart with the migration cost
            job.work_done = job.executed(now)
            job.held_s += now - job.run_start
            part.release(old, job.idx)
            del part.running[job.idx]
            job.migrations += 1
            job.pending_overhead = self.cfg.migrate_cost_s
            self.n_running -= 1
            self.n_queued += 1
            self._start(job, part, alloc, now)
            self._log(now, "migrate", job, alloc)

    def _check(self) -> None:
        for part in self.parts:
            part.check()
            for i in part.running:
                job = self.jobs[i]
                assert job.state == RUNNING and job.alloc, job.idx
        assert self.n_running == sum(len(p.running) for p in self.parts)
        assert self.n_queued == sum(p.queued for p in self.parts)
