"""The online model's blends: towards QSSF's history estimate, and burst means shrunk to it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from raysched.schedulers.simulator import TraceJob
from raysched.schedulers.simulator.online_predictor import OnlineDurationModel


def trained(**kw) -> OnlineDurationModel:
    """A model refit on 300 jobs whose durations depend on the hour (the correction's job)."""
    model = OnlineDurationModel(retrain_every=100, min_train=100, max_iter=20,
                                burst_gap_s=None, **kw)
    rng = random.Random(0)
    for i in range(300):
        t = 1e9 + i * 1800.0
        job = TraceJob(job_id=str(i), submit_s=t, duration_s=0, gpus=1, vc="a")
        model.submit(i, job)
        hour = (t // 3600) % 24
        model.finish(i, job, (100 if hour < 12 else 10000) * rng.lognormvariate(0, 0.2))
    assert model.model_ is not None
    return model


def test_history_weight_one_is_qssfs_estimate_and_zero_the_model():
    for w in (0.0, 0.5, 1.0):
        model = trained(history_weight=w)
        job = TraceJob(job_id="q", submit_s=1e9 + 300 * 1800.0, duration_s=0, gpus=1, vc="a")
        est = model.history.estimate(job)
        mu = model.submit(999, job)
        corr = model.fast_(model.active[999][model.cols_])
        assert abs(corr) > 0.01  # the correction has something to say here
        assert mu == pytest.approx(est + (1 - w) * corr)
    with pytest.raises(ValueError):
        OnlineDurationModel(history_weight=1.5)


def test_burst_prior_shrinks_the_burst_mean_towards_the_models_prediction():
    for k in (0.0, 1.0, 3.0):
        model = OnlineDurationModel(burst_gap_s=30.0, burst_prior=k)
        jobs = [TraceJob(job_id=str(i), submit_s=1e9 + 10 * i, duration_s=0, gpus=1, vc="a")
                for i in range(3)]
        own = [model.submit(i, j) for i, j in enumerate(jobs)]
        model.finish(0, jobs[0], 500.0)
        assert model.mu[1] == pytest.approx((np.log(500.0) + k * own[1]) / (1 + k))
        model.finish(1, jobs[1], 2000.0)
        logs = np.log(500.0) + np.log(2000.0)
        assert model.mu[2] == pytest.approx((logs + k * own[2]) / (2 + k))
    with pytest.raises(ValueError):
        OnlineDurationModel(burst_prior=-1.0)


def test_burst_group_pools_keep_each_groups_burst_residuals_apart():
    for own in (False, True):
        model = OnlineDurationModel(burst_gap_s=30.0, burst_group_pools=own, min_group=2)
        t = 1e9
        for vc, dur in (("a", 100.0), ("b", 10000.0)):
            for b in range(3):  # three bursts of three jobs per VC
                jobs = [TraceJob(job_id=f"{vc}{b}{i}", submit_s=t + i, duration_s=0, gpus=1,
                                 vc=vc) for i in range(3)]
                t += 1000.0
                base = len(model.mu_model) + 1000 * b + (0 if vc == "a" else 100)
                for i, j in enumerate(jobs):
                    model.submit(base + i, j)
                for i, j in enumerate(jobs):
                    model.finish(base + i, j, dur * (1 + i))
        model._update_ranks()
        probe = TraceJob(job_id="p", submit_s=t, duration_s=0, gpus=1, vc="a")
        sib = TraceJob(job_id="s", submit_s=t + 1, duration_s=0, gpus=1, vc="a")
        model.submit(7000, probe)
        model.submit(7001, sib)
        model.finish(7000, probe, 100.0)
        assert 7001 in model.informed
        pools = model._pools(7001)
        if own:
            assert pools[:2] == (("burst", "a", 1, 0.0), ("burst",))
            assert len(model.group_residuals[("burst", "a", 1, 0.0)]) == 6
            assert len(model.group_residuals[("burst",)]) == 12
        else:
            assert pools[0] == ("burst",) and ("burst", "a", 1, 0.0) not in model.group_residuals
