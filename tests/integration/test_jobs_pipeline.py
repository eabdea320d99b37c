"""Pipeline-parallel job kind on a real local Ray cluster: equivalence, migration, recovery."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from raysched.jobs import pipeline_parallel
from raysched.jobs.training_loop import train_single_process
from raysched.schedulers.spec import JobSpec
from tests.integration.jobs_support import (
    Collector,
    CollectorSink,
    make_ctx,
)

pytestmark = pytest.mark.integration

STEPS = 20


def pp_spec(**kw) -> JobSpec:
    base = dict(
        name="pp",
        kind="pipeline_parallel",
        model="mlp",
        num_workers=2,
        cpus_per_worker=1,
        steps=STEPS,
        batch_size=32,
        learning_rate=0.1,
        seed=3,
    )
    return JobSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def reference() -> list[float]:
    return train_single_process(pp_spec())


def test_two_stages_match_one_process_across_a_migration(nodes, reference):
    """Stop at step 7, resume with the stages swapped: the 20 losses equal one process's."""
    collector = Collector.remote(stop_at=7)
    ctx = make_ctx("pp-mig", (nodes[0], nodes[1]), sink=CollectorSink(collector))
    first = pipeline_parallel.run(pp_spec(), ctx)
    assert first.stopped_for_migration and first.steps_done == 8
    assert first.extra["stage_nodes"] == [nodes[0], nodes[1]]
    moved = make_ctx("pp-mig", (nodes[1], nodes[0]), checkpoint_dir=ctx.checkpoint_dir, attempt=1)
    second = pipeline_parallel.run(pp_spec(), moved)
    assert second.extra["start_step"] == 8 and second.steps_done == STEPS
    assert second.extra["stage_nodes"] == [nodes[1], nodes[0]]
    curve = first.extra["losses"] + second.extra["losses"]
    np.testing.assert_allclose(curve, reference, atol=1e-5, rtol=0)


def test_killed_stage_relaunches_from_last_checkpoint(nodes, reference):
    """1F1B this time: stage 1 is killed at step 9, the gang resumes from step 8's checkpoint."""
    collector = Collector.remote(kill=(1, 9))  # stage 1 dies while recording step 9
    ctx = make_ctx("pp-kill", (nodes[0], nodes[1]), sink=CollectorSink(collector))
    spec = pp_spec(checkpoint_every=4, options={"schedule": "1f1b", "micro_batches": 4})
    out = pipeline_parallel.run(spec, ctx)
    assert out.extra["relaunches"] == 1 and out.extra["schedule"] == "1f1b"
    assert out.extra["start_step"] == 8  # newest complete checkpoint before the kill
    assert out.steps_done == STEPS
    np.testing.assert_allclose(out.extra["losses"], reference[8:], atol=1e-5, rtol=0)
    steps_seen = sorted({step for rank, step, *_ in ray.get(collector.get.remote()) if rank == 1})
    assert steps_seen == list(range(STEPS))


def test_injected_failure_propagates(nodes):
    with pytest.raises(RuntimeError, match="injected failure at step 3"):
        pipeline_parallel.run(
            pp_spec(options={"fail_at_step": 3}), make_ctx("pp-fail", (nodes[0], nodes[1]))
        )
