"""The learned ordering's per-job cache: reused for the same job, redone for a changed one."""

from __future__ import annotations

import dataclasses

from raysched.schedulers.policies.ordering import PredictedRemainingOrder
from raysched.schedulers.types import ClusterView
from tests.unit.learned_policy_helpers import Counting, job, node


def _view(jobs, t: float = 10.0) -> ClusterView:
    return ClusterView(time=t, nodes=(node("n"),), jobs=tuple(jobs))


def test_the_same_job_objects_are_not_predicted_again() -> None:
    model = Counting(lambda j: 1.0, {})
    ordering = PredictedRemainingOrder(model)
    jobs = [job(f"j{i}", steps=10 * (i + 1), t=float(i)) for i in range(5)]
    first = ordering.order(jobs, _view(jobs))
    assert model.calls == [5]
    assert ordering.order(jobs, _view(jobs, 11.0)) == first
    assert model.calls == [5]


def test_a_new_object_is_predicted_again_only_when_its_steps_left_changed() -> None:
    model = Counting(lambda j: 1.0, {})
    ordering = PredictedRemainingOrder(model, aging_rate=0.0)
    a, b = job("a", steps=50), job("b", steps=40)
    assert [j.job_id for j in ordering.order([a, b], _view([a, b]))] == ["b", "a"]
    same = dataclasses.replace(a)  # another object, the same steps left: a hit
    assert ordering.remaining_s([same, b], _view([same, b]))["a"] == 50.0
    assert model.calls == [2]
    progressed = dataclasses.replace(a, steps_done=20)  # 30 steps left now: predicted again
    got = ordering.order([progressed, b], _view([progressed, b]))
    assert model.calls == [2, 1]
    assert [j.job_id for j in got] == ["a", "b"]
    assert ordering.remaining_s([progressed, b], _view([progressed, b])) == {"a": 30.0, "b": 40.0}


def test_jobs_that_left_are_forgotten_and_a_new_model_predicts_afresh() -> None:
    model = Counting(lambda j: 1.0, {})
    ordering = PredictedRemainingOrder(model)
    jobs = [job(f"j{i}", steps=10) for i in range(4)]
    ordering.order(jobs, _view(jobs))
    ordering.order(jobs[:2], _view(jobs[:2]))
    assert set(ordering._cache) == {"j0", "j1"}
    slower = Counting(lambda j: 2.0, {})
    ordering.cost_model = slower
    assert ordering.remaining_s(jobs[:2], _view(jobs[:2])) == {"j0": 20.0, "j1": 20.0}
    assert slower.calls == [2]
