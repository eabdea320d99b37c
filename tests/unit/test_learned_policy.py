"""The learned policy's ordering, placement and rebalancing on hand-built views (no Ray)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from raysched.schedulers.decisions import Placement
from raysched.schedulers.policies.base import AdmitAll, place_in_order
from raysched.schedulers.policies.learned import build_learned, learned_policy
from raysched.schedulers.policies.oracle import OracleCostModel, oracle_policy
from raysched.schedulers.policies.ordering import PredictedRemainingOrder
from raysched.schedulers.policies.placement import LearnedPlacement
from raysched.schedulers.policies.rebalance import StragglerRebalance
from raysched.schedulers.predictor.cost_model import CostModel
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.types import ClusterView, JobState, JobView
from tests.unit.learned_policy_helpers import Counting, job, node


class Unsure(OracleCostModel):
    """The oracle with a wider upper bound on some nodes (hi = mean * (1 + width))."""

    def __init__(self, *a: object, width: dict[str, float], **kw: object) -> None:
        super().__init__(*a, **kw)
        self.width = width

    def predict_many(self, pairs, cluster):
        b = super().predict_many(pairs, cluster)
        w = np.array([max(self.width.get(n.node_id, 0.0) for n in ns) for _, ns in pairs])
        return dataclasses.replace(b, step_time_hi_s=b.step_time_s * (1 + w),
                                   duration_hi_s=b.duration_s * (1 + w))


def oracle(speeds: dict[str, float] | None = None, **kw: object) -> Counting:
    return Counting(lambda j: 1.0, speeds or {}, **kw)


# -- ordering ---------------------------------------------------------------------------------


def test_orders_by_predicted_remaining_time_weighted_by_priority_in_one_batch() -> None:
    model = oracle()
    view = ClusterView(time=0.0, nodes=(node("n"),))
    jobs = [job("long", steps=100), job("short", steps=10), job("mid", steps=50)]
    order = PredictedRemainingOrder(model)
    assert [j.job_id for j in order.order(jobs, view)] == ["short", "mid", "long"]
    assert model.calls == [3]  # the whole queue in one predict_many call
    urgent = [*jobs[1:], job("long", steps=100, priority=5)]  # 100 * exp(-2.5) = 8.2 < 10
    assert [j.job_id for j in order.order(urgent, view)][0] == "long"
    assert model.calls == [3]  # cached: priority weights the key, not the prediction


def _starvation_run(aging_rate: float, horizon: float = 600.0) -> tuple[float | None, float]:
    """One-slot cluster; a 100 s job at t=0.5, a 2 s job every 2 s. Returns (start, bound)."""
    model = OracleCostModel(lambda j: 1.0, {})
    ordering = PredictedRemainingOrder(model, aging_rate=aging_rate)
    long_job = job("long", steps=100, t=0.5)
    queue, busy_until, n, t = [long_job], 0.0, 0, 0.0
    start = None
    while t <= horizon:
        if t % 2 == 0:
            queue.append(job(f"s{n}", steps=2, t=t))
            n += 1
        if t >= busy_until and queue:
            view = ClusterView(time=t, nodes=(node("slot", total=1),), jobs=tuple(queue))
            first = ordering.order(queue, view)[0]
            queue.remove(first)
            busy_until = t + first.spec.steps * 1.0
            if first.job_id == "long":
                start = t
                break
        t += 1.0
    bound = 0.5 + 100 / aging_rate + 2.0 + 1.0 if aging_rate else float("inf")
    return start, bound


def test_aging_bounds_the_wait_of_a_long_job_behind_a_stream_of_short_ones() -> None:
    start, bound = _starvation_run(aging_rate=0.5)
    assert start is not None and 150 < start <= bound  # contended, yet within W + one job
    never, _ = _starvation_run(aging_rate=0.0)
    assert never is None  # without aging the stream starves it


class _OrderOnly:
    """The same queue order, without `overdue`: backfill as before the guard."""

    def __init__(self, ordering) -> None:
        self.order = ordering.order


def _gang_starvation_run(policy, horizon: float = 400.0) -> float | None:
    """A 2-CPU node; a 2-worker 100 s job at t=0.5 and a 1-worker 3 s job every 2 s, driven
    through `place_in_order` (the controller's loop). Returns when the gang started."""
    running: list[tuple[JobView, float]] = []  # (job, end time)
    queue: list[JobView] = [job("gang", steps=100, workers=2, t=0.5)]
    n, t = 0, 0.0
    while t <= horizon:
        running = [(j, end) for j, end in running if end > t]
        if t % 2 == 0:
            queue.append(job(f"s{n}", steps=3, t=t))
            n += 1
        free = 2.0 - sum(j.spec.total_cpus for j, _ in running)
        view = ClusterView(time=t, nodes=(node("a", total=2, free=free),),
                           jobs=(*queue, *(j for j, _ in running)))
        started: list[str] = []

        def launch(j: JobView, p: Placement, v: ClusterView, started=started) -> ClusterView:
            started.append(j.job_id)
            a = v.node("a")
            return dataclasses.replace(v, nodes=(dataclasses.replace(
                a, cpus_free=a.cpus_free - j.spec.total_cpus),))

        place_in_order(policy, view, launch)
        for jid in started:
            j = next(q for q in queue if q.job_id == jid)
            queue.remove(j)
            running.append((dataclasses.replace(j, state=JobState.RUNNING, node_ids=("a",),
                                                start_time=t), t + j.spec.steps * 1.0))
            if jid == "gang":
                return t
        t += 1.0
    return None


def test_an_overdue_gang_stops_backfill_so_narrow_jobs_cannot_starve_it() -> None:
    # Without the guard the 1-worker stream takes each CPU as it frees: the gang never starts.
    guarded = learned_policy(oracle(), node_speeds=None)
    starved = dataclasses.replace(guarded, ordering=_OrderOnly(guarded.ordering))
    assert _gang_starvation_run(starved) is None
    start = _gang_starvation_run(guarded)
    # Overdue after 100 s / aging 0.5 = 200 s of waiting; then the running 3 s jobs drain.
    assert start is not None and 200.5 <= start <= 200.5 + 3.0 + 1.0


def test_only_a_gang_that_fits_later_but_not_now_blocks_backfill() -> None:
    policy = learned_policy(oracle(), node_speeds=None)
    wide = job("wide", steps=100, workers=3, t=0.0)
    view = ClusterView(time=1000.0, nodes=(node("a", total=2), node("b", total=2, degraded=True)),
                       jobs=(wide,))
    assert policy.ordering.overdue(wide, view)
    assert not policy.blocks_backfill(wide, view)  # 3 workers, 2 schedulable CPUs
    busy = dataclasses.replace(view, nodes=(node("a", total=2, free=1),
                                            node("b", total=2, free=1)))
    assert policy.blocks_backfill(wide, busy)  # fits the 4 CPUs once they are free
    # Free capacity for it now: it was left queued by choice (a busy faster node, the
    # evaluation cap), which must not stop the jobs behind it.
    idle = dataclasses.replace(view, nodes=(node("a", total=2), node("b", total=2)))
    assert not policy.blocks_backfill(wide, idle)


# -- placement --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> CostModel:
    with threadpool_limits(1):
        return CostModel(min_rows=20, max_iter=30).fit(synthetic_jobs(150, seed=2))


def test_placement_picks_the_faster_node_once_the_model_is_trained(fitted: CostModel) -> None:
    view = ClusterView(time=2e9, nodes=(node("slow0", speed=0.5), node("fast0", speed=1.0),
                                        node("slow1", speed=0.5)))
    with threadpool_limits(1):
        p = LearnedPlacement(fitted).place(job("j", t=2e9), view)
    assert fitted.source == "model"
    assert p is not None and p.node_ids == ("fast0",)
    assert p.reason.startswith("fastest predicted completion") and "next best" in p.reason
    assert p.predicted_duration_s and p.predicted_duration_s > 0
    assert {c.node_ids for c in p.candidates} >= {("fast0",), ("slow0",)}


def test_gang_is_placed_whole_or_not_at_all() -> None:
    placement = LearnedPlacement(oracle())
    two = ClusterView(time=0.0, nodes=(node("a", 4, 2), node("b", 4, 2)))
    assert placement.place(job("g", workers=3, cpus=2.0), two) is None
    three = ClusterView(time=0.0, nodes=(node("a", 4, 2), node("b", 4, 2), node("c", 4, 3)))
    p = placement.place(job("g", workers=3, cpus=2.0), three)
    assert p is not None and sorted(p.node_ids) == ["a", "b", "c"]
    for c in p.candidates:  # every candidate respects every node's free CPUs
        assert len(c.node_ids) == 3
        for nid in set(c.node_ids):
            assert c.node_ids.count(nid) * 2.0 <= three.node(nid).cpus_free


def test_memory_infeasible_candidates_are_rejected() -> None:
    model = oracle(peak_rss_mb=1000.0)
    view = ClusterView(time=0.0, nodes=(node("fast", memory_free_mb=500.0, speed=1.0),
                                        node("slow", memory_free_mb=1500.0, speed=0.5)))
    p = LearnedPlacement(model).place(job("j"), view)
    assert p is not None and p.node_ids == ("slow",)
    assert any(c.node_ids == ("fast",) and c.note.startswith("rejected") for c in p.candidates)
    two = job("j2", workers=2)  # 2 x 1000 MB: too much for either node, or one each
    assert LearnedPlacement(model).place(two, view) is None


def test_an_unsure_prediction_does_not_win_on_the_mean_alone() -> None:
    # "a" is predicted 1.0 s/step but could be 3.0; "b" 1.25 s/step, at most 1.3125.
    model = Unsure(lambda j: 1.0, {"a": 1.0, "b": 0.8}, width={"a": 2.0, "b": 0.05})
    view = ClusterView(time=0.0, nodes=(node("a"), node("b")))
    assert LearnedPlacement(model, risk=1.0).place(job("j"), view).node_ids == ("b",)
    assert LearnedPlacement(model, risk=0.0).place(job("j"), view).node_ids == ("a",)


def _busy_fast_view(steps_left: int) -> ClusterView:
    running = job("r", steps=10 + steps_left, cpus=4.0, state=JobState.RUNNING,
                  node_ids=("fast",), steps_done=10, recent_step_time_s=1.0, start_time=0.0)
    nodes = (node("fast", total=4, free=0, speed=1.0), node("slow", total=4, speed=0.5))
    return ClusterView(time=20.0, nodes=nodes, jobs=(running,))


def test_waiting_for_a_fast_node_that_frees_soon_beats_a_free_slow_node() -> None:
    queued = job("q", steps=100, t=15.0)  # 100 s on fast, 200 s on slow
    soon = _busy_fast_view(steps_left=5)  # fast frees in 5 s: 105 s < 200 s
    assert LearnedPlacement(oracle()).place(queued, soon) is None
    late = _busy_fast_view(steps_left=150)  # 150 + 100 s > 200 s: take the slow node now
    p = LearnedPlacement(oracle()).place(queued, late)
    assert p is not None and p.node_ids == ("slow",)
    assert any("wait 150.0 s" in c.note for c in p.candidates)
    patient = LearnedPlacement(oracle(), max_wait_s=3.0)  # already waited 5 s: stop waiting
    assert patient.place(queued, soon).node_ids == ("slow",)


def test_an_interval_as_wide_on_every_node_does_not_make_waiting_look_cheap() -> None:
    # Upper ends 3.5x the mean everywhere (a log-space residual quantile): no candidate is
    # surer than another, so the choice is the mean's. Scoring by the upper end would compare
    # 150 s of waiting + 350 s with 700 s and wait; on the mean it is 250 s against 200 s.
    model = Unsure(lambda j: 1.0, {}, width={"fast": 2.5, "slow": 2.5})
    queued = job("q", steps=100, t=15.0)
    p = LearnedPlacement(model).place(queued, _busy_fast_view(steps_left=150))
    assert p is not None and p.node_ids == ("slow",)
    assert LearnedPlacement(model).place(queued, _busy_fast_view(steps_left=5)) is None


def test_only_one_job_per_round_counts_on_the_same_busy_node() -> None:
    soon = _busy_fast_view(steps_left=5)
    placement = LearnedPlacement(oracle())
    assert placement.place(job("q1", steps=100, t=15.0), soon) is None  # reserves "fast"
    p = placement.place(job("q2", steps=100, t=15.0), soon)
    assert p is not None and p.node_ids == ("slow",)


def test_backfill_depth_bounds_the_jobs_evaluated_per_round() -> None:
    placement = LearnedPlacement(oracle(), max_evaluations=2)
    view = ClusterView(time=0.0, nodes=(node("n", 8),))
    got = [placement.place(job(f"j{i}"), view) for i in range(4)]
    assert [p is not None for p in got] == [True, True, False, False]
    later = dataclasses.replace(view, time=10.0)  # a new round
    assert placement.place(job("j3"), later) is not None


def _launched(view: ClusterView, p: Placement) -> ClusterView:
    """The view the controller observes after launching placement `p`."""
    j = next(j for j in view.jobs if j.job_id == p.job_id)
    nodes = tuple(dataclasses.replace(
        n, cpus_free=n.cpus_free - p.node_ids.count(n.node_id) * j.spec.cpus_per_worker)
        for n in view.nodes)
    jobs = tuple(dataclasses.replace(x, state=JobState.PLACED, node_ids=p.node_ids,
                                     start_time=view.time) if x is j else x for x in view.jobs)
    return dataclasses.replace(view, nodes=nodes, jobs=jobs)


def test_learned_policy_round_batches_its_predictions() -> None:
    model = oracle()  # equal speeds: no busy node is worth waiting for
    policy = learned_policy(model)
    assert policy.name == "learned" and policy.backfill and isinstance(policy.admission, AdmitAll)
    assert build_learned(model).name == "learned"
    jobs = tuple(job(f"j{i}", steps=10 * (i + 1)) for i in range(6))
    view = ClusterView(time=0.0, nodes=(node("n0", 2), node("n1", 1), node("n2", 1)), jobs=jobs)
    order = policy.ordering.order(view.queued, view)
    assert [j.job_id for j in order] == [f"j{i}" for i in range(6)]
    placed = []
    for j in order:  # as the controller does: re-observe after each launch
        p = policy.placement.place(j, view)
        if p is not None:
            placed.append(p)
            view = _launched(view, p)
    assert [p.node_ids for p in placed] == [("n0",), ("n0",), ("n1",), ("n2",)]
    assert len(model.calls) == 2  # one call for the order, one for the round's candidates
    assert placed[0].policy == "learned"


# -- rebalancing ------------------------------------------------------------------------------


def _straggler_view(t: float = 0.0, *, observed: float = 3.0, good_degraded: bool = False,
                    bad_degraded: bool = False) -> ClusterView:
    """Job s on node 'bad' steps at `observed` s; the oracle predicts 1 s there and on 'good'."""
    s = job("s", steps=110, state=JobState.RUNNING, node_ids=("bad",), steps_done=10,
            recent_step_time_s=observed, start_time=0.0)
    nodes = (node("bad", free=7, degraded=bad_degraded), node("good", degraded=good_degraded))
    return ClusterView(time=t, nodes=nodes, jobs=(s,))


def test_rebalance_migrates_a_straggler_only_when_the_gain_beats_the_cost() -> None:
    cheap = StragglerRebalance(oracle(), migration_cost_s=30.0)
    d = cheap.rebalance(_straggler_view())
    assert [(m.job_id, m.from_node_ids, m.to_node_ids) for m in d.migrations] == [
        ("s", ("bad",), ("good",))]
    assert d.migrations[0].predicted_gain_s == pytest.approx(100 * (3.0 - 1.0) - 30.0)
    dear = StragglerRebalance(oracle(), migration_cost_s=500.0)  # saves 200 s < 500 s
    assert dear.rebalance(_straggler_view()).migrations == ()
    assert cheap.rebalance(_straggler_view(t=10.0)).migrations == ()  # cooldown


def test_an_unmeasured_migration_costs_at_least_the_predicted_start_up() -> None:
    # The straggler saves 100 steps x (3 - 1) s = 200 s by moving; a relaunch starts up again.
    quick = StragglerRebalance(oracle(overhead_s=150.0), migration_cost_s=30.0)
    (m,) = quick.rebalance(_straggler_view()).migrations
    assert m.predicted_gain_s == pytest.approx(200.0 - 150.0)
    assert "migration cost 150.0 s (predicted start-up)" in m.reason
    slow_start = StragglerRebalance(oracle(overhead_s=250.0), migration_cost_s=30.0)
    assert slow_start.rebalance(_straggler_view()).migrations == ()  # 200 s < 250 s start-up
    # A measured migration cost still wins over the prediction.
    measured = dataclasses.replace(_straggler_view(), migration_cost_s=20.0)
    (m,) = StragglerRebalance(oracle(overhead_s=250.0)).rebalance(measured).migrations
    assert m.predicted_gain_s == pytest.approx(200.0 - 20.0)


def test_slow_node_is_flagged_degraded_then_healthy_after_recovery() -> None:
    r = StragglerRebalance(oracle(), recovery_s=300.0, migration_cost_s=1e9, confirm_s=60.0)
    assert r.rebalance(_straggler_view(t=0.0)).node_flags == ()  # one job's word, not yet
    d = r.rebalance(_straggler_view(t=60.0))  # still slow a minute later: corroborated
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("bad", True)]
    assert "(for 60 s)" in d.node_flags[0].reason
    on_time = _straggler_view(t=160.0, observed=1.0, bad_degraded=True)
    assert r.rebalance(on_time).node_flags == ()  # flagged, but not yet recovered
    later = dataclasses.replace(on_time, time=361.0)
    assert [(f.node_id, f.degraded) for f in r.rebalance(later).node_flags] == [("bad", False)]
    assert r.flagged_at == {}


