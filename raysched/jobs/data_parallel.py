"""Data-parallel training with Ray Train's TorchTrainer: DDP or FSDP2, gloo on CPU, NCCL on GPU.

Worker i runs on `ctx.node_ids[i]` through ``ScalingConfig(label_selector=[...])``. Every global
batch is deterministic in its step, each worker takes its share of it, and checkpoints live in
the job's checkpoint directory, so a relaunch elsewhere continues the same loss curve.

Option ``parallelism: fsdp`` shards parameters, gradients and optimizer state over the workers
with ``torch.distributed.fsdp.fully_shard`` (FSDP2; works on gloo, unlike Ray's
``prepare_model(parallel_strategy="fsdp")``). Checkpoints hold the full, gathered state in the
same format DDP writes, so a job can stop under one strategy or worker count and resume under
another. The per-worker loop, `worker_loop`, needs only an initialized process group; Ray's
`train_loop` is a thin wrapper around it.

With ``gpus_per_worker > 0`` each worker gets its GPUs from Ray Train (``use_gpu``) and the
process group uses NCCL; `worker_loop` moves the model and every batch to the worker's device
(``ray.train.torch.get_device()``). Checkpoints always hold CPU tensors (`save_checkpoint`), so
a job stopped on GPUs resumes on CPUs and vice versa. This module imports without Ray.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

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
from raysched.jobs.training_loop import make_optimizer
from raysched.schedulers.spec import JobSpec

MOMENTUM = 0.9  # SGD momentum of data-parallel jobs (both strategies: checkpoints interchange)


def worker_shares(spec: JobSpec, ctx: JobContext) -> list[float]:
    """Each worker's share of a global batch: by node speed if asked (and known), else equal."""
    if spec.options.get("hetero_sharding") and ctx.node_ids:
        return [ctx.speed_of(n) for n in ctx.node_ids]
    return [1.0] * spec.num_workers


def apply_compression(ddp_model: Any, compression: str, device: torch.device | None = None
                      ) -> None:
    """Register a DDP communication hook that compresses gradients before the AllReduce.

    Both hooks work on gloo (CPU) and NCCL (CUDA). PowerSGD on CPU tensors needs a process
    that sees no CUDA device: torch's hook then synchronizes the CPU "device" as a CUDA one and
    fails. Ray hides GPUs from workers that asked for none, so CPU jobs are safe under Ray.
    """
    if compression == "none" or not hasattr(ddp_model, "register_comm_hook"):
        return  # a single worker is not wrapped in DDP: nothing to communicate
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

    if compression == "fp16":
        ddp_model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif compression == "powersgd":
        if (device is None or device.type == "cpu") and torch.cuda.is_available():
            raise RuntimeError(
                "compression 'powersgd' on CPU tensors fails inside torch when CUDA is visible "
                "(its hook calls torch.cuda.synchronize on the tensors' device); train on the "
                "GPU, or hide the GPUs from this process (CUDA_VISIBLE_DEVICES=)")
        state = powersgd.PowerSGDState(process_group=None, matrix_approximation_rank=1,
                                       start_powerSGD_iter=2, use_error_feedback=True)
        ddp_model.register_comm_hook(state, powersgd.powerSGD_hook)
    else:
        raise ValueError(f"unknown compression {compression!r}")


def parallelism(spec: JobSpec) -> str:
    """The data-parallel strategy a spec asks for: "ddp" (default) or "fsdp"."""
    return str(spec.options.get("parallelism", "ddp"))


