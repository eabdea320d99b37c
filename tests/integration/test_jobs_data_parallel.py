"""Data parallelism on a real cluster: an FSDP job with speed-aware shards whose worker is killed.

The training math of every option (DDP, FSDP, fp16 and PowerSGD hooks, uneven shares) is checked
without Ray in tests/unit/test_jobs_data_parallel_gloo.py; this test covers what only Ray does:
two workers on the nodes the scheduler chose, and Ray Train restarting a killed worker group
from the job's newest checkpoint.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

pytestmark = pytest.mark.integration


def test_fsdp_job_with_a_killed_worker_resumes_from_its_checkpoint(cluster, client):
    from raysched.platform.job_actors import job_actors
    from raysched.platform.telemetry import TelemetryStore

    # The worker dies once two checkpoints are taken (20 steps done); the 40 steps left (0.2-1 s
    # each on the emulated slow nodes) keep the job running until the kill lands, with margin.
    every, steps = 10, 60
    ids = [client.submit({
        "kind": "data_parallel", "name": "fsdp-hetero-killed", "model": "cnn", "num_workers": 2,
        "cpus_per_worker": 1, "steps": steps, "batch_size": 64, "learning_rate": 0.1,
        "checkpoint_every": every, "options": {"parallelism": "fsdp", "hetero_sharding": True},
    })]
    victim = ids[0]
    deadline = time.monotonic() + 600
    while client.job(victim)["steps_done"] < 2 * every:
        assert time.monotonic() < deadline, "the FSDP job never got past its checkpoint"
        assert client.job(victim)["state"] in ("QUEUED", "PLACED", "RUNNING")
        time.sleep(0.2)
    actors = [a for a in job_actors(victim) if a.alive]
    pids = [a.pid for a in actors if a.class_name == "RayTrainWorker"]
    assert len(pids) == 2, actors
    # Ray Train's preemption watcher (one more process per job) is off (launcher.py).
    assert "PreemptionWatcher" not in {a.class_name for a in actors}, actors
    done_before_kill = client.job(victim)["steps_done"]
    killed_at = time.time()
    os.kill(pids[-1], signal.SIGKILL)  # one worker process dies mid-run

    rows = client.wait(ids, timeout_s=900)
    for row in rows:
        assert row["state"] == "SUCCEEDED", row["error"]
        assert row["final_loss"] < 2.2  # trained: below a uniform guess's ln(10) = 2.30
    killed = rows[0]
    assert killed["attempts"] == 1  # Ray Train restarted the workers; the controller did not
    records = [s for s in TelemetryStore(cluster.config.store_path).steps(victim)
               if s["rank"] == 0]
    # The restarted workers' first step is the first one recorded after the kill: the step
    # after the newest checkpoint the job had reached (not an older one, not step 0).
    resumed_at = min(s["step"] for s in records if s["time"] > killed_at)
    # Step index done_before_kill - 1 was reported, so every checkpoint taken before it exists.
    newest_checkpoint = (done_before_kill - 1) // every * every
    assert resumed_at % every == 0 and resumed_at >= max(every, newest_checkpoint), (
        resumed_at, done_before_kill)
    assert max(s["step"] for s in records) == steps - 1
