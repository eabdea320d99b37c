"""Seeded mixed workloads for the live benchmark and the demo: generate, run, summarise."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

# Job templates: kinds and sizes differ so that durations differ by an order of magnitude.
TEMPLATES: tuple[dict[str, Any], ...] = (
    {"kind": "data_parallel", "model": "cnn", "num_workers": 1, "steps": 60, "batch_size": 64},
    {"kind": "data_parallel", "model": "cnn", "num_workers": 2, "steps": 120, "batch_size": 128},
    {"kind": "data_parallel", "model": "mlp", "num_workers": 1, "steps": 300, "batch_size": 512},
    {"kind": "pipeline_parallel", "model": "mlp", "num_workers": 2, "steps": 200,
     "batch_size": 512, "options": {"stages": 2, "micro_batches": 4}},
    {"kind": "parameter_server", "model": "mlp", "num_workers": 2, "steps": 150,
     "batch_size": 512, "options": {"num_servers": 1, "mode": "sync"}},
    {"kind": "data_parallel", "model": "cnn", "num_workers": 1, "steps": 300, "batch_size": 64},
)


# Every job kind: TEMPLATES plus a two-trial learning-rate sweep (the live benchmark's mix).
ALL_KINDS_TEMPLATES: tuple[dict[str, Any], ...] = (
    *TEMPLATES,
    {"kind": "sweep", "model": "mlp", "num_workers": 2, "steps": 150, "batch_size": 256,
     "options": {"num_trials": 2}},
)


# Heavy-tailed sizes, as production traces have (most jobs short, a few long): 8 short templates
# (start-up dominates them) and 2 long ones (800-3000 steps), so one long job in front of
# the queue delays many short ones under FIFO, and where a long job runs matters.
HEAVY_TAILED_TEMPLATES: tuple[dict[str, Any], ...] = (
    {"kind": "data_parallel", "model": "cnn", "num_workers": 1, "steps": 60, "batch_size": 64},
    {"kind": "data_parallel", "model": "cnn", "num_workers": 1, "steps": 60, "batch_size": 64},
    {"kind": "data_parallel", "model": "mlp", "num_workers": 1, "steps": 150, "batch_size": 512},
    {"kind": "data_parallel", "model": "mlp", "num_workers": 1, "steps": 150, "batch_size": 512},
    {"kind": "data_parallel", "model": "cnn", "num_workers": 2, "steps": 60, "batch_size": 128},
    {"kind": "parameter_server", "model": "mlp", "num_workers": 2, "steps": 100,
     "batch_size": 512, "options": {"num_servers": 1, "mode": "sync"}},
    {"kind": "pipeline_parallel", "model": "mlp", "num_workers": 2, "steps": 100,
     "batch_size": 512, "options": {"stages": 2, "micro_batches": 4}},
    {"kind": "sweep", "model": "mlp", "num_workers": 2, "steps": 100, "batch_size": 256,
     "options": {"num_trials": 2}},
    {"kind": "data_parallel", "model": "cnn", "num_workers": 1, "steps": 3000, "batch_size": 64},
    {"kind": "data_parallel", "model": "cnn", "num_workers": 2, "steps": 800,
     "batch_size": 128},
)

WORKLOADS: dict[str, tuple[dict[str, Any], ...]] = {
    "mixed": ALL_KINDS_TEMPLATES, "heavy_tailed": HEAVY_TAILED_TEMPLATES}


def workload(
    n: int, seed: int, mean_gap_s: float,
    templates: tuple[dict[str, Any], ...] = TEMPLATES,
) -> list[tuple[float, dict[str, Any]]]:
    """(arrival offset, spec) pairs: seeded template choice and exponential inter-arrivals."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        template = rng.choice(templates)
        spec = {"name": f"w{seed}-{i:02d}-{template['kind'][:4]}", "cpus_per_worker": 1,
                "learning_rate": 0.05, "user": rng.choice(["ann", "bo", "cy"]),
                "priority": rng.choice([0, 0, 0, 1]), "seed": i, "checkpoint_every": 10,
                **template}
        out.append((t, spec))
        t += rng.expovariate(1.0 / mean_gap_s)
    return out


