"""Pipeline options are validated before any actor starts; the bubble formulas."""

from __future__ import annotations

import pytest

from raysched.jobs.pipeline_config import PipelineConfig
from raysched.jobs.pipeline_parallel import bubble_fraction, ideal_bubble
from raysched.jobs.training_loop import train_single_process
from raysched.schedulers.spec import JobSpec


def spec(**kw) -> JobSpec:
    return JobSpec(name="p", kind="pipeline_parallel", num_workers=2, batch_size=32, **kw)


def test_defaults():
    assert PipelineConfig.from_spec(spec()) == PipelineConfig(
        num_stages=2, micro_batches=4, schedule="gpipe"
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"stages": 3}, "must equal num_workers"),
        ({"micro_batches": 5}, "must divide batch_size"),
        ({"schedule": "zb"}, "options.schedule"),
        ({"schedule": "1f1b", "micro_batches": 1}, "1f1b needs"),
    ],
)
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        PipelineConfig.from_spec(spec(options=options))


def test_bubble_formulas():
    assert ideal_bubble(2, 4) == pytest.approx(0.2)
    assert bubble_fraction([0.8, 0.6], [1.0, 1.0]) == pytest.approx(0.3)


def test_reference_trainer_is_deterministic_and_learns():
    s = JobSpec(name="r", steps=30, batch_size=64, learning_rate=0.2)
    a, b = train_single_process(s), train_single_process(s)
    assert a == b and a[-1] < a[0]


def test_the_runner_of_a_pipeline_job_imports_no_torch():
    """Only the stage actors need torch: the runner that launches them starts without it."""
    import subprocess
    import sys

    code = ("import sys, raysched.jobs.pipeline_parallel as pp; "
            "pp.checkpoints.latest_step('/nonexistent', ['stage-0']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_schedule_name_the_config_accepts_has_a_schedule():
    from raysched.jobs.pipeline_config import SCHEDULE_NAMES
    from raysched.jobs.pipeline_stage import SCHEDULES

    assert set(SCHEDULES) == set(SCHEDULE_NAMES)