def test_no_migration_to_a_degraded_node() -> None:
    r = StragglerRebalance(oracle(), migration_cost_s=1.0)
    assert r.rebalance(_straggler_view(good_degraded=True)).migrations == ()


def test_on_time_job_clears_a_shared_node() -> None:
    view = _straggler_view()
    ok = job("ok", steps=50, state=JobState.RUNNING, node_ids=("bad",), steps_done=10,
             recent_step_time_s=1.0, start_time=0.0)
    view = dataclasses.replace(view, jobs=(*view.jobs, ok))
    assert StragglerRebalance(oracle()).rebalance(view).node_flags == ()


# -- oracle -----------------------------------------------------------------------------------


def test_oracle_uses_true_speeds_not_labels() -> None:
    model = OracleCostModel({"j": 2.0}, {"a": 0.25, "b": 1.0}, overhead_s=3.0)
    view = ClusterView(time=0.0, nodes=(node("a", speed=1.0), node("b", speed=0.5)))
    j = job("j", steps=10)
    gang = model.predict(j, (view.node("a"), view.node("b")), view)
    assert gang.step_time_s == pytest.approx(2.0 / 0.25)  # the slowest worker's node
    assert gang.duration_s == gang.duration_hi_s == pytest.approx(10 * 8.0 + 3.0)
    assert oracle_policy(model).placement.place(j, view).node_ids == ("b",)
    assert oracle_policy(model).name == "oracle"


