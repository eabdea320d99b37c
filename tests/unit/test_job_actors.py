"""Reading raysched jobs' actors from Ray's actor list: the job id and attempt they carry."""

from __future__ import annotations

import json
from types import SimpleNamespace

from raysched.platform.job_actors import job_actor


def entry(class_name: str, env: dict[str, str] | None, resources: dict[str, float],
          state: str = "ALIVE", pid: int = 42) -> SimpleNamespace:
    """One actor as `ray.util.state.list_actors(detail=True)` describes it."""
    runtime_env = json.dumps({"env_vars": env}) if env is not None else None
    return SimpleNamespace(class_name=class_name, serialized_runtime_env=runtime_env,
                           required_resources=resources, pid=pid, node_id="n1", state=state)


TAGS = {"RAYSCHED_JOB_ID": "job-1", "RAYSCHED_ATTEMPT": "2"}


def test_workers_carry_their_job_and_attempt():
    worker = job_actor(entry("RayTrainWorker", TAGS, {"CPU_group_abc": 1.0}))
    assert worker is not None and worker.is_worker
    assert (worker.job_id, worker.attempt, worker.pid, worker.alive) == ("job-1", 2, 42, True)
    gpu = job_actor(entry("RayTrainWorker", TAGS, {"GPU": 1.0}, state="DEAD"))
    assert gpu is not None and gpu.is_worker and not gpu.alive


def test_helpers_and_other_actors_are_not_workers():
    # Ray Train's controller is not a worker even if it holds a CPU.
    helper = job_actor(entry("TrainController", TAGS, {"CPU": 1.0}))
    assert helper is not None and not helper.is_worker
    idle = job_actor(entry("StageActor", TAGS, {}))
    assert idle is not None and not idle.is_worker
    assert job_actor(entry("SomethingElse", None, {"CPU": 1.0})) is None  # not raysched's
    assert job_actor(entry("Other", {"PATH": "/bin"}, {"CPU": 1.0})) is None
