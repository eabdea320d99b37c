"""End to end on a real local cluster: jobs through the controller, placement, telemetry, CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raysched.platform.job_actors import worker_nodes_by_job
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def short_job(name: str, **kw) -> dict:
    return {"name": name, "kind": "data_parallel", "model": "mlp", "num_workers": 1,
            "cpus_per_worker": 1, "steps": 20, "batch_size": 32, "learning_rate": 0.1, **kw}


@pytest.fixture(scope="module")
def batch(client) -> dict[str, dict]:
    """Two good jobs (a 2-worker data-parallel MLP, a parameter-server MLP) and a pipeline job
    raising at step 3, run together: three kinds, each placed where its decision says.

    One batch for the two tests below: every attempt pays 10-35 s of start-up (a Ray Train one
    starts six processes importing Ray Train and torch, about 7 CPU-seconds each), and the good
    jobs are the "others" the failing one must leave unaffected (5 of the 6 CPUs: all at once).
    """
    specs = {
        "a": short_job("it-a", num_workers=2),
        "b": short_job("it-b", kind="parameter_server"),
        # A pipeline job: the failure path is the controller's, whatever the kind, and a
        # pipeline attempt starts fewer processes than a Ray Train one.
        "bad": short_job("it-bad", kind="pipeline_parallel", num_workers=2,
                         options={"fail_at_step": 3}),
    }
    ids = {key: client.submit(spec) for key, spec in specs.items()}
    rows = client.wait(list(ids.values()), timeout_s=600)
    return {key: row for key, row in zip(ids, rows, strict=True)}


def test_good_jobs_succeed_on_the_nodes_their_decisions_named(cluster, client, batch):
    rows = [batch["a"], batch["b"]]
    assert [r["state"] for r in rows] == ["SUCCEEDED"] * 2, [r["error"] for r in rows]
    ray_view = worker_nodes_by_job()
    for row in rows:
        decision = client.explain(row["job_id"])["decisions"][-1]
        assert decision["node_ids"], "least_loaded names nodes"
        # Ray's state API says where the job's worker actors ran: exactly the decided nodes.
        assert ray_view[row["job_id"]] == set(decision["node_ids"])
        assert row["node_ids"] == decision["node_ids"]
        # Telemetry row complete: features known at start and outcomes.
        for field in ("queue_time_s", "run_time_s", "steps_per_s", "final_loss", "peak_rss_mb",
                      "node_cpus", "node_speeds", "cluster_load_at_start", "param_count",
                      "start_time", "end_time"):
            assert row[field] is not None, field
        assert row["steps_done"] == 20
        assert row["final_loss"] < 2.3  # trained: below ln(10), the loss of a uniform guess
    steps = [r for r in _store(cluster).steps(batch["a"]["job_id"]) if r["rank"] == 1]
    assert len(steps) == 20 and all(s["step_time_s"] > 0 for s in steps)


def test_a_failing_job_is_failed_with_its_error_and_others_are_unaffected(batch):
    bad = batch["bad"]
    assert bad["state"] == "FAILED"
    assert "injected failure at step 3" in bad["error"]
    # The jobs that ran beside it (the batch's good ones) all succeeded.
    others = [batch[key] for key in ("a", "b")]
    assert [r["state"] for r in others] == ["SUCCEEDED"] * 2, [r["error"] for r in others]


def test_bad_spec_is_rejected_and_nothing_is_queued(client):
    from raysched.schedulers.spec import SpecError

    before = len(client.status())
    with pytest.raises(SpecError, match="cpus_per_worker"):
        client.submit(short_job("too-big", cpus_per_worker=64))
    with pytest.raises(SpecError, match="unknown field"):
        client.submit({**short_job("typo"), "num_wrkers": 2})
    assert len(client.status()) == before


def test_ray_job_submit_goes_through_the_controller(cluster, client):
    # A pipeline example: the driver's path to the controller does not depend on the kind,
    # and a pipeline attempt starts fewer processes than a Ray Train one.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ray"), "job", "submit",
         "--address", cluster.dashboard_url, "--working-dir", ".", "--",
         "python", "-m", "raysched.jobs.run", "examples/pipeline_digits.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout
    ray_jobs = [r for r in client.status() if r["source"] == "ray_job"]
    assert len(ray_jobs) == 1
    assert ray_jobs[0]["state"] == "SUCCEEDED" and ray_jobs[0]["ray_job_id"]
    # And `raysched status` lists it.
    out = subprocess.run([sys.executable, "-m", "raysched.cli", "status", "--address",
                          cluster.address], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert ray_jobs[0]["job_id"] in out.stdout


def _store(cluster):
    from raysched.platform.telemetry import TelemetryStore

    return TelemetryStore(cluster.config.store_path)
