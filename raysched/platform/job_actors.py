"""Which Ray actors belong to which raysched job, read from Ray's own state API.

Every actor an attempt starts inherits the launcher's environment variables (the job id and
attempt), so Ray's actor list, not raysched's records, says where a job's workers really run:
what the integration tests and the GPU check compare the controller's decisions against.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from raysched.platform.launcher import ATTEMPT_ENV, JOB_ID_ENV

# Ray Train's own actors in a data-parallel job: never one of its workers, whatever they hold.
RAY_TRAIN_HELPERS = frozenset({"TrainController", "DatasetManager", "SynchronizationActor",
                               "PlacementGroupCleaner", "PreemptionWatcher"})


@dataclasses.dataclass(frozen=True)
class JobActor:
    """One Ray actor of a raysched job."""

    job_id: str
    attempt: int | None
    class_name: str
    pid: int | None
    node_id: str
    alive: bool
    holds_resources: bool  # holds CPUs or GPUs (plain or in a placement-group bundle)

    @property
    def is_worker(self) -> bool:
        """A worker of the job (a Ray Train worker, a pipeline stage, a parameter server...)."""
        return self.holds_resources and self.class_name not in RAY_TRAIN_HELPERS


def job_actor(actor: Any) -> JobActor | None:
    """The raysched view of one entry of `ray.util.state.list_actors(detail=True)`, or None
    for an actor no raysched job started."""
    env = json.loads(actor.serialized_runtime_env or "{}").get("env_vars", {})
    job_id = env.get(JOB_ID_ENV)
    if not job_id:
        return None
    attempt = env.get(ATTEMPT_ENV)
    holds = any(v > 0 for k, v in (actor.required_resources or {}).items()
                if k in ("CPU", "GPU") or k.startswith(("CPU_group_", "GPU_group_")))
    return JobActor(job_id=job_id, attempt=int(attempt) if attempt else None,
                    class_name=actor.class_name, pid=int(actor.pid) if actor.pid else None,
                    node_id=actor.node_id, alive=actor.state == "ALIVE", holds_resources=holds)


def job_actors(job_id: str | None = None) -> list[JobActor]:
    """Every actor raysched jobs started (alive or not), or only `job_id`'s; needs ray.init."""
    from ray.util.state import list_actors

    found = (job_actor(a) for a in list_actors(detail=True, limit=10_000,
                                                raise_on_missing_output=False))
    return [a for a in found if a is not None and (job_id is None or a.job_id == job_id)]


def worker_nodes_by_job() -> dict[str, set[str]]:
    """Job id -> the nodes its worker actors ran on."""
    out: dict[str, set[str]] = {}
    for a in job_actors():
        if a.is_worker:
            out.setdefault(a.job_id, set()).add(a.node_id)
    return out


def worker_pids_by_job() -> dict[str, set[int]]:
    """Job id -> the PIDs of its worker actors."""
    out: dict[str, set[int]] = {}
    for a in job_actors():
        if a.is_worker and a.pid:
            out.setdefault(a.job_id, set()).add(a.pid)
    return out
