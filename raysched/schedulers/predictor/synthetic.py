"""Synthetic job telemetry from a documented generative model, for tests and timing benchmarks.

Never presented as measurements. The generative model, per job (seeded):

- a user ``u0..u{n_users-1}``; each user has a favourite model (70% of their jobs) and a personal
  speed factor ``exp(N(0, 0.15))`` (their code is a bit faster or slower);
- kind, model uniform; batch size in {16, 32, 64, 128}; steps in [20, 400]; 1-4 workers of 1-2
  CPUs; nodes of 4 or 8 CPUs with speed label 0.5 or 1.0; cluster load ``U(0, 0.8)``;
- step time = `heuristics.step_time_formula` x kind factor (data parallel 1, pipeline 1.3,
  parameter server 1.15, sweep 2) x user factor x ``exp(N(0, 0.1))``;
- run time = steps x step time + overhead ``1.5 + Exp(0.5)`` s; peak RSS = formula x 1.2 x
  ``exp(N(0, 0.05))``; Poisson arrivals every ~30 s, queueing ``Exp(20)`` s;
- with ``gpu_fraction > 0``, that share of the data-parallel jobs (the kind that can hold GPUs)
  asks for one GPU per worker and steps ``gpu_speedup`` times faster than the same CPU job
  (an assumption of this generator, not a measurement). With the default 0 no extra random
  number is drawn, so every seed gives the rows it always gave.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from raysched.schedulers.predictor import heuristics
from raysched.schedulers.spec import GPU_KINDS, KINDS, MODELS

_KIND_FACTOR = {"data_parallel": 1.0, "pipeline_parallel": 1.3, "parameter_server": 1.15,
                "sweep": 2.0}
_PARAMS = {"mlp": 42634, "cnn": 76522, "transformer": 110400}


def synthetic_jobs(
    n: int, *, seed: int = 0, n_users: int = 8, t0: float = 1.7e9, gpu_fraction: float = 0.0,
    gpu_speedup: float = 10.0,
) -> list[dict]:
    """`n` finished-job rows shaped like `TelemetryStore.list_jobs()` (without `spec`)."""
    rng = np.random.default_rng(seed)
    user_model = {f"u{i}": MODELS[i % len(MODELS)] for i in range(n_users)}
    user_factor = {u: float(np.exp(rng.normal(0, 0.15))) for u in user_model}
    submit = t0 + np.cumsum(rng.exponential(30.0, size=n))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        user = f"u{rng.integers(n_users)}"
        model = user_model[user] if rng.random() < 0.7 else MODELS[rng.integers(len(MODELS))]
        kind = KINDS[rng.integers(len(KINDS))]
        batch = int(rng.choice([16, 32, 64, 128]))
        steps = int(rng.integers(20, 401))
        workers = int(rng.integers(1, 5))
        cpw = float(rng.choice([1.0, 2.0]))
        node_cpus = [float(rng.choice([4.0, 8.0])) for _ in range(workers)]
        speeds = [float(rng.choice([0.5, 1.0])) for _ in range(workers)]
        load = float(rng.uniform(0, 0.8))
        base = heuristics.step_time_formula(
            model=np.array([model]), params=np.array([float(_PARAMS[model])]),
            batch=np.array([float(batch)]), workers=np.array([float(workers)]),
            cpus_per_worker=np.array([cpw]), speed=np.array([min(speeds)]),
            load=np.array([load]), trials=np.array([np.nan]),
        )[0]
        step = base * _KIND_FACTOR[kind] * user_factor[user] * float(np.exp(rng.normal(0, 0.1)))
        gpus = 0
        if gpu_fraction > 0 and kind in GPU_KINDS and rng.random() < gpu_fraction:
            gpus = 1
            step /= gpu_speedup
        overhead = 1.5 + float(rng.exponential(0.5))
        run = steps * step + overhead
        rss = heuristics.peak_rss_formula(
            model=np.array([model]), params=np.array([float(_PARAMS[model])]),
            batch=np.array([float(batch)]),
        )[0] * 1.2 * float(np.exp(rng.normal(0, 0.05)))
        start = float(submit[i] + rng.exponential(20.0))
        rows.append({
            "job_id": f"syn-{seed}-{i:06d}", "name": f"job{i}", "user": user, "kind": kind,
            "model": model, "dataset": "synthetic_text" if model == "transformer" else "digits",
            "num_workers": workers, "cpus_per_worker": cpw, "gpus_per_worker": gpus,
            "steps": steps,
            "batch_size": batch, "learning_rate": 0.05, "priority": 0,
            "param_count": _PARAMS[model],
            "spec_json": json.dumps({"options": {}, "gpus_per_worker": gpus}),
            "source": "synthetic", "state": "SUCCEEDED", "submit_time": float(submit[i]),
            "start_time": start, "end_time": start + run, "queue_time_s": start - submit[i],
            "run_time_s": run, "node_ids": [f"n{rng.integers(16)}" for _ in range(workers)],
            "node_cpus": node_cpus, "node_speeds": speeds, "cluster_load_at_start": load,
            "free_cpus_at_start": float(rng.integers(0, 64)), "steps_done": steps,
            "steps_per_s": 1.0 / step, "peak_rss_mb": rss, "attempts": 1, "migrations": 0,
        })
    return rows
