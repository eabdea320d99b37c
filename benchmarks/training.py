"""Training throughput benchmark: one process, torchrun DDP, Ray Train, pipeline, parameter server.

Run: .venv/bin/python benchmarks/training.py [--steps N] [--repeats R] [--transformer]
     .venv/bin/python benchmarks/training.py --pipeline-only [--sweep 256:4,512:8,512:8:3:1f1b]

Every setup trains the same model (MLP on digits) on the same global batches for `warmup`
untimed steps and then `steps` timed ones, `repeats` times; samples/s are reported as the
min and median over repeats. DDP runs use 2 processes of 1 thread each (gloo); the single
process uses 1 thread. Ray's start-up cost is the time from TorchTrainer.fit() to the first
train step. The pipeline's bubble is measured per stage as 1 - compute time (forward, backward,
loss) / time inside schedule.step after the first step, next to GPipe's (S-1)/(M+S-1); the
same ratio over the whole step loop (optimizer, all-reduces, telemetry) is reported as
`loop_idle`. The bubble sweep runs the transformer with larger batches (per micro-batch compute
large next to the per-message cost) for each `batch:M[:S[:schedule]]` point (S stages, default
2; GPipe or 1F1B, default GPipe), `repeats` times, and reports medians. Next to the formula, whose
stages are equal, each point has the bubble its measured per-stage compute allows: with stage
times t_i per micro-batch, a step takes about (M+S-1) max t_i, so stage i idles
1 - M t_i / ((M+S-1) max t) (the transformer's 3 and 4 stages are unequal: embedding, blocks,
head). Figures are wall-clock on whatever host runs this (on a shared 2-core machine they are
noisy: rerun before trusting a ratio). Prints a table and writes benchmarks/results/training.json;
with --pipeline-only it runs the pipeline part only and adds its figures to that file under
`pipeline_only_run`, leaving the other keys as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ddp_loop  # noqa: E402

from raysched.jobs import parameter_server, pipeline_parallel  # noqa: E402
from raysched.jobs.base import JobContext, StepRecord  # noqa: E402
from raysched.jobs.data import global_batch  # noqa: E402
from raysched.jobs.models import build_model  # noqa: E402
from raysched.jobs.pipeline_timing import bubble_given_stage_compute  # noqa: E402
from raysched.jobs.training_loop import make_optimizer, train_step  # noqa: E402
from raysched.schedulers.spec import JobSpec  # noqa: E402

RESULTS = HERE / "results" / "training.json"


@ray.remote(num_cpus=0)
class RecordStore:
    """Collects the step records a job's reporters flush (once, at the end of the run)."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []

    def add(self, records: list[StepRecord]) -> bool:
        self.records.extend(records)
        return False

    def get(self) -> list[StepRecord]:
        return self.records


class StoreSink:
    def __init__(self, store: Any) -> None:
        self.store = store

    def __call__(self, records: list[StepRecord]) -> bool:
        return ray.get(self.store.add.remote(records))


def summarise(rates: list[float]) -> dict[str, Any]:
    return {
        "samples_per_s_min": min(rates),
        "samples_per_s_median": statistics.median(rates),
        "runs": rates,
    }


def single_process(cfg: dict[str, Any]) -> float:
    torch.set_num_threads(1)
    model = build_model(cfg["model"], cfg["seed"])
    opt = make_optimizer(model.parameters(), cfg["learning_rate"])
    batches = [
        global_batch(cfg["dataset"], s, cfg["batch_size"], cfg["seed"])
        for s in range(cfg["warmup"] + cfg["steps"])
    ]
    for x, y in batches[: cfg["warmup"]]:
        train_step(model, opt, cfg["model"], x, y)
    t0 = time.perf_counter()
    for x, y in batches[cfg["warmup"] :]:
        train_step(model, opt, cfg["model"], x, y)
    return cfg["steps"] * cfg["batch_size"] / (time.perf_counter() - t0)


