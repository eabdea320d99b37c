"""GPU check of the data-parallel job kind, without Ray: CUDA vs CPU losses, speed, resume.

Runs `raysched.jobs.data_parallel.worker_loop` (the per-worker loop Ray Train runs) in a 1-rank
process group, NCCL on CUDA and gloo on CPU, for DDP (plain, fp16 and PowerSGD hooks) and FSDP2
on the MLP, CNN and transformer, with the same seed on both devices and TF32 off, and reports:

- the largest |loss difference| between CUDA and CPU over every step, per model and strategy;
- samples/s on each device after warm-up (wall time between steps, so it includes the loss
  all-reduce; these models are tiny, so GPU figures measure overheads more than the GPU);
- checkpoint round trips: stop on one device, resume on the other (cuda -> cpu and cpu ->
  cuda), and check that the checkpoint holds CPU tensors only and that the resumed losses
  continue the uninterrupted run's curve.

Run from the repository root (Python 3.11+, torch, numpy, scikit-learn, pyyaml; no Ray)::

    PYTHONPATH=. python3 benchmarks/gpu_check.py --output benchmarks/results/gpu_check.json

CPU phases run where no CUDA device is visible (a child process with ``CUDA_VISIBLE_DEVICES=``
on a GPU machine), as on a CPU node or in a Ray worker that asked for no GPU. Without CUDA it
stops with exit status 2 unless `--cpu-only` is given (the CPU half only, and a
cpu -> cpu round trip). Exit status 1 means a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from raysched.jobs.base import JobContext, StepRecord
from raysched.jobs.checkpoint import LATEST
from raysched.jobs.data_parallel import worker_loop
from raysched.schedulers.spec import JobSpec

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "gpu_check.json"
LOSS_TOL = 1e-3  # |CUDA - CPU| loss over ~30 steps with TF32 off; float rounding only
MODELS: dict[str, tuple[str, int, float]] = {  # model -> (dataset, batch size, learning rate)
    "mlp": ("digits", 256, 0.1),
    "cnn": ("digits", 256, 0.1),
    "transformer": ("synthetic_text", 64, 0.05),
}
# One device's share of the check: {"device": "cuda" | "cpu", "full": run every case,
# "halves": [[src, dst], ...] round trips to stop here, "resumes": [[src, dst], ...] to resume}.
Phase = dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    """One model trained under one data-parallel strategy."""

    model: str
    parallelism: str = "ddp"
    compression: str = "none"

    @property
    def name(self) -> str:
        hook = "" if self.compression == "none" else f"+{self.compression}"
        return f"{self.model}/{self.parallelism}{hook}"


@dataclasses.dataclass
class Recorder:
    """A step sink that keeps every record and asks to stop once `stop_after` steps are done."""

    stop_after: int | None = None
    records: list[StepRecord] = dataclasses.field(default_factory=list)

    def __call__(self, records: list[StepRecord]) -> bool:
        self.records.extend(records)
        return self.stop_after is not None and any(r.step + 1 >= self.stop_after
                                                   for r in records)


def cases_for(models: Sequence[str]) -> list[Case]:
    """DDP and FSDP for every model, plus DDP's two compression hooks on the first model."""
    out = [Case(model=m, parallelism=p) for m in models for p in ("ddp", "fsdp")]
    out += [Case(model=models[0], compression=c) for c in ("fp16", "powersgd")]
    return out


def disable_tf32() -> None:
    """Full fp32 matmuls and convolutions on CUDA, so CUDA and CPU losses are comparable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch prefers its fp32_precision settings
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@contextlib.contextmanager
def process_group(device: torch.device, workdir: Path) -> Iterator[None]:
    """A 1-rank process group for `device`: NCCL on CUDA, gloo on CPU (as Ray Train picks)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    init = Path(tempfile.mkstemp(prefix=f"pg-{backend}-", dir=workdir)[1])
    init.unlink()  # the file store creates it
    extra = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method=f"file://{init}", rank=0, world_size=1,
                            **extra)
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_case(case: Case, device: torch.device, *, steps: int, threads: int, ckpt: Path,
             stop_after: int | None = None) -> tuple[dict[str, Any], list[StepRecord]]:
    """`worker_loop` for `case` on `device` (resuming from `ckpt` if it holds a checkpoint)."""
    dataset, batch, lr = MODELS[case.model]
    options: dict[str, Any] = {"parallelism": case.parallelism}
    if case.compression != "none":
        options["compression"] = case.compression
    spec = JobSpec(name=case.name.replace("/", "-").replace("+", "-"), model=case.model,
                   dataset=dataset, batch_size=batch, learning_rate=lr, steps=steps,
                   cpus_per_worker=threads, gpus_per_worker=int(device.type == "cuda"),
                   options=options)
    sink = Recorder(stop_after)
    ctx = JobContext(job_id=spec.name, attempt=0, node_ids=(), node_speeds={},
                     checkpoint_dir=str(ckpt), sink=sink, report_every=1)
    summary = worker_loop(spec, ctx, rank=0, world=1, node_id=device.type, device=device,
                          wrap_single_rank=True)
    return summary, sink.records


