"""The controller's state machine on a real cluster: restart without loss, cancel, priority."""

from __future__ import annotations

import time

import pytest

from raysched.platform.telemetry import TelemetryStore, UnknownJob

pytestmark = pytest.mark.integration


def long_job(name: str, steps: int = 80, **kw) -> dict:
    return {"name": name, "kind": "data_parallel", "model": "cnn", "num_workers": 1,
            "cpus_per_worker": 1, "steps": steps, "batch_size": 32, "checkpoint_every": 10, **kw}


def wait_for(predicate, timeout_s: float = 300, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def test_controller_killed_mid_run_restarts_loses_no_job_and_runs_none_twice(cluster, client):
    import ray

    from raysched.platform.client import CONTROLLER_NAME, NAMESPACE, Client

    ids = [client.submit(long_job(f"restart-{i}")) for i in range(2)]
    wait_for(lambda: all(r["steps_done"] >= 15 for r in client.status() if r["job_id"] in ids),
             what="both jobs past their first checkpoint")
    ray.kill(ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE), no_restart=False)
    # Ray restarts the actor (max_restarts=-1); it requeues the interrupted jobs from the store.
    fresh = wait_for(lambda: _try_client(Client, cluster.address), what="controller restart")
    rows = fresh.wait(ids, timeout_s=600)
    store = TelemetryStore(cluster.config.store_path)
    for row in rows:
        assert row["state"] == "SUCCEEDED", row["error"]
        events = [e["new_state"] for e in store.events(row["job_id"])]
        assert events.count("SUCCEEDED") == 1
        assert "controller restarted" in " ".join(e["reason"] for e in store.events(row["job_id"]))
        steps = store.steps(row["job_id"])
        attempts = sorted({s["attempt"] for s in steps})
        assert attempts == [1, 2]
        first = [s for s in steps if s["attempt"] == 1]
        second = [s for s in steps if s["attempt"] == 2]
        # Resumed from a checkpoint (not from step 1), and the attempts never overlapped.
        assert min(s["step"] for s in second) >= 10
        assert max(s["time"] for s in first) < min(s["time"] for s in second)
        assert max(s["step"] for s in second) == 79


def _try_client(client_cls, address):
    try:
        c = client_cls(address)
        c.status()
        return c
    except Exception:  # noqa: BLE001 - still restarting
        return None


def test_cancel_priority_and_clear_errors(client):
    job = client.submit(long_job("to-cancel", steps=400))
    wait_for(lambda: client.job(job)["state"] in ("PLACED", "RUNNING"), what="job started")
    client.set_priority(job, 5)
    assert client.job(job)["priority"] == 5
    assert client.cancel(job) == "CANCELLED"
    row = client.job(job)
    assert row["state"] == "CANCELLED" and row["end_time"] is not None
    with pytest.raises(ValueError, match="already finished"):
        client.cancel(job)
    with pytest.raises(ValueError, match="already finished"):
        client.set_priority(job, 1)
    with pytest.raises(UnknownJob, match="no-such-job"):
        client.cancel("no-such-job")
    dup = client.submit(long_job("dup", steps=5), job_id="fixed-id-1")
    with pytest.raises(Exception, match="already exists"):
        client.submit(long_job("dup", steps=5), job_id="fixed-id-1")
    assert client.wait([dup], timeout_s=300)[0]["state"] == "SUCCEEDED"
