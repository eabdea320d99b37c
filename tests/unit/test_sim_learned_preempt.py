"""The learned policy's preemption guards: hysteresis, uncertainty margin, minimum run."""

from __future__ import annotations

import numpy as np
import pytest

from raysched.schedulers.simulator import EngineConfig, Simulator, TraceJob, uniform_cluster
from raysched.schedulers.simulator.online_predictor import OnlineDurationModel
from raysched.schedulers.simulator.sim_policies import LearnedPolicy
from raysched.schedulers.simulator.traces import Trace

CHECK = EngineConfig(check_invariants=True)


def test_uncertainty_margin_is_the_spread_of_the_jobs_residual_pool():
    model = OnlineDurationModel(burst_gap_s=None)
    for i in range(40):
        job = TraceJob(job_id=str(i), submit_s=float(i), duration_s=0.0, gpus=1, vc="a")
        model.submit(i, job)
        model.finish(i, job, 3600.0 * (3.0 if i % 2 else 1 / 3.0))
    model.submit(99, TraceJob(job_id="x", submit_s=99.0, duration_s=0.0, gpus=1, vc="a"))
    pool = model.group_residuals[model.groups_of[99][0]]  # its (VC, GPUs) group: 40 >= 30
    assert model.spread(99) == pytest.approx(float(np.std(np.array(pool))))
    assert model.spread(99) > 0.5


def two_jobs() -> Trace:
    """A: 8 GPUs from t=0; B: 1 GPU at t=10. Before any job finished both are predicted one
    hour, so by GPU-time B ranks 8x better than A."""
    return Trace(jobs=(
        TraceJob(job_id="A", submit_s=0.0, duration_s=5000.0, gpus=8),
        TraceJob(job_id="B", submit_s=10.0, duration_s=100.0, gpus=1),
    ))


def run(**kw) -> dict[str, float]:
    kw.setdefault("preempt_z", 0.0)
    pol = LearnedPolicy(OnlineDurationModel(burst_gap_s=None), class_base=None, **kw)
    r = Simulator(uniform_cluster(1, gpus_per_node=8), pol, CHECK).run(two_jobs())
    return dict(zip(r.job_ids, r.start, strict=True)) | {"preempt": float(r.preemptions.sum())}


def test_without_guards_the_better_ranked_arrival_preempts_at_once():
    out = run()
    assert out["B"] == 10.0 and out["preempt"] == 1


def test_hysteresis_keeps_a_running_job_unless_the_waiter_is_that_much_better():
    assert run(hysteresis=16.0)["preempt"] == 0  # 8x better is not 16x better
    assert run(hysteresis=4.0)["B"] == 10.0


def test_minimum_run_protects_a_job_until_its_quantum_ends():
    out = run(min_run_s=500.0)
    assert out["preempt"] == 1 and abs(out["B"] - 500.0) < 1e-3
