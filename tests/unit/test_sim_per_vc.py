"""One online model per VC: a VC decides inside the full cluster exactly as it does alone."""

from __future__ import annotations

import random

import numpy as np
import pytest

from raysched.schedulers.simulator import (
    ClusterSpec,
    EngineConfig,
    NodeSpec,
    Simulator,
    Trace,
    TraceJob,
)
from raysched.schedulers.simulator.online_predictor import OnlineDurationModel
from raysched.schedulers.simulator.per_vc_model import PerVcModel
from raysched.schedulers.simulator.sim_policies import LearnedPolicy

CLUSTER = ClusterSpec(nodes=tuple(
    NodeSpec(node_id=f"{vc}{i}", partition=vc, gpus=8) for vc in ("a", "b") for i in range(2)
))


def two_vc_trace(n: int = 600, seed: int = 0) -> Trace:
    """VC a: short jobs in bursts of 4; VC b: long jobs. Both keep their partitions busy."""
    rng = random.Random(seed)
    t, jobs = 1_506_816_000.0, []
    for i in range(n):
        vc = "a" if i % 5 else "b"
        t += rng.expovariate(1 / 60) if i % 4 == 0 else 5.0
        scale = 300 if vc == "a" else 6000
        jobs.append(TraceJob(job_id=f"j{i}", submit_s=t, vc=vc,
                             duration_s=round(scale * rng.lognormvariate(0, 1), 2),
                             gpus=rng.choice([1, 2, 4]) if vc == "a" else 8))
    return Trace(jobs=tuple(jobs))


def small_model() -> OnlineDurationModel:
    return OnlineDurationModel(retrain_every=40, min_train=40, max_iter=15)


def jct_of(tr: Trace, policy: LearnedPolicy, vc: str) -> dict[str, float]:
    r = Simulator(CLUSTER, policy, EngineConfig(check_invariants=True)).run(tr)
    vc_of = {j.job_id: j.vc for j in tr.jobs}
    return {i: float(f - s) for i, s, f in zip(r.job_ids, r.submit, r.finish, strict=True)
            if vc_of[i] == vc}


def test_get_params_rebuilds_an_equal_untrained_model():
    model = OnlineDurationModel(retrain_every=7, burst_prior=2.0, burst_group_pools=True)
    copy = OnlineDurationModel(**model.get_params())
    assert copy.get_params() == model.get_params()
    assert copy.retrain_every == 7 and copy.burst_prior == 2.0 and copy.burst_group_pools


def test_a_vcs_predictions_ignore_other_vcs_finished_jobs():
    per_vc, shared = PerVcModel(small_model), small_model()
    for i in range(80):  # VC b: 80 long jobs finish, enough for a refit of the shared model
        j = TraceJob(job_id=f"b{i}", submit_s=1000.0 * i, duration_s=50_000.0, gpus=1, vc="b")
        for m in (per_vc, shared):
            m.submit(i, j)
            m.finish(i, j, j.duration_s)
    probe = TraceJob(job_id="a0", submit_s=1e6, duration_s=0.0, gpus=1, vc="a")
    fresh = small_model()
    want = fresh.submit(1000, probe)
    assert per_vc.submit(1000, probe) == pytest.approx(want)
    assert per_vc.rank(1000, 0.0) == pytest.approx(fresh.rank(1000, 0.0))
    assert shared.submit(1000, probe) > want + 1.0  # the shared model learnt b's long jobs
    assert set(per_vc.models) == {"a", "b"} and per_vc.version > 0


@pytest.mark.parametrize("scouts", [False, True])
def test_per_vc_replays_a_vc_in_the_full_cluster_as_it_replays_alone(scouts):
    tr = two_vc_trace()
    alone = Trace(jobs=tuple(j for j in tr.jobs if j.vc == "a"))
    full_pol = LearnedPolicy(small_model(), per_vc=True, scouts=scouts)
    in_full = jct_of(tr, full_pol, "a")
    by_itself = jct_of(alone, LearnedPolicy(small_model(), per_vc=True, scouts=scouts), "a")
    assert in_full == pytest.approx(by_itself)
    assert full_pol.model.version > 2  # both VCs' models refit during the replay
    shared = jct_of(tr, LearnedPolicy(small_model(), scouts=scouts), "a")
    assert not np.allclose(list(shared.values()), list(in_full.values()))  # sharing does matter


def test_hybrid_decides_by_the_shared_model_until_the_vc_has_own_after_finished_jobs():
    tr = two_vc_trace(n=300)
    shared = jct_of(tr, LearnedPolicy(small_model(), scouts=True), "a")
    never_own = LearnedPolicy(small_model(), per_vc=True, per_vc_after=10**6, scouts=True)
    assert jct_of(tr, never_own, "a") == pytest.approx(shared)  # the shared model decides all
    hybrid = LearnedPolicy(small_model(), per_vc=True, per_vc_after=50, scouts=True)
    model = hybrid.model
    assert isinstance(model, PerVcModel) and model.shared is not None
    seen: dict[bool, int] = {True: 0, False: 0}
    submit = model.submit

    def spy(idx: int, job: TraceJob) -> float:
        mu = submit(idx, job)
        seen[model.owner(idx) is model.shared] += 1
        return mu

    model.submit = spy  # type: ignore[method-assign]
    jct_of(tr, hybrid, "a")
    assert seen[True] >= 50 and seen[False] > 50  # first the shared model, then VC a's own


def test_own_after_needs_a_shared_model():
    with pytest.raises(ValueError):
        PerVcModel(small_model, own_after=5)
