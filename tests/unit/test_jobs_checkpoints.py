"""Sharded checkpoints: completeness across parts, pruning, and an in-process resume round trip."""

from __future__ import annotations

import torch

from raysched.jobs import sharded_checkpoints as ck
from raysched.jobs.data import global_batch
from raysched.jobs.models import build_model
from raysched.jobs.stages import split_sequential
from raysched.jobs.training_loop import make_optimizer, train_single_process, train_step
from raysched.schedulers.spec import JobSpec


def test_a_step_is_complete_only_with_every_part(tmp_path):
    ck.save_part(tmp_path, 4, "stage-0", {"x": 1})
    assert ck.latest_step(tmp_path, ["stage-0", "stage-1"]) is None
    ck.save_part(tmp_path, 4, "stage-1", {"x": 2})
    ck.save_part(tmp_path, 8, "stage-0", {"x": 3})  # stage-1 died before writing step 8
    assert ck.latest_step(tmp_path, ["stage-0", "stage-1"]) == 4
    assert ck.load_part(tmp_path, 4, "stage-1") == {"x": 2, "step": 4}
    assert not list(tmp_path.rglob("*.tmp"))


def test_prune_keeps_the_newest_complete_steps(tmp_path):
    for step in (2, 4, 6, 8):
        ck.save_part(tmp_path, step, "p", {})
    ck.prune(tmp_path, ["p"], keep=2)
    assert ck.complete_steps(tmp_path, ["p"]) == [6, 8]


def test_stage_checkpoints_resume_the_same_loss_curve(tmp_path):
    spec = JobSpec(name="ck", steps=10, batch_size=16, learning_rate=0.1)
    reference = train_single_process(spec)

    def fresh():
        stages = split_sequential(build_model(spec.model, spec.seed), 2)
        return stages, [make_optimizer(s.parameters(), spec.learning_rate) for s in stages]

    def run(stages, opts, steps):
        model = torch.nn.Sequential(*stages)
        params = [p for o in opts for g in o.param_groups for p in g["params"]]
        opt = make_optimizer(params, spec.learning_rate)
        return [
            train_step(model, opt, spec.model, *global_batch("digits", s, 16, 0)) for s in steps
        ]

    stages, opts = fresh()
    losses = run(stages, opts, range(5))
    for i, (s, o) in enumerate(zip(stages, opts, strict=True)):
        ck.save_part(
            tmp_path, 5, f"stage-{i}", {"model": s.state_dict(), "optimizer": o.state_dict()}
        )
    stages, opts = fresh()
    for i, (s, o) in enumerate(zip(stages, opts, strict=True)):
        state = ck.load_part(tmp_path, 5, f"stage-{i}")
        s.load_state_dict(state["model"])
        o.load_state_dict(state["optimizer"])
    losses += run(stages, opts, range(5, 10))
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(reference), atol=1e-6, rtol=0)
