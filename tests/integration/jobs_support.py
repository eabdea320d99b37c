"""Helpers for the job-kind integration tests: a small cluster, a collector sink, node ids."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import ray

from raysched.jobs.base import JobContext, StepRecord
from raysched.platform import auth

NODE_CPUS = 2
OBJECT_STORE_BYTES = 80 * 1024 * 1024


STARTUP_TRIES = 3  # Ray gives a raylet 30 s to register; a busy shared host can miss that


def _start_cluster(num_nodes: int) -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    try:
        cluster.add_node(
            num_cpus=NODE_CPUS, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES
        )
        for _ in range(num_nodes - 1):
            cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        cluster.connect()
    except Exception:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        raise
    return cluster


@contextlib.contextmanager
def small_cluster(num_nodes: int = 2) -> Iterator[None]:
    """A local Ray cluster of `num_nodes` 2-CPU nodes, connected, shut down on exit.

    If this process is already connected (the session's LocalCluster from conftest.py), that
    cluster is used instead: one process can hold one Ray connection.
    """
    if ray.is_initialized():
        yield
        return
    auth.enable_token_auth()
    for attempt in range(STARTUP_TRIES):
        try:
            cluster = _start_cluster(num_nodes)
            break
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == STARTUP_TRIES - 1:
                raise
    try:
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


@ray.remote(num_cpus=0)
class Collector:
    """Keeps every step record; says when to stop, or when a given rank should die."""

    def __init__(self, stop_at: int | None = None, kill: tuple[int, int] | None = None) -> None:
        self.records: list[tuple[int, int, float, str]] = []
        self.stop_at = stop_at
        self.kill = kill  # (rank, step): that rank kills its own actor once, at that step
        self.killed = False

    def add(self, records: list[StepRecord]) -> str:
        self.records.extend((r.rank, r.step, r.loss, r.node_id) for r in records)
        if self.kill and not self.killed:
            rank, step = self.kill
            if any(r.rank == rank and r.step >= step for r in records):
                self.killed = True
                return "kill"
        if self.stop_at is not None and any(r.step >= self.stop_at for r in records):
            return "stop"
        return ""

    def get(self) -> list[tuple[int, int, float, str]]:
        return self.records


class CollectorSink:
    """A StepSink (picklable) that forwards records to a Collector actor.

    On "kill" it ray.kill()s the actor it runs in (a stage or worker), mid-run.
    """

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def __call__(self, records: list[StepRecord]) -> bool:
        action = ray.get(self.collector.add.remote(records))
        if action == "kill":
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
            time.sleep(60)
            os._exit(1)  # pragma: no cover - only if the kill did not land
        return action == "stop"


def worker_node_ids() -> list[str]:
    """Alive nodes with CPUs, sorted by id (the head has none in the test cluster)."""
    return sorted(
        n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0
    )


def make_ctx(
    job_id: str,
    node_ids: tuple[str, ...],
    *,
    checkpoint_dir: str | None = None,
    sink: Any = None,
    attempt: int = 0,
) -> JobContext:
    return JobContext(
        job_id=job_id,
        attempt=attempt,
        node_ids=node_ids,
        node_speeds={},
        checkpoint_dir=checkpoint_dir or tempfile.mkdtemp(prefix=f"{job_id}-"),
        sink=sink,
    )
