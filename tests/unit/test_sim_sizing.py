"""Cluster sizing for a trace window: the rule behind the contended Philly cluster."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from raysched.schedulers.simulator import TraceJob, load_trace, parse_time
from raysched.schedulers.simulator.sizing import sized_cluster, sized_rows

PHILLY = Path("/work/shared/traces/philly")
if not PHILLY.exists():  # the repo's sibling `shared/` checkout
    PHILLY = Path(__file__).resolve().parents[3] / "shared" / "traces" / "philly"


def job(vc: str, gpus: int, duration: float) -> TraceJob:
    return TraceJob(job_id=f"{vc}{gpus}{duration}", submit_s=0.0, duration_s=duration,
                    gpus=gpus, vc=vc)


def test_nodes_cover_the_demand_and_the_largest_job():
    day = 86400.0
    jobs = [job("a", 8, day), job("a", 1, 1.0),  # 8 GPU-days and a bit: 2 nodes
            job("b", 16, 60.0),  # tiny demand, but a 16-GPU job needs 2 nodes
            job("c", 1, 10.0)]  # at least one node
    assert sized_rows(jobs, day) == [
        {"vc": "a", "nodes": 2}, {"vc": "b", "nodes": 2}, {"vc": "c", "nodes": 1}
    ]
    cl = sized_cluster(jobs, day)
    assert cl.capacity("a") == 16 and cl.capacity("b") == 16 and cl.capacity("c") == 8
    with pytest.raises(ValueError):
        sized_rows(jobs, 0.0)


@pytest.mark.skipif(not PHILLY.exists(), reason="Philly trace not available")
def test_reproduces_the_contended_philly_cluster_on_its_week():
    start = parse_time("2017-10-01")
    trace = load_trace(PHILLY / "philly_2017_sep_oct.csv", "philly", start=start,
                       end=start + 7 * 86400.0)
    with open(PHILLY / "philly_vc_contended.csv") as f:
        want = {r["vc"]: int(r["nodes"]) for r in csv.DictReader(f)}
    got = {r["vc"]: r["nodes"] for r in sized_rows(trace.jobs, 7 * 86400.0)}
    assert got == want
