"""Data-parallel training with Ray Train's TorchTrainer (DDP, AllReduce over gloo on CPU).

Worker i runs on `ctx.node_ids[i]` through ``ScalingConfig(label_selector=[...])``. Every global
batch is deterministic in its step, each worker takes its share of it, and checkpoints live in
the job's checkpoint directory, so a relaunch elsewhere continues the same loss curve.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from raysched.jobs.base import (
    JobContext,
    JobOutcome,
    StepReporter,
    current_node_id,
    stretch_for_speed,
)
from raysched.jobs.checkpoint import load_checkpoint, save_checkpoint
from raysched.jobs.data import global_batch, shard_bounds
from raysched.jobs.models import build_model, loss_fn
from raysched.schedulers.spec import JobSpec


def worker_shares(spec: JobSpec, ctx: JobContext) -> list[float]:
    """Each worker's share of a global batch: by node speed if asked (and known), else equal."""
    if spec.options.get("hetero_sharding") and ctx.node_ids:
        return [ctx.speed_of(n) for n in ctx.node_ids]
    return [1.0] * spec.num_workers


def apply_compression(ddp_model: Any, compression: str) -> None:
    """Register a DDP communication hook that compresses gradients before the AllReduce."""
    if compression == "none" or not hasattr(ddp_model, "register_comm_hook"):
        return  # a single worker is not wrapped in DDP: nothing to communicate
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

    if compression == "fp16":
        ddp_model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif compression == "powersgd":
        state = powersgd.PowerSGDState(process_group=None, matrix_approximation_rank=1,
                                       start_powerSGD_iter=2, use_error_feedback=True)
        ddp_model.register_comm_hook(state, powersgd.powerSGD_hook)
    else:
        raise ValueError(f"unknown compression {compression!r}")


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker loop Ray Train runs; returns rank 0's summary."""
    import ray.train
    from ray.train.torch import prepare_model

    spec: JobSpec = config["spec"]
    ctx: JobContext = config["ctx"]
    train_ctx = ray.train.get_context()
    rank, world = train_ctx.get_world_rank(), train_ctx.get_world_size()
    node_id = current_node_id()
    torch.set_num_threads(max(1, int(spec.cpus_per_worker)))

    model = build_model(spec.model, spec.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate, momentum=0.9)
    start_step = 0
    state = load_checkpoint(ctx.checkpoint_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
    compression = spec.options.get("compression", "none")
    # PowerSGD on gloo hangs with several gradient buckets: give DDP a single one.
    ddp_kwargs = {"bucket_cap_mb": 1024} if compression == "powersgd" else {}
    ddp_model = prepare_model(model, move_to_device=False, parallel_strategy_kwargs=ddp_kwargs)
    apply_compression(ddp_model, compression)
    lo, hi = shard_bounds(spec.batch_size, worker_shares(spec, ctx), rank)
    reporter = StepReporter(ctx, rank=rank, node_id=node_id)
    fail_at = spec.options.get("fail_at_step")
    loss_value = float("nan")

    def checkpoint(step: int) -> None:
        if rank == 0:
            save_checkpoint(ctx.checkpoint_dir, {
                "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "loss": loss_value,
            })
        dist.barrier()

    for step in range(start_step, spec.steps):
        if fail_at is not None and step == fail_at:
            raise RuntimeError(f"injected failure at step {step}")
        began = time.perf_counter()
        x, y = global_batch(spec.dataset, step, spec.batch_size, spec.seed)
        loss = loss_fn(spec.model, ddp_model(x[lo:hi]), y[lo:hi])
        # DDP averages gradients over ranks; weighting by shard size makes the update the
        # gradient of the whole global batch, whatever the shares.
        (loss * (hi - lo) * world / spec.batch_size).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = stretch_for_speed(time.perf_counter() - began, ctx.speed_of(node_id))
        global_loss = loss.detach() * (hi - lo) / spec.batch_size
        dist.all_reduce(global_loss)
        loss_value = float(global_loss)
        flushed = reporter.record(step=step, loss=loss_value, step_time_s=elapsed,
                                  samples=hi - lo)
        stop = False
        if flushed:
            flag = torch.tensor([1 if reporter.stop_requested else 0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop or (spec.checkpoint_every and (step + 1) % spec.checkpoint_every == 0):
            checkpoint(step + 1)
        if stop:
            return {"loss": loss_value, "step": step + 1, "stopped": True}
    reporter.flush()
    return {"loss": loss_value, "step": spec.steps, "stopped": False}


def run(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    """Run one attempt with TorchTrainer; worker i pinned to ctx.node_ids[i]."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raysched.platform.placement import worker_label_selectors

    storage = Path(ctx.checkpoint_dir).parent.parent / "ray_train"
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec, "ctx": ctx},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(
            num_workers=spec.num_workers,
            resources_per_worker={"CPU": spec.cpus_per_worker},
            label_selector=worker_label_selectors(ctx.node_ids),
        ),
        run_config=RunConfig(
            name=f"{ctx.job_id}-attempt-{ctx.attempt}",
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=2),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    summary = result.return_value
    return JobOutcome(final_loss=summary["loss"], steps_done=summary["step"],
                      stopped_for_migration=summary["stopped"])
