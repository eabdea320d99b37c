"""Node-level slowdown estimates and what the learned policy does with them (no Ray)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from raysched.schedulers.policies.learned import learned_policy
from raysched.schedulers.policies.node_speeds import (
    KnownNodeSpeeds,
    MeasuredNodeSpeeds,
    SpeedAdjustedViews,
    with_node_speeds,
)
from raysched.schedulers.policies.oracle import oracle_policy
from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView
from tests.unit.learned_policy_helpers import Counting, job, node


def running(jid: str, nodes: tuple[str, ...], step_s: float, *, model: str = "mlp",
            steps: int = 110, done: int = 10) -> JobView:
    """A running job measuring `step_s` per step (and the same as its own baseline)."""
    spec = JobSpec(name=jid, model=model, steps=steps, num_workers=len(nodes))
    return JobView(job_id=jid, spec=spec, state=JobState.RUNNING, submit_time=0.0,
                   start_time=0.0, node_ids=nodes, steps_done=done, recent_step_time_s=step_s,
                   baseline_step_time_s=step_s)


def view(jobs: tuple[JobView, ...], t: float = 0.0, speeds: dict[str, float] | None = None,
         **free: float) -> ClusterView:
    nodes = tuple(node(n, free=free.get(n, 8.0), speed=(speeds or {}).get(n, 1.0))
                  for n in ("a", "b", "c", "d"))
    return ClusterView(time=t, nodes=nodes, jobs=jobs)


def estimate(v: ClusterView, **kw: float) -> MeasuredNodeSpeeds:
    speeds = MeasuredNodeSpeeds(**kw)
    speeds.update(v)
    return speeds


def slowdowns(speeds: MeasuredNodeSpeeds, v: ClusterView) -> dict[str, float]:
    return {n.node_id: speeds.slowdown(n) for n in v.nodes}


def test_a_node_whose_jobs_step_slower_than_the_same_jobs_elsewhere_is_slowed() -> None:
    v = view((running("x", ("a",), 1.0), running("y", ("b",), 1.1), running("z", ("c",), 4.0)))
    speeds = estimate(v)
    got = slowdowns(speeds, v)
    assert got["c"] == pytest.approx(4.0 / 1.05)
    assert speeds.jobs_seen(v.nodes[2]) == 1 and speeds.jobs_seen(v.nodes[3]) == 0
    assert got["a"] == got["b"] == got["d"] == 1.0  # 1.1x is under min_factor: noise


def test_only_jobs_of_one_group_are_compared() -> None:
    # CNN jobs step 3x longer than MLP jobs everywhere: that is the job, not the nodes.
    jobs = (running("m", ("a",), 1.0), running("c1", ("b",), 3.0, model="cnn"),
            running("c2", ("c",), 3.0, model="cnn"))
    v = view(jobs)
    assert slowdowns(estimate(v), v) == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    # A CNN job with no other CNN job elsewhere is compared with nothing (not with the MLP).
    alone = view(jobs[:2])
    assert slowdowns(estimate(alone), alone)["b"] == 1.0


def test_speed_labels_are_allowed_for() -> None:
    # c is labelled 0.25 and its job steps 4x longer than on a: as labelled, not slowed.
    jobs = (running("x", ("a",), 1.0), running("z", ("c",), 4.0))
    labelled = view(jobs, speeds={"c": 0.25})
    assert slowdowns(estimate(labelled), labelled)["c"] == 1.0
    # Labelled 1 and stepping like that: 4x slower than its label.
    assert slowdowns(estimate(view(jobs)), view(jobs))["c"] == pytest.approx(4.0)


def test_no_reference_no_estimate_and_a_gang_is_explained_by_its_slow_node() -> None:
    lonely = view((running("z", ("c",), 4.0),))
    assert slowdowns(estimate(lonely), lonely)["c"] == 1.0
    jobs = (running("x", ("a",), 1.0), running("z", ("c",), 4.0),
            running("g", ("c", "d"), 4.0), running("h", ("a", "b"), 1.0))
    v = view(jobs)
    got = slowdowns(estimate(v), v)
    assert got["c"] > 3.0 and got["d"] == 1.0  # d is only in a gang with the slow c


def test_only_times_measured_at_about_the_same_time_are_compared() -> None:
    # z stepped 4x slower on c during a burst of contention that had passed by the time x ran
    # on a: the two times say nothing about c (a live run drained a healthy node on this).
    burst = view((running("z", ("c",), 4.0),), t=0.0)
    later = view((running("x", ("a",), 1.0),), t=100.0)
    for match_s, expected in ((30.0, 1.0), (math.inf, 4.0)):
        speeds = MeasuredNodeSpeeds(match_s=match_s)
        speeds.update(burst)
        speeds.update(later)
        assert speeds.slowdown(later.nodes[2]) == pytest.approx(expected)
    # A reference measured within `match_s` still counts: x ended 20 s before z's time.
    speeds = MeasuredNodeSpeeds()
    speeds.update(view((running("x", ("a",), 1.0),), t=0.0))
    speeds.update(view((running("z", ("c",), 4.0),), t=20.0))
    assert speeds.slowdown(later.nodes[2]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="match_s"):
        MeasuredNodeSpeeds(match_s=-1.0)


def test_an_estimate_is_held_after_its_jobs_leave_then_forgotten() -> None:
    v = view((running("x", ("a",), 1.0), running("z", ("c",), 4.0)))
    speeds = estimate(v, window_s=30.0, hold_s=60.0)
    gone = view((running("x", ("a",), 1.0),), t=50.0)  # z left; its time is 50 s old
    speeds.update(gone)
    assert speeds.slowdown(gone.nodes[2]) == pytest.approx(4.0)
    later = dataclasses.replace(gone, time=111.0)
    speeds.update(later)
    assert speeds.slowdown(later.nodes[2]) == 1.0


def test_adjusted_view_divides_speed_labels_and_is_one_object_per_round() -> None:
    v = view(())
    known = KnownNodeSpeeds({"a": 0.25, "b": 1.0})
    adjusted = with_node_speeds(v, known)
    assert [n.speed for n in adjusted.nodes] == [0.25, 1.0, 1.0, 1.0]
    assert with_node_speeds(v, KnownNodeSpeeds({})) is v
    views = SpeedAdjustedViews(known)
    assert views(v) is views(v) is views(views(v))
    assert MeasuredNodeSpeeds().slowdown(v.nodes[0]) == 1.0
    with pytest.raises(ValueError, match="min_factor"):
        MeasuredNodeSpeeds(min_factor=0.5)


class Unsure(Counting):
    """The oracle's means with a 5x-wide upper bound, like a cold-start heuristic."""

    def predict_many(self, pairs, cluster):
        b = super().predict_many(pairs, cluster)
        return dataclasses.replace(b, step_time_hi_s=b.step_time_s * 5)


