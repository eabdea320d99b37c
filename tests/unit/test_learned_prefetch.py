"""The placement's lazy prefetch: predicting a prepared round's jobs a few at a time, as the
queue walk reaches them, decides exactly as predicting them all at `prepare` did."""

from __future__ import annotations

import dataclasses
import random
import types
from collections.abc import Sequence

import numpy as np

from raysched.schedulers.decisions import Placement
from raysched.schedulers.policies.base import SchedulingPolicy, place_in_order
from raysched.schedulers.policies.learned import learned_policy
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView
from tests.unit.learned_policy_helpers import Counting, job, node


class FreeCpuStub:
    """Durations that depend on the cluster's free CPUs: a prediction made on a later view of
    the round (after a launch) differs from one made on the prepared view."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_many(self, pairs: Sequence[tuple[JobView, Sequence[NodeView]]],
                     cluster: ClusterView) -> types.SimpleNamespace:
        self.calls.append(len(pairs))
        free = sum(n.cpus_free for n in cluster.nodes)
        dur = np.array([(j.steps_left + 1) * (1.0 + free / 100.0)
                        / max(min(n.speed for n in ns), 0.1) for j, ns in pairs], dtype=float)
        step = dur / 100.0
        return types.SimpleNamespace(step_time_s=step, step_time_hi_s=step * 1.5,
                                     duration_s=dur, duration_hi_s=dur * 1.5,
                                     peak_rss_hi_mb=np.full(len(pairs), 10.0))


def _policy(model: FreeCpuStub, *, eager: bool) -> SchedulingPolicy:
    policy = learned_policy(model, node_speeds=None)
    if eager:  # the old prepare: every job it covers predicted at once
        policy.placement.prefetch_jobs = 10**6
    else:  # predict one job at a time, each only when the walk reaches it
        policy.placement.prefetch_jobs = 1
        policy.ordering.walk_end = lambda order, cluster: 0
    return policy


def _rounds(policy: SchedulingPolicy, seed: int) -> list[str]:
    """Reprs of every placement over random rounds (launches, finishes, arrivals)."""
    rng = random.Random(seed)
    nodes = {f"n{i}": NodeView(node_id=f"n{i}", cpus_total=8.0, cpus_free=8.0,
                               speed=rng.choice([0.5, 1.0])) for i in range(8)}
    jobs: dict[str, JobView] = {}
    out: list[str] = []
    t = 100.0

    def add(k: int) -> None:
        spec = JobSpec(name=f"j{k}", steps=rng.randint(5, 80), num_workers=rng.randint(1, 3),
                       cpus_per_worker=float(rng.choice([1, 2])))
        jobs[f"j{k:04d}"] = JobView(job_id=f"j{k:04d}", spec=spec, state=JobState.QUEUED,
                                    submit_time=t - rng.uniform(0, 900))

    def use(ids: Sequence[str], cpus: float) -> None:
        for nid in ids:
            nodes[nid] = dataclasses.replace(nodes[nid], cpus_free=nodes[nid].cpus_free - cpus)

    def launch(j: JobView, p: Placement, view: ClusterView) -> ClusterView:
        use(p.node_ids, j.spec.cpus_per_worker)
        jobs[j.job_id] = dataclasses.replace(j, state=JobState.RUNNING, node_ids=p.node_ids,
                                             start_time=t, steps_done=0)
        return ClusterView(time=t, nodes=tuple(nodes.values()), jobs=tuple(jobs.values()))

    for k in range(60):
        add(k)
    for _ in range(25):
        running = [j for j in jobs.values() if j.state is JobState.RUNNING]
        for j in rng.sample(running, min(len(running), rng.randint(0, 4))):
            use(j.node_ids, -j.spec.cpus_per_worker)
            del jobs[j.job_id]
        for _ in range(rng.randint(0, 4)):
            add(rng.randrange(10**4, 10**5))
        view = ClusterView(time=t, nodes=tuple(nodes.values()), jobs=tuple(jobs.values()))
        placed, _ = place_in_order(policy, view, launch)
        out += [repr(p) for p in placed]
        t += 7.0  # past `round_ttl_s`: each walk is a new round
    return out


def test_lazy_prefetch_places_as_the_eager_prepare() -> None:
    for seed in range(4):
        eager_model, lazy_model = FreeCpuStub(), FreeCpuStub()
        eager = _rounds(_policy(eager_model, eager=True), seed)
        lazy = _rounds(_policy(lazy_model, eager=False), seed)
        assert eager and lazy == eager
        # The lazy prefetch predicted fewer rows, over more (smaller) calls.
        assert sum(lazy_model.calls) < sum(eager_model.calls)


def test_prepare_predicts_only_up_to_the_horizon() -> None:
    model = Counting(lambda j: 1.0, {"a": 1.0})
    policy = learned_policy(model, node_speeds=None)
    policy.placement.prefetch_jobs = 2
    jobs = tuple(job(f"j{i}", steps=10 * (i + 1)) for i in range(6))
    view = ClusterView(time=0.0, nodes=(node("a"),), jobs=jobs)
    order = policy.ordering.ordering.order(view.queued, view)
    model.calls.clear()
    policy.placement.prepare(order, view, horizon=1)
    assert model.calls == [1]  # one job, its one candidate
    policy.placement.place(order[3], view)  # the walk got further: one call, through
    assert model.calls == [1, 4]  # order[3] and twice `prefetch_jobs` jobs more than covered
    policy.placement.place(order[4], view)  # predicted already
    assert model.calls == [1, 4]
    policy.placement.place(order[5], view)  # the last one
    assert model.calls == [1, 4, 1]


def test_a_promoted_model_drops_the_pending_prefetch() -> None:
    old = Counting(lambda j: 1.0, {"a": 1.0, "b": 0.5})
    new = Counting(lambda j: 1.0, {"a": 0.5, "b": 1.0})
    policy = learned_policy(old, node_speeds=None)
    policy.placement.prefetch_jobs = 1
    jobs = tuple(job(f"j{i}", steps=10 * (i + 1)) for i in range(4))
    view = ClusterView(time=0.0, nodes=(node("a"), node("b")), jobs=jobs)
    order = policy.ordering.order(view.queued, view)  # prefetches order[0] only
    for part in (policy.ordering, policy.placement, policy.rebalancing):
        part.cost_model = new
    old.calls.clear()
    assert policy.placement.place(order[2], view).node_ids == ("b",)
    assert new.calls and not old.calls
