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
