"""The Ray GPU check's verdicts: where a resumed job must pick up; its refusal without CUDA."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def check_module() -> ModuleType:
    """benchmarks/gpu_ray_check.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "gpu_ray_check", ROOT / "benchmarks" / "gpu_ray_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def records(attempt: int, steps: range, loss: float | None = None) -> list[dict]:
    return [{"attempt": attempt, "step": s, "rank": 0,
             "loss": 2.0 / (s + 1) if loss is None else loss} for s in steps]


def test_a_resume_at_the_stop_with_the_loss_kept_passes() -> None:
    found = check_module().resume_findings(records(1, range(321)) + records(2, range(320, 800)),
                                           checkpoint_every=100, steps=800)
    assert found["resumed_ok"] and found["resumed_at_step"] == 320


@pytest.mark.parametrize(("second", "why"), [
    (records(2, range(0, 800)), "restarted from step 0"),
    (records(2, range(250, 800)), "before the last periodic checkpoint"),
    (records(2, range(320, 800), loss=2.0), "loss back to untrained"),
    (records(2, range(320, 700)), "did not finish"),
])
def test_a_resume_that_lost_progress_or_did_not_finish_fails(second: list[dict], why: str) -> None:
    found = check_module().resume_findings(records(1, range(321)) + second,
                                           checkpoint_every=100, steps=800)
    assert not found["resumed_ok"], why


def test_one_attempt_is_no_resume() -> None:
    found = check_module().resume_findings(records(1, range(800)), checkpoint_every=100,
                                           steps=800)
    assert found == {"attempts": [1], "resumed_ok": False}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on CPU machines")
def test_without_cuda_the_check_refuses_and_points_to_the_rehearsal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_module().main(["--output", str(tmp_path / "x.json")]) == 2
    assert "--cpu-rehearsal" in capsys.readouterr().err
