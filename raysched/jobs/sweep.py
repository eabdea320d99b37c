"""Hyperparameter sweep job kind: Ray Tune trials over learning rates, each pinned to a node.

Placement: trial k asks Tune for one bundle of cpus_per_worker CPUs through a
PlacementGroupFactory whose `bundle_label_selector` pins it to ctx.node_ids[k % len]
(`tune.with_resources` takes a function of the trial's config, so every trial gets its own
node); with no node ids, Ray places the trials. Learning rates come from options.learning_rates,
or options.num_trials (default 4) log-uniform draws in [lr/10, lr*10] seeded by spec.seed.
At most num_workers trials run at once, the CPUs the scheduler reserved for the gang.
`early_stopping: true` adds ASHA on the loss (time attribute: step).

Each trial trains spec.model with training_loop.train_step, checkpoints into
<checkpoint_dir>/trial-<k>/ (model, optimizer, step) every checkpoint_every steps and at the
end, and resumes from there, so a relaunched sweep continues every trial where it stopped
(trials ASHA stopped before a migration resume too: ASHA's rung state is not carried over).
A trial whose reporter is asked to stop checkpoints and reports `stop_requested`; a Tune
stopper then ends the whole sweep, and run() returns stopped_for_migration=True.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysched.jobs.base import (
    JobContext,
    JobOutcome,
    StepReporter,
    current_node_id,
    stretch_for_speed,
)
from raysched.jobs.checkpoint import load_checkpoint, save_checkpoint
from raysched.jobs.data import global_batch
from raysched.jobs.models import build_model
from raysched.jobs.training_loop import make_optimizer, train_step
from raysched.platform.placement import node_selector
from raysched.schedulers.spec import JobSpec

DEFAULT_NUM_TRIALS = 4
MAX_TRIAL_FAILURES = 3


def learning_rates(spec: JobSpec) -> list[float]:
    """The sweep's learning rates: given, or num_trials seeded log-uniform draws around lr."""
    given = spec.options.get("learning_rates")
    if given:
        rates = [float(r) for r in given]
        if any(r <= 0 for r in rates):
            raise ValueError(f"options.learning_rates must be positive, got {given}")
        return rates
    n = spec.options.get("num_trials", DEFAULT_NUM_TRIALS)
    if n <= 0:
        raise ValueError(f"options.num_trials must be positive, got {n}")
    rng = np.random.default_rng(spec.seed)
    return [float(spec.learning_rate * 10 ** rng.uniform(-1, 1)) for _ in range(n)]


def trial_node(ctx: JobContext, trial: int) -> str | None:
    """Node of trial `trial`: ctx.node_ids round-robin, or None (Ray decides)."""
    return ctx.node_ids[trial % len(ctx.node_ids)] if ctx.node_ids else None


def trial_dir(ctx: JobContext, trial: int) -> Path:
    return ctx.checkpoint_path / f"trial-{trial}"


def train_trial(config: dict[str, Any], spec: JobSpec, ctx: JobContext, rates: list[float]) -> None:
    """Tune function trainable: one learning rate, spec.steps steps, resumable."""
    from ray import tune

    trial = config["trial"]
    torch.set_num_threads(max(1, int(spec.cpus_per_worker)))
    model = build_model(spec.model, spec.seed)
    optimizer = make_optimizer(model.parameters(), rates[trial])
    ckpt_dir = trial_dir(ctx, trial)
    state = load_checkpoint(ckpt_dir)
    start, loss = 0, math.nan
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, loss = int(state["step"]), float(state["loss"])
    node_id = current_node_id()
    reporter = StepReporter(ctx, rank=trial, node_id=node_id)
    fail_at = spec.options.get("fail_at_step")

    def metrics(step: int, stop: bool) -> dict[str, Any]:
        return {"loss": loss, "step": step, "stop_requested": stop, "node_id": node_id}

    if start >= spec.steps:
        tune.report(metrics(start, False))
        return
    for step in range(start, spec.steps):
        if fail_at is not None and step == fail_at:
            raise RuntimeError(f"injected failure at step {step}")
        x, y = global_batch(spec.dataset, step, spec.batch_size, spec.seed)
        t0 = time.perf_counter()
        loss = train_step(model, optimizer, spec.model, x, y)
        elapsed = stretch_for_speed(time.perf_counter() - t0, ctx.speed_of(node_id))
        reporter.record(step=step, loss=loss, step_time_s=elapsed, samples=spec.batch_size)
        done = step + 1
        stop = reporter.stop_requested and done < spec.steps
        every = spec.checkpoint_every
        if stop or done == spec.steps or (every and done % every == 0):
            reporter.flush()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            save_checkpoint(ckpt_dir, {**state, "step": done, "loss": loss})
        tune.report(metrics(done, stop))
        if stop:
            return


def _stopper() -> Any:
    from ray import tune

    class MigrationStopper(tune.Stopper):
        """Ends the whole sweep once any trial reports that the job must stop."""

        def __init__(self) -> None:
            self.requested = False

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.requested = self.requested or bool(result.get("stop_requested"))
            return self.requested

        def stop_all(self) -> bool:
            return self.requested

    return MigrationStopper()


def run(spec: JobSpec, ctx: JobContext) -> JobOutcome:
    """Run the sweep with Ray Tune; final_loss is the best trial's last loss."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    rates = learning_rates(spec)
    cpus = spec.cpus_per_worker

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        node = trial_node(ctx, config["trial"])
        selector = {"bundle_label_selector": [node_selector(node)]} if node else {}
        return tune.PlacementGroupFactory([{"CPU": cpus}], **selector)

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, spec=spec, ctx=ctx, rates=rates), resources
    )
    scheduler = None
    if spec.options.get("early_stopping", False):
        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=spec.steps,
            grace_period=max(1, spec.steps // 8),
            reduction_factor=2,
        )
    stopper = _stopper()
    max_failures = 0 if "fail_at_step" in spec.options else MAX_TRIAL_FAILURES
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(list(range(len(rates))))},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            scheduler=scheduler,
            max_concurrent_trials=spec.num_workers,  # the gang the scheduler reserved
        ),
        run_config=tune.RunConfig(
            name=f"sweep-{ctx.job_id}-a{ctx.attempt}",
            storage_path=str((ctx.checkpoint_path / "tune").resolve()),
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    trials = []
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"sweep trial failed: {result.error}") from result.error
        m = result.metrics or {}
        k = result.config["trial"]
        trials.append(
            {
                "trial": k,
                "learning_rate": rates[k],
                "loss": float(m.get("loss", math.nan)),
                "steps": int(m.get("step", 0)),
                "node_id": m.get("node_id"),
                "requested_node_id": trial_node(ctx, k),
            }
        )
    trials.sort(key=lambda t: t["trial"])
    finished = [t for t in trials if not math.isnan(t["loss"])]
    best = min(finished, key=lambda t: t["loss"]) if finished else None
    return JobOutcome(
        final_loss=best["loss"] if best else math.nan,
        steps_done=max((t["steps"] for t in trials), default=0),
        stopped_for_migration=stopper.requested,
        extra={"trials": trials, "best_trial": best["trial"] if best else None},
    )
