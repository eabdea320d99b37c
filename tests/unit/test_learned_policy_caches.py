"""The learned policy's caches: a promoted model replaces every cached prediction, and the fast
paths (vectorised ordering, per-view plans, early rejects) decide as the plain code did."""

from __future__ import annotations

import math
import random

from raysched.schedulers.policies.learned import learned_policy
from raysched.schedulers.policies.oracle import OracleCostModel
from raysched.schedulers.policies.ordering import PredictedRemainingOrder
from raysched.schedulers.policies.placement import LearnedPlacement
from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.types import ClusterView, JobState
from tests.unit.learned_policy_helpers import Counting, job, node


def promote(policy, model) -> None:
    """What the controller does when a retrained model is promoted."""
    for part in (policy.ordering, policy.placement, policy.rebalancing):
        if hasattr(part, "cost_model"):
            part.cost_model = model


def test_promoting_a_model_reaches_every_part_and_drops_their_predictions() -> None:
    old = Counting(lambda j: 1.0, {"a": 1.0, "b": 0.5})
    new = Counting(lambda j: 1.0, {"a": 0.5, "b": 1.0})
    policy = learned_policy(old)
    jobs = tuple(job(f"j{i}", steps=10 * (i + 1)) for i in range(3))
    view = ClusterView(time=0.0, nodes=(node("a"), node("b")), jobs=jobs)
    order = policy.ordering.order(view.queued, view)
    assert policy.placement.place(order[0], view).node_ids == ("a",)
    promote(policy, new)
    assert policy.ordering.ordering.cost_model is new  # the ordering inside the prefetcher too
    old.calls.clear()
    later = ClusterView(time=1.0, nodes=view.nodes, jobs=jobs)
    order = policy.ordering.order(later.queued, later)
    assert new.calls and not old.calls  # cached remaining times were the old model's
    assert policy.placement.place(order[0], later).node_ids == ("b",)
    assert not old.calls


def test_promotion_mid_round_predicts_with_the_new_model() -> None:
    old = Counting(lambda j: 1.0, {"a": 1.0, "b": 0.5})
    new = Counting(lambda j: 1.0, {"a": 0.5, "b": 1.0})
    policy = learned_policy(old)
    jobs = (job("x"), job("y"))
    view = ClusterView(time=0.0, nodes=(node("a"), node("b")), jobs=jobs)
    order = policy.ordering.order(view.queued, view)  # prefetches with the old model
    promote(policy, new)
    assert policy.placement.place(order[0], view).node_ids == ("b",)
    assert new.calls


def test_rebalancer_forgets_expected_step_times_of_the_old_model() -> None:
    s = job("s", steps=110, state=JobState.RUNNING, node_ids=("bad",), steps_done=10,
            recent_step_time_s=3.0, start_time=0.0)
    view = ClusterView(time=0.0, nodes=(node("bad", free=7), node("good")), jobs=(s,))
    slow_there = Counting(lambda j: 1.0, {"bad": 1 / 3})  # 3 s/step on "bad": on time
    rebalance = StragglerRebalance(slow_there, confirm_s=0.0)  # one job's word drains at once
    assert not rebalance.rebalance(view).node_flags
    rebalance.cost_model = Counting(lambda j: 1.0, {})  # 1 s/step: "bad" is now suspect
    assert rebalance.rebalance(view).node_flags[0].node_id == "bad"


def test_vectorised_order_is_the_key_order() -> None:
    rng = random.Random(3)
    step = {f"j{i:03d}": rng.choice([0.5, 1.0]) for i in range(300)}
    model = OracleCostModel(lambda j: step.get(j.job_id, 1.0), {})
    ordering = PredictedRemainingOrder(model, aging_rate=0.25)
    jobs = [job(f"j{i:03d}", steps=rng.choice([10, 20, 40]), priority=rng.choice([0, 0, 1, 2]),
                t=float(rng.choice([0, 5, 10, 200]))) for i in range(300)]
    rng.shuffle(jobs)
    view = ClusterView(time=100.0, nodes=(node("n"),), jobs=tuple(jobs))
    got = ordering.order(jobs, view)
    remaining = ordering.remaining_s(jobs, view)
    want = sorted(jobs, key=lambda j: (ordering.key(j, remaining[j.job_id], 100.0),
                                       j.submit_time, j.job_id))
    assert [j.job_id for j in got] == [j.job_id for j in want]
    ties = [job(f"t{i}", steps=10, t=1.0) for i in (3, 1, 2)]  # equal keys: by submit, then id
    assert [j.job_id for j in ordering.order(ties, view)] == ["t1", "t2", "t3"]


def test_nan_predictions_still_order_every_job() -> None:
    model = OracleCostModel(lambda j: math.nan if j.job_id == "odd" else 1.0, {})
    jobs = [job("a", steps=10), job("odd"), job("b", steps=5)]
    view = ClusterView(time=0.0, nodes=(node("n"),), jobs=tuple(jobs))
    assert sorted(j.job_id for j in PredictedRemainingOrder(model).order(jobs, view)) == [
        "a", "b", "odd"]


def test_a_job_that_fits_nowhere_is_rejected_without_being_evaluated() -> None:
    model = Counting(lambda j: 1.0, {})
    placement = LearnedPlacement(model, max_evaluations=1)
    view = ClusterView(time=0.0, nodes=(node("n", total=4, free=2),))
    assert placement.place(job("big", workers=3), view) is None  # 3 slots needed, 2 free
    assert placement.evaluate(job("big", workers=3), view) == []
    assert not model.calls
    assert placement.place(job("small"), view) is not None  # did not use up the one evaluation


def test_a_plan_is_reused_only_for_the_same_job_object() -> None:
    placement = LearnedPlacement(OracleCostModel(lambda j: 1.0, {}))
    view = ClusterView(time=0.0, nodes=(node("a", total=2), node("b", total=8)))
    one = placement.evaluate(job("j"), view)
    assert {s.node_ids for s in one} >= {("a",), ("b",)}
    bigger = job("j", workers=1, cpus=4.0)  # same id, new spec: planned afresh
    assert {s.node_ids for s in placement.evaluate(bigger, view)} == {("b",)}
