"""Sweep job kind on a real local Ray cluster: trials land on their nodes, best loss returned."""

from __future__ import annotations

import pytest

from raysched.jobs import sweep
from raysched.jobs.training_loop import train_single_process
from raysched.schedulers.spec import JobSpec
from tests.integration.jobs_support import make_ctx

pytestmark = pytest.mark.integration


def test_trials_run_on_their_nodes_and_the_best_loss_wins(nodes):
    rates = [0.02, 0.2]
    spec = JobSpec(
        name="sw",
        kind="sweep",
        num_workers=2,
        cpus_per_worker=1,
        steps=8,
        batch_size=32,
        seed=1,
        options={"learning_rates": rates},
    )
    out = sweep.run(spec, make_ctx("sw", tuple(nodes)))
    trials = out.extra["trials"]
    assert [t["node_id"] for t in trials] == nodes
    assert all(t["steps"] == 8 for t in trials)
    expected = [train_single_process(spec, learning_rate=lr)[-1] for lr in rates]
    assert [t["loss"] for t in trials] == pytest.approx(expected, abs=1e-5)
    assert out.final_loss == pytest.approx(min(expected), abs=1e-5)
