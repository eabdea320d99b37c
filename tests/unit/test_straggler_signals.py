"""Straggler evidence from predictions and from a job's own baseline; prediction calibration."""

from __future__ import annotations

import pytest

from raysched.schedulers.policies.straggler_signals import calibration, straggler_signal
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import JobState, JobView


def running(recent: float | None, baseline: float | None = None) -> JobView:
    return JobView(job_id="j", spec=JobSpec(name="j"), state=JobState.RUNNING, submit_time=0.0,
                   recent_step_time_s=recent, baseline_step_time_s=baseline)


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


def test_no_measurement_no_signal() -> None:
    assert straggler_signal(running(None, 0.1), 1.0, slow_factor=1.5, self_factor=2.0) is None


def test_calibration_rescales_to_the_measured_baseline_within_bounds() -> None:
    assert calibration(running(1.0, baseline=0.5), 2.0) == pytest.approx(0.25)
    assert calibration(running(1.0), 2.0) == 1.0  # no baseline yet
    assert calibration(running(1.0, baseline=1e-6), 10.0) == 0.01
    assert calibration(running(1.0, baseline=1e6), 1.0) == 100.0
