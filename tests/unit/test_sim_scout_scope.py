"""Where burst scouts apply: own-model VCs only, bursts of at least k members, small jobs."""

from __future__ import annotations

import pytest

from raysched.schedulers.simulator import (
    ClusterSpec,
    EngineConfig,
    NodeSpec,
    Simulator,
    Trace,
    TraceJob,
)
from raysched.schedulers.simulator.jobstate import SimJob
from raysched.schedulers.simulator.online_predictor import OnlineDurationModel
from raysched.schedulers.simulator.per_vc_model import PerVcModel
from raysched.schedulers.simulator.sim_policies import FifoPolicy, LearnedPolicy


def job(i: int, t: float, vc: str = "a", gpus: int = 1) -> TraceJob:
    return TraceJob(job_id=str(i), submit_s=t, duration_s=0.0, gpus=gpus, vc=vc)


def feed(model: OnlineDurationModel | PerVcModel, first: int, vc: str, gpus: int = 1) -> None:
    """40 finished singleton jobs of one VC, 9x apart: a wide residual pool, so probing pays."""
    for i in range(first, first + 40):
        j = job(i, 1000.0 * i, vc, gpus)
        model.submit(i, j)
        model.finish(i, j, 3600.0 * (3.0 if i % 2 else 1 / 3.0))


def sim(i: int, t: float, vc: str = "a", gpus: int = 1) -> SimJob:
    return SimJob(i, job(i, t, vc, gpus), float(gpus), 0)


def submit_all(pol: LearnedPolicy, jobs: list[SimJob]) -> list[list[int] | None]:
    return [pol.on_submit(s, s.submit) for s in jobs]


@pytest.mark.parametrize("own_only", [False, True])
def test_own_only_scouts_defer_only_jobs_their_vcs_own_model_decides(own_only):
    pol = LearnedPolicy(OnlineDurationModel(burst_gap_s=30.0), per_vc=True, per_vc_after=40,
                        scouts=True, scouts_own_only=own_only)
    model = pol.model
    assert isinstance(model, PerVcModel)
    feed(model, 0, "b")  # the shared model has 40 finished jobs, VC a's own model none
    first = [sim(1000 + k, 1e6 + k) for k in range(2)]
    submit_all(pol, first)
    assert model.shared_decides(1001) and model.deferred(1001)
    gittins, mean = model.rank(1001, 0.0), model.expected_remaining(1001, 0.0)
    assert mean > 1.5 * gittins
    assert pol.key(first[1], 1e6 + 2) == pytest.approx(gittins if own_only else mean)
    feed(model, 2000, "a")  # now VC a's own model decides its jobs: scouts apply again
    assert not model.shared_decides(1001) and model.deferred(1001)
    assert pol.key(first[1], 3e6) == pytest.approx(model.expected_remaining(1001, 0.0))


def test_own_only_needs_the_hybrid():
    with pytest.raises(ValueError):
        LearnedPolicy(scouts=True, scouts_own_only=True)
    with pytest.raises(ValueError):
        LearnedPolicy(per_vc=True, scouts=True, scouts_own_only=True)  # no shared model
    with pytest.raises(ValueError):
        LearnedPolicy(scouts=True, scouts_min_burst=-1)


def test_min_burst_defers_siblings_once_the_burst_has_k_members():
    model = OnlineDurationModel(burst_gap_s=30.0)
    feed(model, 0, "a")
    for k in range(2):
        model.submit(100 + k, job(100 + k, 1e6 + k))
    assert model.deferred(101) and not model.deferred(101, min_burst=3)
    assert model.burst_reached(101, 3) == []  # two members: not yet
    before = model.key_version(101)
    model.submit(102, job(102, 1e6 + 2))
    assert model.burst_reached(102, 3) == [101]  # the scout (100) and 102 itself excluded
    assert model.key_version(101) != before  # cached keys of 101 are stale now
    assert [model.deferred(i, 3) for i in (100, 101, 102)] == [False, True, True]
    assert model.burst_reached(102, 4) == []


def test_min_burst_policy_reranks_waiting_siblings_when_the_burst_grows():
    pol = LearnedPolicy(OnlineDurationModel(burst_gap_s=30.0), scouts=True, scouts_min_burst=3)
    feed(pol.model, 0, "a")  # type: ignore[arg-type]
    burst = [sim(100 + k, 1e6 + k) for k in range(3)]
    model = pol.model
    assert submit_all(pol, burst[:2]) == [None, None]
    small = pol.key(burst[1], 1e6 + 1)
    assert small == pytest.approx(model.rank(101, 0.0))  # a burst of two: it probes
    assert pol.on_submit(burst[2], 1e6 + 2) == [101]  # the engine re-files it
    assert pol.key(burst[1], 1e6 + 2) == pytest.approx(model.expected_remaining(101, 0.0))
    assert pol.key(burst[1], 1e6 + 2) > 1.5 * small


def test_max_units_defers_only_small_jobs():
    model = OnlineDurationModel(burst_gap_s=30.0)
    feed(model, 0, "a", gpus=1)
    feed(model, 100, "a", gpus=2)
    pol = LearnedPolicy(model, scouts=True, scouts_max_units=1)
    one = [sim(1000 + k, 1e6 + k, gpus=1) for k in range(2)]
    two = [sim(2000 + k, 1e6 + k, gpus=2) for k in range(2)]
    submit_all(pol, one + two)
    assert model.deferred(1001) and model.deferred(2001)
    assert pol.key(one[1], 1e6 + 2) == pytest.approx(model.expected_remaining(1001, 0.0))
    assert pol.key(two[1], 1e6 + 2) == pytest.approx(2 * model.rank(2001, 0.0))


class _Promote(FifoPolicy):
    """FIFO, except that job 3's arrival moves job 2 to the front of the queue."""

    def __init__(self) -> None:
        self.first: set[int] = set()

    def on_submit(self, job: SimJob, now: float) -> list[int] | None:
        if job.idx == 3:
            self.first.add(2)
            return [2]
        return None

    def key(self, job: SimJob, now: float) -> float:
        return -1.0 if job.idx in self.first else job.submit


def test_engine_refiles_the_jobs_a_submission_changed():
    cluster = ClusterSpec(nodes=(NodeSpec(node_id="n", partition="p", gpus=1),))
    trace = Trace(jobs=tuple(
        TraceJob(job_id=f"j{i}", submit_s=10.0 * i, duration_s=100.0 if i == 0 else 10.0,
                 gpus=1) for i in range(4)
    ))
    r = Simulator(cluster, _Promote(), EngineConfig(check_invariants=True)).run(trace)
    start = dict(zip(r.job_ids, r.start, strict=True))
    assert start["j0"] == 0.0
    assert start["j2"] == 100.0  # promoted by j3's arrival, although j1 was filed first
    assert start["j1"] == 110.0 and start["j3"] == 120.0
