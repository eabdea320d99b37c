"""Baseline policy decisions on hand-built cluster views."""

import pytest

from raysched.schedulers.policies.base import AdmitAll, FifoOrder, gang_fit
from raysched.schedulers.policies.heuristic_placement import (
    LeastLoadedPlacement,
    PackPlacement,
    RandomPlacement,
    RayDefaultPlacement,
    SpreadPlacement,
)
from raysched.schedulers.policies.registry import make_policy
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView


def node(nid, total, free, **kw):
    return NodeView(node_id=nid, cpus_total=total, cpus_free=free, **kw)


def job(jid="j", workers=1, cpus=1.0, t=0.0):
    spec = JobSpec(name=jid, num_workers=workers, cpus_per_worker=cpus)
    return JobView(job_id=jid, spec=spec, state=JobState.QUEUED, submit_time=t)


VIEW = ClusterView(time=0, nodes=(node("a", 4, 1), node("b", 2, 2), node("c", 4, 3)))


def test_least_loaded_picks_the_emptiest_node_per_worker():
    p = LeastLoadedPlacement().place(job(workers=3), VIEW)
    # b is fully free (1.0), then c (0.75), then b again (0.5) vs c (0.5): tie -> lower load, id.
    assert p.node_ids == ("b", "c", "b")
    assert p.policy == "least_loaded"


def test_least_loaded_returns_none_when_the_gang_does_not_fit():
    assert LeastLoadedPlacement().place(job(workers=7), VIEW) is None
    assert LeastLoadedPlacement().place(job(cpus=4), VIEW) is None


def test_degraded_and_dead_nodes_get_nothing():
    view = ClusterView(time=0, nodes=(node("a", 4, 4, degraded=True), node("b", 4, 4, alive=False),
                                      node("c", 1, 1)))
    assert LeastLoadedPlacement().place(job(), view).node_ids == ("c",)
    assert LeastLoadedPlacement().place(job(workers=2), view) is None


def test_pack_fills_the_fullest_node_first():
    assert PackPlacement().place(job(workers=2), VIEW).node_ids == ("a", "b")


def test_spread_puts_one_worker_per_node():
    assert SpreadPlacement().place(job(workers=3), VIEW).node_ids == ("c", "b", "a")


def test_random_is_feasible_and_seeded():
    a = [RandomPlacement(seed=1).place(job(workers=2), VIEW).node_ids for _ in range(3)]
    assert a[0] == a[1] == a[2]
    for nid in a[0]:
        assert VIEW.node(nid).cpus_free >= 1


def test_ray_default_leaves_nodes_to_ray_but_waits_for_room():
    p = RayDefaultPlacement().place(job(workers=2), VIEW)
    assert p.node_ids == ()
    assert RayDefaultPlacement().place(job(workers=9), VIEW) is None


def test_gang_fit_all_or_nothing():
    nodes = VIEW.nodes
    assert gang_fit(nodes, 6, 1.0) == ("a", "b", "b", "c", "c", "c")
    assert gang_fit(nodes, 7, 1.0) is None


def test_fifo_order_and_admission():
    jobs = [job("late", t=5), job("early", t=1)]
    assert [j.job_id for j in FifoOrder().order(jobs, VIEW)] == ["early", "late"]
    assert AdmitAll().admit(job(cpus=4), VIEW).admitted
    refused = AdmitAll().admit(job(cpus=5), VIEW)
    assert not refused.admitted and "largest node has 4" in refused.reason
    assert not AdmitAll().admit(job(workers=11), VIEW).admitted


def test_registry_knows_the_baselines_and_rejects_unknown_names():
    assert make_policy("fifo_ray_default").placement.name == "ray_default"
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")