def run_workload(client: Any, jobs: list[tuple[float, dict[str, Any]]], *, slow: Any = None,
                 timeout_s: float = 3600) -> list[str]:
    """Submit at the arrival offsets, call `slow(elapsed)` each second, wait for all to end."""
    began = time.monotonic()
    ids: list[str] = []
    pending = list(jobs)
    while pending:
        now = time.monotonic() - began
        while pending and pending[0][0] <= now:
            ids.append(client.submit(pending.pop(0)[1], source="benchmark"))
        if slow:
            slow(now)
        time.sleep(0.5)
    while True:
        rows = {r["job_id"]: r for r in client.status()}
        if all(rows[j]["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for j in ids):
            return ids
        if slow:
            slow(time.monotonic() - began)
        if time.monotonic() - began > timeout_s:
            raise TimeoutError("the workload did not finish")
        time.sleep(1.0)


def summarise(store_path: Path, ids: list[str]) -> dict[str, float]:
    from raysched.platform.telemetry import TelemetryStore

    store = TelemetryStore(store_path)
    rows = [store.get_job(j) for j in ids]
    jct = sorted(r["end_time"] - r["submit_time"] for r in rows)
    return {
        "avg_jct_s": statistics.fmean(jct),
        "p95_jct_s": jct[min(len(jct) - 1, int(round(0.95 * (len(jct) - 1))))],
        "makespan_s": max(r["end_time"] for r in rows) - min(r["submit_time"] for r in rows),
        "avg_queue_s": statistics.fmean(r["queue_time_s"] or 0.0 for r in rows),
        "migrations": sum(r["migrations"] for r in rows),
        "drains": sum(d["action"] == "drain" for d in store.decisions("-")),
        "failed": sum(r["state"] != "SUCCEEDED" for r in rows),
        "jobs": len(rows),
    }


def true_step_profile(store_path: Path) -> dict[str, float]:
    """Per job template: median step time at speed 1.0, measured in the warm-up (the oracle)."""
    from raysched.platform.telemetry import TelemetryStore

    store = TelemetryStore(store_path)
    by_key: dict[str, list[float]] = {}
    for row in store.list_jobs():
        if row["state"] != "SUCCEEDED" or not row["node_speeds"]:
            continue
        speed = min(row["node_speeds"])
        times = [s["step_time_s"] for s in store.steps(row["job_id"])]
        if times:
            by_key.setdefault(template_key(row["spec"]), []).append(
                statistics.median(times) * speed)
    return {k: statistics.median(v) for k, v in by_key.items()}


def template_key(spec: Any) -> str:
    return f"{spec.kind}/{spec.model}/{spec.num_workers}/{spec.batch_size}"


def check_warmup_store(store_path: Path, jobs: list[tuple[float, dict[str, Any]]]) -> int:
    """Check that an earlier run's warm-up store ran exactly `jobs`; return how many succeeded.

    Reusing a warm-up (its telemetry trains the cost model and gives the oracle its step
    times) is only fair when it is the warm-up this run would have run: the same job specs
    (name, kind, model, size), and every one of them ended. Raises ValueError naming the
    first difference.
    """
    from raysched.platform.telemetry import TelemetryStore

    if not Path(store_path).is_file():
        raise ValueError(f"warm-up store {store_path} does not exist")
    rows = TelemetryStore(store_path).list_jobs()
    stored = {r["spec"].name: r for r in rows}
    for _, spec in jobs:
        row = stored.pop(spec["name"], None)
        if row is None:
            raise ValueError(f"warm-up store {store_path} has no job named {spec['name']!r}: "
                             "it was made by another workload, seed or --warmup-jobs")
        have = row["spec"]
        for field in ("kind", "model", "num_workers", "steps", "batch_size"):
            if getattr(have, field) != spec[field]:
                raise ValueError(f"warm-up store {store_path}: job {spec['name']!r} has "
                                 f"{field}={getattr(have, field)!r}, this workload "
                                 f"{spec[field]!r}")
        if row["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            raise ValueError(f"warm-up store {store_path}: job {spec['name']!r} is "
                             f"{row['state']}, not ended (an interrupted warm-up)")
    if stored:
        raise ValueError(f"warm-up store {store_path} has {len(stored)} jobs beyond this "
                         f"warm-up (first: {next(iter(stored))!r})")
    return sum(r["state"] == "SUCCEEDED" for r in rows)
