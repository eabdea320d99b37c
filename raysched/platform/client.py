"""The Python SDK: connect to a cluster, start or find the controller, submit and watch jobs."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raysched.platform import auth
from raysched.schedulers.spec import JobSpec, SpecError, load_spec
from raysched.schedulers.types import JobState

CONTROLLER_NAME = "raysched-controller"
NAMESPACE = "raysched"


def connect(address: str | None = None) -> None:
    """Connect this process to `address` (or $RAY_ADDRESS) in raysched's namespace."""
    auth.enable_token_auth()
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise RuntimeError(
            "no cluster address: pass --address, set RAY_ADDRESS, or run `raysched cluster up`"
        )
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
             logging_level="WARNING")


def start_controller(
    address: str, *, store_path: Path, storage_dir: Path, policy: str = "least_loaded",
) -> Any:
    """Start the detached controller actor on the head node (or return the running one)."""
    import ray

    from raysched.platform.controller import ControllerActor, ControllerConfig
    from raysched.platform.placement import node_selector

    connect(address)
    try:
        return ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
    except ValueError:
        pass
    head = ray.get_runtime_context().get_node_id()  # the driver runs on the head node
    config = ControllerConfig(store_path=Path(store_path), storage_dir=Path(storage_dir),
                              policy=policy)
    actor = ControllerActor.options(
        name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached",
        label_selector=node_selector(head), get_if_exists=True,
    ).remote(config)
    ray.get(actor.ping.remote(), timeout=120)
    return actor


def replace_controller(
    address: str, *, store_path: Path, storage_dir: Path, policy: Any,
) -> Client:
    """End the running controller (and the runs it owns) and start one with another policy.

    For benchmarks and the demo, which compare policies on one cluster; `policy` is a name or
    a built SchedulingPolicy.
    """
    import ray

    connect(address)
    try:
        old = ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
    except ValueError:
        old = None
    if old is not None:
        ray.kill(old, no_restart=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.5)
    start_controller(address, store_path=store_path, storage_dir=storage_dir, policy=policy)
    return Client(address)


def controller(address: str | None = None) -> Any:
    """Handle to the running controller."""
    import ray

    connect(address)
    try:
        return ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
    except ValueError:
        raise RuntimeError(
            "no raysched controller on this cluster; start one with `raysched cluster up` "
            "(local) or `python -m raysched.platform.serve` on the head node"
        ) from None


def _call(method: Any, **kwargs: Any) -> Any:
    """Call a controller method and re-raise the controller's own error, not Ray's wrapper.

    Arguments go by keyword only: a handle fetched with `ray.get_actor` in some processes
    (seen in Ray 2.60 job drivers) knows the methods only as `(**kwargs)`.
    """
    import ray

    try:
        return ray.get(method.remote(**kwargs))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise cause from None


class Client:
    """What users call from Python and notebooks."""

    def __init__(self, address: str | None = None) -> None:
        self._ctl = controller(address)

    def submit(self, spec: JobSpec | Mapping[str, Any] | str | Path, **kwargs: Any) -> str:
        """Queue a job from a JobSpec, a dict or a YAML path; returns the job id."""
        if isinstance(spec, str | Path):
            spec = load_spec(spec)
        if isinstance(spec, JobSpec):
            spec = spec.to_dict()
        return _call(self._ctl.submit, spec=dict(spec), **kwargs)

    def status(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return _call(self._ctl.status, job_id=job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.status(job_id)[0]

    def cancel(self, job_id: str) -> str:
        return _call(self._ctl.cancel, job_id=job_id)

    def set_priority(self, job_id: str, priority: int) -> None:
        _call(self._ctl.set_priority, job_id=job_id, priority=priority)

    def nodes(self) -> list[dict[str, Any]]:
        """Nodes as the controller's policy sees them (speed, free CPUs, degraded)."""
        return _call(self._ctl.nodes)

    def explain(self, job_id: str) -> dict[str, Any]:
        return _call(self._ctl.explain, job_id=job_id)

    def wait(self, job_ids: list[str], *, timeout_s: float = 600.0,
             poll_s: float = 1.0) -> list[dict[str, Any]]:
        """Block until every job in `job_ids` has finished; returns their rows."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = {r["job_id"]: r for r in self.status()}
            missing = [j for j in job_ids if j not in rows]
            if missing:
                raise KeyError(f"unknown jobs: {', '.join(missing)}")
            if all(JobState(rows[j]["state"]).finished for j in job_ids):
                return [rows[j] for j in job_ids]
            if time.monotonic() > deadline:
                pending = [j for j in job_ids if not JobState(rows[j]["state"]).finished]
                raise TimeoutError(f"jobs still running after {timeout_s:.0f} s: {pending}")
            time.sleep(poll_s)


__all__ = ["Client", "SpecError", "connect", "controller", "start_controller"]
