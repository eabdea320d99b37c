"""Tests for the CostModel facade: cold start, batch prediction, durations and explanations."""

from __future__ import annotations

import numpy as np
import pytest

from raysched.schedulers.predictor.cost_model import DEFAULT_PARAM_COUNTS, CostModel
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

NODES = tuple(
    NodeView(node_id=f"n{i}", cpus_total=8, cpus_free=4, speed=0.5 if i % 2 else 1.0,
             load=0.1 * (i % 5), memory_free_mb=8000)
    for i in range(6)
)


def _job(i: int, **kw: object) -> JobView:
    spec = JobSpec(name=f"j{i}", user=f"u{i % 3}", steps=100, batch_size=64)
    return JobView(job_id=f"j{i}", spec=spec, state=JobState.QUEUED, submit_time=2e9, **kw)


def _cluster() -> ClusterView:
    return ClusterView(time=2e9, nodes=NODES)


@pytest.fixture(scope="module")
def fitted() -> CostModel:
    return CostModel(min_rows=20, max_iter=30).fit(synthetic_jobs(150, seed=2))


def test_default_param_counts_match_the_repo_models() -> None:
    from raysched.jobs.models import build_model, parameter_count

    for name, count in DEFAULT_PARAM_COUNTS.items():
        assert parameter_count(build_model(name)) == count


def test_cold_start_uses_the_heuristic_and_says_so() -> None:
    empty = CostModel().fit([])
    p = empty.predict(_job(0), (NODES[0],), _cluster())
    assert p.source == "heuristic"
    assert 0 < p.step_time_lo_s < p.step_time_s < p.step_time_hi_s
    few = CostModel(min_rows=20).fit(synthetic_jobs(10))
    assert few.source == "heuristic"
    assert few.heuristic_.n_rows == 10 and few.heuristic_.step_scale["*"] > 0


def test_model_after_enough_rows(fitted: CostModel) -> None:
    p = fitted.predict(_job(0), (NODES[0],), _cluster())
    assert p.source == "model"
    assert p.duration_s == pytest.approx(100 * p.step_time_s + fitted._overhead("data_parallel"))
    assert p.duration_lo_s <= p.duration_s <= p.duration_hi_s
    assert p.peak_rss_mb <= p.peak_rss_hi_mb
    assert p.throughput_sps == pytest.approx(64 / p.step_time_s)


def test_slower_node_predicts_slower_steps(fitted: CostModel) -> None:
    fast = fitted.predict(_job(0), (NODES[0],), _cluster())  # speed 1.0, load 0
    slow = fitted.predict(_job(0), (NODES[1],), _cluster())  # speed 0.5
    assert slow.step_time_s > fast.step_time_s


def test_predict_many_matches_predict(fitted: CostModel) -> None:
    jobs = [_job(i) for i in range(4)]
    pairs = [(j, (n,)) for j in jobs for n in NODES]
    batch = fitted.predict_many(pairs, _cluster())
    assert len(batch) == len(pairs)
    for k in (0, 7, len(pairs) - 1):
        single = fitted.predict(pairs[k][0], pairs[k][1], _cluster())
        assert batch[k].step_time_s == pytest.approx(single.step_time_s)
        assert batch[k].peak_rss_mb == pytest.approx(single.peak_rss_mb)


def test_one_node_in_two_states_in_one_batch_gets_each_state(fitted: CostModel) -> None:
    """Placement asks about a busy node as it is and as it will be once free, in one batch:
    each candidate's node features must be its own (they were the first one's)."""
    import dataclasses

    from raysched.schedulers.predictor.features import node_block

    busy = dataclasses.replace(NODES[0], load=0.95, memory_free_mb=500.0, cpus_free=0.0)
    idle = dataclasses.replace(NODES[0], load=0.0, memory_free_mb=8000.0)
    other = dataclasses.replace(NODES[1], load=0.5)
    candidates = [(busy,), (idle,), (busy, other), (idle, other), (busy,)]
    X, *_ = fitted._matrix([(_job(0), c) for c in candidates], _cluster())
    for row, nodes in zip(X, candidates, strict=True):
        assert row[_node_columns()] == pytest.approx(node_block(nodes), nan_ok=True)


def _node_columns() -> list[int]:
    from raysched.schedulers.predictor.features import NODE_FEATURES, feature_index

    return [feature_index(name) for name in NODE_FEATURES[:6]]


def test_running_job_on_its_own_nodes_has_no_startup_and_counts_steps_left(
    fitted: CostModel,
) -> None:
    running = _job(1, steps_done=60)
    running = JobView(**{**running.__dict__, "state": JobState.RUNNING, "node_ids": ("n0",)})
    here = fitted.predict(running, (NODES[0],), _cluster())
    assert here.duration_s == pytest.approx(40 * here.step_time_s)
    moved = fitted.predict(running, (NODES[2],), _cluster())
    assert moved.duration_s == pytest.approx(40 * moved.step_time_s + fitted._overhead(
        "data_parallel"))


def test_explain_names_features(fitted: CostModel) -> None:
    x = fitted.matrix([(_job(0), (NODES[1],))], _cluster())[0]
    top = fitted.explain_matrix(x, top=5)
    assert len(top) == 5
    assert all(isinstance(name, str) and np.isfinite(c) for name, _, c in top)


def test_unfitted_model_raises() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        CostModel().predict(_job(0), (NODES[0],), _cluster())


def test_heuristic_calibrates_per_kind_and_model_with_its_own_spread() -> None:
    """Two models of one kind, off the formula by different factors, keep separate scales."""
    import pandas as pd

    from raysched.schedulers.predictor.heuristics import INTERVAL_FACTOR, Heuristic

    n = 8
    rows = pd.DataFrame({
        "kind": ["data_parallel"] * 2 * n + ["pipeline_parallel"] * 2,
        "model": ["cnn"] * n + ["mlp"] * n + ["transformer"] * 2,
        "step_time_s": [30.0 + 0.1 * i for i in range(n)] + [3.0] * n + [5.0, 5.0],
    })
    h = Heuristic().calibrate(rows, np.ones(len(rows)), np.ones(len(rows)))
    kinds = np.array(["data_parallel", "data_parallel", "parameter_server", "sweep"])
    models = np.array(["cnn", "mlp", "transformer", "resnet"])
    step, lo, hi = h.step_time_interval(kinds, np.ones(4), models)
    assert step[0] == pytest.approx(30.35) and step[1] == pytest.approx(3.0)
    assert step[2] == pytest.approx(5.0)  # unseen (kind, model): the model's own scale
    assert step[3] == pytest.approx(np.median(rows["step_time_s"]))  # nothing known: overall
    assert hi[0] / step[0] < 1.3 and lo[0] / step[0] > 1 / 1.3  # tight group: tight interval
    assert hi[2] / step[2] == pytest.approx(INTERVAL_FACTOR)  # 2 rows: the wide default
    assert (lo < step).all() and (step < hi).all()
