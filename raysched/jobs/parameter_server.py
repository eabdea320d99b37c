"""Parameter-server job kind: server actors hold sharded weights, worker actors compute gradients.

Layout: the model's parameter tensors are sharded over `num_servers` server actors (largest
first onto the lightest server); N = num_workers worker actors, worker i on ctx.node_ids[i]
with cpus_per_worker CPUs. Servers ask for 0 CPUs and sit on the job's nodes round-robin:
the scheduler reserves num_workers * cpus_per_worker for the gang, so servers claiming CPUs
of their own could leave a job it admitted pending on a full node; a server only adds
gradients and steps SGD.

- `mode: sync` (default): each step, every worker pulls all shards, computes the gradient on
  its slice (shard_bounds) of global_batch(step), and each server applies the size-weighted
  mean: exactly the full-batch SGD step of a single process. The driver wires the step
  through object refs (pull -> compute -> apply), so tensors never pass through it.
- `mode: async`: workers pull, compute and push on their own; a server applies each gradient
  at once, scaled by its share of the batch. Bounded staleness (stale synchronous parallel):
  a worker may start step c only while c - (slowest worker's completed steps) <= max_staleness.

Checkpoints (servers' shards + SGD state + per-worker clocks) go under step-NNNNNNNN/server-j.pt.
"""

from __future__ import annotations

import math
import time
from typing import Any

import ray
import torch

from raysched.jobs import sharded_checkpoints as checkpoints
from raysched.jobs.base import (
    JobContext,
    JobOutcome,
    StepReporter,
    current_node_id,
    stretch_for_speed,
)
from raysched.jobs.data import global_batch, shard_bounds
from raysched.jobs.models import build_model
from raysched.jobs.ps_shards import assign_shards, split_by_shard, weighted_mean
from raysched.jobs.relaunch import GangActorDied, kill_all, run_with_relaunch, wait_gang
from raysched.jobs.training_loop import batch_loss, make_optimizer
from raysched.platform.placement import actor_options_for_node
from raysched.schedulers.spec import JobSpec

DEFAULT_MAX_STALENESS = 2


def server_part(j: int) -> str:
    """Checkpoint part name of server `j`."""
    return f"server-{j}"


def model_shards(spec: JobSpec) -> list[list[int]]:
    """Parameter indices per server for the spec's model."""
    sizes = [p.numel() for p in build_model(spec.model, spec.seed).parameters()]
    return assign_shards(sizes, spec.options.get("num_servers", 1))


