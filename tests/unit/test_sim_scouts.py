"""Burst scouts: only a burst's first member probes; its siblings wait for what it reveals."""

from __future__ import annotations

import pytest

from raysched.schedulers.simulator import TraceJob
from raysched.schedulers.simulator.jobstate import SimJob
from raysched.schedulers.simulator.online_predictor import OnlineDurationModel
from raysched.schedulers.simulator.sim_policies import LearnedPolicy


def job(i: int, t: float) -> TraceJob:
    return TraceJob(job_id=str(i), submit_s=t, duration_s=0.0, gpus=1, vc="a")


def widely_spread_model(**kw) -> OnlineDurationModel:
    """40 finished singleton jobs, 9x apart: a wide residual pool, so probing pays."""
    model = OnlineDurationModel(burst_gap_s=30.0, **kw)
    for i in range(40):
        j = job(i, 1000.0 * i)
        model.submit(i, j)
        model.finish(i, j, 3600.0 * (3.0 if i % 2 else 1 / 3.0))
    return model


def test_only_the_first_member_of_an_uninformed_burst_scouts():
    model = widely_spread_model()
    burst = [job(100 + k, 1e6 + k) for k in range(3)]
    for k, j in enumerate(burst):
        model.submit(100 + k, j)
    model.submit(200, job(200, 2e6))  # a burst of its own
    assert [model.deferred(i) for i in (100, 101, 102, 200)] == [False, True, True, False]
    model.finish(100, burst[0], 50.0)  # the scout finished: its siblings are informed
    assert not model.deferred(101) and not model.deferred(102)
    assert not OnlineDurationModel(burst_gap_s=None).deferred(0)


@pytest.mark.parametrize("scouts", [False, True])
def test_deferred_siblings_rank_by_expected_remaining_time(scouts):
    model = widely_spread_model()
    pol = LearnedPolicy(model, scouts=scouts)
    sims = [SimJob(100 + k, job(100 + k, 1e6 + k), 1.0, 0) for k in range(2)]
    for s in sims:
        pol.on_submit(s, s.submit)
    scout, sibling = (pol.key(s, 1e6 + 2) for s in sims)
    assert scout == pytest.approx(model.rank(100, 0.0))
    gittins, mean = model.rank(101, 0.0), model.expected_remaining(101, 0.0)
    assert mean > 1.5 * gittins  # a wide pool: probing is worth a lot
    assert sibling == pytest.approx(mean if scouts else gittins)