def torchrun_ddp(cfg: dict[str, Any]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            str(HERE / "torchrun_ddp.py"),
            "--config",
            json.dumps(cfg),
            "--out",
            str(out),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        result = json.loads(out.read_text())
    return result["samples"] / result["timed_s"]


def ray_train(cfg: dict[str, Any]) -> tuple[float, float]:
    """(samples/s, seconds from fit() to the first train step)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = TorchTrainer(
            ddp_loop.ddp_train_loop,
            train_loop_config=cfg,
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=tmp, name="bench"),
        )
        start = time.time()
        result = trainer.fit()
    rv = result.return_value
    return rv["samples"] / rv["timed_s"], rv["first_step_at"] - start


def _job_rate(module: Any, spec: JobSpec, rank: int, warmup: int) -> tuple[float, Any]:
    """Steady-state samples/s of a raysched job from its reporters' record times."""
    store = RecordStore.remote()
    ctx = JobContext(
        job_id=f"bench-{spec.kind}",
        attempt=0,
        node_ids=(),
        node_speeds={},
        checkpoint_dir=tempfile.mkdtemp(prefix="bench-"),
        sink=StoreSink(store),
        report_every=10**9,
    )
    outcome = module.run(spec, ctx)
    times = sorted(
        r.time for r in ray.get(store.get.remote()) if r.rank == rank and r.step >= warmup - 1
    )
    ray.kill(store)
    return (len(times) - 1) * spec.batch_size / (times[-1] - times[0]), outcome


def job_spec(kind: str, cfg: dict[str, Any], workers: int = 2, **options: Any) -> JobSpec:
    return JobSpec(
        name="bench",
        kind=kind,
        model=cfg["model"],
        dataset=cfg["dataset"],
        num_workers=workers,
        cpus_per_worker=1,
        steps=cfg["warmup"] + cfg["steps"],
        batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"],
        seed=cfg["seed"],
        options=options,
    )


def pipeline_run(cfg: dict[str, Any], micro_batches: int, stages: int = 2,
                 schedule: str = "gpipe") -> dict[str, Any]:
    """One pipeline job: samples/s, bubble (inside schedule.step) and loop idle fraction."""
    spec = job_spec("pipeline_parallel", cfg, workers=stages, micro_batches=micro_batches,
                    schedule=schedule)
    rate, out = _job_rate(pipeline_parallel, spec, rank=stages - 1, warmup=cfg["warmup"])
    return {
        "samples_per_s": rate,
        "bubble": out.extra["bubble"],
        "loop_idle": out.extra["loop_idle"],
        "stage_busy_s": out.extra["stage_busy_s"],
        "stage_schedule_s": out.extra["stage_schedule_s"],
        "wall_s": out.extra["wall_s"],
    }


def bubble_summary(runs: list[dict[str, Any]], micro_batches: int, stages: int = 2,
                   schedule: str = "gpipe") -> dict[str, Any]:
    """Medians over repeats of the bubble and loop idle fraction, next to GPipe's ideal."""
    return {
        "micro_batches": micro_batches,
        "stages": stages,
        "schedule": schedule,
        "measured_median": statistics.median(r["bubble"] for r in runs),
        "loop_idle_median": statistics.median(r["loop_idle"] for r in runs),
        "samples_per_s_median": statistics.median(r["samples_per_s"] for r in runs),
        "ideal_gpipe": pipeline_parallel.ideal_bubble(stages, micro_batches),
        "ideal_given_stage_compute": statistics.median(
            bubble_given_stage_compute(r["stage_busy_s"], micro_batches)
            for r in runs),
        "runs": [r["bubble"] for r in runs],
        "loop_idle_runs": [r["loop_idle"] for r in runs],
        "stage_busy_s": [r["stage_busy_s"] for r in runs],
        "stage_schedule_s": [r["stage_schedule_s"] for r in runs],
    }


def transformer_cfg(cfg: dict[str, Any], batch_size: int) -> dict[str, Any]:
    return {**cfg, "model": "transformer", "dataset": "synthetic_text", "batch_size": batch_size}


SweepPoint = tuple[int, int, int, str]  # batch size, micro-batches, stages, schedule


def bubble_sweep(
    cfg: dict[str, Any], points: list[SweepPoint], repeats: int
) -> list[dict[str, Any]]:
    """The transformer's bubble at each sweep point, medians over `repeats` runs."""
    out = []
    for batch, micro, stages, schedule in points:
        runs = [pipeline_run(transformer_cfg(cfg, batch), micro, stages, schedule)
                for _ in range(repeats)]
        out.append({"model": "transformer", "batch_size": batch,
                    **bubble_summary(runs, micro, stages, schedule)})
    return out


def parse_pairs(text: str) -> list[SweepPoint]:
    """'256:4,512:8:3:1f1b' -> [(256, 4, 2, 'gpipe'), (512, 8, 3, '1f1b')]."""
    points = []
    for item in text.split(","):
        fields = item.split(":")
        if not 2 <= len(fields) <= 4:
            raise SystemExit(f"bad sweep point {item!r}: expected BATCH:M[:STAGES[:SCHEDULE]]")
        batch, micro = int(fields[0]), int(fields[1])
        stages = int(fields[2]) if len(fields) > 2 else 2
        schedule = fields[3].lower() if len(fields) > 3 else "gpipe"
        points.append((batch, micro, stages, schedule))
    return points


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--micro-batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--transformer",
        action="store_true",
        help="also measure the 2-stage pipeline's bubble on the transformer",
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="run only the pipeline bubble figures; add them to the JSON under pipeline_only_run",
    )
    parser.add_argument(
        "--sweep",
        default="256:4,512:4,512:8,1024:8",
        help="transformer bubble sweep as batch:M pairs ('' skips it)",
    )
    parser.add_argument("--sweep-steps", type=int, default=20, help="timed steps per sweep run")
    parser.add_argument("--ray-cpus", type=int, default=4,
                        help="CPUs of the local Ray instance (one per stage at least)")
    args = parser.parse_args()
    cfg = {
        "model": "mlp",
        "dataset": "digits",
        "batch_size": args.batch_size,
        "learning_rate": 0.05,
        "seed": 0,
        "warmup": args.warmup,
        "steps": args.steps,
    }
    pairs = parse_pairs(args.sweep) if args.sweep else []
    sweep_cfg = {**cfg, "warmup": 5, "steps": args.sweep_steps}
    load_before = load_average()

    rates: dict[str, list[float]] = {
        k: []
        for k in (
            "single_process",
            "torchrun_ddp_2",
            "ray_train_2",
            "pipeline_2stage",
            "parameter_server_2w",
        )
    }
    startup: list[float] = []
    mlp_runs: list[dict[str, Any]] = []
    if not args.pipeline_only:
        for _ in range(args.repeats):
            rates["single_process"].append(single_process(cfg))
            rates["torchrun_ddp_2"].append(torchrun_ddp(cfg))
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(ddp_loop)
    try:
        for _ in range(args.repeats):
            if not args.pipeline_only:
                rate, start_s = ray_train(cfg)
                rates["ray_train_2"].append(rate)
                startup.append(start_s)
            mlp_runs.append(pipeline_run(cfg, args.micro_batches))
            rates["pipeline_2stage"].append(mlp_runs[-1]["samples_per_s"])
            if not args.pipeline_only:
                ps = job_spec("parameter_server", cfg)
                rates["parameter_server_2w"].append(
                    _job_rate(parameter_server, ps, 0, args.warmup)[0]
                )
        transformer_bubble = None
        if args.transformer or args.pipeline_only:
            t = pipeline_run(transformer_cfg(cfg, 64), args.micro_batches)
            transformer_bubble = {
                "bubble": t["bubble"],
                "loop_idle": t["loop_idle"],
                "samples_per_s": t["samples_per_s"],
                "stage_busy_s": t["stage_busy_s"],
                "stage_schedule_s": t["stage_schedule_s"],
                "wall_s": t["wall_s"],
                "batch_size": 64,
            }
        sweep = bubble_sweep(sweep_cfg, pairs, args.repeats)
    finally:
        ray.shutdown()

    ideal = pipeline_parallel.ideal_bubble(2, args.micro_batches)
    pipeline_part = {
        "pipeline_bubble_mlp": bubble_summary(mlp_runs, args.micro_batches),
        "pipeline_bubble_transformer": transformer_bubble,
        "pipeline_bubble_sweep": sweep,
        "bubble_definition": "mean over stages of 1 - (forward+backward+loss time) / "
        "(time inside schedule.step), after the first step; loop_idle divides by the whole "
        "step loop instead (the definition before this fix)",
    }
    load_after = load_average()
    if args.pipeline_only:
        report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        report["pipeline_only_run"] = {
            "config": {
                **cfg,
                "repeats": args.repeats,
                "micro_batches": args.micro_batches,
                "sweep_warmup": sweep_cfg["warmup"],
                "sweep_steps": sweep_cfg["steps"],
                "host_cpus": os.cpu_count(),
                "ray_cpus": args.ray_cpus,
                "threads_per_process": 1,
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
            **pipeline_part,
        }
    else:
        setups = {name: summarise(r) for name, r in rates.items()}
        report = {
            "config": {
                **cfg,
                "repeats": args.repeats,
                "micro_batches": args.micro_batches,
                "host_cpus": os.cpu_count(),
                "threads_per_process": 1,
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
            "setups": setups,
            "ray_train_over_torchrun": setups["ray_train_2"]["samples_per_s_median"]
            / setups["torchrun_ddp_2"]["samples_per_s_median"],
            "ray_train_startup_s": statistics.median(startup),
            "ray_train_startup_runs_s": startup,
            **pipeline_part,
        }
        print(f"{'setup':<22}{'samples/s min':>15}{'median':>12}")
        for name, s in setups.items():
            print(f"{name:<22}{s['samples_per_s_min']:>15.0f}{s['samples_per_s_median']:>12.0f}")
        ratio = report["ray_train_over_torchrun"]
        print(f"ray_train / torchrun (medians): {ratio:.2f} (target >= 0.9)")
        print(f"ray_train start-up (fit() -> first step): {report['ray_train_startup_s']:.1f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))

    mlp = pipeline_part["pipeline_bubble_mlp"]
    print(
        f"pipeline bubble (mlp, batch {args.batch_size}, M={args.micro_batches}): "
        f"{mlp['measured_median']:.2f} measured (loop idle {mlp['loop_idle_median']:.2f}), "
        f"{ideal:.2f} ideal"
    )
    if transformer_bubble:
        print(
            f"pipeline bubble (transformer, batch 64, M={args.micro_batches}): "
            f"{transformer_bubble['bubble']:.2f} measured "
            f"(loop idle {transformer_bubble['loop_idle']:.2f}), {ideal:.2f} ideal"
        )
    for point in sweep:
        print(
            f"pipeline bubble (transformer, batch {point['batch_size']}, "
            f"M={point['micro_batches']}, S={point['stages']}, {point['schedule']}): "
            f"{point['measured_median']:.2f} median "
            f"(runs {', '.join(f'{b:.2f}' for b in point['runs'])}; loop idle "
            f"{point['loop_idle_median']:.2f}), {point['ideal_gpipe']:.2f} ideal, "
            f"{point['ideal_given_stage_compute']:.2f} given its stages' compute"
        )
    print(f"load average before {load_before}, after {load_after}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
