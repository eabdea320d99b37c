"""The DDP train loop both torchrun and Ray Train run in the training benchmark (same code)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from raysched.jobs.data import global_batch, shard_bounds
from raysched.jobs.models import build_model
from raysched.jobs.training_loop import make_optimizer, train_step


def ddp_train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Train config's model with DDP (gloo) in an initialised process group; time the steps.

    Each rank takes its shard of global_batch(step); returns, per rank, the wall clock of the
    first step's start and the seconds of the timed steps (after `warmup` steps).
    """
    torch.set_num_threads(config.get("threads", 1))
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(build_model(config["model"], config["seed"]))
    optimizer = make_optimizer(model.parameters(), config["learning_rate"])
    a, b = shard_bounds(config["batch_size"], [1.0] * world, rank)
    batches = [
        global_batch(config["dataset"], s, config["batch_size"], config["seed"])
        for s in range(config["warmup"] + config["steps"])
    ]
    first_step_at = time.time()
    for x, y in batches[: config["warmup"]]:
        train_step(model, optimizer, config["model"], x[a:b], y[a:b])
    dist.barrier()
    t0 = time.perf_counter()
    for x, y in batches[config["warmup"] :]:
        loss = train_step(model, optimizer, config["model"], x[a:b], y[a:b])
    dist.barrier()
    return {
        "rank": rank,
        "first_step_at": first_step_at,
        "timed_s": time.perf_counter() - t0,
        "samples": config["steps"] * config["batch_size"],
        "loss": loss,
    }
