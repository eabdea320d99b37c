"""Immutable snapshots the policies read: nodes, the cluster, and jobs with their states."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from raysched.schedulers.spec import JobSpec

SPEED_LABEL = "raysched.io/speed"


class JobState(enum.StrEnum):
    """Lifecycle of a job; the controller moves jobs between these and stores every move."""

    QUEUED = "QUEUED"
    PLACED = "PLACED"
    RUNNING = "RUNNING"
    MIGRATING = "MIGRATING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


# Allowed transitions of the per-job state machine.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PLACED, JobState.CANCELLED, JobState.FAILED}),
    JobState.PLACED: frozenset(
        {JobState.RUNNING, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.MIGRATING,
         JobState.QUEUED}
    ),
    JobState.MIGRATING: frozenset(
        {JobState.PLACED, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    """A state change the job state machine does not allow."""


def check_transition(job_id: str, old: JobState, new: JobState) -> None:
    """Raise InvalidTransition unless `old -> new` is allowed."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"job {job_id}: cannot go from {old.value} to {new.value}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeView:
    """One node as the scheduler sees it at decision time."""

    node_id: str
    cpus_total: float
    cpus_free: float
    gpus_total: float = 0.0  # Ray's "GPU" resource of the node (0 on CPU-only nodes)
    gpus_free: float = 0.0
    memory_free_mb: float = 0.0
    speed: float = 1.0  # emulated speed label; 1.0 where the node carries none
    load: float = 0.0  # measured CPU utilisation in [0, 1] (0 when unknown)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    alive: bool = True
    degraded: bool = False  # flagged by the rebalancer: drain, place nothing new

    @property
    def schedulable(self) -> bool:
        return self.alive and not self.degraded


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobView:
    """One job as the scheduler sees it: its spec, state and progress so far."""

    job_id: str
    spec: JobSpec
    state: JobState
    submit_time: float
    start_time: float | None = None
    node_ids: tuple[str, ...] = ()
    steps_done: int = 0
    recent_step_time_s: float | None = None  # measured, median of the last few steps
    # Measured on this attempt's nodes right after it started (median of its early steps): the
    # job's own yardstick, so a node slowing down mid-run shows even when predictions are off.
    baseline_step_time_s: float | None = None
    attempts: int = 0

    @property
    def steps_left(self) -> int:
        return max(self.spec.steps - self.steps_done, 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterView:
    """All nodes and jobs at one instant; the only input a policy gets."""

    time: float
    nodes: tuple[NodeView, ...]
    jobs: tuple[JobView, ...] = ()
    # Measured cost of one migration (stop request to the first step of the next attempt),
    # median over the migrations seen so far; before any, the median start-up of launches
    # (placement to first step, which a relaunch pays again); None until either is measured.
    migration_cost_s: float | None = None

    def node(self, node_id: str) -> NodeView:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"unknown node {node_id!r}")

    @property
    def queued(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.jobs if j.state is JobState.QUEUED)

    @property
    def running(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.jobs if j.state in (JobState.RUNNING, JobState.PLACED))

    @property
    def max_node_cpus(self) -> float:
        return max((n.cpus_total for n in self.nodes if n.alive), default=0.0)

    @property
    def max_node_gpus(self) -> float:
        return max((n.gpus_total for n in self.nodes if n.alive), default=0.0)
