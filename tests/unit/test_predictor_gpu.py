"""The cost model tells GPU jobs from CPU jobs: features, history, cold start, stored models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from threadpoolctl import threadpool_limits

from raysched.platform.model_registry import ModelRegistry, load_model_bytes, sha256_of
from raysched.platform.telemetry import TelemetryStore
from raysched.schedulers.predictor import heuristics
from raysched.schedulers.predictor.cost_model import CostModel, IncompatibleModelError
from raysched.schedulers.predictor.features import (
    FEATURES,
    FEATURES_V1,
    HISTORY_FEATURES,
    NODE_FEATURES,
    SPEC_FEATURES,
    History,
    build_features,
    feature_index,
    job_matrix,
    training_rows,
    validate_jobs,
)
from raysched.schedulers.predictor.heuristics import GPU_UNSEEN_FACTOR, Heuristic
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

DATA = Path(__file__).parent / "data"
T = 1.7e9 + 5e5  # after the synthetic jobs
NODES = (
    NodeView(node_id="g1", cpus_total=8, cpus_free=8, gpus_total=2, gpus_free=2, speed=1.0,
             load=0.1, memory_free_mb=8000),
    NodeView(node_id="g2", cpus_total=8, cpus_free=8, gpus_total=2, gpus_free=2, speed=1.0,
             load=0.1, memory_free_mb=8000),
)
NS, NN, NH = len(SPEC_FEATURES), len(NODE_FEATURES), len(HISTORY_FEATURES)


def _spec(gpus: int, **kw: object) -> JobSpec:
    base = {"name": "j", "user": "u1", "model": "cnn", "num_workers": 2, "steps": 100,
            "batch_size": 64}
    spec = {**base, **kw}
    spec.setdefault("dataset", "synthetic_text" if spec["model"] == "transformer" else "digits")
    return JobSpec(**spec, gpus_per_worker=gpus)


def _view(gpus: int, job_id: str = "j", submit: float = T, **kw: object) -> JobView:
    return JobView(job_id=f"{job_id}-{gpus}", spec=_spec(gpus, **kw), state=JobState.QUEUED,
                   submit_time=submit)


def _cluster() -> ClusterView:
    return ClusterView(time=T, nodes=NODES)


@pytest.fixture(scope="module")
def gpu_model() -> CostModel:
    """Trained on synthetic telemetry where GPU data-parallel jobs step 10x faster."""
    with threadpool_limits(1):
        return CostModel(min_rows=20, max_iter=80).fit(
            synthetic_jobs(600, seed=21, gpu_fraction=0.5, gpu_speedup=10.0))


# -- features -------------------------------------------------------------------------------


def test_a_gpu_job_and_the_same_cpu_job_get_different_feature_rows() -> None:
    model = CostModel().fit(synthetic_jobs(30, seed=1))
    cpu, gpu = model.matrix([(_view(0), NODES), (_view(1), NODES)], _cluster())
    assert cpu[feature_index("gpus_per_worker")] == 0
    assert gpu[feature_index("gpus_per_worker")] == 1
    assert gpu[feature_index("log_total_gpus")] == pytest.approx(np.log1p(2))
    assert cpu[feature_index("log_total_gpus")] == 0
    assert not np.array_equal(cpu, gpu, equal_nan=True)


def test_training_rows_read_the_gpus_from_the_stored_spec(tmp_path: Path) -> None:
    """Rows as `list_jobs` (a JobSpec) and as `table('jobs')` (spec_json) both carry the GPUs;
    a stored spec written before GPU jobs existed (no key) is a CPU job."""
    store = TelemetryStore(tmp_path / "t.db")
    for gpus in (0, 2):
        store.add_job(f"j{gpus}", _spec(gpus, name=f"j{gpus}"), submit_time=T)
    listed = validate_jobs(store.list_jobs())
    tabled = validate_jobs(pd.DataFrame(store.table("jobs")))
    for frame in (listed, tabled):
        assert list(frame["gpus_per_worker"]) == [0.0, 2.0]
        X = build_features(frame)  # noqa: N806
        assert list(X[:, feature_index("gpus_per_worker")]) == [0.0, 2.0]
    old = dict(store.table("jobs")[1])
    spec = json.loads(old["spec_json"])
    del spec["gpus_per_worker"]
    old["spec_json"] = json.dumps(spec)
    assert validate_jobs([old])["gpus_per_worker"].tolist() == [0.0]
    old["spec_json"] = json.dumps({**spec, "gpus_per_worker": -1})
    with pytest.raises(ValueError, match="gpus_per_worker"):
        validate_jobs([old])


def test_decision_time_rows_equal_training_rows_for_gpu_jobs(
    gpu_model: CostModel, tmp_path: Path,
) -> None:
    """Spec and history columns of a job stored in telemetry (the training path) equal those
    `job_matrix` builds from its JobView (the decision path), for GPU and CPU jobs."""
    store = TelemetryStore(tmp_path / "t.db")
    jobs = [_view(g, job_id=f"j{i}", user=f"u{i % 3}", model=m, kind="data_parallel")
            for i, (g, m) in enumerate([(0, "cnn"), (1, "cnn"), (2, "mlp"), (1, "transformer")])]
    for j in jobs:
        store.add_job(j.job_id, j.spec, submit_time=j.submit_time)
    frame = validate_jobs(store.list_jobs())
    train = build_features(frame, history=gpu_model.history_,
                           param_counts=gpu_model.param_counts_)
    decide = job_matrix(jobs, gpu_model.history_, gpu_model.param_counts_, T)
    order = [list(frame["job_id"]).index(j.job_id) for j in jobs]
    train = train[order]
    assert np.array_equal(train[:, :NS], decide[:, :NS], equal_nan=True)
    assert np.array_equal(train[:, NS + NN:], decide[:, NS + NN:], equal_nan=True)
    assert (decide[:, feature_index("h_model_n")] > 0).all()  # both devices have history


# -- history --------------------------------------------------------------------------------


def test_history_of_a_gpu_job_is_only_gpu_jobs_and_vice_versa() -> None:
    rows = synthetic_jobs(200, seed=4, gpu_fraction=0.5, gpu_speedup=10.0)
    frame = validate_jobs(rows)
    history = History(frame)
    cpu_only = validate_jobs([r for r in rows if not r["gpus_per_worker"]])
    cpu_history = History(cpu_only)
    cpu, gpu = _view(0, kind="data_parallel"), _view(1, kind="data_parallel")
    a = job_matrix([cpu, gpu], history, {}, T)
    mean = feature_index("h_model_step_mean")
    assert a[0, mean] > a[1, mean] + np.log(3)  # the GPU job's history is of 10x faster jobs
    gpu_cnn = frame[(frame["gpus_per_worker"] > 0) & (frame["model"] == "cnn")]
    last = gpu_cnn.sort_values("end_time")["step_time_s"].to_numpy()[-10:]
    assert a[1, mean] == pytest.approx(float(np.mean(np.log(last))))
    # A GPU job when only CPU jobs have finished has no history at all.
    b = job_matrix([cpu, gpu], cpu_history, {}, T)
    for group in ("user", "model", "kind"):
        assert b[1, feature_index(f"h_{group}_n")] == 0
        assert np.isnan(b[1, feature_index(f"h_{group}_step_mean")])
        assert b[0, feature_index(f"h_{group}_n")] > 0
    # ... and a CPU job when only GPU jobs have finished has none either.
    gpu_only = History(validate_jobs([r for r in rows if r["gpus_per_worker"]]))
    c = job_matrix([cpu, gpu], gpu_only, {}, T)
    assert c[0, feature_index("h_model_n")] == 0 and c[1, feature_index("h_model_n")] > 0


# -- cold start -----------------------------------------------------------------------------


def test_heuristic_calibrates_gpu_jobs_apart_from_cpu_jobs() -> None:
    n = 6
    rows = pd.DataFrame({
        "kind": ["data_parallel"] * 2 * n,
        "model": ["cnn"] * 2 * n,
        "gpus_per_worker": [0.0] * n + [1.0] * n,
        "step_time_s": [1.0] * n + [0.1] * n,
    })
    h = Heuristic().calibrate(rows, np.ones(2 * n), np.ones(2 * n))
    kinds = np.array(["data_parallel"] * 4)
    models = np.array(["cnn", "cnn", "mlp", "mlp"])
    step, lo, hi = h.step_time_interval(kinds, np.ones(4), models, np.array([0, 1, 0, 2]))
    np.testing.assert_allclose(step, [1.0, 0.1, 1.0, 0.1])  # unseen model: own device's scale
    assert h.step_scale["*"] == 1.0 and h.step_scale["gpu:*"] == pytest.approx(0.1)
    assert not h.gpu_unseen(np.array([1.0]), 1).any()
    assert (hi / step < 1.3).all()  # calibrated groups: tight, nothing widened


def test_cold_start_gpu_job_without_gpu_data_says_so_and_widens() -> None:
    cpu_rows = synthetic_jobs(15, seed=2)
    cold = CostModel(min_rows=50).fit(cpu_rows)
    cpu = cold.predict(_view(0), NODES, _cluster())
    gpu = cold.predict(_view(1), NODES, _cluster())
    assert cold.source == "heuristic" and cpu.note == ""
    assert "no GPU job" in gpu.note
    assert gpu.step_time_lo_s <= gpu.step_time_s / GPU_UNSEEN_FACTOR * (1 + 1e-12)
    assert gpu.step_time_hi_s >= gpu.step_time_s * heuristics.INTERVAL_FACTOR * (1 - 1e-12)
    # With GPU jobs calibrated, a GPU job is scaled by them: faster, and no note.
    mixed = CostModel(min_rows=500).fit(
        synthetic_jobs(120, seed=2, gpu_fraction=1.0, gpu_speedup=10.0))
    assert mixed.source == "heuristic"
    cpu2 = mixed.predict(_view(0), NODES, _cluster())
    gpu2 = mixed.predict(_view(1), NODES, _cluster())
    assert gpu2.note == ""
    assert 4 < cpu2.step_time_s / gpu2.step_time_s < 25


def test_trees_learn_that_gpu_jobs_are_ten_times_faster(gpu_model: CostModel) -> None:
    assert gpu_model.source == "model" and gpu_model.n_gpu_rows_ > 30
    pairs = [(_view(g, job_id=f"{m}{w}", model=m, num_workers=w, kind="data_parallel"), NODES)
             for m in ("mlp", "cnn", "transformer") for w in (1, 2) for g in (0, 1)]
    p = gpu_model.predict_many(pairs, _cluster())
    ratio = p.step_time_s[0::2] / p.step_time_s[1::2]
    assert np.all(ratio > 4) and np.all(ratio < 25), ratio
    assert float(np.exp(np.mean(np.log(ratio)))) == pytest.approx(10.0, rel=0.5)
    assert p.notes == ()  # GPU jobs were in the training data: nothing to flag


def test_model_trained_without_gpu_jobs_flags_gpu_predictions() -> None:
    with threadpool_limits(1):
        model = CostModel(min_rows=20, max_iter=20).fit(synthetic_jobs(60, seed=3))
    p = model.predict_many([(_view(0), NODES), (_view(1), NODES)], _cluster())
    assert p.source == "model"
    assert p.notes[0] == "" and "no GPU job" in p.notes[1]
    assert p[1].step_time_lo_s <= p[1].step_time_s / GPU_UNSEEN_FACTOR * (1 + 1e-12)


# -- stored models --------------------------------------------------------------------------


def test_model_saved_before_gpu_features_predicts_as_it_did() -> None:
    """`data/cost_model_v1.skops` was saved by raysched at commit 3c93669 (before the GPU
    columns); `data/cost_model_v1.json` holds what it predicted then."""
    model = load_model_bytes((DATA / "cost_model_v1.skops").read_bytes())
    want = json.loads((DATA / "cost_model_v1.json").read_text())
    assert not hasattr(model, "features_") and model.trained_features == FEATURES_V1
    assert len(FEATURES_V1) < len(FEATURES)
    job = _view(0, submit=1.7e9 + 4000)
    nodes = (NodeView(node_id="n1", cpus_total=8, cpus_free=8, speed=0.5, load=0.2,
                      memory_free_mb=8000),
             NodeView(node_id="n2", cpus_total=4, cpus_free=4, speed=1.0, load=0.1,
                      memory_free_mb=4000))
    cluster = ClusterView(time=1.7e9 + 5000, nodes=nodes)
    p = model.predict(job, nodes, cluster)
    for key in ("step_time_s", "step_time_lo_s", "step_time_hi_s", "duration_s", "peak_rss_mb",
                "peak_rss_hi_mb"):
        assert getattr(p, key) == pytest.approx(want[key], rel=1e-12), key
    assert p.source == want["source"] and p.note == ""
    gpu = model.predict(_view(1, submit=1.7e9 + 4000), nodes, cluster)
    assert "retrain" in gpu.note
    top = model.explain_matrix(model.matrix([(job, nodes)], cluster)[0])
    assert {name for name, _, _ in top} <= set(FEATURES_V1)


def test_registry_keeps_an_old_version_loadable_next_to_a_new_one(tmp_path: Path) -> None:
    from tests.unit.test_predictor_registry import put

    store = TelemetryStore(tmp_path / "telemetry.db")
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    old_path = model_dir / "cost_model-v1.skops"
    shutil.copy(DATA / "cost_model_v1.skops", old_path)
    old_bytes = old_path.read_bytes()
    v1 = store.add_model_version(target="cost_model", n_rows=25, metrics={}, path=str(old_path),
                                 sha256=sha256_of(old_bytes), promoted=True)
    put(store, synthetic_jobs(30, seed=9, gpu_fraction=0.5))
    reg = ModelRegistry(store, model_dir, cost_model_params={"max_iter": 10})
    assert reg.load_promoted().trained_features == FEATURES_V1
    result = reg.train()  # scores the old promoted model on the holdout on the way
    assert "promoted_on_holdout" in result.metrics
    assert old_path.read_bytes() == old_bytes  # nothing stored was rewritten
    assert reg.load_version(v1).trained_features == FEATURES_V1
    assert reg.load_version(result.version).trained_features == FEATURES


def test_model_naming_features_this_version_cannot_build_is_refused(tmp_path: Path) -> None:
    model = CostModel(min_rows=20, max_iter=3).fit(synthetic_jobs(25, seed=5))
    model.features_ = (*FEATURES[:-1], "gpu_memory_gb")
    data = sio.dumps(model)
    with pytest.raises(IncompatibleModelError, match=r"gpu_memory_gb.*retrain"):
        load_model_bytes(data)
    store = TelemetryStore(tmp_path / "t.db")
    path = tmp_path / "m.skops"
    path.write_bytes(data)
    version = store.add_model_version(target="cost_model", n_rows=25, metrics={},
                                      path=str(path), sha256=sha256_of(data), promoted=True)
    with pytest.raises(IncompatibleModelError, match=rf"model version {version}.*retrain"):
        ModelRegistry(store, tmp_path).load_promoted()


def test_training_rows_keep_gpu_jobs() -> None:
    rows = training_rows(validate_jobs(synthetic_jobs(80, seed=6, gpu_fraction=1.0)))
    gpu = rows["gpus_per_worker"] > 0
    assert gpu.any() and (rows.loc[gpu, "kind"] == "data_parallel").all()
