"""Straggler evidence from predictions and from a job's own baseline; prediction calibration."""

from __future__ import annotations

import pytest

from raysched.schedulers.policies.straggler_signals import (
    calibration,
    peer_slowdowns,
    slowdown,
    straggler_signal,
)
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import JobState, JobView


def running(recent: float | None, baseline: float | None = None, *, jid: str = "j",
            nodes: tuple[str, ...] = ()) -> JobView:
    return JobView(job_id=jid, spec=JobSpec(name=jid), state=JobState.RUNNING, submit_time=0.0,
                   recent_step_time_s=recent, baseline_step_time_s=baseline, node_ids=nodes)


def test_beyond_the_predicted_interval_is_a_straggler() -> None:
    s = straggler_signal(running(4.0), 2.0, slow_factor=1.5, self_factor=2.0)
    assert s is not None and s.source == "prediction" and s.limit_s == 3.0
    assert straggler_signal(running(2.9), 2.0, slow_factor=1.5, self_factor=2.0) is None


def test_a_model_wrong_from_the_first_steps_gives_no_evidence_against_the_nodes() -> None:
    # Predicted at most 0.02 s (limit 0.03); the job stepped in 0.12 s from its start.
    assert straggler_signal(running(0.12, baseline=0.12), 0.02, slow_factor=1.5,
                            self_factor=3.0) is None
    # On time at first (0.025 s), then over the limit: the model's interval still counts.
    s = straggler_signal(running(0.05, baseline=0.025), 0.02, slow_factor=1.5, self_factor=3.0)
    assert s is not None and s.source == "prediction"
    # Wrong from the start, then slowed down past its own baseline's tolerance.
    s = straggler_signal(running(0.4, baseline=0.12), 0.02, slow_factor=1.5, self_factor=3.0)
    assert s is not None and s.source == "baseline"


def test_slower_than_its_own_baseline_is_a_straggler_whatever_the_model_says() -> None:
    s = straggler_signal(running(0.5, baseline=0.1), 50.0, slow_factor=1.5, self_factor=2.0)
    assert s is not None and s.source == "baseline" and s.limit_s == pytest.approx(0.2)
    assert straggler_signal(running(0.15, baseline=0.1), 50.0, slow_factor=1.5,
                            self_factor=2.0) is None


def test_a_slowdown_every_other_node_shares_is_not_the_jobs_nodes() -> None:
    # 3.5x its own baseline, while the jobs on other nodes slowed 3.5x too (a contended host).
    assert straggler_signal(running(0.35, baseline=0.1), 50.0, slow_factor=1.5, self_factor=3.0,
                            peer_slowdown=3.5) is None
    # 4x while the others stayed at 1x: its nodes slowed.
    s = straggler_signal(running(0.4, baseline=0.1), 50.0, slow_factor=1.5, self_factor=3.0,
                         peer_slowdown=1.0)
    assert s is not None and s.source == "baseline" and s.limit_s == pytest.approx(0.3)
    assert "4x its own early steps" in s.describe()
    assert "jobs on other nodes slowed 1x" in s.describe()
    # 14x while the others slowed 3.5x: 4x more than the host-wide slowdown.
    s = straggler_signal(running(1.4, baseline=0.1), 50.0, slow_factor=1.5, self_factor=3.0,
                         peer_slowdown=3.5)
    assert s is not None and s.limit_s == pytest.approx(1.05) and s.peers == 3.5


def test_others_speeding_up_do_not_lower_the_bar_and_a_lone_job_keeps_its_raw_ratio() -> None:
    kw = dict(slow_factor=1.5, self_factor=3.0)
    assert straggler_signal(running(0.29, baseline=0.1), 50.0, peer_slowdown=0.5, **kw) is None
    s = straggler_signal(running(0.4, baseline=0.1), 50.0, peer_slowdown=None, **kw)
    assert s is not None and s.limit_s == pytest.approx(0.3)
    assert "no other job measured to compare" in s.describe()


def test_peer_slowdowns_are_the_median_over_jobs_on_nodes_not_shared() -> None:
    jobs = [
        running(0.4, 0.1, jid="slow", nodes=("a",)),
        running(0.1, 0.1, jid="b", nodes=("b",)),
        running(0.2, 0.1, jid="c", nodes=("c",)),
        running(0.3, 0.1, jid="gang", nodes=("a", "d")),  # shares node a with "slow"
        running(0.5, None, jid="new", nodes=("e",)),  # no baseline yet: no ratio
    ]
    assert slowdown(jobs[0]) == pytest.approx(4.0) and slowdown(jobs[4]) is None
    peers = peer_slowdowns(jobs)
    assert peers["slow"] == pytest.approx(1.5)  # median of b 1x, c 2x
    assert peers["gang"] == pytest.approx(1.5)
    assert peers["b"] == pytest.approx(3.0)  # median of slow 4x, c 2x, gang 3x
    assert peers["new"] == pytest.approx(2.5)
    assert peer_slowdowns(jobs[:1]) == {"slow": None}  # a lone job


def test_peer_slowdowns_equal_the_pairwise_median_on_random_clusters() -> None:
    import random
    import statistics

    rng = random.Random(5)
    for _ in range(200):
        nodes = [f"n{i}" for i in range(rng.randint(1, 8))]
        jobs = [running(rng.choice([0.1, 0.2, 0.35, 0.4]),
                        rng.choice([None, 0.1, 0.1, 0.2]), jid=f"j{k}",
                        nodes=tuple(rng.sample(nodes, rng.randint(1, min(3, len(nodes))))))
                for k in range(rng.randint(1, 12))]
        for j in jobs:
            others = [slowdown(p) for p in jobs if p.job_id != j.job_id
                      and set(p.node_ids).isdisjoint(j.node_ids) and slowdown(p) is not None]
            want = statistics.median(others) if others else None
            got = peer_slowdowns(jobs)[j.job_id]
            assert got == (None if want is None else pytest.approx(want))


def test_no_measurement_no_signal() -> None:
    assert straggler_signal(running(None, 0.1), 1.0, slow_factor=1.5, self_factor=2.0) is None


def test_calibration_rescales_to_the_measured_baseline_within_bounds() -> None:
    assert calibration(running(1.0, baseline=0.5), 2.0) == pytest.approx(0.25)
    assert calibration(running(1.0), 2.0) == 1.0  # no baseline yet
    assert calibration(running(1.0, baseline=1e-6), 10.0) == 0.01
    assert calibration(running(1.0, baseline=1e6), 1.0) == 100.0
