"""Telemetry store: round trip, state machine, bad rows rejected, concurrent writers."""

import math
import multiprocessing as mp
import time

import pytest

from raysched.jobs.base import StepRecord
from raysched.platform.telemetry import TelemetryError, TelemetryStore, UnknownJob
from raysched.platform.telemetry_export import export
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import InvalidTransition, JobState

SPEC = JobSpec(name="j", num_workers=2, steps=10)


def step(job_id="j1", i=1, loss=1.0, t=0.1):
    return StepRecord(job_id=job_id, attempt=1, rank=0, node_id="n1", step=i, loss=loss,
                      step_time_s=t, samples=32, peak_rss_mb=100.0, time=time.time())


def test_job_round_trip(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.add_job("j1", SPEC, submit_time=100.0, param_count=1234)
    store.transition("j1", JobState.PLACED, "placed", node_ids=["n1", "n2"], node_cpus=[2, 1],
                     node_speeds=[1.0, 0.5], start_time=101.0, queue_time_s=1.0, attempts=1)
    store.transition("j1", JobState.RUNNING, "steps")
    store.add_steps([step(i=i) for i in range(1, 4)])
    store.transition("j1", JobState.SUCCEEDED, "done", end_time=111.0, run_time_s=10.0,
                     final_loss=0.5, steps_done=10)
    # A fresh store object (as after a controller restart) reads the same row.
    row = TelemetryStore(tmp_path / "t.db").get_job("j1")
    assert row["spec"] == SPEC
    assert row["state"] == "SUCCEEDED" and row["node_ids"] == ["n1", "n2"]
    assert row["node_speeds"] == [1.0, 0.5] and row["param_count"] == 1234
    assert row["queue_time_s"] == 1.0 and row["final_loss"] == 0.5
    assert [e["new_state"] for e in store.events("j1")] == ["QUEUED", "PLACED", "RUNNING",
                                                             "SUCCEEDED"]
    assert [s["step"] for s in store.steps("j1")] == [1, 2, 3]


def test_state_machine_is_enforced(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.add_job("j1", SPEC)
    with pytest.raises(InvalidTransition, match="QUEUED to SUCCEEDED"):
        store.transition("j1", JobState.SUCCEEDED, "skip")
    store.transition("j1", JobState.CANCELLED, "user")
    with pytest.raises(InvalidTransition):
        store.transition("j1", JobState.QUEUED, "revive")
    assert store.get_job("j1")["state"] == "CANCELLED"


def test_duplicates_unknown_and_bad_values_are_rejected_without_writing(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.add_job("j1", SPEC)
    with pytest.raises(TelemetryError, match="already exists"):
        store.add_job("j1", SPEC)
    with pytest.raises(UnknownJob, match="nope"):
        store.get_job("nope")
    with pytest.raises(TelemetryError, match="run_time_s is negative"):
        store.update_job("j1", run_time_s=-3.0)
    with pytest.raises(TelemetryError, match="final_loss is nan"):
        store.update_job("j1", final_loss=math.nan)
    with pytest.raises(TelemetryError, match="cannot be set"):
        store.update_job("j1", state="SUCCEEDED")
    with pytest.raises(TelemetryError, match=r"step record 1 .*loss is nan"):
        store.add_steps([step(i=1), step(i=2, loss=math.nan)])
    with pytest.raises(TelemetryError, match="step_time_s is negative"):
        store.add_steps([step(t=-1.0)])
    assert store.steps("j1") == []  # all or nothing
    row = store.get_job("j1")
    assert row["run_time_s"] is None and row["final_loss"] is None


def _writer(path, worker):
    store = TelemetryStore(path)
    for i in range(40):
        store.add_job(f"w{worker}-{i}", SPEC)
        store.add_steps([step(job_id=f"w{worker}-{i}", i=k) for k in range(5)])


def test_concurrent_writers_from_several_processes(tmp_path):
    path = tmp_path / "t.db"
    TelemetryStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # generous: spawned interpreters start slowly on a loaded 2-core machine
        assert p.exitcode == 0
    store = TelemetryStore(path)
    assert len(store.list_jobs()) == 160
    assert len(store.table("steps")) == 800
    import sqlite3

    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_export_csv_and_parquet(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.add_job("j1", SPEC)
    store.add_steps([step()])
    for fmt in ("csv", "parquet"):
        written = export(tmp_path / "t.db", tmp_path / fmt, fmt=fmt, tables="jobs,steps")
        assert [(p.name, n) for p, n in written] == [(f"jobs.{fmt}", 1), (f"steps.{fmt}", 1)]
    import pandas as pd

    assert pd.read_parquet(tmp_path / "parquet" / "jobs.parquet")["job_id"].tolist() == ["j1"]
    with pytest.raises(ValueError, match="unknown format"):
        export(tmp_path / "t.db", tmp_path / "x", fmt="xlsx")
    with pytest.raises(FileNotFoundError):
        export(tmp_path / "none.db", tmp_path / "x")


def test_migration_downtime_is_decision_to_the_next_attempts_first_step(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.add_job("j1", SPEC, submit_time=100.0)

    def rec(attempt, i, at):
        return StepRecord(job_id="j1", attempt=attempt, rank=0, node_id="n1", step=i, loss=1.0,
                          step_time_s=0.1, samples=32, peak_rss_mb=100.0, time=at)

    now = time.time()
    store.add_steps([rec(1, i, now - 10 + i) for i in range(5)])
    assert store.migration_downtimes() == []  # no migration yet
    store.add_decision(job_id="j1", action="migrate", policy="learned", node_ids=["n2"],
                       reason="straggler")
    assert store.migration_downtimes() == []  # the next attempt has not stepped yet
    store.add_steps([rec(1, 5, time.time() + 1)])  # the old attempt's last step, before it stops
    store.add_steps([rec(2, i, time.time() + 15 + i) for i in range(5, 8)])  # first at +20 s
    (downtime,) = store.migration_downtimes()
    assert downtime == pytest.approx(20.0, abs=1.0)


def test_startup_delay_is_first_placement_to_the_first_attempts_first_step(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    for job in ("j1", "j2", "j3"):
        store.add_job(job, SPEC, submit_time=100.0)

    def rec(job, attempt, i, at):
        return StepRecord(job_id=job, attempt=attempt, rank=0, node_id="n1", step=i, loss=1.0,
                          step_time_s=0.5, samples=32, peak_rss_mb=100.0, time=at)

    store.add_decision(job_id="j1", action="place", policy="learned", node_ids=["n1"],
                       reason="fits")
    placed = time.time()
    assert store.startup_delays() == []  # placed, not stepping yet
    store.add_steps([rec("j1", 1, i, placed + 40.5 + i) for i in range(3)])  # starts at +40 s
    store.add_steps([rec("j1", 2, 3, placed + 500.0)])  # a later attempt is not a start-up
    store.add_decision(job_id="j2", action="place", policy="learned", node_ids=["n1"],
                       reason="fits")
    store.add_decision(job_id="j2", action="place", policy="learned", node_ids=["n2"],
                       reason="relaunch")  # its first placement counts
    store.add_steps([rec("j2", 1, 0, time.time() + 10.5)])
    store.add_steps([rec("j3", 1, 0, time.time())])  # stepping with no placement: left out
    first, second = store.startup_delays()
    assert first == pytest.approx(40.0, abs=1.0)
    assert second == pytest.approx(10.0, abs=1.0)
