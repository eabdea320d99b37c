"""Parameter-server job kind on a real local Ray cluster: equivalence, migration, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from raysched.jobs import parameter_server
from raysched.jobs.training_loop import train_single_process
from raysched.schedulers.spec import JobSpec
from tests.integration.jobs_support import (
    Collector,
    CollectorSink,
    make_ctx,
)

pytestmark = pytest.mark.integration

STEPS = 20


def ps_spec(**kw) -> JobSpec:
    base = dict(
        name="ps",
        kind="parameter_server",
        model="mlp",
        num_workers=2,
        cpus_per_worker=1,
        steps=STEPS,
        batch_size=30,
        learning_rate=0.1,
        seed=5,
    )
    return JobSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def reference() -> list[float]:
    return train_single_process(ps_spec())


def test_sync_matches_one_process_sgd_across_a_migration(nodes, reference):
    """Two servers; stop at step 5, resume with the workers swapped: 20 losses == one process."""
    collector = Collector.remote(stop_at=5)
    ctx = make_ctx("ps-mig", (nodes[0], nodes[1]), sink=CollectorSink(collector))
    first = parameter_server.run(ps_spec(options={"num_servers": 2}), ctx)
    assert first.stopped_for_migration and first.steps_done == 6
    moved = make_ctx("ps-mig", (nodes[1], nodes[0]), checkpoint_dir=ctx.checkpoint_dir, attempt=1)
    second = parameter_server.run(ps_spec(options={"num_servers": 2}), moved)
    assert second.extra["num_servers"] == 2
    assert second.extra["start_step"] == 6 and second.steps_done == STEPS
    curve = first.extra["losses"] + second.extra["losses"]
    np.testing.assert_allclose(curve, reference, atol=1e-5, rtol=0)


def test_killed_worker_relaunches_from_last_checkpoint(nodes, reference):
    collector = Collector.remote(kill=(0, 7))
    ctx = make_ctx("ps-kill", (nodes[0], nodes[1]), sink=CollectorSink(collector))
    out = parameter_server.run(ps_spec(checkpoint_every=5), ctx)
    assert out.extra["relaunches"] == 1 and out.extra["start_step"] == 5
    assert out.steps_done == STEPS
    np.testing.assert_allclose(out.extra["losses"], reference[5:], atol=1e-5, rtol=0)


def test_async_bounded_staleness_trains(nodes, reference):
    spec = ps_spec(options={"mode": "async", "max_staleness": 1}, checkpoint_every=5)
    out = parameter_server.run(spec, make_ctx("ps-async", (nodes[0], nodes[1])))
    assert out.steps_done == STEPS and len(out.extra["losses"]) == STEPS
    assert out.final_loss < reference[0]


def test_injected_failure_propagates(nodes):
    with pytest.raises(RuntimeError, match="injected failure at step 2"):
        parameter_server.run(
            ps_spec(options={"fail_at_step": 2}), make_ctx("ps-fail", (nodes[0], nodes[1]))
        )