def apply_fsdp(model: nn.Module, world: int, device_type: str = "cpu") -> nn.Module:
    """Shard `model` in place with FSDP2: each child with parameters is a unit, then the root.

    Parameters become DTensors sharded on dim 0 over a 1-D mesh of all ranks on `device_type`
    ("cpu" or "cuda"); gradients are reduce-scattered and averaged over ranks, as DDP's
    AllReduce averages them.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world,))
    for child in model.children():
        if any(True for _ in child.parameters()):
            fully_shard(child, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _full_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def optimizer_state_by_index(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """An FQN-keyed optimizer state dict (torch.distributed.checkpoint) in `Optimizer` format.

    `names` are the parameter FQNs in the optimizer's order; the result is what
    ``optimizer.state_dict()`` of the unsharded model returns, which DDP checkpoints hold.
    """
    index = {name: i for i, name in enumerate(names)}
    return {
        "state": {index[name]: value for name, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [index[name] for name in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def optimizer_state_by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of `optimizer_state_by_index`: `Optimizer` format to FQN keys."""
    return {
        "state": {names[int(i)]: value for i, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[int(i)] for i in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def gather_fsdp_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full model and optimizer state on CPU in DDP's checkpoint format (a collective).

    Every rank must call it; only rank 0 gets the tensors (other ranks get empty dicts).
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = _full_options()
    model_state = get_model_state_dict(model, options=options)
    optim_state = get_optimizer_state_dict(model, optimizer, options=options)
    if not model_state:
        return {}, {}
    names = [name for name, _ in model.named_parameters()]
    return model_state, optimizer_state_by_index(optim_state, names)


def load_fsdp_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a full checkpoint (either strategy, any world size) into a sharded model."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    names = [name for name, _ in model.named_parameters()]
    set_model_state_dict(model, state["model"], options=options)
    set_optimizer_state_dict(
        model, optimizer, optimizer_state_by_name(state["optimizer"], names), options=options
    )


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The device a worker trains on (CPU when None); a bare "cuda" gets the current index."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)  # NCCL collectives and barriers run on this device
    return device


def worker_loop(
    spec: JobSpec, ctx: JobContext, *, rank: int, world: int, node_id: str,
    device: torch.device | str | None = None, wrap_single_rank: bool = False,
) -> dict[str, Any]:
    """One worker's training loop under an initialized process group (Ray or not).

    `device` is where the model and batches live (CPU by default; a CUDA device needs an
    NCCL group). `wrap_single_rank` wraps even a single rank in DDP (checks of the wrapper).
    Returns a summary: final global loss, steps done, whether it stopped for a migration, and
    the global loss of every step this attempt ran.
    """
    torch.set_num_threads(max(1, int(spec.cpus_per_worker)))
    device = resolve_device(device)
    fsdp = parallelism(spec) == "fsdp"
    model = build_model(spec.model, spec.seed).to(device)  # same initial weights on any device
    state = load_checkpoint(ctx.checkpoint_dir, map_location="cpu")  # copied onto `device`
    start_step = int(state["step"]) if state is not None else 0
    if fsdp:
        forward = apply_fsdp(model, world, device.type)
        optimizer = make_optimizer(model.parameters(), spec.learning_rate, MOMENTUM)
        if state is not None:
            load_fsdp_state(model, optimizer, state)
    else:
        optimizer = make_optimizer(model.parameters(), spec.learning_rate, MOMENTUM)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])  # moves its state to the params
        forward = wrap_ddp(model, spec, world, device, wrap_single_rank=wrap_single_rank)
    lo, hi = shard_bounds(spec.batch_size, worker_shares(spec, ctx), rank)
    reporter = StepReporter(ctx, rank=rank, node_id=node_id)
    fail_at = spec.options.get("fail_at_step")
    losses: list[float] = []
    loss_value = float("nan")

    def checkpoint(step: int) -> None:
        if fsdp:
            model_state, optim_state = gather_fsdp_state(model, optimizer)
        else:
            model_state, optim_state = model.state_dict(), optimizer.state_dict()
        if rank == 0:  # save_checkpoint stores CPU tensors, whatever the device
            save_checkpoint(ctx.checkpoint_dir, {
                "step": step, "model": model_state, "optimizer": optim_state,
                "loss": loss_value,
            })
        dist.barrier()

    def summary(step: int, stopped: bool) -> dict[str, Any]:
        return {"loss": loss_value, "step": step, "stopped": stopped, "losses": losses}

    for step in range(start_step, spec.steps):
        if fail_at is not None and step == fail_at:
            raise RuntimeError(f"injected failure at step {step}")
        began = time.perf_counter()
        x, y = global_batch(spec.dataset, step, spec.batch_size, spec.seed)
        x, y = x[lo:hi].to(device, non_blocking=True), y[lo:hi].to(device, non_blocking=True)
        loss = loss_fn(spec.model, forward(x), y)
        # DDP and FSDP average gradients over ranks; weighting by shard size makes the update
        # the gradient of the whole global batch, whatever the shares.
        (loss * (hi - lo) * world / spec.batch_size).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step's time includes its kernels, not launches
        elapsed = stretch_for_speed(time.perf_counter() - began, ctx.speed_of(node_id))
        global_loss = loss.detach() * (hi - lo) / spec.batch_size
        dist.all_reduce(global_loss)
        loss_value = float(global_loss)
        losses.append(loss_value)
        flushed = reporter.record(step=step, loss=loss_value, step_time_s=elapsed,
                                  samples=hi - lo)
        stop = False
        if flushed:
            flag = torch.tensor([1 if reporter.stop_requested else 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop or (spec.checkpoint_every and (step + 1) % spec.checkpoint_every == 0):
            checkpoint(step + 1)
        if stop:
            return summary(step + 1, True)
    reporter.flush()
    return summary(spec.steps, False)


DEFAULT_MAX_FAILURES = 2  # worker-group restarts (from the last checkpoint) before FAILED


def wrap_ddp(
    model: nn.Module, spec: JobSpec, world: int, device: torch.device | None = None, *,
    wrap_single_rank: bool = False,
) -> nn.Module:
    """DDP around `model` (with the spec's compression hook) when there are several ranks.

    On CUDA, DDP gets ``device_ids`` (one device per process). Both hooks (fp16, PowerSGD)
    work on gloo and NCCL; only gloo needs PowerSGD's single gradient bucket.
    """
    if world <= 1 and not wrap_single_rank:
        return model  # a single worker has nothing to communicate
    from torch.nn.parallel import DistributedDataParallel

    device = device or torch.device("cpu")
    compression = spec.options.get("compression", "none")
    ddp_kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        ddp_kwargs["device_ids"] = [device]
    # PowerSGD on gloo hangs with several gradient buckets: give DDP a single one there.
    if compression == "powersgd" and dist.get_backend() == "gloo":
        ddp_kwargs["bucket_cap_mb"] = 1024
    ddp_model = DistributedDataParallel(model, **ddp_kwargs)
    apply_compression(ddp_model, compression, device)
    return ddp_model


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker loop Ray Train runs; returns rank 0's summary."""
    import ray.train
    import ray.train.torch

    train_ctx = ray.train.get_context()
    return worker_loop(
        config["spec"], config["ctx"], rank=train_ctx.get_world_rank(),
        world=train_ctx.get_world_size(), node_id=current_node_id(),
        device=ray.train.torch.get_device(),  # the worker's GPU with use_gpu, else the CPU
    )


def train_resources(spec: JobSpec) -> dict[str, Any]:
    """What Ray Train is asked for: the process-group backend, `use_gpu`, each worker's resources.

    GPU jobs ask for ``gpus_per_worker`` GPUs per worker and communicate over NCCL; CPU jobs
    over gloo.
    """
    from raysched.platform.placement import worker_resources

    use_gpu = spec.gpus_per_worker > 0
    return {"backend": "nccl" if use_gpu else "gloo", "use_gpu": use_gpu,
            "resources_per_worker": worker_resources(spec.cpus_per_worker,
                                                     spec.gpus_per_worker)}


def run(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    """Run one attempt with TorchTrainer; worker i pinned to ctx.node_ids[i] (GPUs: see
    `train_resources`)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raysched.platform.placement import worker_label_selectors

    storage = Path(ctx.checkpoint_dir).parent.parent / "ray_train"
    asked = train_resources(spec)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec, "ctx": ctx},
        torch_config=TorchConfig(backend=asked["backend"]),
        scaling_config=ScalingConfig(
            num_workers=spec.num_workers,
            use_gpu=asked["use_gpu"],
            resources_per_worker=asked["resources_per_worker"],
            label_selector=worker_label_selectors(ctx.node_ids),
        ),
        run_config=RunConfig(
            name=f"{ctx.job_id}-attempt-{ctx.attempt}",
            storage_path=str(storage),
            failure_config=FailureConfig(
                max_failures=spec.options.get("max_failures", DEFAULT_MAX_FAILURES)),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    summary = result.return_value
    return JobOutcome(final_loss=summary["loss"], steps_done=summary["step"],
                      stopped_for_migration=summary["stopped"])
