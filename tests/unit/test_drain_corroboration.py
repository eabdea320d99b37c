"""A node is drained on corroborated evidence: two slow jobs at once, or one for `confirm_s`."""

from __future__ import annotations

import pytest

from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.types import ClusterView, JobState, JobView
from tests.unit.learned_policy_helpers import Counting, job, node


def slow_job(jid: str, node_ids: tuple[str, ...], ratio: float) -> JobView:
    """Steps `ratio` times its own early steps (0.1 s); the model's 10 s never fires."""
    return job(jid, steps=1010, state=JobState.RUNNING, node_ids=node_ids, steps_done=10,
               recent_step_time_s=0.1 * ratio, baseline_step_time_s=0.1, start_time=0.0,
               workers=len(node_ids))


def at(t: float, *jobs: JobView) -> ClusterView:
    return ClusterView(time=t, nodes=(node("n0", free=7), node("n1", free=7), node("spare")),
                       jobs=jobs)


def rebalancer(confirm_s: float = 60.0) -> StragglerRebalance:
    # Migrations never pay here: the tests look at drains only.
    return StragglerRebalance(Counting(lambda j: 10.0, {}), migration_cost_s=1e9,
                              confirm_s=confirm_s)


def drained(r: StragglerRebalance, view: ClusterView) -> list[str]:
    return [f.node_id for f in r.rebalance(view).node_flags if f.degraded]


def test_one_slow_job_drains_its_node_only_when_it_stays_slow_for_confirm_s() -> None:
    r = rebalancer()
    on_time = slow_job("ok", ("n1",), 1.0)
    assert drained(r, at(0.0, slow_job("a", ("n0",), 6.0), on_time)) == []
    assert "n0" in r.lone_since
    assert drained(r, at(59.0, slow_job("a", ("n0",), 6.0), on_time)) == []
    d = r.rebalance(at(60.0, slow_job("a", ("n0",), 6.0), on_time))
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
    assert "job a" in d.node_flags[0].reason and "(for 60 s)" in d.node_flags[0].reason


def test_a_pause_in_the_evidence_restarts_the_wait() -> None:
    r = rebalancer()
    on_time = slow_job("ok", ("n1",), 1.0)
    assert drained(r, at(0.0, slow_job("a", ("n0",), 6.0), on_time)) == []
    assert drained(r, at(30.0, slow_job("a", ("n0",), 1.0), on_time)) == []  # on time again
    assert r.lone_since == {}
    assert drained(r, at(70.0, slow_job("a", ("n0",), 6.0), on_time)) == []  # waits anew
    assert drained(r, at(130.0, slow_job("a", ("n0",), 6.0), on_time)) == ["n0"]


def test_two_slow_jobs_on_one_node_drain_it_at_once_and_the_reason_names_both() -> None:
    r = rebalancer()
    d = r.rebalance(at(0.0, slow_job("a", ("n0",), 6.0), slow_job("b", ("n0",), 5.0),
                       slow_job("ok", ("n1",), 1.0)))
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
    assert "job a" in d.node_flags[0].reason and "job b" in d.node_flags[0].reason


def test_one_gang_with_both_workers_on_the_node_is_one_job_of_evidence() -> None:
    # The live run's false drain: a pipeline job with both stages on one node, 5.6x its early
    # steps while the jobs elsewhere slowed 1.3x; it ended seconds later.
    r = rebalancer()
    pipeline = slow_job("pipe", ("n0", "n0"), 5.6 * 1.3)
    others = (slow_job("x", ("n1",), 1.3), slow_job("y", ("spare",), 1.3))
    d = r.rebalance(at(0.0, pipeline, *others))
    assert d.node_flags == ()
    assert drained(r, at(10.0, *others)) == []  # it finished: nothing left to wait for
    assert r.lone_since == {}


def test_a_node_with_one_slow_job_is_no_migration_target_before_it_is_drained() -> None:
    # Job m on n1 is a straggler with a cheap move; n0 (free, but its own job slow) is not
    # where it goes, even though n0 is not drained yet.
    # n0 is predicted 10x faster than the rest, so it would be m's best target.
    r = StragglerRebalance(Counting(lambda j: 10.0, {"n0": 10.0}), migration_cost_s=0.0,
                           confirm_s=60.0)
    on_time = (slow_job("ok1", ("n2",), 1.0), slow_job("ok2", ("n2",), 1.0))
    view = ClusterView(time=0.0, nodes=(node("n0", free=7), node("n1", free=7), node("n2", free=6),
                                        node("spare")),
                       jobs=(slow_job("a", ("n0",), 6.0), slow_job("m", ("n1",), 6.0), *on_time))
    d = r.rebalance(view)
    assert "m" in [m.job_id for m in d.migrations]
    assert all("n0" not in m.to_node_ids for m in d.migrations)
    assert [f.node_id for f in d.node_flags] == ["n1"]  # m's move drains n1; n0 still waits


def test_confirm_s_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="confirm_s"):
        rebalancer(confirm_s=-1.0)


def test_moving_the_lone_straggler_off_its_node_drains_the_node_at_once() -> None:
    # The relaunch is placed afresh: an undrained fast node would take the job straight back
    # (the live integration test saw exactly that).
    r = StragglerRebalance(Counting(lambda j: 10.0, {}), migration_cost_s=0.0, confirm_s=60.0)
    d = r.rebalance(at(0.0, slow_job("a", ("n0",), 6.0), slow_job("ok", ("n1",), 1.0)))
    assert [m.job_id for m in d.migrations] == ["a"]
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("n0", True)]
    assert "is moved off it" in d.node_flags[0].reason
