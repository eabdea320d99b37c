"""One pipeline stage's training loop over a torch.distributed gloo group (no Ray in here)."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.pipelining import PipelineStage, Schedule1F1B

from raysched.jobs import sharded_checkpoints as checkpoints
from raysched.jobs.base import JobContext, StepReporter, stretch_for_speed
from raysched.jobs.data import global_batch
from raysched.jobs.models import build_model, loss_fn
from raysched.jobs.pipeline_config import PipelineConfig, stage_part
from raysched.jobs.pipeline_schedules import ReceiveAheadGPipe
from raysched.jobs.pipeline_timing import StageClock
from raysched.jobs.stages import split_sequential
from raysched.jobs.training_loop import make_optimizer
from raysched.schedulers.spec import JobSpec

# pipeline_config.SCHEDULE_NAMES. GPipe posts each receive one micro-batch ahead
# (pipeline_schedules: a smaller bubble); torch's 1F1B already overlaps its transfers.
SCHEDULES = {"gpipe": ReceiveAheadGPipe, "1f1b": Schedule1F1B}


class StageRunner:
    """Stage `rank` of the spec's model: builds its slice, joins the group, trains, checkpoints."""

    def __init__(self, spec: JobSpec, ctx: JobContext, rank: int, node_id: str) -> None:
        self.spec, self.ctx, self.rank, self.node_id = spec, ctx, rank, node_id
        self.config = PipelineConfig.from_spec(spec)
        full = build_model(spec.model, spec.seed)
        self.module = split_sequential(full, self.config.num_stages)[rank]
        self.optimizer = make_optimizer(self.module.parameters(), spec.learning_rate)
        self.clock = StageClock()
        global_batch(spec.dataset, 0, 1, spec.seed)  # load the dataset now, not in step 0

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.config.num_stages - 1

    def join_group(self, init_method: str, timeout_s: float = 300.0) -> None:
        """Join the job's gloo group (blocks until every stage joined)."""
        dist.init_process_group(
            "gloo",
            init_method=init_method,
            rank=self.rank,
            world_size=self.config.num_stages,
            timeout=timedelta(seconds=timeout_s),
        )

    def leave_group(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def _schedule(self) -> Any:
        """The schedule over this stage, its compute and its step() timed by self.clock."""
        stage = PipelineStage(self.module, self.rank, self.config.num_stages, torch.device("cpu"))
        for name in ("forward_one_chunk", "backward_one_chunk"):
            setattr(stage, name, self.clock.compute(getattr(stage, name)))
        model_name = self.spec.model
        schedule = SCHEDULES[self.config.schedule](
            stage,
            self.config.micro_batches,
            loss_fn=self.clock.compute(lambda out, target: loss_fn(model_name, out, target)),
        )
        schedule.step = self.clock.schedule(schedule.step)
        return schedule

    def load(self, step: int) -> float:
        """Restore this stage from the checkpoint after `step` steps; returns its loss."""
        state = checkpoints.load_part(self.ctx.checkpoint_dir, step, stage_part(self.rank))
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        return float(state.get("loss", math.nan))

    def save(self, step: int, loss: float) -> None:
        """Checkpoint this stage after `step` steps (atomic, one file per stage)."""
        state = {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss": loss,
            "rank": self.rank,
        }
        checkpoints.save_part(self.ctx.checkpoint_dir, step, stage_part(self.rank), state)
        if self.is_first:
            parts = [stage_part(r) for r in range(self.config.num_stages)]
            checkpoints.prune(self.ctx.checkpoint_dir, parts)

    def _agree(self, values: list[float]) -> list[float]:
        """Sum `values` over all stages (loss from the last stage, stop votes from all)."""
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def train(self, start_step: int) -> dict[str, Any]:
        """Run steps start_step..spec.steps-1 (or until asked to stop); return a summary."""
        spec, ctx = self.spec, self.ctx
        loss = self.load(start_step) if start_step > 0 else math.nan
        schedule = self._schedule()
        reporter = StepReporter(ctx, rank=self.rank, node_id=self.node_id)
        fail_at = spec.options.get("fail_at_step")
        losses: list[float] = []
        step, stopped = start_step, False
        self.clock.reset()
        wall_start = time.perf_counter()
        while step < spec.steps:
            if fail_at is not None and step == fail_at:
                raise RuntimeError(f"injected failure at step {step}")
            x, y = global_batch(spec.dataset, step, spec.batch_size, spec.seed)
            # Token batches are slices of one (batch, length + 1) tensor; torch 2.11's stage
            # checks input strides against its shape inference and refused them.
            x, y = x.contiguous(), y.contiguous()
            t0 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            mb_losses: list[torch.Tensor] = []
            if self.is_first and self.is_last:
                schedule.step(x, target=y, losses=mb_losses)
            elif self.is_first:
                schedule.step(x)
            elif self.is_last:
                schedule.step(target=y, losses=mb_losses)
            else:
                schedule.step()
            self.optimizer.step()
            elapsed = stretch_for_speed(time.perf_counter() - t0, ctx.speed_of(self.node_id))
            local = float(torch.stack(mb_losses).detach().mean()) if self.is_last else 0.0
            (loss,) = self._agree([local])
            losses.append(loss)
            reporter.record(step=step, loss=loss, step_time_s=elapsed, samples=spec.batch_size)
            step += 1
            (votes,) = self._agree([1.0 if reporter.stop_requested else 0.0])
            stopped = votes > 0 and step < spec.steps
            every = spec.checkpoint_every
            if stopped or step == spec.steps or (every and step % every == 0):
                self.save(step, loss)
            if stopped:
                break
            if step == start_step + 1:  # the first step infers shapes: leave it out of the bubble
                self.clock.reset()
                wall_start = time.perf_counter()
        reporter.flush()
        return {
            "rank": self.rank,
            "node_id": self.node_id,
            "start_step": start_step,
            "steps_done": step,
            "stopped": stopped,
            "final_loss": loss,
            "losses": losses,
            # After the first step: compute (forward, backward, loss) inside schedule.step, the
            # time inside schedule.step, and the loop's wall time (optimizer, all-reduces,
            # telemetry and checkpoints too). The bubble is 1 - busy_s / schedule_s.
            "busy_s": self.clock.busy_s,
            "schedule_s": self.clock.schedule_s,
            "wall_s": time.perf_counter() - wall_start,
        }
