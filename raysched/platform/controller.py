"""The controller: one named Ray actor on the head node that owns the queue and applies decisions.

Each round (on submit, on finish, on step reports, and on a timer) it reaps finished runs,
observes the cluster, asks the policy to order the queue and place jobs, and launches what was
placed. Every job's state lives in the telemetry store and moves only along the state machine
in `raysched.schedulers.types`, so a restarted controller picks the queue up where it was.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray

from raysched.jobs.base import JobContext, JobOutcome, StepRecord
from raysched.platform import launcher
from raysched.platform.cluster_view import observe_cluster
from raysched.platform.interference import interference_dir
from raysched.platform.metrics import ControllerMetrics
from raysched.platform.migration_cost import measured_migration_cost
from raysched.platform.telemetry import TelemetryError, TelemetryStore, UnknownJob
from raysched.schedulers.decisions import Placement, RebalanceDecision
from raysched.schedulers.policies.base import SchedulingPolicy, place_in_order
from raysched.schedulers.policies.registry import make_policy, needs_cost_model
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView

log = logging.getLogger("raysched.controller")

ACTIVE = (JobState.PLACED, JobState.RUNNING, JobState.MIGRATING)


@dataclasses.dataclass
class _Run:
    """One attempt of a job that the controller launched and is watching."""

    ref: ray.ObjectRef
    attempt: int
    node_ids: tuple[str, ...]
    cpus_per_worker: float
    workers: int
    launched: float
    gpus_per_worker: int = 0
    steps_seen: int = 0
    recent_step_times: list[float] = dataclasses.field(default_factory=list)
    first_step: int | None = None  # the step this attempt started at (after a resume)
    baseline_step_times: list[float] = dataclasses.field(default_factory=list)
    observed_nodes: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """Settings of one controller."""

    store_path: Path
    storage_dir: Path
    policy: str | SchedulingPolicy = "least_loaded"  # a name, or a built policy (benchmarks)
    round_interval_s: float = 1.0
    report_every: int = 5
    retrain_every: int = 10  # finished jobs between cost-model versions
    node_sample_every_s: float = 5.0
    baseline_steps: int = 10  # early steps of an attempt that make its baseline step time


class Controller:
    """The controller's logic; `ControllerActor` below is the Ray actor around it."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        # Predictions are small batches: one BLAS/OpenMP thread is faster than many on a busy
        # head node, and leaves the cores to the jobs.
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        self.store = TelemetryStore(config.store_path)
        self.metrics = ControllerMetrics()
        self._registry = None
        self.cost_model = None
        if isinstance(config.policy, SchedulingPolicy):
            self.policy = config.policy
        else:
            if needs_cost_model(config.policy):
                self.cost_model = self._load_cost_model()
            self.policy = make_policy(config.policy, self.cost_model)
        self._runs: dict[str, _Run] = {}
        self._degraded: set[str] = set()
        self._last_sample = 0.0
        self._retraining = threading.Lock()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._node_id = ray.get_runtime_context().get_node_id()
        self._migration_costs = self.store.migration_downtimes()[-20:]
        self._startup_delays = self.store.startup_delays()[-20:]
        self._migrating_since: dict[str, tuple[float, int]] = {}  # job -> (when, attempt)
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="raysched-rounds", daemon=True)
        self._thread.start()
        self._watcher = threading.Thread(target=self._watch_finishes, name="raysched-finishes",
                                         daemon=True)
        self._watcher.start()

    # -- the cost model ------------------------------------------------------------------------

    def _load_cost_model(self) -> Any:
        """The promoted cost model, else one fitted now on what the store holds (cold start)."""
        from raysched.platform.model_registry import ModelRegistry
        from raysched.schedulers.predictor.cost_model import CostModel, IncompatibleModelError

        self._registry = ModelRegistry(self.store, retrain_every=self.config.retrain_every)
        try:
            model = self._registry.load_promoted()
        except IncompatibleModelError as exc:  # its file stays as it is; `raysched model train`
            log.warning("%s; fitting a cost model on the store for this run instead", exc)
            model = None
        if model is None:
            model = CostModel().fit(self._registry.finished_jobs())
        log.info("cost model: %s", model.source)
        return model

    def _maybe_retrain(self) -> None:
        """Train a new version when due (in the background) and use it if it was promoted."""
        if self._registry is None or not self._retraining.acquire(blocking=False):
            return

        def work() -> None:
            try:
                result = self._registry.maybe_retrain()
                if result is not None and result.promoted:
                    model = self._registry.load_version(result.version)
                    with self._lock:
                        self.cost_model = model
                        for part in (self.policy.ordering, self.policy.placement,
                                     self.policy.rebalancing):
                            if hasattr(part, "cost_model"):
                                part.cost_model = model
                    log.info("cost model version %d promoted (%d rows)", result.version,
                             result.n_rows)
            except Exception:  # noqa: BLE001 - keep scheduling with the old model
                log.error("retraining failed:\n%s", traceback.format_exc())
            finally:
                self._retraining.release()

        threading.Thread(target=work, name="raysched-retrain", daemon=True).start()

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """After a (re)start: runs owned by a dead controller died with it; requeue their jobs.

        They resume from their last checkpoint, so no finished work is redone and no job runs
        twice at once.
        """
        for row in self.store.list_jobs(ACTIVE):
            self.store.transition(
                row["job_id"], JobState.QUEUED,
                "controller restarted; requeued to resume from its last checkpoint",
            )

    # -- API (called remotely) -----------------------------------------------------------------

    def ping(self) -> str:
        return "ok"

    def submit(
        self, spec: Mapping[str, Any] | JobSpec, source: str = "sdk",
        ray_job_id: str | None = None, job_id: str | None = None,
    ) -> str:
        """Validate, admit and queue a job; returns its id. Bad specs raise SpecError."""
        view = self._observe()
        if isinstance(spec, JobSpec):
            spec = spec.to_dict()
        parsed = JobSpec.from_dict(spec, max_node_cpus=view.max_node_cpus or None,
                                   max_node_gpus=view.max_node_gpus if view.nodes else None)
        if ray_job_id is not None:
            for row in self.store.list_jobs():
                if row["ray_job_id"] == ray_job_id:
                    return row["job_id"]  # the same driver registering again
        job_id = job_id or f"{parsed.name}-{uuid.uuid4().hex[:8]}"
        probe = JobView(job_id=job_id, spec=parsed, state=JobState.QUEUED, submit_time=time.time())
        admission = self.policy.admission.admit(probe, view)
        if not admission.admitted:
            raise ValueError(f"job {parsed.name!r} not admitted: {admission.reason}")
        from raysched.jobs.models import build_model, parameter_count

        self.store.add_job(job_id, parsed, source=source, ray_job_id=ray_job_id,
                           param_count=parameter_count(build_model(parsed.model)))
        log.info("queued %s (%s)", job_id, source)
        self._wake.set()
        return job_id

    def status(self, job_id: str | None = None) -> list[dict[str, Any]]:
        rows = [self.store.get_job(job_id)] if job_id else self.store.list_jobs()
        now = time.time()
        for r in rows:
            r["spec"] = r["spec"].to_dict()
            if r["queue_time_s"] is None and r["state"] == JobState.QUEUED.value:
                r["queue_time_s"] = now - r["submit_time"]
            if r["run_time_s"] is None and r["start_time"] is not None:
                r["run_time_s"] = now - r["start_time"]
        return rows

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster as the policy sees it now (speeds, free CPUs, degraded flags)."""
        with self._lock:
            return [dataclasses.asdict(n) for n in self._observe().nodes]

    def explain(self, job_id: str) -> dict[str, Any]:
        return {"job": self.status(job_id)[0], "decisions": self.store.decisions(job_id),
                "events": self.store.events(job_id)}

    def cancel(self, job_id: str) -> str:
        with self._lock:
            row = self.store.get_job(job_id)
            state = JobState(row["state"])
            if state.finished:
                raise ValueError(f"job {job_id} already finished ({state.value})")
            run = self._runs.pop(job_id, None)
            if run is not None:
                launcher.stop(run.ref)
            self.store.transition(job_id, JobState.CANCELLED, "cancelled by user",
                                  end_time=time.time())
        self._wake.set()
        return JobState.CANCELLED.value

    def set_priority(self, job_id: str, priority: int) -> None:
        row = self.store.get_job(job_id)
        if JobState(row["state"]).finished:
            raise ValueError(f"job {job_id} already finished ({row['state']})")
        self.store.update_job(job_id, priority=int(priority))
        self._wake.set()

    def report_steps(self, records: list[StepRecord]) -> bool:
        """Store step telemetry; True tells the job to checkpoint and stop."""
        if not records:
            return False
        job_id = records[0].job_id
        self.store.add_steps(records)
        with self._lock:
            run = self._runs.get(job_id)
            if run is None or run.attempt != records[0].attempt:
                return True  # a stale attempt: stop it
            ranks0 = [r for r in records if r.rank == 0]
            # Records carry the 0-based step index; steps_done counts completed steps.
            run.steps_seen = max([run.steps_seen, *(r.step + 1 for r in records)])
            run.recent_step_times = (run.recent_step_times
                                     + [r.step_time_s for r in ranks0])[-20:]
            if not run.observed_nodes and run.attempt == 1:  # a first launch's first steps
                # What a launch costs; a relaunch's is a migration's (below).
                first = min(r.time - r.step_time_s for r in records)
                self._startup_delays = [*self._startup_delays, first - run.launched][-20:]
            self._note_baseline(run, ranks0)
            since, from_attempt = self._migrating_since.get(job_id, (None, 0))
            if since is not None and run.attempt > from_attempt:  # the relaunch is stepping
                del self._migrating_since[job_id]
                self._migration_costs = [*self._migration_costs, time.time() - since][-20:]
            run.observed_nodes.update(r.node_id for r in records)
            row = self.store.get_job(job_id)
            if row["state"] == JobState.PLACED.value:
                self.store.transition(job_id, JobState.RUNNING, "first steps reported",
                                      expect=JobState.PLACED)
            self.store.update_job(job_id, steps_done=run.steps_seen)
            return bool(row["stop_requested"])

    def _note_baseline(self, run: _Run, ranks0: list[StepRecord]) -> None:
        """Keep this attempt's early step times (its first step, which warms up, left out)."""
        for r in sorted(ranks0, key=lambda r: r.step):
            if run.first_step is None:
                run.first_step = r.step
            if r.step > run.first_step and len(run.baseline_step_times) < \
                    self.config.baseline_steps:
                run.baseline_step_times.append(r.step_time_s)

    def shutdown(self) -> None:
        self._stopped.set()
        self._wake.set()

    # -- rounds --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(timeout=self.config.round_interval_s)
            self._wake.clear()
            try:
                self.run_round()
            except Exception:  # noqa: BLE001 - a bad round must not kill the controller
                log.error("round failed:\n%s", traceback.format_exc())

    def _watch_finishes(self) -> None:
        """Wake a round as soon as any run ends (the finish event)."""
        while not self._stopped.is_set():
            with self._lock:
                refs = [run.ref for run in self._runs.values()]
            if not refs:
                time.sleep(0.2)
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            if ready:
                self._wake.set()
                time.sleep(0.1)

    def run_round(self) -> None:
        with self._lock:
            self._reap()
            view = self._observe()
            self._sample_nodes(view)
            self._apply_rebalance(self.policy.rebalancing.rebalance(view))
            view = self._observe()
            _, view = place_in_order(self.policy, view, self._launch_and_observe)
            self.metrics.round(len(view.queued), len(self._runs),
                               [(n.node_id, n.load) for n in view.nodes])

    def _sample_nodes(self, view: ClusterView) -> None:
        if view.time - self._last_sample < self.config.node_sample_every_s:
            return
        self._last_sample = view.time
        self.store.add_node_samples([
            {"time": view.time, "node_id": n.node_id, "cpus_total": n.cpus_total,
             "cpus_free": n.cpus_free, "load": n.load, "memory_free_mb": n.memory_free_mb,
             "speed": n.speed} for n in view.nodes
        ])

    def _apply_rebalance(self, decision: RebalanceDecision) -> None:
        policy = self.policy.name
        for flag in decision.node_flags:
            if flag.degraded == (flag.node_id in self._degraded):
                continue
            (self._degraded.add if flag.degraded else self._degraded.discard)(flag.node_id)
            self.store.add_decision(job_id="-", action="drain" if flag.degraded else "undrain",
                                    policy=policy, node_ids=[flag.node_id], reason=flag.reason)
            self.metrics.decision(policy, "drain" if flag.degraded else "undrain")
            log.info("node %s %s: %s", flag.node_id[:8],
                     "drained" if flag.degraded else "back in service", flag.reason)
        for m in decision.migrations:
            run = self._runs.get(m.job_id)
            if run is None or self.store.get_job(m.job_id)["stop_requested"]:
                continue
            self.store.update_job(m.job_id, stop_requested=1)
            self._migrating_since[m.job_id] = (time.time(), run.attempt)
            self.store.add_decision(
                job_id=m.job_id, action="migrate", policy=policy, node_ids=m.to_node_ids,
                reason=f"{m.reason} (predicted gain {m.predicted_gain_s:.1f} s)",
            )
            self.metrics.decision(policy, "migrate")
            log.info("migrating %s off %s: %s", m.job_id, m.from_node_ids, m.reason)

    def _job_views(self) -> list[JobView]:
        views = []
        for row in self.store.list_jobs([JobState.QUEUED, *ACTIVE]):
            run = self._runs.get(row["job_id"])
            recent = statistics.median(run.recent_step_times) if run and run.recent_step_times \
                else None
            # A baseline once half its steps are in (the median of at least that many).
            early = run.baseline_step_times if run else []
            baseline = statistics.median(early) \
                if len(early) >= max(1, self.config.baseline_steps // 2) else None
            views.append(JobView(
                job_id=row["job_id"], spec=row["spec"], state=JobState(row["state"]),
                submit_time=row["submit_time"], start_time=row["start_time"],
                node_ids=tuple(row["node_ids"] or ()), steps_done=row["steps_done"],
                recent_step_time_s=recent, baseline_step_time_s=baseline,
                attempts=row["attempts"],
            ))
        return views

    def _observe(self) -> ClusterView:
        allocated: dict[str, float] = {}
        allocated_gpus: dict[str, float] = {}
        unplaced: list[_Run] = []  # left to Ray's placement, nodes not reported yet
        for run in self._runs.values():
            nodes = run.node_ids or tuple(run.observed_nodes)
            if not nodes:
                unplaced.append(run)
            for node in nodes:
                allocated[node] = allocated.get(node, 0.0) + run.cpus_per_worker
                if run.gpus_per_worker:
                    allocated_gpus[node] = allocated_gpus.get(node, 0.0) + run.gpus_per_worker
        view = observe_cluster(now=time.time(), allocated_cpus=allocated,
                               allocated_gpus=allocated_gpus, jobs=self._job_views(),
                               degraded=frozenset(self._degraded))
        cost = measured_migration_cost(self._migration_costs, self._startup_delays)
        if cost is not None:
            view = dataclasses.replace(view, migration_cost_s=cost)
        if not unplaced:
            return view
        # Charge runs whose nodes Ray has not revealed yet against the emptiest nodes, so a
        # queue-only policy cannot launch more gangs than the cluster holds.
        free = {n.node_id: n.cpus_free for n in view.nodes}
        gpus = {n.node_id: n.gpus_free for n in view.nodes}
        for run in unplaced:
            for _ in range(run.workers):
                # A GPU worker is charged to the node with the most free GPUs.
                node = max(free, key=lambda k: (gpus[k] if run.gpus_per_worker else 0.0,
                                                free[k]), default=None)
                if node is None:
                    break
                free[node] = max(0.0, free[node] - run.cpus_per_worker)
                gpus[node] = max(0.0, gpus[node] - run.gpus_per_worker)
        nodes = tuple(dataclasses.replace(n, cpus_free=free[n.node_id], gpus_free=gpus[n.node_id],
                                          load=1.0 - free[n.node_id] / n.cpus_total)
                      for n in view.nodes)
        return dataclasses.replace(view, nodes=nodes)

    def _launch_and_observe(self, job: JobView, placement: Placement,
                            view: ClusterView) -> ClusterView:
        self._launch(job, placement, view)
        return self._observe()

    def _launch(self, job: JobView, placement: Placement, view: ClusterView) -> None:
        row = self.store.get_job(job.job_id)
        now = time.time()
        attempt = row["attempts"] + 1
        nodes = {n.node_id: n for n in view.nodes}
        self.metrics.decision(placement.policy, "place")
        if placement.predicted_duration_s is not None:
            self.metrics.predicted_duration.observe(placement.predicted_duration_s)
        self.store.add_decision(
            job_id=job.job_id, action="place", policy=placement.policy,
            node_ids=placement.node_ids, reason=placement.reason,
            candidates=[dataclasses.asdict(c) for c in placement.candidates],
        )
        fields: dict[str, Any] = {
            "node_ids": list(placement.node_ids),
            "node_cpus": [nodes[n].cpus_total for n in placement.node_ids],
            "node_speeds": [nodes[n].speed for n in placement.node_ids],
            "cluster_load_at_start": statistics.fmean([n.load for n in view.nodes] or [0.0]),
            "free_cpus_at_start": sum(n.cpus_free for n in view.nodes),
            "policy": placement.policy,
            "attempts": attempt,
            "stop_requested": 0,
        }
        if placement.predicted_duration_s is not None:
            fields["predicted_duration_s"] = placement.predicted_duration_s
        if row["start_time"] is None:
            fields["start_time"] = now
            fields["queue_time_s"] = now - row["submit_time"]
        self.store.transition(job.job_id, JobState.PLACED, placement.reason, **fields)
        ctx = JobContext(
            job_id=job.job_id,
            attempt=attempt,
            node_ids=placement.node_ids,
            node_speeds={n.node_id: n.speed for n in view.nodes},
            checkpoint_dir=str(self.config.storage_dir / "checkpoints" / job.job_id),
            sink=launcher.ControllerSink(),
            report_every=self.config.report_every,
            interference_dir=str(interference_dir(self.config.storage_dir)),
        )
        ref = launcher.launch(job.spec, ctx, runner_node_id=self._node_id)
        self._runs[job.job_id] = _Run(ref=ref, attempt=attempt, node_ids=placement.node_ids,
                                      cpus_per_worker=job.spec.cpus_per_worker,
                                      gpus_per_worker=job.spec.gpus_per_worker,
                                      workers=job.spec.num_workers, launched=now)
        log.info("launched %s attempt %d on %s", job.job_id, attempt, placement.node_ids)

    def _reap(self) -> None:
        if not self._runs:
            return
        refs = {run.ref: job_id for job_id, run in self._runs.items()}
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in done:
            job_id = refs[ref]
            run = self._runs.pop(job_id)
            try:
                outcome: JobOutcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the job's own error, recorded as FAILED
                self._finish_failed(job_id, run, exc)
                continue
            if outcome.stopped_for_migration:
                self._requeue(job_id, outcome)
            else:
                self._finish_succeeded(job_id, run, outcome)

    def _ended_fields(self, job_id: str, run: _Run) -> dict[str, Any]:
        row = self.store.get_job(job_id)
        now = time.time()
        start = row["start_time"] or run.launched
        steps = self.store.steps(job_id)
        peak = max((s["peak_rss_mb"] for s in steps), default=None)
        fields: dict[str, Any] = {"end_time": now, "run_time_s": max(now - start, 0.0)}
        if peak is not None:
            fields["peak_rss_mb"] = peak
        return fields

    def _move_to_running(self, job_id: str) -> None:
        if self.store.get_job(job_id)["state"] == JobState.PLACED.value:
            self.store.transition(job_id, JobState.RUNNING, "run started")

    def _finish_succeeded(self, job_id: str, run: _Run, outcome: JobOutcome) -> None:
        self._move_to_running(job_id)
        fields = self._ended_fields(job_id, run)
        fields.update(steps_done=outcome.steps_done, final_loss=float(outcome.final_loss),
                      steps_per_s=outcome.steps_done / max(fields["run_time_s"], 1e-9))
        self.store.transition(job_id, JobState.SUCCEEDED, "completed", **fields)
        log.info("%s succeeded (loss %.4f)", job_id, outcome.final_loss)
        self._finished(job_id, JobState.SUCCEEDED)

    def _finished(self, job_id: str, state: JobState) -> None:
        row = self.store.get_job(job_id)
        self.metrics.job_finished(state.value, row["run_time_s"], row["predicted_duration_s"])
        self._maybe_retrain()

    def _finish_failed(self, job_id: str, run: _Run, exc: BaseException) -> None:
        self._move_to_running(job_id)
        fields = self._ended_fields(job_id, run)
        fields["error"] = _short_error(exc)
        self.store.transition(job_id, JobState.FAILED, "the job raised", **fields)
        log.warning("%s failed: %s", job_id, fields["error"])
        self._finished(job_id, JobState.FAILED)

    def _requeue(self, job_id: str, outcome: JobOutcome) -> None:
        self._move_to_running(job_id)
        row = self.store.get_job(job_id)
        self.store.transition(job_id, JobState.MIGRATING, "checkpointed for migration",
                              steps_done=outcome.steps_done,
                              migrations=row["migrations"] + 1)
        self.store.transition(job_id, JobState.QUEUED, "waiting for its new placement")


def _short_error(exc: BaseException) -> str:
    """The innermost error message of a Ray task failure, one line."""
    cause: BaseException = exc
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause  # RayTaskError wraps the user's exception
    text = f"{type(cause).__name__}: {cause}"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else type(cause).__name__


ControllerActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3,
                             max_concurrency=32)(Controller)


__all__ = ["Controller", "ControllerActor", "ControllerConfig", "TelemetryError", "UnknownJob"]
