"""Which function runs each job kind (imported lazily, so a kind loads only when used)."""

from __future__ import annotations

import importlib

from raysched.jobs.base import JobContext, JobFunction, JobOutcome
from raysched.schedulers.spec import JobSpec

KIND_MODULES: dict[str, str] = {
    "data_parallel": "raysched.jobs.data_parallel",
    "pipeline_parallel": "raysched.jobs.pipeline_parallel",
    "parameter_server": "raysched.jobs.parameter_server",
    "sweep": "raysched.jobs.sweep",
}


def job_function(kind: str) -> JobFunction:
    """The `run(spec, ctx)` of job kind `kind`."""
    if kind not in KIND_MODULES:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(KIND_MODULES)}")
    module = importlib.import_module(KIND_MODULES[kind])
    return module.run


def run_job(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    """Run one attempt of a job; called inside the job's runner task on the cluster."""
    return job_function(spec.kind)(spec, ctx)
