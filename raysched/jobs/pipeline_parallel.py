"""Pipeline (model) parallel job kind: one Ray actor per stage, a gloo group between them.

Layout: the spec's nn.Sequential is split into S = num_workers stages balanced by parameter
count (raysched.jobs.stages); stage i is an actor on ctx.node_ids[i] with cpus_per_worker CPUs.
The stage actors form their own gloo process group (TCP store on stage 0's node, free port)
and run torch.distributed.pipelining's ScheduleGPipe (or Schedule1F1B, `schedule: 1f1b`) over
`micro_batches` micro-batches of data.global_batch(step); each stage steps its own SGD
optimizer and checkpoints its own parameters under step-NNNNNNNN/stage-i.pt. Peer-to-peer
tensors between stages beat passing activations as object refs by 3-5x per step on CPU.
"""

from __future__ import annotations

import math
import socket
from typing import Any

import ray

from raysched.jobs import sharded_checkpoints as checkpoints
from raysched.jobs.base import JobContext, JobOutcome, current_node_id
from raysched.jobs.pipeline_config import PipelineConfig, stage_part
from raysched.jobs.relaunch import kill_all, run_with_relaunch, wait_gang
from raysched.platform.placement import actor_options_for_node
from raysched.schedulers.spec import JobSpec


@ray.remote
class StageActor:
    """Ray actor hosting one StageRunner."""

    def __init__(self, spec: JobSpec, ctx: JobContext, rank: int) -> None:
        # Imported here: the job's runner, which only launches the stages, needs no torch.
        import torch

        from raysched.jobs.pipeline_stage import StageRunner

        torch.set_num_threads(max(1, int(spec.cpus_per_worker)))
        self.runner = StageRunner(spec, ctx, rank, current_node_id())

    def rendezvous(self) -> str:
        """A tcp:// init method on this actor's node with a free port (called on stage 0)."""
        ip = ray.util.get_node_ip_address()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return f"tcp://{ip}:{port}"

    def join(self, init_method: str) -> str:
        self.runner.join_group(init_method)
        return self.runner.node_id

    def train(self, start_step: int) -> dict[str, Any]:
        try:
            return self.runner.train(start_step)
        finally:
            self.runner.leave_group()


def _launch(spec: JobSpec, ctx: JobContext, relaunch: int) -> list[Any]:
    names = [
        f"raysched-{ctx.job_id}-a{ctx.attempt}-r{relaunch}-stage{i}"
        for i in range(spec.num_workers)
    ]
    actors = []
    for rank in range(spec.num_workers):
        node = ctx.node_ids[rank] if ctx.node_ids else None
        opts = actor_options_for_node(node, spec.cpus_per_worker, name=names[rank])
        actors.append(StageActor.options(**opts).remote(spec, ctx, rank))
    return actors


def _attempt(spec: JobSpec, ctx: JobContext, relaunch: int) -> list[dict[str, Any]]:
    parts = [stage_part(r) for r in range(spec.num_workers)]
    start = checkpoints.latest_step(ctx.checkpoint_dir, parts) or 0
    actors = _launch(spec, ctx, relaunch)
    try:
        init_method = wait_gang([actors[0].rendezvous.remote()])[0]
        wait_gang([a.join.remote(init_method) for a in actors])
        return wait_gang([a.train.remote(start) for a in actors])
    finally:
        kill_all(actors)


def bubble_fraction(busy_s: list[float], wall_s: list[float]) -> float:
    """Mean over stages of 1 - busy / wall.

    With each stage's compute time as busy and its time inside schedule.step as wall, this is
    the measured pipeline bubble (see raysched.jobs.pipeline_timing).
    """
    return sum(1.0 - b / w for b, w in zip(busy_s, wall_s, strict=True) if w > 0) / len(busy_s)


def ideal_bubble(num_stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction (S-1)/(M+S-1) with equal stages and free communication."""
    return (num_stages - 1) / (micro_batches + num_stages - 1)


def run(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    """Train spec's model pipeline-parallel over spec.num_workers stages; see module docstring."""
    config = PipelineConfig.from_spec(spec)
    if ctx.node_ids and len(ctx.node_ids) != config.num_stages:
        raise ValueError(f"{len(ctx.node_ids)} node ids for {config.num_stages} stages")
    results, relaunches = run_with_relaunch(lambda r: _attempt(spec, ctx, r))
    last = results[-1]
    busy = [r["busy_s"] for r in results]
    in_schedule = [r["schedule_s"] for r in results]
    wall = [r["wall_s"] for r in results]
    ran = last["steps_done"] > last["start_step"] + 1
    return JobOutcome(
        final_loss=float(last["final_loss"]),
        steps_done=int(last["steps_done"]),
        stopped_for_migration=bool(last["stopped"]),
        extra={
            "start_step": last["start_step"],
            "losses": last["losses"],
            "relaunches": relaunches,
            "stage_nodes": [r["node_id"] for r in results],
            "stage_busy_s": busy,
            "stage_schedule_s": in_schedule,
            "wall_s": max(wall),
            "bubble": bubble_fraction(busy, in_schedule) if ran else math.nan,
            # The same over the whole loop (optimizer, all-reduces, telemetry): not the bubble.
            "loop_idle": bubble_fraction(busy, wall) if ran else math.nan,
            "ideal_bubble": ideal_bubble(config.num_stages, config.micro_batches),
            "schedule": config.schedule,
            "micro_batches": config.micro_batches,
        },
    )