def _after_slowdown(*extra: JobView) -> ClusterView:
    # z started on c after c slowed 4x: its baseline is as slow as its recent steps.
    jobs = (running("x", ("a",), 1.0), running("y", ("b",), 1.0), running("z", ("c",), 4.0))
    return view((*jobs, *extra), a=7.0, b=7.0, c=7.0 - len(extra))


def test_a_job_started_on_a_slowed_node_moves_only_with_node_level_evidence() -> None:
    v = _after_slowdown()
    blind = StragglerRebalance(Unsure(lambda j: 1.0, {}), migration_cost_s=30.0)
    assert blind.rebalance(v).migrations == ()  # wide interval, baseline already slow
    r = StragglerRebalance(Unsure(lambda j: 1.0, {}), migration_cost_s=30.0,
                           node_speeds=MeasuredNodeSpeeds())
    d = r.rebalance(v)
    assert [m.job_id for m in d.migrations] == ["z"] and d.migrations[0].to_node_ids != ("c",)
    # 100 steps left, 4 s/step measured, 1 s/step predicted on a healthy node.
    assert d.migrations[0].predicted_gain_s == pytest.approx(100 * 3.0 - 30.0)
    assert "slower than its label" in d.migrations[0].reason
    assert d.node_flags == ()  # one job's word moves it, but does not drain a node
    two = StragglerRebalance(Unsure(lambda j: 1.0, {}), migration_cost_s=1e9,
                             node_speeds=MeasuredNodeSpeeds())
    d = two.rebalance(_after_slowdown(running("z2", ("c",), 4.0)))
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("c", True)]
    # The evidence names the jobs it rests on, with each one's ratio.
    reason = d.node_flags[0].reason
    assert "4x slower" in reason and "(2 jobs: z 4x, z2 4x)" in reason


