"""Simulator policies: FIFO, SJF and SRTF (oracle bounds), Tiresias 2D-LAS, QSSF, learned.

Each is a `SimPolicy` (see jobstate.py): a priority key of a job's state at time `now`, lower
first. Mapping to the live interface (policies/base.py): `key` is what an `OrderingPolicy`
sorts the queue by (`KeyOrdering` below adapts it for `JobView`s); the engine's placement rule
plays the `PlacementPolicy`; preemption of running jobs by higher-priority ones is what the
live `RebalancePolicy` would express as migrations to nowhere (checkpoint and requeue).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from raysched.schedulers.simulator.jobstate import RUNNING, SimJob
from raysched.schedulers.simulator.online_predictor import History, OnlineDurationModel
from raysched.schedulers.simulator.per_vc_model import PerVcModel
from raysched.schedulers.types import ClusterView, JobView

POLICY_NAMES: tuple[str, ...] = ("fifo", "sjf", "srtf", "tiresias", "qssf", "learned")
RANKS: tuple[str, ...] = ("gittins", "mean", "sprpt")


class _Base:
    name = "base"
    preemptive = False
    oracle = False

    def on_submit(self, job: SimJob, now: float) -> None:
        """Called once when the job enters the queue."""

    def key(self, job: SimJob, now: float) -> Any:
        raise NotImplementedError

    def next_change(self, job: SimJob, now: float) -> float | None:
        return None

    def queued_change(self, job: SimJob, now: float) -> float | None:
        return None

    def on_queued_change(self, job: SimJob, now: float) -> None:
        """Called when a waiting job's `queued_change` time came; the engine then re-files it."""

    def on_finish(self, job: SimJob, now: float) -> bool:
        return False


class FifoPolicy(_Base):
    """First submitted first (backfilling behind a head that does not fit)."""

    name = "fifo"

    def key(self, job: SimJob, now: float) -> float:
        return job.submit


class SjfPolicy(_Base):
    """ORACLE shortest job first, non-preemptive: a bound, not a contender."""

    name = "sjf"
    oracle = True

    def key(self, job: SimJob, now: float) -> float:
        return job.duration


class SrtfPolicy(_Base):
    """ORACLE shortest remaining time first, preemptive: a bound, not a contender."""

    name = "srtf"
    oracle = True
    preemptive = True

    def key(self, job: SimJob, now: float) -> float:
        return job.remaining(now)


class TiresiasPolicy(_Base):
    """Tiresias 2D-LAS: discretised attained service (units x seconds held) picks the priority
    queue (thresholds in unit-seconds; default one boundary at 5 GPU-hours, as Helios' Philly
    implementation, and better than 1 GPU-hour on the tuning week 2017-09-24..30); inside a
    queue running jobs keep running and waiting ones go FIFO by submit time (as in Tiresias'
    simulator); jobs crossing a threshold are demoted and may be preempted by jobs of a higher
    queue.

    Starvation avoidance (Tiresias' PROMOTEKNOB): a preempted job that has waited
    `promote_knob` x the wall time it ran since its last promotion goes back to the highest
    queue, its attained service counted afresh from there. `promote_knob=None` disables it."""

    name = "tiresias"
    preemptive = True

    def __init__(
        self, thresholds: Sequence[float] = (18000.0,), promote_knob: float | None = None
    ) -> None:
        self.thresholds = sorted(float(t) for t in thresholds)
        self.promote_knob = promote_knob

    def on_submit(self, job: SimJob, now: float) -> None:
        job.pcache = 0.0  # attained service at the last promotion

    def _service(self, job: SimJob, now: float) -> float:
        return job.service(now) - (job.pcache or 0.0)

    def key(self, job: SimJob, now: float) -> tuple[int, int, float]:
        level = bisect_right(self.thresholds, self._service(job, now))
        return (level, 0 if job.state == RUNNING else 1, job.submit)

    def next_change(self, job: SimJob, now: float) -> float | None:
        s = self._service(job, now)
        level = bisect_right(self.thresholds, s)
        if level >= len(self.thresholds):
            return None
        return now + (self.thresholds[level] - s) / job.demand + 1e-6

    def queued_change(self, job: SimJob, now: float) -> float | None:
        """When a waiting job below the highest queue is promoted (None: never)."""
        if self.promote_knob is None:
            return None
        s = self._service(job, now)
        if bisect_right(self.thresholds, s) == 0:
            return None
        return now + self.promote_knob * s / job.demand

    def on_queued_change(self, job: SimJob, now: float) -> None:
        job.pcache = job.service(now)  # promoted: back to the highest queue


