"""The pipeline bubble counts compute inside schedule.step only, not work between steps."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch.distributed as dist

import raysched.jobs.pipeline_stage as stage_module
from raysched.jobs.base import JobContext
from raysched.jobs.pipeline_parallel import bubble_fraction
from raysched.jobs.pipeline_stage import StageRunner
from raysched.jobs.pipeline_timing import StageClock
from raysched.schedulers.spec import JobSpec


class FakeTime:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def test_bubble_is_idle_time_inside_the_schedule_only() -> None:
    """Per step: 3 s waiting, 2 s forward, 1 s loss in the schedule; 15 s outside it."""
    t = FakeTime()
    clock = StageClock(clock=t)
    forward = clock.compute(lambda: t.spend(2.0))
    loss = clock.compute(lambda: t.spend(1.0))

    def step() -> None:
        t.spend(3.0)  # waiting for the previous stage's activations: the bubble
        forward()
        loss()

    step = clock.schedule(step)
    for _ in range(4):
        step()
        t.spend(15.0)  # optimizer, all-reduce, telemetry, checkpoint: outside the schedule
    assert clock.busy_s == pytest.approx(12.0)
    assert clock.schedule_s == pytest.approx(24.0)
    assert clock.bubble() == pytest.approx(0.5)
    assert bubble_fraction([clock.busy_s], [clock.schedule_s]) == pytest.approx(0.5)


def test_nested_compute_counts_once_and_reset_forgets() -> None:
    t = FakeTime()
    clock = StageClock(clock=t)
    inner = clock.compute(lambda: t.spend(1.0))
    outer = clock.compute(lambda: (inner(), t.spend(1.0)))
    clock.schedule(outer)()
    assert (clock.busy_s, clock.schedule_s) == (pytest.approx(2.0), pytest.approx(2.0))
    clock.reset()
    assert (clock.busy_s, clock.schedule_s) == (0.0, 0.0)
    assert clock.bubble() != clock.bubble()  # nan before any schedule time


def test_stage_runner_times_loss_as_busy_and_leaves_the_optimizer_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-stage runner (gloo group of 1): slow loss is busy, a slow optimizer is not timed."""
    steps, pause = 5, 0.02
    spec = JobSpec(
        name="pp1", kind="pipeline_parallel", num_workers=1, steps=steps, batch_size=32,
        options={"micro_batches": 2},
    )
    ctx = JobContext(job_id="pp1", attempt=0, node_ids=(), node_speeds={},
                     checkpoint_dir=str(tmp_path / "ckpt"))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0,
                            world_size=1)
    try:
        runner = StageRunner(spec, ctx, rank=0, node_id="local")
        step_optimizer = runner.optimizer.step

        def slow_optimizer_step(*args, **kwargs):
            time.sleep(pause)
            return step_optimizer(*args, **kwargs)

        runner.optimizer.step = slow_optimizer_step
        real_loss = stage_module.loss_fn

        def slow_loss(*args, **kwargs):
            time.sleep(pause)
            return real_loss(*args, **kwargs)

        monkeypatch.setattr(stage_module, "loss_fn", slow_loss)
        out = runner.train(0)
    finally:
        dist.destroy_process_group()
    timed_steps = steps - 1  # the first step infers shapes and is left out
    # Two micro-batches per step, each with a slow loss: that time is compute.
    assert out["busy_s"] >= 2 * timed_steps * pause
    # The slow optimizer runs outside schedule.step: in the loop's wall time only.
    assert out["wall_s"] - out["schedule_s"] >= timed_steps * pause
    assert out["busy_s"] <= out["schedule_s"] <= out["wall_s"]


def test_bubble_given_stage_compute_is_the_formula_for_equal_stages_and_more_when_unequal() -> None:
    from raysched.jobs.pipeline_parallel import ideal_bubble
    from raysched.jobs.pipeline_timing import bubble_given_stage_compute

    for stages, micro in ((2, 4), (2, 8), (4, 8)):
        equal = bubble_given_stage_compute([1.0] * stages, micro)
        assert equal == pytest.approx(ideal_bubble(stages, micro))
    # Stage 0 computes a quarter of stage 1: it idles most of the step, the slow stage does not.
    assert bubble_given_stage_compute([0.25, 1.0], 4) == pytest.approx(
        ((1 - 0.25 / 1.25) + (1 - 1 / 1.25)) / 2)
    assert math.isnan(bubble_given_stage_compute([0.0, 0.0], 4))