@ray.remote
class ParameterServer:
    """Holds one shard of the weights and its SGD state; applies gradients."""

    def __init__(self, spec: JobSpec, indices: list[int]) -> None:
        torch.set_num_threads(1)
        params = list(build_model(spec.model, spec.seed).parameters())
        self.params = [torch.nn.Parameter(params[i].detach().clone()) for i in indices]
        self.optimizer = make_optimizer(self.params, spec.learning_rate)
        self.version = 0

    def pull(self) -> list[torch.Tensor]:
        return [p.detach() for p in self.params]

    def pull_versioned(self) -> tuple[int, list[torch.Tensor]]:
        return self.version, self.pull()

    def _step(self, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        self.version += 1

    def apply(self, weights: list[int], *grads: list[torch.Tensor] | None) -> int:
        """Sync mode: apply the size-weighted mean of every worker's gradient."""
        self._step(weighted_mean(grads, weights))
        return self.version

    def push(self, grads: list[torch.Tensor], scale: float, pulled_version: int) -> int:
        """Async mode: apply one worker's gradient scaled by its batch share; return staleness."""
        staleness = self.version - pulled_version
        self._step([g * scale for g in grads])
        return staleness

    def save(self, root: str, part: str, step: int, extra: dict[str, Any]) -> None:
        state = {
            "params": [p.detach() for p in self.params],
            "optimizer": self.optimizer.state_dict(),
            "version": self.version,
            **extra,
        }
        checkpoints.save_part(root, step, part, state)

    def load(self, root: str, part: str, step: int) -> dict[str, Any]:
        state = checkpoints.load_part(root, step, part)
        with torch.no_grad():
            for p, saved in zip(self.params, state["params"], strict=True):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = state["version"]
        return {k: v for k, v in state.items() if k not in ("params", "optimizer")}


@ray.remote
class PSWorker:
    """Computes gradients on its slice of each global batch with weights pulled from servers."""

    def __init__(self, spec: JobSpec, ctx: JobContext, rank: int, shards: list[list[int]]):
        torch.set_num_threads(max(1, int(spec.cpus_per_worker)))
        self.spec, self.ctx, self.rank, self.shards = spec, ctx, rank, shards
        self.model = build_model(spec.model, spec.seed)
        self.params = list(self.model.parameters())
        self.node_id = current_node_id()
        self.reporter = StepReporter(ctx, rank=rank, node_id=self.node_id)
        self.bounds = shard_bounds(spec.batch_size, [1.0] * spec.num_workers, rank)
        global_batch(spec.dataset, 0, 1, spec.seed)  # load the dataset now, not in step 0

    def _gradients(
        self, step: int, weights: list[list[torch.Tensor]]
    ) -> tuple[dict[str, Any], list[list[torch.Tensor]] | None]:
        fail_at = self.spec.options.get("fail_at_step")
        if fail_at is not None and step == fail_at:
            raise RuntimeError(f"injected failure at step {step}")
        t0 = time.perf_counter()
        with torch.no_grad():
            for shard, tensors in zip(self.shards, weights, strict=True):
                for i, w in zip(shard, tensors, strict=True):
                    self.params[i].copy_(w)
        a, b = self.bounds
        grads: list[list[torch.Tensor]] | None = None
        loss = math.nan
        if b > a:
            x, y = global_batch(self.spec.dataset, step, self.spec.batch_size, self.spec.seed)
            self.model.zero_grad(set_to_none=True)
            out = batch_loss(self.model, self.spec.model, x[a:b], y[a:b])
            out.backward()
            loss = float(out.detach())
            grads = split_by_shard([p.grad for p in self.params], self.shards)
        elapsed = stretch_for_speed(time.perf_counter() - t0, self.ctx.speed_of(self.node_id))
        self.reporter.record(step=step, loss=loss, step_time_s=elapsed, samples=b - a)
        meta = {
            "rank": self.rank,
            "step": step,
            "loss": loss,
            "samples": b - a,
            "stop": self.reporter.stop_requested,
            "step_time_s": elapsed,
        }
        return meta, grads

    def compute(self, step: int, *weights: list[torch.Tensor]) -> tuple:
        """Sync mode: returns (meta, grads for server 0, ..., grads for server K-1)."""
        meta, grads = self._gradients(step, list(weights))
        per_server = grads if grads is not None else [None] * len(self.shards)
        return (meta, *per_server)

    def async_step(self, step: int, servers: list[Any]) -> dict[str, Any]:
        """Async mode: pull, compute, push to every server; returns the step's meta."""
        pulled = ray.get([s.pull_versioned.remote() for s in servers])
        meta, grads = self._gradients(step, [w for _, w in pulled])
        if grads is not None:
            scale = meta["samples"] / self.spec.batch_size
            staleness = ray.get(
                [
                    s.push.remote(g, scale, version)
                    for s, g, (version, _) in zip(servers, grads, pulled, strict=True)
                ]
            )
            meta["staleness"] = max(staleness)
        return meta

    def flush(self) -> bool:
        return self.reporter.flush()


class _LossBook:
    """Per-step loss of the whole global batch, assembled from the workers' shard losses."""

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self.parts: dict[int, list[tuple[float, int]]] = {}
        self.losses: dict[int, float] = {}

    def add(self, meta: dict[str, Any]) -> None:
        parts = self.parts.setdefault(meta["step"], [])
        parts.append((meta["loss"], meta["samples"]))
        if len(parts) == self.num_workers:
            used = [(loss, n) for loss, n in parts if n > 0]
            total = sum(n for _, n in used)
            self.losses[meta["step"]] = sum(loss * n for loss, n in used) / total
            del self.parts[meta["step"]]

    def ordered(self) -> list[float]:
        return [self.losses[s] for s in sorted(self.losses)]


class _Gang:
    """One launch of servers + workers, resumed from the newest complete checkpoint."""

    def __init__(self, spec: JobSpec, ctx: JobContext, relaunch: int) -> None:
        self.spec, self.ctx = spec, ctx
        self.shards = model_shards(spec)
        self.parts = [server_part(j) for j in range(len(self.shards))]
        nodes = list(ctx.node_ids)
        prefix = f"raysched-{ctx.job_id}-a{ctx.attempt}-r{relaunch}"
        self.servers = [
            ParameterServer.options(
                **actor_options_for_node(
                    nodes[j % len(nodes)] if nodes else None, 0, name=f"{prefix}-ps{j}"
                )
            ).remote(spec, shard)
            for j, shard in enumerate(self.shards)
        ]
        self.workers = [
            PSWorker.options(
                **actor_options_for_node(
                    nodes[i] if nodes else None, spec.cpus_per_worker, name=f"{prefix}-w{i}"
                )
            ).remote(spec, ctx, i, self.shards)
            for i in range(spec.num_workers)
        ]
        self.book = _LossBook(spec.num_workers)
        self.clocks = [0] * spec.num_workers
        self.last_loss = math.nan
        self.start = 0

    def resume(self) -> None:
        """Load the servers from the newest complete checkpoint, if any."""
        root = self.ctx.checkpoint_dir
        step = checkpoints.latest_step(root, self.parts)
        if step is None:
            return
        loads = [
            s.load.remote(root, p, step) for s, p in zip(self.servers, self.parts, strict=True)
        ]
        state = wait_gang(loads)[0]
        self.start, self.clocks, self.last_loss = step, list(state["clocks"]), state["loss"]

    def kill(self) -> None:
        kill_all([*self.workers, *self.servers])

    def save(self, step: int) -> None:
        extra = {"clocks": list(self.clocks), "loss": self.last_loss}
        wait_gang(
            [
                s.save.remote(self.ctx.checkpoint_dir, p, step, extra)
                for s, p in zip(self.servers, self.parts, strict=True)
            ]
        )
        checkpoints.prune(self.ctx.checkpoint_dir, self.parts)

    def _due(self, step: int) -> bool:
        every = self.spec.checkpoint_every
        return step == self.spec.steps or bool(every and step % every == 0)

    def run_sync(self) -> tuple[int, bool]:
        spec, k = self.spec, len(self.servers)
        bounds = [
            shard_bounds(spec.batch_size, [1.0] * spec.num_workers, i)
            for i in range(spec.num_workers)
        ]
        weights = [end - begin for begin, end in bounds]
        step = self.start
        while step < spec.steps:
            pulls = [s.pull.remote() for s in self.servers]
            outs = [w.compute.options(num_returns=k + 1).remote(step, *pulls) for w in self.workers]
            applied = [
                server.apply.remote(weights, *[o[1 + j] for o in outs])
                for j, server in enumerate(self.servers)
            ]
            metas = wait_gang([o[0] for o in outs] + applied)[: len(outs)]
            for meta in metas:
                self.book.add(meta)
            self.last_loss = self.book.losses[step]
            step += 1
            self.clocks = [step] * spec.num_workers
            stop = any(m["stop"] for m in metas) and step < spec.steps
            if stop or self._due(step):
                self.save(step)  # queued after this step's apply on every server
            if stop:
                return step, True
        return step, False

    def run_async(self) -> tuple[int, bool, int]:
        spec = self.spec
        bound = spec.options.get("max_staleness", DEFAULT_MAX_STALENESS)
        inflight: dict[ray.ObjectRef, int] = {}
        stop, saved_at, max_seen = False, min(self.clocks), 0
        while True:
            low = min(self.clocks)
            checkpoint_due = low > saved_at and self._due(low)
            if not stop and not checkpoint_due:
                busy = set(inflight.values())
                for i, c in enumerate(self.clocks):
                    if i not in busy and c < spec.steps and c - low <= bound:
                        inflight[self.workers[i].async_step.remote(c, self.servers)] = i
            if not inflight:
                if checkpoint_due or stop:
                    if low > saved_at or stop:
                        self.save(low)
                        saved_at = low
                if stop or low >= spec.steps:
                    return low, stop and low < spec.steps, max_seen
                continue
            done, _ = ray.wait(list(inflight), num_returns=1)
            rank = inflight.pop(done[0])
            try:
                meta = ray.get(done[0])
            except Exception:
                wait_gang(list(inflight))  # an actor death anywhere wins over a symptom
                raise
            self.clocks[rank] += 1
            self.book.add(meta)
            if self.book.losses:
                self.last_loss = self.book.losses[max(self.book.losses)]
            max_seen = max(max_seen, meta.get("staleness", 0))
            stop = stop or meta["stop"]


def _attempt(spec: JobSpec, ctx: JobContext, relaunch: int) -> dict[str, Any]:
    gang = _Gang(spec, ctx, relaunch)
    try:
        gang.resume()
        if spec.options.get("mode", "sync") == "async":
            steps, stopped, staleness = gang.run_async()
        else:
            (steps, stopped), staleness = gang.run_sync(), 0
        wait_gang([w.flush.remote() for w in gang.workers])
        return {
            "start_step": gang.start,
            "steps_done": steps,
            "stopped": stopped,
            "final_loss": gang.last_loss,
            "losses": gang.book.ordered(),
            "max_staleness_seen": staleness,
        }
    except ray.exceptions.RayActorError as exc:
        raise GangActorDied(str(exc)) from exc
    finally:
        gang.kill()


def run(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    """Train spec's model with parameter servers; see the module docstring."""
    mode = spec.options.get("mode", "sync")
    if mode not in ("sync", "async"):
        raise ValueError(f"options.mode must be 'sync' or 'async', got {mode!r}")
    if spec.options.get("max_staleness", 0) < 0:
        raise ValueError("options.max_staleness must be >= 0")
    if ctx.node_ids and len(ctx.node_ids) != spec.num_workers:
        raise ValueError(f"{len(ctx.node_ids)} node ids for {spec.num_workers} workers")
    model_shards(spec)  # validates num_servers
    result, relaunches = run_with_relaunch(lambda r: _attempt(spec, ctx, r))
    return JobOutcome(
        final_loss=float(result["final_loss"]),
        steps_done=int(result["steps_done"]),
        stopped_for_migration=bool(result["stopped"]),
        extra={
            "start_step": result["start_step"],
            "losses": result["losses"],
            "relaunches": relaunches,
            "mode": mode,
            "num_servers": len(model_shards(spec)),
            "max_staleness_seen": result["max_staleness_seen"],
        },
    )
