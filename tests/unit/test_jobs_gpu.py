"""The data-parallel GPU path without a GPU: device-free checkpoints, Ray-free imports, the check.

The CPU side of the checkpoint format is tested here; the CUDA side (stop on cuda, resume on
cpu and back) runs only where CUDA is available, through `benchmarks/gpu_check.py`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from raysched.jobs.checkpoint import LATEST, load_checkpoint, save_checkpoint, to_cpu
from raysched.schedulers.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def gpu_check() -> ModuleType:
    """benchmarks/gpu_check.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" /
                                                  "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_checkpoints_hold_cpu_tensors_and_load_where_asked(tmp_path: Path) -> None:
    state = {"step": 3, "model": {"w": torch.ones(2, requires_grad=True)},
             "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(2)}},
                           "param_groups": [{"params": [0], "lr": 0.1}]},
             "pair": (torch.arange(3), [torch.eye(2)])}
    moved = to_cpu(state)
    assert not moved["model"]["w"].requires_grad
    assert isinstance(moved["pair"], tuple) and moved["optimizer"]["param_groups"][0]["lr"] == 0.1
    save_checkpoint(tmp_path, state)
    raw = torch.load(tmp_path / LATEST, weights_only=True)  # no map_location: as stored
    assert raw["model"]["w"].device.type == "cpu"
    loaded = load_checkpoint(tmp_path, map_location=torch.device("cpu"))
    assert loaded is not None and torch.equal(loaded["pair"][1][0], torch.eye(2))


def test_data_parallel_imports_without_ray() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError('ray is blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import raysched.jobs.data_parallel, raysched.jobs.checkpoint\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_gpu_check_cpu_half_stops_resumes_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    argv = ["--cpu-only", "--steps", "4", "--models", "mlp", "--cpu-threads", "1",
            "--output", str(out)]
    assert gpu_check().main(argv) == 0
    result = json.loads(out.read_text())
    assert result["ok"] and not result["cuda"] and result["steps"] == 4
    assert [c["case"] for c in result["cases"]] == [
        "mlp/ddp", "mlp/fsdp", "mlp/ddp+fp16", "mlp/ddp+powersgd"]
    assert all(c["samples_per_s_cpu"] and c["samples_per_s_cuda"] is None
               for c in result["cases"])
    trips = {t["case"]: t for t in result["round_trips"]}
    assert set(trips) == {"mlp/ddp", "mlp/fsdp"}
    for t in trips.values():  # stopped at step 2, checkpoint on CPU, the same curve after
        assert (t["from"], t["to"], t["stopped_at_step"], t["resumed_steps"]) == (
            "cpu", "cpu", 2, 2)
        assert t["checkpoint_on_cpu"] and t["max_abs_diff_vs_uninterrupted"] <= 1e-6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on CPU machines")
def test_gpu_check_without_cuda_says_so_and_fails(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.json"
    assert gpu_check().main(["--output", str(out)]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_check_cuda_against_cpu_and_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    argv = ["--steps", "8", "--models", "mlp,transformer", "--output", str(out)]
    assert gpu_check().main(argv) == 0
    result = json.loads(out.read_text())
    assert {(t["from"], t["to"]) for t in result["round_trips"]} == {
        ("cuda", "cpu"), ("cpu", "cuda")}
    assert all(c["max_abs_loss_diff"] <= 1e-3 for c in result["cases"])


def test_ray_train_is_asked_for_gpus_and_nccl_only_for_gpu_jobs() -> None:
    from raysched.jobs.data_parallel import train_resources

    assert train_resources(JobSpec(name="c", cpus_per_worker=2)) == {
        "backend": "gloo", "use_gpu": False, "resources_per_worker": {"CPU": 2}}
    assert train_resources(JobSpec(name="g", cpus_per_worker=2, gpus_per_worker=1)) == {
        "backend": "nccl", "use_gpu": True, "resources_per_worker": {"CPU": 2, "GPU": 1}}


def test_powersgd_on_cpu_with_cuda_visible_fails_clearly(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from raysched.jobs.data_parallel import apply_compression

    class FakeDDP:
        def register_comm_hook(self, state: object, hook: object) -> None:
            raise AssertionError("must refuse before registering")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES"):
        apply_compression(FakeDDP(), "powersgd", torch.device("cpu"))
