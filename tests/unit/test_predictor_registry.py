"""Tests for model versioning: retrain cadence, promotion, and refusing tampered files."""

from __future__ import annotations

from pathlib import Path

import pytest
import skops.io as sio

from raysched.platform.model_registry import (
    ModelIntegrityError,
    ModelRegistry,
    load_model_bytes,
)
from raysched.platform.telemetry import TelemetryStore
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import JobState


def put(store: TelemetryStore, rows: list[dict]) -> None:
    """Write synthetic finished jobs through the store's public API."""
    for r in rows:
        spec = JobSpec(name=r["name"], kind=r["kind"], model=r["model"], dataset=r["dataset"],
                       num_workers=r["num_workers"], cpus_per_worker=r["cpus_per_worker"],
                       steps=r["steps"], batch_size=r["batch_size"], user=r["user"])
        store.add_job(r["job_id"], spec, submit_time=r["submit_time"],
                      param_count=r["param_count"])
        store.transition(r["job_id"], JobState.PLACED, "placed", node_ids=r["node_ids"],
                         node_cpus=r["node_cpus"], node_speeds=r["node_speeds"],
                         cluster_load_at_start=r["cluster_load_at_start"],
                         free_cpus_at_start=r["free_cpus_at_start"])
        store.transition(r["job_id"], JobState.RUNNING, "started", start_time=r["start_time"])
        store.transition(r["job_id"], JobState.SUCCEEDED, "done", end_time=r["end_time"],
                         run_time_s=r["run_time_s"], steps_done=r["steps_done"],
                         steps_per_s=r["steps_per_s"], peak_rss_mb=r["peak_rss_mb"])


@pytest.fixture
def store(tmp_path: Path) -> TelemetryStore:
    return TelemetryStore(tmp_path / "telemetry.db")


def test_retrains_every_k_jobs_and_records_versions(store: TelemetryStore) -> None:
    rows = synthetic_jobs(50, seed=4)
    reg = ModelRegistry(store, retrain_every=20, cost_model_params={"max_iter": 15})
    put(store, rows[:15])
    assert reg.maybe_retrain() is None
    put(store, rows[15:25])
    first = reg.maybe_retrain()
    assert first is not None and first.promoted and first.n_rows == 25
    assert reg.maybe_retrain() is None  # nothing new since
    put(store, rows[25:50])
    second = reg.maybe_retrain()
    assert second is not None and second.n_rows == 50
    versions = store.model_versions("cost_model")
    assert [v["n_rows"] for v in versions] == [25, 50]
    assert "holdout" in versions[1]["metrics"]
    assert "promoted_on_holdout" in versions[1]["metrics"]
    promoted = store.promoted_model("cost_model")
    assert promoted is not None
    assert second.promoted == (promoted["version"] == second.version)
    assert reg.load_promoted() is not None


def test_worse_candidate_is_not_promoted(store: TelemetryStore) -> None:
    put(store, synthetic_jobs(40, seed=7))
    good = ModelRegistry(store, cost_model_params={"max_iter": 30}).train()
    assert good.promoted
    # One tiny boosting step barely moves off the mean: worse on the same holdout.
    bad = ModelRegistry(store, cost_model_params={"max_iter": 1, "learning_rate": 0.01}).train()
    assert not bad.promoted
    assert store.promoted_model("cost_model")["version"] == good.version


def test_tampered_file_is_refused(store: TelemetryStore) -> None:
    put(store, synthetic_jobs(30, seed=8))
    reg = ModelRegistry(store, cost_model_params={"max_iter": 10})
    result = reg.train()
    path = Path(result.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256 .* does not match"):
        reg.load_version(result.version)


def test_untrusted_types_are_refused_even_with_a_matching_hash() -> None:
    import collections

    data = sio.dumps({"x": collections.OrderedDict(a=1), "y": __import__("fractions").Fraction(1)})
    with pytest.raises(ModelIntegrityError, match="trusted list"):
        load_model_bytes(data)
