"""Receive-ahead GPipe: its action order, and training equal to torch's `ScheduleGPipe`.

The equivalence runs plain gloo processes (no Ray): each stage is a `StageRunner`, as in a Ray
stage actor, trained once with raysched's GPipe and once with torch's; the losses must be
identical to each other and equal single-process SGD to 1e-5, on 2 and 3 stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raysched.jobs.pipeline_schedules import gpipe_actions
from raysched.jobs.training_loop import train_single_process
from raysched.schedulers.spec import JobSpec

pytestmark = pytest.mark.timeout(300)
mp.set_forkserver_preload(["torch", "torch.distributed.pipelining", "sklearn.datasets"])

STEPS = 6
BASE = {"name": "pp", "kind": "pipeline_parallel", "model": "mlp", "steps": STEPS,
        "batch_size": 48, "learning_rate": 0.1, "seed": 3, "checkpoint_every": 0}


def test_gpipe_runs_every_forward_then_every_backward():
    assert gpipe_actions(3) == [("F", 0), ("F", 1), ("F", 2), ("B", 0), ("B", 1), ("B", 2)]


def _train(rank: int, world: int, init_file: str, runs: list[dict[str, Any]]) -> None:
    """Child process: join the gloo group, train each run's spec as stage `rank`."""
    from torch.distributed.pipelining import ScheduleGPipe

    from raysched.jobs import pipeline_stage
    from raysched.jobs.base import JobContext

    torch.set_num_threads(1)
    ours = dict(pipeline_stage.SCHEDULES)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        for run in runs:
            pipeline_stage.SCHEDULES = {**ours, "gpipe": ScheduleGPipe} if run["torch"] else ours
            spec = JobSpec(**{**run["spec"], "num_workers": world})
            ctx = JobContext(job_id=spec.name, attempt=0, node_ids=(), node_speeds={},
                             checkpoint_dir=run["dir"])
            summary = pipeline_stage.StageRunner(spec, ctx, rank, "local").train(0)
            if rank == world - 1:
                Path(run["out"]).write_text(json.dumps(summary["losses"]))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("stages", [2, 3])
def test_receive_ahead_gpipe_trains_exactly_as_torchs(tmp_path, stages):
    runs = []
    for torch_own in (False, True):
        name = "torch" if torch_own else "ahead"
        runs.append({
            "spec": {**BASE, "name": name, "options": {"schedule": "gpipe", "micro_batches": 4}},
            "torch": torch_own, "dir": str(tmp_path / name), "out": str(tmp_path / f"{name}.json")})
    mp.start_processes(_train, args=(stages, str(tmp_path / "init"), runs), nprocs=stages,
                       join=True, start_method="forkserver")
    losses = {Path(r["out"]).stem: json.loads(Path(r["out"]).read_text()) for r in runs}
    reference = train_single_process(JobSpec(**{**BASE, "kind": "pipeline_parallel"}))
    assert len(losses["ahead"]) == STEPS
    assert losses["ahead"] == losses["torch"]  # the same arithmetic in the same order
    torch.testing.assert_close(torch.tensor(losses["ahead"]), torch.tensor(reference[:STEPS]),
                               atol=1e-5, rtol=0)
