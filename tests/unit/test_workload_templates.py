"""The live benchmark's workloads: every template a valid job; heavy-tailed is heavy-tailed."""

from __future__ import annotations

import statistics

import pytest

from raysched.platform.workload import WORKLOADS, workload
from raysched.schedulers.spec import JobSpec


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_generated_job_is_a_valid_spec(name: str) -> None:
    jobs = workload(40, seed=3, mean_gap_s=6.0, templates=WORKLOADS[name])
    specs = [JobSpec.from_dict(spec, max_node_cpus=2) for _, spec in jobs]
    assert len({s.name for s in specs}) == 40
    assert [t for t, _ in jobs] == sorted(t for t, _ in jobs)


def test_heavy_tailed_has_a_few_jobs_far_longer_than_the_median() -> None:
    steps = [s["steps"] for s in WORKLOADS["heavy_tailed"]]
    median = statistics.median(steps)
    long = [s for s in steps if s >= 20 * median]
    assert 0 < len(long) <= len(steps) // 4
    mixed = [s["steps"] for s in WORKLOADS["mixed"]]
    assert max(mixed) / statistics.median(mixed) < 5  # the default mix is not heavy-tailed


def _store_with(path, jobs, *, end=True):
    from raysched.platform.telemetry import TelemetryStore
    from raysched.schedulers.types import JobState

    store = TelemetryStore(path)
    for i, (_, spec) in enumerate(jobs):
        store.add_job(f"j{i}", JobSpec.from_dict(spec, max_node_cpus=2), submit_time=float(i))
        if end:
            store.transition(f"j{i}", JobState.CANCELLED, "test")
    return store


def test_a_reused_warmup_store_must_hold_exactly_this_warmup(tmp_path) -> None:
    from raysched.platform.workload import check_warmup_store

    jobs = workload(6, seed=1007, mean_gap_s=6.0, templates=WORKLOADS["heavy_tailed"])
    _store_with(tmp_path / "same.db", jobs)
    assert check_warmup_store(tmp_path / "same.db", jobs) == 0  # all cancelled, none succeeded
    other = workload(6, seed=1008, mean_gap_s=6.0, templates=WORKLOADS["heavy_tailed"])
    with pytest.raises(ValueError, match="no job named"):
        check_warmup_store(tmp_path / "same.db", other)
    with pytest.raises(ValueError, match="beyond this warm-up"):
        check_warmup_store(tmp_path / "same.db", jobs[:5])
    resized = [(t, {**s, "steps": s["steps"] + 1}) if i == 2 else (t, s)
               for i, (t, s) in enumerate(jobs)]
    with pytest.raises(ValueError, match="steps="):
        check_warmup_store(tmp_path / "same.db", resized)
    _store_with(tmp_path / "running.db", jobs, end=False)
    with pytest.raises(ValueError, match="not ended"):
        check_warmup_store(tmp_path / "running.db", jobs)
    with pytest.raises(ValueError, match="does not exist"):
        check_warmup_store(tmp_path / "missing.db", jobs)
