"""The cost model's decision-time path gives scikit-learn's and pandas' numbers, and its caches
are exact and per model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from raysched.schedulers.predictor import cost_model as cm
from raysched.schedulers.predictor import fast_trees
from raysched.schedulers.predictor.cost_model import JOB_COLUMNS, CostModel
from raysched.schedulers.predictor.fast_trees import FlatForest
from raysched.schedulers.predictor.features import (
    FEATURES,
    HISTORY_FEATURES,
    NODE_FEATURES,
    SPEC_FEATURES,
    _time_features,
    job_frame,
    job_matrix,
    spec_matrix,
)
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.spec import KINDS, MODELS, JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

T = 1.7e9 + 5e5  # after the synthetic jobs


@pytest.fixture(scope="module")
def fitted() -> CostModel:
    with threadpool_limits(1):  # OpenMP threads only slow a tiny fit on a busy machine
        return CostModel(min_rows=20, max_iter=30).fit(synthetic_jobs(200, seed=3))


def _jobs(n: int, seed: int = 0) -> list[JobView]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        options = {"num_trials": int(rng.integers(2, 5))} if kind == "sweep" else {}
        model = MODELS[i % len(MODELS)]
        spec = JobSpec(name=f"j{i}", kind=kind, model=model,
                       dataset="synthetic_text" if model == "transformer" else "digits",
                       user=f"u{int(rng.integers(0, 10))}", steps=int(rng.integers(20, 400)),
                       batch_size=int(rng.choice([16, 32, 64, 128])),
                       num_workers=int(rng.integers(1, 5)),
                       cpus_per_worker=float(rng.choice([1.0, 2.0])), options=options)
        out.append(JobView(job_id=f"j{i}-{seed}", spec=spec, state=JobState.QUEUED,
                           submit_time=T - float(rng.uniform(0, 3600)),
                           steps_done=int(rng.integers(0, 10))))
    return out


def _nodes(n: int, seed: int = 0) -> tuple[NodeView, ...]:
    rng = np.random.default_rng(seed)
    return tuple(NodeView(node_id=f"n{i}", cpus_total=float(rng.choice([4.0, 8.0])),
                          cpus_free=float(rng.integers(0, 5)), speed=float(rng.choice([0.5, 1.0])),
                          load=float(rng.uniform(0, 0.8)),
                          memory_free_mb=float(rng.choice([0.0, 4000.0, 16000.0])))
                 for i in range(n))


def _pairs(jobs: list[JobView], nodes: tuple[NodeView, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(j, tuple(nodes[int(k)] for k in rng.integers(0, len(nodes), j.spec.num_workers)))
            for j in jobs for _ in range(3)]


def _slow(model: CostModel, pairs, cluster: ClusterView) -> cm.PredictionBatch:
    """What `predict_many` answered before the fast path: scikit-learn on every row."""
    X, jobs, job_rows, ji = model._matrix(pairs, cluster)  # noqa: N806
    steps_left = np.array([j.steps_left for j in jobs], dtype=float)[ji]
    batch = np.array([j.spec.batch_size for j in jobs], dtype=float)[ji]
    overhead = np.array([model._overhead(j.spec.kind) for j in jobs])[ji]
    log_step = model.step_model_.predict_log(X)
    log_rss = model.rss_model_.predict_log(job_rows[:, JOB_COLUMNS])[ji]
    return model.predict_matrix(X, steps_left=steps_left, batch=batch, overhead=overhead,
                                log_rss=log_rss, log_step=log_step)


def test_flat_forest_matches_scikit_learn_bit_for_bit(fitted: CostModel) -> None:
    rng = np.random.default_rng(1)
    X = fitted.matrix(_pairs(_jobs(40), _nodes(12)), ClusterView(time=T, nodes=_nodes(12)))  # noqa: N806
    noisy = X + rng.normal(0, 0.3, X.shape) * (rng.random(X.shape) < 0.3)
    noisy[rng.random(X.shape) < 0.1] = np.nan  # missing values go where each split says
    for est, rows in ((fitted.step_model_, noisy), (fitted.rss_model_, noisy[:, JOB_COLUMNS])):
        forest = FlatForest.of(est)
        assert forest is not None
        got, want = forest.predict_log(rows), est.predict_log(rows)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        assert np.array_equal(got, want)
        assert np.array_equal(forest.predict_log(rows[:1]), want[:1])
        assert forest.predict_log(rows[:0]).shape == (0,)


def test_equal_keys_mean_equal_predictions(fitted: CostModel) -> None:
    forest = FlatForest.of(fitted.step_model_)
    X = fitted.matrix(_pairs(_jobs(10), _nodes(6)), ClusterView(time=T, nodes=_nodes(6)))  # noqa: N806
    col = int(forest.key_columns[0])
    thresholds = forest.key_thresholds[0]
    inside, across = X.copy(), X.copy()
    # Move the first split feature within its interval, then across a threshold.
    finite = thresholds[np.isfinite(thresholds)]
    inside[:, col] = finite[0] - 1.0
    across[:, col] = finite[0] + 1e-9 if len(finite) == 1 else (finite[0] + finite[1]) / 2
    keys_in, keys_across = forest.keys(inside), forest.keys(across)
    wiggle = inside.copy()
    wiggle[:, col] -= 0.5
    assert forest.keys(wiggle) == keys_in
    assert np.array_equal(forest.predict_log(wiggle), forest.predict_log(inside))
    assert all(a != b for a, b in zip(keys_in, keys_across, strict=True))
    nan = inside.copy()
    nan[:, col] = np.nan
    assert all(a != b for a, b in zip(forest.keys(nan), keys_in, strict=True))


def test_job_matrix_matches_the_pandas_features(fitted: CostModel) -> None:
    jobs = _jobs(30, seed=4)
    got = job_matrix(jobs, fitted.history_, fitted.param_counts_, T)
    frame = job_frame(jobs, fitted.param_counts_)
    ns, nn, nh = len(SPEC_FEATURES), len(NODE_FEATURES), len(HISTORY_FEATURES)
    want = np.full((len(jobs), len(FEATURES)), np.nan)
    want[:, :ns] = spec_matrix(frame, fitted.param_counts_)
    want[:, ns + nn : ns + nn + nh] = fitted.history_.features(frame, np.full(len(jobs), T))
    want[:, ns + nn + nh :] = _time_features(frame["submit_time"].to_numpy(float))
    assert np.array_equal(got, want, equal_nan=True)
    assert job_matrix([], fitted.history_, fitted.param_counts_, T).shape == (0, len(FEATURES))


def test_predict_many_fast_path_equals_the_slow_path(fitted: CostModel) -> None:
    nodes = _nodes(10, seed=5)
    cluster = ClusterView(time=T, nodes=nodes)
    pairs = _pairs(_jobs(50, seed=5), nodes, seed=5)
    model = pickle.loads(pickle.dumps(fitted))  # fresh caches
    for _ in range(2):  # cold, then from the caches
        fast = model.predict_many(pairs, cluster)
        slow = _slow(model, pairs, cluster)
        for name in ("step_time_s", "step_time_hi_s", "duration_s", "duration_hi_s",
                     "peak_rss_mb", "peak_rss_hi_mb", "throughput_sps"):
            np.testing.assert_allclose(getattr(fast, name), getattr(slow, name),
                                       rtol=1e-9, atol=1e-9)
            assert np.array_equal(getattr(fast, name), getattr(slow, name))
    assert model._step_cache  # the second pass was answered from it


def test_large_batches_use_scikit_learn_with_the_same_answers(
    fitted: CostModel, monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes = _nodes(8, seed=6)
    cluster = ClusterView(time=T, nodes=nodes)
    pairs = _pairs(_jobs(30, seed=6), nodes, seed=6)
    X = fitted.matrix(pairs, cluster)  # noqa: N806
    flat = fitted._predict_log("step", X)
    monkeypatch.setattr(cm, "_FLAT_MAX_ROWS", 4)
    assert np.array_equal(fitted._predict_log("step", X), flat)
    assert np.array_equal(flat, fitted.step_model_.predict_log(X))


def test_caches_belong_to_one_fit_and_are_not_saved(fitted: CostModel) -> None:
    nodes = _nodes(6, seed=7)
    cluster = ClusterView(time=T, nodes=nodes)
    pairs = _pairs(_jobs(8, seed=7), nodes, seed=7)
    model = pickle.loads(pickle.dumps(fitted))
    before = model.predict_many(pairs, cluster).step_time_s
    assert model._step_cache and model._job_cache and model._rss_cache
    state = model.__getstate__()
    assert not {"_step_cache", "_job_cache", "_rss_cache", "_forests"} & set(state)
    with threadpool_limits(1):  # refitted in place: nothing of the old fit is kept
        model.fit(synthetic_jobs(200, seed=8))
        fresh = CostModel(min_rows=20, max_iter=30).fit(synthetic_jobs(200, seed=8))
    assert not model._step_cache and not model._job_cache
    after = model.predict_many(pairs, cluster).step_time_s
    assert np.array_equal(after, fresh.predict_many(pairs, cluster).step_time_s)
    assert not np.array_equal(before, after)


def test_heuristic_model_has_no_flat_forest() -> None:
    cold = CostModel().fit([])
    nodes = _nodes(3)
    p = cold.predict_many(_pairs(_jobs(3), nodes), ClusterView(time=T, nodes=nodes))
    assert p.source == "heuristic" and np.all(p.step_time_s > 0)
    assert cold._cached_log_step(np.zeros((1, len(FEATURES)))) is None


def test_keys_are_the_searchsorted_codes_in_small_and_large_batches(fitted: CostModel) -> None:
    forest = FlatForest.of(fitted.step_model_)
    X = fitted.matrix(_pairs(_jobs(40), _nodes(12)), ClusterView(time=T, nodes=_nodes(12)))  # noqa: N806
    rng = np.random.default_rng(5)
    for k, c in enumerate(forest.key_columns):  # values on, around and past the thresholds
        t = forest.key_thresholds[k]
        picks = rng.integers(0, len(t), len(X))
        X[:, c] = np.where(rng.random(len(X)) < 0.5, t[picks], X[:, c])
    X[rng.random(X.shape) < 0.05] = np.nan
    X[0, forest.key_columns[0]], X[1, forest.key_columns[0]] = np.inf, -np.inf
    want = np.empty((len(X), len(forest.key_columns)), dtype=np.intp)
    for k, (c, t) in enumerate(zip(forest.key_columns, forest.key_thresholds, strict=True)):
        want[:, k] = np.where(np.isnan(X[:, c]), -1, np.searchsorted(t, X[:, c]))
    assert len(X) > fast_trees._BROADCAST_MAX_ROWS  # the large path; each row alone: small
    large = forest.keys(X)
    small = [forest.keys(X[i:i + 1])[0] for i in range(len(X))]
    assert large == small == [r.tobytes() for r in want]
