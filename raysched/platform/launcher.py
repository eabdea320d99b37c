"""Launch a placed job on Ray: a runner task next to the controller that drives the job's workers.

The runner holds no CPUs; the workers it starts (Ray Train workers, pipeline stages, parameter
servers) are pinned to the nodes the policy chose through the ``ray.io/node-id`` label. A
migration is checkpoint (the job sees the stop flag in its next step report) -> stop ->
relaunch with the new placement, resuming from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import ray

from raysched.jobs.base import JobContext, JobOutcome, StepRecord
from raysched.platform.client import CONTROLLER_NAME, NAMESPACE
from raysched.platform.placement import actor_options_for_node
from raysched.schedulers.spec import JobSpec

JOB_ID_ENV = "RAYSCHED_JOB_ID"
ATTEMPT_ENV = "RAYSCHED_ATTEMPT"
# Ray Train's preemption watcher is one more actor process per data-parallel job (its imports
# alone are about 6 CPU-seconds here) polling Ray's node drain state every 5 s, so that a run
# can checkpoint before a node is reclaimed. raysched checkpoints every K steps and resumes a
# job whose worker died from its last checkpoint, so the watcher is off unless the
# controller's environment sets this variable.
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


@dataclasses.dataclass(frozen=True)
class ControllerSink:
    """Picklable step sink: forwards step records to the controller, returns its stop flag."""

    name: str = CONTROLLER_NAME
    namespace: str = NAMESPACE

    def __call__(self, records: list[StepRecord]) -> bool:
        controller = ray.get_actor(self.name, namespace=self.namespace)
        return bool(ray.get(controller.report_steps.remote(records=records)))


# max_calls=1: the runner's worker process exits when the attempt ends, and with it every actor
# it owns (Ray Train's TrainController and DatasetManager otherwise outlive fit() in a reused
# idle worker, one pair of Python processes leaked per finished job).
@ray.remote(num_cpus=0, max_retries=0, max_calls=1)
def _run_job_task(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    from raysched.jobs.registry import run_job

    Path(ctx.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    return run_job(spec, ctx)


def launch(spec: JobSpec, ctx: JobContext, *, runner_node_id: str | None) -> ray.ObjectRef:
    """Start one attempt of a job; the returned ref resolves to its JobOutcome or raises."""
    opts = actor_options_for_node(runner_node_id, 0)
    opts["name"] = f"raysched:{ctx.job_id}:attempt-{ctx.attempt}"
    # Tag the run: every actor it starts inherits these variables, so Ray's own state API
    # (`ray list actors --detail`, the dashboard) shows which raysched job each worker is.
    opts["runtime_env"] = {"env_vars": {
        JOB_ID_ENV: ctx.job_id, ATTEMPT_ENV: str(ctx.attempt),
        PREEMPTION_WATCHER_ENV: os.environ.get(PREEMPTION_WATCHER_ENV, "0")}}
    return _run_job_task.options(**opts).remote(spec, ctx)


def stop(ref: ray.ObjectRef) -> None:
    """Force-stop a run (cancel): its workers die with the runner that owns them."""
    ray.cancel(ref, force=True, recursive=True)
