"""Rebalancing tells a slowdown every job shares (a contended host) from a slowed node (no Ray)."""

from __future__ import annotations

import dataclasses

from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.types import ClusterView, JobState, JobView
from tests.unit.learned_policy_helpers import Counting, job, node


# These tests are about which node the evidence points at, so a single job's signal drains at
# once here (`confirm_s=0`); tests/unit/test_drain_corroboration.py covers the waiting.
def rebalancer() -> StragglerRebalance:
    return StragglerRebalance(pessimistic(), migration_cost_s=1.0, confirm_s=0.0)


def pessimistic() -> Counting:
    """Predicts 10 s steps, far over every measurement: only the own-baseline signal fires."""
    return Counting(lambda j: 10.0, {})


def running(jid: str, nid: str, ratio: float, *, baseline: float | None = 0.1) -> JobView:
    """A 1-worker job on `nid`, stepping `ratio` times slower than its baseline now."""
    return job(jid, steps=1010, state=JobState.RUNNING, node_ids=(nid,), steps_done=10,
               recent_step_time_s=0.1 * ratio, baseline_step_time_s=baseline, start_time=0.0)


def view(ratios: list[float]) -> ClusterView:
    """Job j<i> on node n<i> slowed ratios[i] times; a free node 'spare' to move to."""
    nodes = (*(node(f"n{i}", free=7) for i in range(len(ratios))), node("spare"))
    return ClusterView(time=0.0, nodes=nodes,
                       jobs=tuple(running(f"j{i}", f"n{i}", r) for i, r in enumerate(ratios)))


def test_all_jobs_slowed_together_drain_nothing() -> None:
    d = rebalancer().rebalance(view([3.5] * 4))
    assert d.node_flags == () and d.migrations == ()


def test_one_nodes_jobs_slowed_alone_drain_it_and_move() -> None:
    d = rebalancer().rebalance(view([4, 1, 1, 1]))
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
    assert "while jobs on other nodes slowed 1x" in d.node_flags[0].reason
    (m,) = d.migrations
    assert m.job_id == "j0" and "n0" not in m.to_node_ids


def test_a_node_slowed_on_a_contended_host_is_still_caught() -> None:
    # Everything 3.5x slower (the host); n0's job 4x more on top (its node).
    d = rebalancer().rebalance(view([14, 3.5, 3.5, 3.5]))
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
    assert [m.job_id for m in d.migrations] == ["j0"]


def test_a_lone_straggler_is_judged_on_its_own_baseline() -> None:
    lone = view([4])
    d = rebalancer().rebalance(lone)
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
    assert "no other job measured to compare" in d.node_flags[0].reason
    assert [m.job_id for m in d.migrations] == ["j0"]
    # Jobs elsewhere without a baseline yet (just started) give no ratio to compare with.
    fresh = (running("new1", "spare", 1.0, baseline=None),)
    d = rebalancer().rebalance(dataclasses.replace(lone, jobs=(*lone.jobs, *fresh)))
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
