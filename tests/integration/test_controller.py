"""The controller's state machine on a real cluster: restart without loss, cancel, priority."""

from __future__ import annotations

import time

import pytest

from raysched.platform.telemetry import TelemetryStore, UnknownJob

pytestmark = pytest.mark.integration


CHECKPOINT_EVERY = 10


def long_job(name: str, steps: int = 80, **kw) -> dict:
    return {"name": name, "kind": "data_parallel", "model": "cnn", "num_workers": 1,
            "cpus_per_worker": 1, "steps": steps, "batch_size": 32,
            "checkpoint_every": CHECKPOINT_EVERY, **kw}


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

    steps = 300
    # The two kinds whose attempts checkpoint per actor (each pipeline stage, each parameter
    # shard), and the cheapest to start: a data-parallel attempt starts Ray Train's controller
    # and helper actors too, and the controller's restart logic does not depend on the kind.
    ids = [client.submit(long_job("restart-pipe", steps=steps, kind="pipeline_parallel",
                                  model="mlp", num_workers=2)),
           client.submit(long_job("restart-ps", steps=steps, kind="parameter_server",
                                  model="mlp", options={"num_servers": 2}))]

    def some_job_mid_run() -> bool:
        rows = [r for r in client.status() if r["job_id"] in ids]
        return any(r["state"] == "RUNNING" and 15 <= r["steps_done"] < steps - 20 for r in rows)

    wait_for(some_job_mid_run, what="a job past its first checkpoint")
    ray.kill(ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE), no_restart=False)
    # Ray restarts the actor (max_restarts=-1); it requeues the interrupted jobs from the store.
    fresh = wait_for(lambda: _try_client(Client, cluster.address), what="controller restart")
    rows = fresh.wait(ids, timeout_s=900)
    store = TelemetryStore(cluster.config.store_path)
    resumed = 0
    for row in rows:
        assert row["state"] == "SUCCEEDED", row["error"]
        events = store.events(row["job_id"])
        assert [e["new_state"] for e in events].count("SUCCEEDED") == 1
        record = store.steps(row["job_id"])
        attempts = sorted({s["attempt"] for s in record})
        restarted = any("controller restarted" in e["reason"] for e in events)
        if not restarted:
            # Finished (or not yet started) before the kill: never run again.
            assert attempts == [1] and row["attempts"] == 1
            continue
        first = [s for s in record if s["attempt"] == 1]
        second = [s for s in record if s["attempt"] == 2]
        assert attempts[-1] == 2 and second
        if not first:
            continue  # launched but not yet stepping when the controller died
        # The second attempt starts right after a step the first one completed (its last
        # checkpoint: the periodic one, or the one it took when told to stop), skips nothing,
        # and never overlaps the first.
        first_steps = {s["step"] for s in first}
        resume_at = min(s["step"] for s in second)
        assert resume_at == 0 or resume_at - 1 in first_steps, (resume_at, sorted(first_steps))
        assert resume_at <= max(first_steps) + 1
        assert max(s["time"] for s in first) < min(s["time"] for s in second)
        assert max(s["step"] for s in second) == steps - 1
        if max(first_steps) >= CHECKPOINT_EVERY:  # past its first periodic checkpoint
            assert resume_at >= CHECKPOINT_EVERY, "restarted from scratch despite a checkpoint"
            resumed += 1
    assert resumed >= 1


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
    dup = client.submit(long_job("dup", steps=400), job_id="fixed-id-1")
    first = client.job(dup)
    with pytest.raises(Exception, match="already exists"):
        client.submit(long_job("dup-again", steps=5), job_id="fixed-id-1")
    # The refused duplicate changed nothing stored: same job, same spec, still live.
    after = client.job(dup)
    assert after["name"] == first["name"] == "dup" and after["steps"] == 400
    assert after["submit_time"] == first["submit_time"]
    assert after["state"] in ("QUEUED", "PLACED", "RUNNING")
    assert [r["job_id"] for r in client.status()].count(dup) == 1
    assert client.cancel(dup) == "CANCELLED"  # no need to pay its run to the end
