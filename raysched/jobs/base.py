"""The contract between the platform and a job kind: the runtime context and the step reporter."""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from raysched.schedulers.spec import JobSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One training step of one worker, as sent to the telemetry store."""

    job_id: str
    attempt: int
    rank: int
    node_id: str
    step: int
    loss: float
    step_time_s: float
    samples: int
    peak_rss_mb: float
    time: float


class StepSink(Protocol):
    """Where step records go. Returns True when the job should checkpoint and stop."""

    def __call__(self, records: list[StepRecord]) -> bool: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobContext:
    """Everything a job kind needs from the platform; picklable, sent to every worker."""

    job_id: str
    attempt: int
    node_ids: tuple[str, ...]  # node of worker/stage i; empty means Ray places the workers
    node_speeds: dict[str, float]  # emulated speed per node id (absent: 1.0, nothing stretched)
    checkpoint_dir: str  # survives a relaunch on other nodes (shared storage)
    sink: StepSink | None = None
    report_every: int = 1
    # Emulated interference (a "noisy neighbour"): file <dir>/<node_id> holds a slowdown factor.
    interference_dir: str = ""

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir)

    def speed_of(self, node_id: str) -> float:
        """Emulated speed of a node now: its label speed, divided by any injected slowdown."""
        speed = float(self.node_speeds.get(node_id, 1.0))
        if self.interference_dir:
            speed /= read_slowdown(self.interference_dir, node_id)
        return speed


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """What a job kind returns when it ends without raising."""

    final_loss: float
    steps_done: int
    stopped_for_migration: bool = False
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


JobFunction = Callable[[JobSpec, JobContext], JobOutcome]


def read_slowdown(directory: str, node_id: str) -> float:
    """The slowdown factor injected on `node_id` (1.0 when none); see platform/interference.py."""
    try:
        value = float(Path(directory, node_id).read_text().strip() or 1.0)
    except (OSError, ValueError):
        return 1.0
    return value if value >= 1.0 else 1.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stretch_for_speed(elapsed_s: float, speed: float) -> float:
    """Sleep so that a step of `elapsed_s` takes `elapsed_s / speed`; return the stretched time.

    Only nodes that carry the emulated speed label have speed != 1.0; elsewhere nothing sleeps.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if speed < 1.0:
        extra = elapsed_s * (1.0 / speed - 1.0)
        time.sleep(extra)
        return elapsed_s + extra
    return elapsed_s


class StepReporter:
    """Buffers a worker's step records and flushes them to the context's sink.

    Steps are recorded by their 0-based index. Once the sink answers True, `stop_requested`
    is set: the job checkpoints at its current step and returns `stopped_for_migration`.
    """

    def __init__(self, ctx: JobContext, *, rank: int, node_id: str) -> None:
        self.ctx = ctx
        self.rank = rank
        self.node_id = node_id
        self._buffer: list[StepRecord] = []
        self.stop_requested = False

    def record(self, *, step: int, loss: float, step_time_s: float, samples: int) -> bool:
        """Buffer one step; returns True when this call flushed the buffer to the sink."""
        self._buffer.append(
            StepRecord(
                job_id=self.ctx.job_id,
                attempt=self.ctx.attempt,
                rank=self.rank,
                node_id=self.node_id,
                step=step,
                loss=float(loss),
                step_time_s=float(step_time_s),
                samples=int(samples),
                peak_rss_mb=peak_rss_mb(),
                time=time.time(),
            )
        )
        if len(self._buffer) >= self.ctx.report_every:
            self.flush()
            return True
        return False

    def flush(self) -> bool:
        if self.ctx.sink is not None and self._buffer:
            if self.ctx.sink(self._buffer):
                self.stop_requested = True
        self._buffer = []
        return self.stop_requested


def current_node_id() -> str:
    """The Ray node id of this process, or the hostname outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:  # pragma: no cover
        pass
    return os.uname().nodename