def _pessimistic_view(*, migration_cost_s: float | None = None) -> ClusterView:
    """The model predicts 10 s steps; the job measured 0.1 s early on, 0.8 s now (8x slower)."""
    s = job("s", steps=110, state=JobState.RUNNING, node_ids=("bad",), steps_done=10,
            recent_step_time_s=0.8, baseline_step_time_s=0.1, start_time=0.0)
    return ClusterView(time=0.0, nodes=(node("bad", free=7), node("good")), jobs=(s,),
                       migration_cost_s=migration_cost_s)


def test_a_job_slower_than_its_own_baseline_moves_even_when_the_model_is_pessimistic() -> None:
    model = Counting(lambda j: 10.0, {})
    d = StragglerRebalance(model, migration_cost_s=30.0, confirm_s=0.0).rebalance(
        _pessimistic_view())
    assert [(f.node_id, f.degraded) for f in d.node_flags] == [("bad", True)]
    assert "early steps" in d.node_flags[0].reason
    (m,) = d.migrations
    assert m.to_node_ids == ("good",)
    # Predictions rescaled to the job's own units: 10 s * (0.1 / 10) = 0.1 s per step there.
    assert m.predicted_gain_s == pytest.approx(100 * (0.8 - 0.1) - 30.0)


def test_the_measured_migration_cost_overrides_the_default() -> None:
    model = Counting(lambda j: 10.0, {})
    view = _pessimistic_view(migration_cost_s=100.0)  # saving 70 s < measured 100 s
    assert StragglerRebalance(model, migration_cost_s=1.0).rebalance(view).migrations == ()
    cheap = _pessimistic_view(migration_cost_s=20.0)
    (m,) = StragglerRebalance(model, migration_cost_s=1e9).rebalance(cheap).migrations
    assert m.predicted_gain_s == pytest.approx(70.0 - 20.0)
    assert "(measured)" in m.reason


def test_noise_within_the_self_tolerance_is_not_a_straggler() -> None:
    view = _pessimistic_view()
    within = dataclasses.replace(view.jobs[0], recent_step_time_s=0.29)  # < 3 x 0.1
    view = dataclasses.replace(view, jobs=(within,))
    d = StragglerRebalance(Counting(lambda j: 10.0, {})).rebalance(view)
    assert d.migrations == () and d.node_flags == ()
