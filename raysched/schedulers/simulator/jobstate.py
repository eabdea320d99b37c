"""Per-job mutable state the simulator keeps, and the small protocol its policies implement.

Policies read a `SimJob` (what is known about a job at simulated time `now`) and return a
priority key: lower runs first. Non-oracle policies must only read `trace` fields other than
`duration_s`, `submit`, `demand`, `executed(now)` and `service(now)`; only oracle policies
(SJF, SRTF) may read `duration` / `remaining(now)`.
"""

from __future__ import annotations

from typing import Any, Protocol

from raysched.schedulers.simulator.traces import TraceJob

PENDING, QUEUED, RUNNING, DONE = 0, 1, 2, 3


class SimJob:
    """One job inside a simulation run."""

    __slots__ = (
        "idx", "trace", "submit", "duration", "demand", "part", "state", "work_done",
        "run_start", "progress_start", "speed", "alloc", "alloc_units", "first_start",
        "finish", "run_id", "preemptions", "migrations", "held_s", "pending_overhead",
        "pcache", "qentry",
    )

    def __init__(self, idx: int, trace: TraceJob, demand: float, part: int) -> None:
        self.idx = idx
        self.trace = trace
        self.submit = trace.submit_s
        self.duration = trace.duration_s
        self.demand = demand
        self.part = part
        self.state = PENDING
        self.work_done = 0.0  # seconds of work at speed 1.0, as of the last start/stop
        self.run_start = 0.0
        self.progress_start = 0.0  # run_start + restart overhead
        self.speed = 1.0
        self.alloc: tuple[tuple[int, float], ...] = ()
        self.alloc_units = 0.0
        self.first_start = -1.0
        self.finish = -1.0
        self.run_id = 0
        self.preemptions = 0
        self.migrations = 0
        self.held_s = 0.0  # wall seconds holding resources in finished runs
        self.pending_overhead = 0.0  # restart cost to pay on the next start
        self.pcache: Any = None  # free slot for the policy's per-job cache
        self.qentry: tuple = ()  # the engine's queue entry while the job waits

    def executed(self, now: float) -> float:
        """Attained work (seconds at speed 1.0) at time `now`: observable, not an oracle."""
        if self.state == RUNNING and now > self.progress_start:
            return min(self.work_done + (now - self.progress_start) * self.speed, self.duration)
        return self.work_done

    def service(self, now: float) -> float:
        """Attained service in resource-seconds (units held x wall time held), as in Tiresias."""
        held = self.held_s + (now - self.run_start if self.state == RUNNING else 0.0)
        return self.demand * held

    def remaining(self, now: float) -> float:
        """ORACLE: work left (seconds at speed 1.0). Only oracle policies may call this."""
        return max(self.duration - self.executed(now), 0.0)


class SimPolicy(Protocol):
    """What the engine needs from a policy. Lower `key` runs first (ties: submit time, index).

    `preemptive` policies are re-evaluated over running and queued jobs at every event and
    may preempt; others only order the queue. `next_change` says when a running job's key
    changes next (the engine wakes the partition then); `queued_change` says when a waiting
    job's key changes next (e.g. a Tiresias starvation promotion): the engine then calls
    `on_queued_change` and re-files the job; `on_finish` returns True when the keys
    of queued jobs changed (e.g. a retrained model) so the engine re-sorts the queues, or the
    indices of the jobs whose keys changed (e.g. siblings of the finished job) to re-file only
    those; `on_submit` may likewise return the indices of other jobs whose keys the
    submission changed (e.g. waiting siblings of a burst that just grew), or None.
    """

    name: str
    preemptive: bool
    oracle: bool

    def on_submit(self, job: SimJob, now: float) -> list[int] | None: ...

    def key(self, job: SimJob, now: float) -> Any: ...

    def next_change(self, job: SimJob, now: float) -> float | None: ...

    def queued_change(self, job: SimJob, now: float) -> float | None: ...

    def on_queued_change(self, job: SimJob, now: float) -> None: ...

    def on_finish(self, job: SimJob, now: float) -> bool | list[int]: ...