class QssfPolicy(_Base):
    """Helios-style quasi-shortest-service-first: non-preemptive, by predicted GPU time
    (units x history median run time of the job's group among already-finished jobs)."""

    name = "qssf"

    def __init__(self) -> None:
        self.history = History()

    def on_submit(self, job: SimJob, now: float) -> None:
        job.pcache = job.demand * math.exp(self.history.estimate(job.trace))

    def key(self, job: SimJob, now: float) -> float:
        return job.pcache

    def on_finish(self, job: SimJob, now: float) -> bool:
        self.history.observe(job.trace, job.duration)  # the job finished: its run time is known
        return False


class LearnedPolicy(_Base):
    """Preemptive, by the learned Gittins rank x units: predicted remaining time given the work
    already done, from a model trained online on finished jobs only (online_predictor.py).

    The rank is re-evaluated when a running job's attained work crosses the next point of a
    geometric age grid (`first_age_s` x `age_growth`^k), so priorities change in steps and the
    engine needs no ticks. `rank="mean"` orders by expected remaining time instead.

    Optionally, like Tiresias' discretised queues, ranks are binned into classes `class_base`^k
    apart with FIFO inside a class (within a class running jobs keep running). The default
    (`class_base=None`) orders by the raw rank and guards preemption with the uncertainty
    margin below instead: on the tuning week 2017-09-24..30 that is 6.65 h avg JCT vs 6.74 h
    for factor-of-two classes.

    When a job finishes, the model re-predicts the still-active members of its submission burst
    (online_predictor.py) and only those are re-filed (`on_finish` returns their indices).
    With `scouts` (off by default), only the first member (its scout) of a burst none of whose
    members finished yet is ranked by the Gittins rank, which rewards probing a job to see if
    it is short; its siblings are ranked by their expected remaining time until the scout (or
    any member) finishes and re-predicts them: one run tells the whole burst's duration, so
    probing every member at once buys nothing but preemptions. It helps on the contended
    tuning weeks but costs 2.8% on 2017-09-24..30 on the contended cluster, so it is not the
    default (BENCHMARKS.md, "Simulator on Philly").

    Where scouts apply can be narrowed (each off by default; a job not deferred is ranked by
    the Gittins rank as without scouts): `scouts_own_only` defers only jobs decided by their
    VC's own model (with `per_vc_after`: small VCs, decided by the shared model, never defer);
    `scouts_min_burst` k defers only members of a burst with at least k members submitted so
    far (when the k-th arrives, its earlier waiting siblings are deferred too and re-filed);
    `scouts_max_units` u defers only jobs asking for at most u units (GPUs). With the hybrid
    model below (`per_vc_after=200`), `scouts_max_units=1` scores best on the sized tuning
    weeks, but none of the three passes the 2% guard on 2017-09-24..30 contended, so none
    is the default (BENCHMARKS.md, "Simulator on Philly").

    With `per_vc` (off by default) each VC gets its own untrained copy of `model`
    (per_vc_model.py): a VC then decides in the full cluster exactly as it does replayed alone.
    With `per_vc_after` n > 0, `model` stays as a shared model that learns from every VC, and a
    job is decided by its VC's own copy once that copy has n finished jobs (before: by `model`).

    Preemption guards (a running job's rank is what a waiting one must beat): the running job's
    rank is divided by `hysteresis` x exp(`preempt_z` x s), s being the s.d. of the log-duration
    residuals behind its prediction, so a waiting job preempts only when it ranks better by a
    margin that grows with how uncertain the running job's prediction is (tight burst pools:
    small margin; a noisy VC: a factor of several; default `preempt_z=1`); and for the first
    `min_run_s` seconds of a run (default 0) a job cannot be preempted at all. A job that
    outlives its prediction is ranked by its conditional remaining time given its attained work
    (the Gittins rank or `rank="mean"`)."""

    name = "learned"
    preemptive = True

    def __init__(
        self,
        model: OnlineDurationModel | None = None,
        *,
        rank: str = "gittins",
        first_age_s: float = 60.0,
        age_growth: float = math.sqrt(2.0),
        by_units: bool = True,
        class_base: float | None = None,
        preemptive: bool = True,
        hysteresis: float = 1.0,
        preempt_z: float = 1.0,
        min_run_s: float = 0.0,
        scouts: bool = False,
        scouts_own_only: bool = False,
        scouts_min_burst: int = 0,
        scouts_max_units: float | None = None,
        per_vc: bool = False,
        per_vc_after: int = 0,
    ) -> None:
        if rank not in RANKS:
            raise ValueError(f"rank must be one of {', '.join(RANKS)}, got {rank!r}")
        if scouts_own_only and not (per_vc and per_vc_after > 0):
            raise ValueError("scouts_own_only needs per_vc=True and per_vc_after > 0")
        if scouts_min_burst < 0:
            raise ValueError(f"scouts_min_burst must be >= 0, got {scouts_min_burst}")
        self.model: OnlineDurationModel | PerVcModel = model or OnlineDurationModel()
        if per_vc:  # one untrained copy of `model` per VC (`model` itself stays the shared one)
            params, shared = self.model.get_params(), self.model
            self.model = PerVcModel(
                lambda: OnlineDurationModel(**params),
                shared=shared if per_vc_after > 0 else None, own_after=per_vc_after,
            )
        self.per_vc, self.per_vc_after = per_vc, per_vc_after
        self.rank = rank
        self.first_age_s = first_age_s
        self.log_growth = math.log(age_growth)
        self.by_units = by_units
        self.log_class_base = math.log(class_base) if class_base else None
        self.preemptive = preemptive  # False: order the queue by rank at age 0, never preempt
        self.hysteresis = hysteresis
        self.preempt_z = preempt_z
        self.min_run_s = min_run_s
        self.scouts = scouts
        self.scouts_own_only = scouts_own_only
        self.scouts_min_burst = scouts_min_burst
        self.scouts_max_units = scouts_max_units
        self.refit_times: list[float] = []  # simulated times at which the model changed

    def _bucket(self, age: float) -> int:
        if age < self.first_age_s:
            return 0
        return 1 + int(math.log(age / self.first_age_s) / self.log_growth + 1e-9)

    def _age_of(self, bucket: int) -> float:
        return 0.0 if bucket == 0 else self.first_age_s * math.exp((bucket - 1) * self.log_growth)

    def on_submit(self, job: SimJob, now: float) -> list[int] | None:
        self.model.submit(job.idx, job.trace)
        job.pcache = None
        if self.scouts and self.scouts_min_burst > 1:  # siblings deferred from now on
            return self.model.burst_reached(job.idx, self.scouts_min_burst) or None
        return None

    def _deferred(self, job: SimJob) -> bool:
        """Whether scouts rank this job by its expected remaining time (see the class doc)."""
        if self.scouts_max_units is not None and job.demand > self.scouts_max_units:
            return False
        model = self.model
        if self.scouts_own_only and isinstance(model, PerVcModel) and model.shared_decides(
            job.idx
        ):
            return False
        return model.deferred(job.idx, self.scouts_min_burst)

    def key(self, job: SimJob, now: float) -> float | tuple[int, int, float]:
        cache = job.pcache
        version = self.model.key_version(job.idx)
        if (
            cache is not None
            and now < cache[1]
            and cache[0] == version
            and cache[2] == job.run_id
        ):
            return cache[3]
        done = job.executed(now)
        bucket = self._bucket(done)
        age = self._age_of(bucket)
        if self.scouts and self._deferred(job):
            r = self.model.expected_remaining(job.idx, age)  # no probing: the scout probes
        elif self.rank == "gittins":
            r = self.model.rank(job.idx, age)
        elif self.rank == "mean":
            r = self.model.expected_remaining(job.idx, age)
        else:
            r = self.model.predicted_remaining(job.idx, age)
        value = r * job.demand if self.by_units else r
        running = job.state == RUNNING
        valid = self._crossing(job, now, done, bucket) if running else math.inf
        protected = False
        if running:
            spread = self.model.spread(job.idx) if self.preempt_z else 0.0
            if math.isnan(spread):
                spread = 0.0
            value /= self.hysteresis * math.exp(self.preempt_z * spread)
            until = job.progress_start + self.min_run_s
            if now < until:
                protected, valid = True, min(valid, until + 1e-6)
        if self.log_class_base is not None:
            level = math.floor(math.log(max(value, 1.0)) / self.log_class_base)
            value = (-(1 << 30) if protected else level, 0 if running else 1, job.submit)
        elif protected:
            value = -math.inf
        job.pcache = (version, valid, job.run_id, value)
        return value

    def _crossing(self, job: SimJob, now: float, done: float, bucket: int) -> float:
        """When a running job's attained work reaches the next age-grid point."""
        nxt = self._age_of(bucket + 1)
        return max(now, job.progress_start) + (nxt - done) / job.speed + 1e-6

    def next_change(self, job: SimJob, now: float) -> float | None:
        done = job.executed(now)
        t = self._crossing(job, now, done, self._bucket(done))
        until = job.progress_start + self.min_run_s
        return min(t, until + 1e-6) if now < until else t

    def on_finish(self, job: SimJob, now: float) -> bool | list[int]:
        changed = self.model.finish(job.idx, job.trace, job.duration)  # finished: now known
        if changed:
            self.refit_times.append(now)
            return True
        return self.model.changed_  # siblings of its submission burst