def test_a_moderate_slowdown_moves_jobs_without_draining_the_node() -> None:
    jobs = (running("x", ("a",), 1.0), running("y", ("b",), 1.0), running("z", ("c",), 2.5))
    r = StragglerRebalance(Unsure(lambda j: 1.0, {}), migration_cost_s=30.0,
                           node_speeds=MeasuredNodeSpeeds())
    d = r.rebalance(view(jobs, a=7.0, b=7.0, c=7.0))
    assert [m.job_id for m in d.migrations] == ["z"] and d.node_flags == ()


def test_learned_placement_avoids_a_node_measured_slow() -> None:
    model = Unsure(lambda j: 1.0, {})
    v = _after_slowdown()
    fast = dataclasses.replace(v.nodes[2], speed=2.0)  # c: labelled fastest, measured slow
    v = dataclasses.replace(v, nodes=(v.nodes[0], v.nodes[1], fast, v.nodes[3]))
    new = job("new", t=0.0)
    v = dataclasses.replace(v, jobs=(*v.jobs, new))
    trusting = learned_policy(model, node_speeds=None)
    assert trusting.placement.place(new, v).node_ids == ("c",)
    policy = learned_policy(model, migration_cost_s=1e9)
    policy.rebalancing.rebalance(v)  # the round's first step: measure
    placed = policy.placement.place(new, v)
    assert placed.node_ids != ("c",)
    assert "speed 1" in placed.reason


def test_oracle_reads_true_speeds_live_and_ignores_contention_noise() -> None:
    true = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    model = Counting(lambda j: 1.0, true)
    policy = oracle_policy(model, migration_cost_s=30.0)
    # Every job steps 1.8x slower than its exact prediction: contention, not a fault.
    noisy = view((running("x", ("a",), 1.8), running("z", ("c",), 1.8)), a=7.0, c=7.0)
    d = policy.rebalancing.rebalance(noisy)
    assert d.migrations == () and d.node_flags == ()
    true["c"] = 0.25  # a noisy neighbour on c, known to the oracle at once
    slowed = dataclasses.replace(noisy, time=1.0, jobs=(noisy.jobs[0],
                                 running("z", ("c",), 7.2)))
    d = policy.rebalancing.rebalance(slowed)
    assert [m.job_id for m in d.migrations] == ["z"] and d.migrations[0].to_node_ids != ("c",)
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("c", True)]
    assert math.isinf(policy.rebalancing.slow_factor)
    with pytest.raises(ValueError, match="node_speeds"):
        learned_policy(model, node_speeds="labels")


def test_a_lone_straggler_still_moves_on_its_own_baseline() -> None:
    # No other job to compare with: no node-level estimate, but its steps went 1 s -> 6 s.
    s = dataclasses.replace(running("s", ("c",), 6.0), baseline_step_time_s=1.0)
    policy = learned_policy(Unsure(lambda j: 1.0, {}), migration_cost_s=30.0)
    d = policy.rebalancing.rebalance(view((s,), c=7.0))
    assert [m.job_id for m in d.migrations] == ["s"]
    assert d.migrations[0].predicted_gain_s == pytest.approx(100 * (6.0 - 1.0) - 30.0)


def test_drains_stop_at_half_the_cluster_cpus() -> None:
    # Every node but a shows a job 3.5x over its own early steps: stragglers everywhere; a's
    # three on-time jobs show it is no host-wide slowdown (that would drain nothing).
    jobs = tuple(dataclasses.replace(running(f"s{n}", (n,), 3.5), baseline_step_time_s=1.0)
                 for n in ("b", "c", "d")) + tuple(running(f"a{i}", ("a",), 1.0) for i in range(3))
    v = view(jobs, b=7.0, c=7.0, d=7.0)
    r = StragglerRebalance(Unsure(lambda j: 1.0, {}), migration_cost_s=1e9, confirm_s=0.0)
    d = r.rebalance(v)
    assert [f.node_id for f in d.node_flags] == ["b", "c"]  # 16 of 32 CPUs, then no more
    degraded = dataclasses.replace(v, time=1.0, nodes=tuple(
        dataclasses.replace(n, degraded=n.node_id in ("b", "c")) for n in v.nodes))
    assert r.rebalance(degraded).node_flags == ()  # d still over the budget
    everything = StragglerRebalance(Unsure(lambda j: 1.0, {}), migration_cost_s=1e9,
                                    max_drained_fraction=1.0, confirm_s=0.0)
    assert len(everything.rebalance(v).node_flags) == 3