def samples_per_s(records: Sequence[StepRecord], warmup: int) -> float | None:
    """Samples per second over the steps after `warmup`, from the records' wall-clock times."""
    timed = [r for r in records if r.step >= warmup]
    if len(timed) < 2:
        return None
    span = timed[-1].time - timed[0].time
    return sum(r.samples for r in timed[1:]) / span if span > 0 else None


def checkpoint_on_cpu(ckpt: Path) -> bool:
    """Whether the checkpoint file holds CPU tensors only (loaded without a map_location)."""
    try:
        state = torch.load(ckpt / LATEST, weights_only=True)
    except RuntimeError:  # a CUDA tensor on a machine without CUDA
        return False
    stack: list[Any] = [state]
    while stack:
        v = stack.pop()
        if isinstance(v, torch.Tensor) and v.device.type != "cpu":
            return False
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return True


def max_abs_diff(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Largest |a[i] - b[i]| (None when the curves differ in length or are empty)."""
    if not a or len(a) != len(b):
        return None
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def plan_phases(cuda: bool) -> list[Phase]:
    """The device phases in order; a round trip (src, dst) stops in one and resumes in another."""
    if not cuda:
        return [{"device": "cpu", "full": True, "halves": [["cpu", "cpu"]],
                 "resumes": [["cpu", "cpu"]]}]
    return [
        {"device": "cuda", "full": True, "halves": [["cuda", "cpu"]], "resumes": []},
        {"device": "cpu", "full": True, "halves": [["cpu", "cuda"]], "resumes": [["cuda", "cpu"]]},
        {"device": "cuda", "full": False, "halves": [], "resumes": [["cpu", "cuda"]]},
    ]


def run_phase(phase: Phase, *, steps: int, models: Sequence[str], threads: int,
              workdir: Path) -> dict[str, Any]:
    """One phase in this process: full runs, then first halves, then resumes (JSON-able)."""
    device = torch.device("cuda", 0) if phase["device"] == "cuda" else torch.device("cpu")
    cases = cases_for(models)
    base = [c for c in cases if c.compression == "none"]
    stop, warmup = max(1, steps // 2), min(5, steps // 3)
    out: dict[str, Any] = {"full": {}, "halves": {}, "resumes": {}}
    with process_group(device, workdir):
        if phase["full"]:
            for c in cases:
                summary, records = run_case(c, device, steps=steps, threads=threads,
                                            ckpt=workdir / f"full-{device.type}-{c.name}")
                out["full"][c.name] = {**summary,
                                       "samples_per_s": samples_per_s(records, warmup)}
        for what in ("halves", "resumes"):
            for (src, dst), c in itertools.product(phase[what], base):
                ckpt = workdir / f"trip-{src}-{dst}-{c.name}"
                summary, _ = run_case(c, device, steps=steps, threads=threads, ckpt=ckpt,
                                      stop_after=stop if what == "halves" else None)
                if what == "halves":
                    summary["on_cpu"] = checkpoint_on_cpu(ckpt)
                out[what][f"{c.name}|{src}|{dst}"] = summary
    return out


def run_phase_hiding_cuda(phase: Phase, *, steps: int, models: Sequence[str], threads: int,
                          workdir: Path) -> dict[str, Any]:
    """A CPU phase where no CUDA device is visible, as on a CPU node or a Ray CPU worker.

    In this process when torch sees no CUDA; else in a child with ``CUDA_VISIBLE_DEVICES=``.
    """
    if not torch.cuda.is_available():
        return run_phase(phase, steps=steps, models=models, threads=threads, workdir=workdir)
    request = workdir / f"phase-{len(list(workdir.glob('phase-*')))}.json"
    request.write_text(json.dumps({"phase": phase, "steps": steps, "models": list(models),
                                   "threads": threads, "workdir": str(workdir)}))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    subprocess.run([sys.executable, __file__, "--run-phase", str(request)], env=env,
                   check=True)
    return json.loads(request.with_suffix(".out.json").read_text())


def run_check(*, cuda: bool, steps: int, models: Sequence[str], threads: int,
              workdir: Path) -> dict[str, Any]:
    """Every run of the check; the result is what the JSON holds."""
    began = time.perf_counter()
    cases = cases_for(models)
    stop, warmup = max(1, steps // 2), min(5, steps // 3)
    full: dict[tuple[str, str], dict[str, Any]] = {}
    halves: dict[str, dict[str, Any]] = {}
    resumes: dict[str, dict[str, Any]] = {}
    for phase in plan_phases(cuda):
        runner = run_phase if phase["device"] == "cuda" else run_phase_hiding_cuda
        got = runner(phase, steps=steps, models=models, threads=threads, workdir=workdir)
        full.update({(name, phase["device"]): v for name, v in got["full"].items()})
        halves.update(got["halves"])
        resumes.update(got["resumes"])
    rows = []
    for c in cases:
        row: dict[str, Any] = {"case": c.name, "model": c.model, "parallelism": c.parallelism,
                               "compression": c.compression}
        for dev in ("cuda", "cpu"):
            got = full.get((c.name, dev))
            row[f"final_loss_{dev}"] = got["loss"] if got else None
            row[f"samples_per_s_{dev}"] = got["samples_per_s"] if got else None
        if cuda:
            row["max_abs_loss_diff"] = max_abs_diff(full[(c.name, "cuda")]["losses"],
                                                    full[(c.name, "cpu")]["losses"])
            row["ok"] = row["max_abs_loss_diff"] is not None \
                and row["max_abs_loss_diff"] <= LOSS_TOL
        else:
            row["max_abs_loss_diff"] = None
            row["ok"] = all(math.isfinite(v) for v in full[(c.name, "cpu")]["losses"])
        rows.append(row)
    trip_rows = []
    for key, after in resumes.items():
        name, src, dst = key.split("|")
        before = halves[key]
        diff = max_abs_diff(after["losses"], full[(name, dst)]["losses"][stop:])
        first_half = max_abs_diff(before["losses"], full[(name, src)]["losses"][:stop])
        ok = (before["stopped"] and before["step"] == stop and before["on_cpu"]
              and after["step"] == steps and diff is not None and diff <= LOSS_TOL)
        trip_rows.append({
            "case": name, "from": src, "to": dst, "stopped_at_step": before["step"],
            "checkpoint_on_cpu": before["on_cpu"], "resumed_steps": len(after["losses"]),
            "first_half_max_abs_diff": first_half,
            "max_abs_diff_vs_uninterrupted": diff, "ok": bool(ok),
        })
    return {
        "benchmark": "gpu_check",
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python": sys.version.split()[0],
        "tf32": False,
        "steps": steps,
        "warmup_steps": warmup,
        "cpu_threads": threads,
        "loss_tolerance": LOSS_TOL,
        "cases": rows,
        "round_trips": trip_rows,
        "ok": all(r["ok"] for r in rows) and all(r["ok"] for r in trip_rows),
        "wall_s": round(time.perf_counter() - began, 1),
    }


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(result: dict[str, Any]) -> None:
    """The check as two plain-text tables."""
    print(f"{'case':<24}{'loss cuda':>11}{'loss cpu':>11}{'max|dloss|':>12}"
          f"{'cuda smp/s':>13}{'cpu smp/s':>12}  ok")
    for r in result["cases"]:
        print(f"{r['case']:<24}{_fmt(r['final_loss_cuda'], '.5f'):>11}"
              f"{_fmt(r['final_loss_cpu'], '.5f'):>11}{_fmt(r['max_abs_loss_diff'], '.2e'):>12}"
              f"{_fmt(r['samples_per_s_cuda'], ',.0f'):>13}"
              f"{_fmt(r['samples_per_s_cpu'], ',.0f'):>12}  {'yes' if r['ok'] else 'NO'}")
    print()
    print(f"{'round trip':<30}{'stop at':>8}{'ckpt on cpu':>13}{'max|dloss| after':>18}  ok")
    for r in result["round_trips"]:
        label = f"{r['case']} {r['from']}->{r['to']}"
        print(f"{label:<30}{r['stopped_at_step']:>8}{str(r['checkpoint_on_cpu']):>13}"
              f"{_fmt(r['max_abs_diff_vs_uninterrupted'], '.2e'):>18}  "
              f"{'yes' if r['ok'] else 'NO'}")
    gpu = result["gpu"] or "no GPU (CPU half only)"
    print(f"\n{gpu}; torch {result['torch']}; {result['steps']} steps; TF32 off; "
          f"{result['wall_s']} s; {'all checks passed' if result['ok'] else 'CHECKS FAILED'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON result path")
    parser.add_argument("--cpu-only", action="store_true",
                        help="run only the CPU half (no CUDA needed)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--cpu-threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--run-phase", type=Path, help=argparse.SUPPRESS)  # internal: a child
    args = parser.parse_args(argv)
    if args.run_phase:
        req = json.loads(args.run_phase.read_text())
        got = run_phase(req["phase"], steps=req["steps"], models=req["models"],
                        threads=req["threads"], workdir=Path(req["workdir"]))
        args.run_phase.with_suffix(".out.json").write_text(json.dumps(got))
        return 0
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    if args.steps < 4:
        parser.error("--steps must be at least 4 (warm-up, then a stop and a resume)")
    cuda = not args.cpu_only
    if cuda and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); this check needs "
              "one. Run with --cpu-only for the CPU half.", file=sys.stderr)
        return 2
    if cuda:
        disable_tf32()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        result = run_check(cuda=cuda, steps=args.steps, models=models,
                           threads=args.cpu_threads, workdir=Path(tmp))
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
