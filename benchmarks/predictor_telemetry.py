"""Real platform telemetry without Ray: short seeded torch training jobs run in this process.

Used by `benchmarks/predictor.py` when no live telemetry store exists. Each job really trains one
of the repo's models (`raysched.jobs.models`) on its data (`raysched.jobs.data.global_batch`)
for its steps, and the store records what was measured:

- "CPUs": ``torch.set_num_threads(cpus_per_worker)``; "workers": the global batch is split into
  ``num_workers`` shards processed one after another with gradients accumulated (an in-process
  stand-in for data parallelism: same arithmetic, no communication); sweeps train
  ``num_trials`` models per step;
- node speed: an emulated label (0.5 or 1.0) honoured with `raysched.jobs.base.stretch_for_speed`,
  as a labelled node does on the one-machine cluster (emulated, not hardware heterogeneity);
- background load: with probability one half a thread multiplies matrices with a duty cycle
  ``U(0.2, 0.8)`` while the job runs; the duty cycle is stored as ``cluster_load_at_start``;
- ``peak_rss_mb``: the process's resident memory when the job ends (the lifetime peak of a
  long-lived process would only ever grow);
- ``run_time_s``: model build, data and all steps; ``steps_per_s``: steps over stepping time;
- a job still running after `JOB_CAP_S` is stopped and stored as FAILED (the machine is shared:
  this bounds the generation time); only SUCCEEDED jobs become training rows.

Run the generating process with ``OMP_WAIT_POLICY=PASSIVE`` (`benchmarks/predictor.py` sets it):
spinning OpenMP threads make two-thread steps many times slower on a busy machine.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np

MAX_S_DEFAULT = 170.0
JOB_CAP_S = 8.0  # a job still stepping after this long is stopped and recorded as FAILED


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import resource

    return pages * resource.getpagesize() / 2**20


class _Background:
    """A thread that keeps a CPU busy `duty` of the time with matrix products."""

    def __init__(self, duty: float, seed: int) -> None:
        self.duty = duty
        self._stop = threading.Event()
        rng = np.random.default_rng(seed)
        self._a = rng.random(200_000)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.02 * self.duty:
                self._a = np.sin(self._a) + 0.5  # elementwise: one thread, no BLAS pool
            time.sleep(0.02 * (1.0 - self.duty))

    def __enter__(self) -> _Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def generate(path: str | Path, *, n_jobs: int = 90, seed: int = 0,
             max_s: float = MAX_S_DEFAULT) -> int:
    """Run up to `n_jobs` jobs (stopping after `max_s` seconds); returns how many succeeded."""
    import torch

    from raysched.jobs.base import stretch_for_speed
    from raysched.jobs.data import global_batch
    from raysched.jobs.models import build_model, loss_fn, parameter_count
    from raysched.platform.telemetry import TelemetryStore
    from raysched.schedulers.spec import JobSpec
    from raysched.schedulers.types import JobState

    store = TelemetryStore(path)
    rng = np.random.default_rng(seed)
    steps_range = {"mlp": (30, 200), "cnn": (8, 50), "transformer": (3, 15)}
    users = [f"user{i}" for i in range(6)]
    favourite = {u: ("mlp", "cnn", "transformer")[i % 3] for i, u in enumerate(users)}
    nodes = {"node-a": (4.0, 1.0), "node-b": (4.0, 0.5), "node-c": (2.0, 1.0)}
    cluster_cpus = sum(c for c, _ in nodes.values())
    t_begin = time.monotonic()
    done = 0
    old_threads = torch.get_num_threads()
    try:
        for i in range(n_jobs):
            if time.monotonic() - t_begin > max_s:
                break
            user = users[int(rng.integers(len(users)))]
            model_name = favourite[user] if rng.random() < 0.6 else \
                ("mlp", "cnn", "transformer")[int(rng.integers(3))]
            kind = ("data_parallel", "parameter_server", "pipeline_parallel", "sweep")[
                int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15]))]
            workers = int(rng.integers(1, 3)) if kind != "sweep" else 1
            cpw = float(rng.choice([1, 2]))
            batch = int(rng.choice([16, 32, 64, 128]))
            lo, hi = steps_range[model_name]
            steps = int(rng.integers(lo, hi + 1))
            options = {"num_trials": int(rng.integers(2, 4))} if kind == "sweep" else {}
            trials = options.get("num_trials", 1)
            node_id = list(nodes)[int(rng.integers(len(nodes)))]
            node_cpus, speed = nodes[node_id]
            duty = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.5 else 0.0
            dataset = "synthetic_text" if model_name == "transformer" else "digits"
            spec = JobSpec(name=f"bench-{i}", kind=kind, model=model_name, dataset=dataset,
                           num_workers=workers, cpus_per_worker=cpw, steps=steps,
                           batch_size=batch, user=user, seed=i, options=options)
            job_id = f"bench-{seed}-{i:04d}"
            store.add_job(job_id, spec, submit_time=time.time(), source="benchmark",
                          param_count=parameter_count(build_model(model_name)))
            store.transition(
                job_id, JobState.PLACED, "benchmark placement", node_ids=[node_id] * workers,
                node_cpus=[node_cpus] * workers, node_speeds=[speed] * workers,
                cluster_load_at_start=duty,
                free_cpus_at_start=max(cluster_cpus - cpw * workers, 0.0),
            )
            start = time.time()
            store.transition(job_id, JobState.RUNNING, "benchmark start", start_time=start)
            torch.set_num_threads(int(cpw))
            with _Background(duty, seed * 1000 + i) if duty else contextlib.nullcontext():
                models = [build_model(model_name, seed=i + k) for k in range(trials)]
                opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in models]
                stepping = 0.0
                loss = torch.tensor(0.0)
                steps_done = 0
                for step in range(steps):
                    if time.time() - start > JOB_CAP_S:
                        break
                    x, y = global_batch(dataset, step, batch, i)
                    t0 = time.perf_counter()
                    for m, opt in zip(models, opts, strict=True):
                        opt.zero_grad()
                        for xs, ys in zip(x.chunk(workers), y.chunk(workers), strict=True):
                            loss = loss_fn(model_name, m(xs), ys) / workers
                            loss.backward()
                        opt.step()
                    stepping += stretch_for_speed(time.perf_counter() - t0, speed)
                    steps_done += 1
                rss = _rss_mb()
            end = time.time()
            finished = steps_done == steps
            store.transition(
                job_id, JobState.SUCCEEDED if finished else JobState.FAILED,
                "benchmark done" if finished else "benchmark time cap", end_time=end,
                run_time_s=end - start, queue_time_s=start - store.get_job(job_id)["submit_time"],
                steps_done=steps_done, steps_per_s=steps_done / max(stepping, 1e-9),
                final_loss=float(loss.detach()), peak_rss_mb=rss, attempts=1,
                error=None if finished else f"stopped after {JOB_CAP_S} s (benchmark cap)",
            )
            done += finished
    finally:
        torch.set_num_threads(old_threads)
        store.close()
    return done