def make_policy(name: str, **kwargs: Any) -> _Base:
    """Build a policy by name (one of POLICY_NAMES)."""
    table: dict[str, type[_Base]] = {
        "fifo": FifoPolicy,
        "sjf": SjfPolicy,
        "srtf": SrtfPolicy,
        "tiresias": TiresiasPolicy,
        "qssf": QssfPolicy,
        "learned": LearnedPolicy,
    }
    if name not in table:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
    return table[name](**kwargs)


class KeyOrdering:
    """Adapts a stateless simulator policy's key to the live `OrderingPolicy` interface (FIFO;
    Tiresias, where every queued live job counts as having no attained service yet)."""

    def __init__(self, policy: _Base) -> None:
        if not isinstance(policy, FifoPolicy | TiresiasPolicy):
            raise ValueError(f"policy {policy.name!r} needs simulator state; use fifo or tiresias")
        self.policy = policy

    def order(self, queued: Sequence[JobView], cluster: ClusterView) -> list[JobView]:
        from raysched.schedulers.simulator.traces import TraceJob

        def key(j: JobView) -> tuple:
            tj = TraceJob(
                job_id=j.job_id, submit_s=j.submit_time, duration_s=0.0,
                cpus=j.spec.total_cpus, user=j.spec.user, name=j.spec.name,
            )
            sj = SimJob(0, tj, j.spec.total_cpus, 0)
            return (self.policy.key(sj, cluster.time), j.submit_time, j.job_id)

        return sorted(queued, key=key)
