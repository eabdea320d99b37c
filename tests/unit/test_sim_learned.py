"""The learned policy and its online predictor: no leakage from the future, sane predictions."""

from __future__ import annotations

import dataclasses
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
    make_policy,
)
from raysched.schedulers.simulator.online_predictor import (
    OnlineDurationModel,
    _FastTrees,
    gittins_rank_table,
)
from raysched.schedulers.simulator.sim_policies import LearnedPolicy

CLUSTER = ClusterSpec(nodes=tuple(
    NodeSpec(node_id=f"{vc}{i}", partition=vc, gpus=8) for vc in ("a", "b") for i in range(2)
))


def vc_trace(n: int = 500, seed: int = 0) -> Trace:
    """Two VCs with different typical durations, so the model has something to learn."""
    rng = random.Random(seed)
    t, jobs = 1_506_816_000.0, []
    for i in range(n):
        t += rng.expovariate(1 / 30)
        vc = rng.choice("ab")
        scale = 300 if vc == "a" else 3000
        jobs.append(TraceJob(job_id=f"j{i}", submit_s=t, vc=vc,
                             duration_s=round(scale * rng.lognormvariate(0, 1), 2),
                             gpus=rng.choice([1, 1, 2, 4, 8])))
    return Trace(jobs=tuple(jobs))


def learned() -> LearnedPolicy:
    return LearnedPolicy(OnlineDurationModel(retrain_every=40, min_train=40, max_iter=15))


def run(tr: Trace, policy) -> tuple:
    r = Simulator(CLUSTER, policy, EngineConfig(check_invariants=True)).run(tr)
    return r, [(e.time, e.kind, e.job_id, e.nodes) for e in r.events]


def perturb_after(tr: Trace, result, cutoff: float, seed: int = 1) -> Trace:
    """Lengthen every job that finished after `cutoff` (so it still finishes after it)."""
    rng = random.Random(seed)
    fin = dict(zip(result.job_ids, result.finish, strict=True))
    jobs = tuple(
        dataclasses.replace(j, duration_s=j.duration_s * (1.5 + 3 * rng.random()))
        if fin[j.job_id] > cutoff else j
        for j in tr.jobs
    )
    return Trace(jobs=jobs)


def test_learned_decisions_before_t_ignore_durations_of_jobs_finishing_after_t():
    tr = vc_trace()
    pol = learned()
    r1, ev1 = run(tr, pol)
    cutoff = float(np.median(r1.finish))
    assert sum(t < cutoff for t in pol.refit_times) >= 2  # the model was refit before T
    assert r1.preemptions.sum() > 0  # and the policy did preempt
    changed = perturb_after(tr, r1, cutoff)
    r2, ev2 = run(changed, learned())
    before1 = [e for e in ev1 if e[0] < cutoff]
    before2 = [e for e in ev2 if e[0] < cutoff]
    assert before1 == before2
    assert len(before1) > 500
    assert ev1 != ev2  # the perturbation did change what happened after T


def test_the_same_check_catches_an_oracle_policy():
    tr = vc_trace()
    r1, ev1 = run(tr, make_policy("srtf"))
    cutoff = float(np.median(r1.finish))
    r2, ev2 = run(perturb_after(tr, r1, cutoff), make_policy("srtf"))
    assert [e for e in ev1 if e[0] < cutoff] != [e for e in ev2 if e[0] < cutoff]


def test_model_learns_group_differences_from_finished_jobs():
    model = OnlineDurationModel(retrain_every=100, min_train=100, max_iter=20)
    rng = random.Random(0)
    for i in range(300):
        vc = "a" if i % 2 else "b"
        job = TraceJob(job_id=str(i), submit_s=1e9 + i, duration_s=0, gpus=1, vc=vc)
        model.submit(i, job)
        model.finish(i, job, (100 if vc == "a" else 10000) * rng.lognormvariate(0, 0.3))
    assert model.model_ is not None and model.version >= 1
    a = TraceJob(job_id="qa", submit_s=2e9, duration_s=0, gpus=1, vc="a")
    b = TraceJob(job_id="qb", submit_s=2e9, duration_s=0, gpus=1, vc="b")
    mu_a, mu_b = model.submit(1000, a), model.submit(1001, b)
    assert abs(mu_a - np.log(100)) < 0.5 and abs(mu_b - np.log(10000)) < 0.5
    assert model.rank(1000, 0.0) < model.rank(1001, 0.0)


def test_fast_tree_walk_matches_sklearn_predict():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.nan_to_num(X[:, 0]) * 2 + np.nan_to_num(X[:, 1] ** 2)
    m = HistGradientBoostingRegressor(max_iter=20).fit(X, y)
    fast = _FastTrees(m, X[:20])
    assert np.allclose([fast(x) for x in X[20:60]], m.predict(X[20:60]))


def test_gittins_rank_of_a_point_mass_is_the_remaining_time():
    ranks = gittins_rank_table(np.array([2.0, 2.0, 2.0]), np.array([0.0, 0.5, 1.5]))
    assert ranks == pytest.approx([2.0, 1.5, 0.5])
    # two-point distribution: a quick probe first (rank < mean)
    r0 = gittins_rank_table(np.array([0.1, 10.0]), np.array([0.0]))[0]
    assert r0 == pytest.approx((0.1 + 0.1) / 1)  # probe 0.1: E[min]=0.1, P=0.5 -> 0.2


def test_burst_siblings_are_repredicted_only_when_one_of_them_finishes():
    model = OnlineDurationModel(burst_gap_s=30.0)
    mk = [TraceJob(job_id=str(i), submit_s=1e9 + s, duration_s=0, gpus=1, vc="a")
          for i, s in enumerate((0, 10, 20, 100))]  # 0-2: one burst; 3: 80 s later, its own
    for i, j in enumerate(mk):
        model.submit(i, j)
    prior = dict(model.mu)
    assert model.informed == set() and model.changed_ == []
    model.finish(0, mk[0], 500.0)
    assert sorted(model.changed_) == [1, 2]  # the siblings, not job 3
    assert model.mu[1] == model.mu[2] == pytest.approx(np.log(500.0))
    assert model.mu[3] == prior[3] and model.informed == {1, 2}
    model.finish(1, mk[1], 2000.0)  # burst mean of finished log durations
    assert model.changed_ == [2] and model.mu[2] == pytest.approx(np.log(1000.0))
    late = TraceJob(job_id="4", submit_s=1e9 + 120, duration_s=0, gpus=1, vc="a")
    model.submit(4, late)  # joins job 3's burst, none of which finished: no burst evidence
    assert 4 not in model.informed


def test_learned_refiles_only_the_siblings_and_stays_consistent():
    tr = vc_trace(300, seed=2)
    r, _ = run(tr, learned())
    assert len(r.job_ids) == 300 and (r.finish > r.submit).all()
