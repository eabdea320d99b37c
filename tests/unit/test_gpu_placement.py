"""GPU jobs go only where GPUs are free: every policy, hand-built and random views (no Ray)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from raysched.schedulers.fit import usable_cpus, worker_slots
from raysched.schedulers.policies.base import AdmitAll, SchedulingPolicy
from raysched.schedulers.policies.oracle import OracleCostModel, oracle_policy
from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.policies.registry import make_policy
from raysched.schedulers.predictor.cost_model import CostModel
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView


def gpu_node(nid: str, cpus: float = 8, gpus: float = 0, *, cpus_free: float | None = None,
             gpus_free: float | None = None, **kw: object) -> NodeView:
    return NodeView(node_id=nid, cpus_total=cpus, cpus_free=cpus if cpus_free is None
                    else cpus_free, gpus_total=gpus, gpus_free=gpus if gpus_free is None
                    else gpus_free, **kw)


def gpu_job(jid: str = "g", *, workers: int = 1, cpus: float = 1.0, gpus: int = 1,
            steps: int = 100, **kw: object) -> JobView:
    spec = JobSpec(name=jid, num_workers=workers, cpus_per_worker=cpus, gpus_per_worker=gpus,
                   steps=steps)
    return JobView(job_id=jid, spec=spec, state=kw.pop("state", JobState.QUEUED),
                   submit_time=0.0, **kw)


def _learned() -> SchedulingPolicy:
    # Cold start: the calibrated heuristic (label-reading, like a trained model).
    return make_policy("learned", CostModel(min_rows=10**6).fit(synthetic_jobs(30, seed=1)))


def _oracle() -> SchedulingPolicy:
    return oracle_policy(OracleCostModel(lambda j: 1.0, {}))


POLICIES: dict[str, Callable[[], SchedulingPolicy]] = {
    "learned": _learned,
    "oracle": _oracle,
    **{name: (lambda name=name: make_policy(name))
       for name in ("least_loaded", "random", "pack", "spread")},
}


def place(policy: SchedulingPolicy, job: JobView, view: ClusterView) -> tuple[str, ...] | None:
    """What the controller does for one queued job: order (the learned one prefetches), place."""
    policy.ordering.order([job], view)
    p = policy.placement.place(job, view)
    return None if p is None else p.node_ids


def assert_fits(ids: tuple[str, ...], job: JobView, view: ClusterView) -> None:
    spec = job.spec
    assert len(ids) == spec.num_workers
    for nid, count in Counter(ids).items():
        n = view.node(nid)
        assert n.schedulable
        assert count * spec.gpus_per_worker <= n.gpus_free + 1e-9, (nid, ids, n)
        assert count * spec.cpus_per_worker <= n.cpus_free + 1e-9, (nid, ids, n)


# A fast CPU-only node every policy would like, a GPU node whose GPUs are taken, and a slow
# node with one free GPU.
VIEW = ClusterView(time=0.0, nodes=(
    gpu_node("cpu-fast", cpus=32, speed=2.0),
    gpu_node("gpu-full", gpus=4, gpus_free=0, speed=1.5),
    gpu_node("gpu-one", gpus=4, gpus_free=1, speed=0.5),
))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_gpu_job_goes_to_the_only_free_gpu(name: str) -> None:
    assert place(POLICIES[name](), gpu_job(), VIEW) == ("gpu-one",)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_gpu_gang_larger_than_the_free_gpus_waits(name: str) -> None:
    policy = POLICIES[name]()
    assert place(policy, gpu_job("two", workers=2), VIEW) is None
    assert place(policy, gpu_job("big", gpus=2), VIEW) is None


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_gpu_jobs_never_land_without_a_free_gpu_on_random_views(name: str) -> None:
    rng = random.Random(7)
    policy = POLICIES[name]()  # one policy over many rounds, as the controller keeps it
    placed = 0
    for round_ in range(150):
        nodes = []
        for i in range(rng.randint(1, 6)):
            cpus = float(rng.choice([2, 4, 8, 16]))
            gpus = float(rng.choice([0, 0, 1, 2, 4, 8]))
            nodes.append(gpu_node(
                f"n{i}", cpus=cpus, gpus=gpus, cpus_free=float(rng.randint(0, int(cpus))),
                gpus_free=float(rng.randint(0, int(gpus))), speed=rng.choice([0.5, 1.0, 2.0]),
                degraded=rng.random() < 0.1))
        view = ClusterView(time=float(round_), nodes=tuple(nodes))
        job = gpu_job(f"j{round_}", workers=rng.randint(1, 4), cpus=float(rng.randint(1, 3)),
                      gpus=rng.randint(1, 2))
        ids = place(policy, job, view)
        slots = sum(worker_slots(n, job.spec) for n in view.nodes if n.schedulable)
        if ids is not None:
            assert_fits(ids, job, view)
            placed += 1
        else:  # and every policy places the gang whenever the free slots hold it
            assert slots < job.spec.num_workers, (view, job)
    assert placed >= 20  # the views are not all hopeless


def test_cpu_jobs_still_use_gpu_nodes_cpus() -> None:
    cpu_job = JobView(job_id="c", spec=JobSpec(name="c", cpus_per_worker=4),
                      state=JobState.QUEUED, submit_time=0.0)
    view = ClusterView(time=0.0, nodes=(gpu_node("gpu", cpus=8, gpus=2),))
    for name, build in POLICIES.items():
        assert place(build(), cpu_job, view) == ("gpu",), name


def test_usable_cpus_cap_workers_by_free_gpus() -> None:
    assert usable_cpus(8.0, 0.0, 2.0, 0) == 8.0  # CPU job: the free CPUs
    assert usable_cpus(8.0, 3.0, 2.0, 1) == 6.0  # three GPU workers of 2 CPUs
    assert usable_cpus(8.0, 3.0, 2.0, 2) == 2.0  # one worker of 2 GPUs
    assert usable_cpus(1.0, 4.0, 2.0, 1) == 1.0  # CPUs bind
    assert worker_slots(gpu_node("n", cpus=8, gpus=4, gpus_free=3), gpu_job(gpus=2).spec) == 1


def test_admission_refuses_gpu_jobs_no_node_can_hold() -> None:
    cpu_only = ClusterView(time=0.0, nodes=(gpu_node("a", cpus=64),))
    refused = AdmitAll().admit(gpu_job(), cpu_only)
    assert not refused.admitted and "no node has both" in refused.reason
    two = ClusterView(time=0.0, nodes=(gpu_node("a", gpus=2), gpu_node("b", gpus=1)))
    assert AdmitAll().admit(gpu_job(workers=3), two).admitted
    too_many = AdmitAll().admit(gpu_job(workers=4), two)
    assert not too_many.admitted and "GPUs" in too_many.reason
    small = ClusterView(time=0.0, nodes=(gpu_node("a", cpus=1, gpus=2), gpu_node("b", cpus=8)))
    assert not AdmitAll().admit(gpu_job(cpus=2), small).admitted  # no node has both


def _gpu_straggler(*, gpu_free: float) -> ClusterView:
    """A GPU job at 3 s/step on 'bad' (1 s predicted); a fast CPU-only node and a GPU node."""
    s = gpu_job("s", steps=110, state=JobState.RUNNING, node_ids=("bad",), steps_done=10,
                recent_step_time_s=3.0, start_time=0.0)
    return ClusterView(time=0.0, jobs=(s,), nodes=(
        gpu_node("bad", gpus=1, cpus_free=7, gpus_free=0),
        gpu_node("cpu-fast", cpus=32, speed=2.0),
        gpu_node("gpu-spare", gpus=2, gpus_free=gpu_free),
    ))


def test_a_gpu_straggler_migrates_only_to_a_free_gpu() -> None:
    model = OracleCostModel(lambda j: 1.0, {})
    (m,) = StragglerRebalance(model, migration_cost_s=10.0).rebalance(
        _gpu_straggler(gpu_free=1)).migrations
    assert m.to_node_ids == ("gpu-spare",)
    stuck = StragglerRebalance(model, migration_cost_s=10.0).rebalance(
        _gpu_straggler(gpu_free=0))
    assert stuck.migrations == ()
