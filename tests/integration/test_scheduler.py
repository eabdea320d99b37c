"""The learned policy on a real cluster: fast nodes first, migration off a node slowed mid-run."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def test_learned_policy_prefers_fast_nodes_and_migrates_off_a_slowed_node(cluster, tmp_path):
    import ray

    from raysched.platform import interference
    from raysched.platform.client import replace_controller
    from raysched.platform.model_registry import ModelRegistry
    from raysched.platform.telemetry import TelemetryStore
    from raysched.schedulers.policies.learned import build_learned
    from raysched.schedulers.predictor.cost_model import CostModel

    storage = cluster.config.state_dir.resolve() / "storage"
    # Warm-up: whatever the session's earlier jobs left in the store (cold start if few).
    history = ModelRegistry(TelemetryStore(cluster.config.store_path)).finished_jobs()
    model = CostModel().fit(history)
    client = replace_controller(cluster.address, store_path=tmp_path / "learned.db",
                                storage_dir=storage, policy=build_learned(model))
    speeds = {n["NodeID"]: float(n["Labels"]["raysched.io/speed"]) for n in ray.nodes()
              if n["Resources"].get("CPU")}
    first: list[str] = []
    steps = 800
    try:
        job = client.submit({"name": "straggler", "model": "cnn", "num_workers": 1,
                             "cpus_per_worker": 1, "steps": steps, "batch_size": 64,
                             "checkpoint_every": 10})
        deadline = time.monotonic() + 300
        while client.job(job)["steps_done"] < 20:
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.5)
        first = client.job(job)["node_ids"]
        assert speeds[first[0]] == max(speeds.values()), "placed on the fastest node"
        interference.slow_down(storage, first[0], 8.0)
        row = client.wait([job], timeout_s=900)[0]
        assert row["state"] == "SUCCEEDED", row["error"]
        assert row["migrations"] >= 1
        assert row["node_ids"] != first
        explain = client.explain(job)
        assert any(d["action"] == "migrate" for d in explain["decisions"])
        records = TelemetryStore(tmp_path / "learned.db").steps(job)
        later = [s["step"] for s in records if s["attempt"] > 1]
        assert later and min(later) >= 10  # resumed from a checkpoint, progress kept
        assert max(later) == steps - 1
    finally:
        if first:
            interference.recover(storage, first[0])
        replace_controller(cluster.address, store_path=cluster.config.store_path,
                           storage_dir=storage, policy="least_loaded")
