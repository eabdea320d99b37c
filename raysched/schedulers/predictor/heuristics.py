"""Cold-start estimates used until a predictor has seen enough finished jobs.

Step time (seconds)::

    step_time = PER_STEP_S + WORK_S * param_count * samples / (cpus * speed * (1 - load / 2))
                + COMM_S * (num_workers - 1)

where ``samples`` is the batch size (times the context length for the transformer, which
processes one token per position), ``cpus = num_workers * cpus_per_worker``, ``speed`` is the
slowest node's speed label and ``load`` the mean measured load of the chosen nodes. Sweeps train
``num_trials`` models per step. ``WORK_S`` approximates the seconds per parameter-sample of a
forward and backward pass on one CPU (about 6 FLOPs at a few GFLOP/s), ``PER_STEP_S`` the Python
and optimizer cost of a step, ``COMM_S`` a gradient exchange per extra worker.

Peak memory (MiB)::

    peak_rss = BASE_RSS_MB + 16 bytes * param_count / 2**20 + ACT_MB_PER_SAMPLE * samples

(weights, gradients and two optimizer moments at 4 bytes each; activations per sample).

Given a few finished jobs (fewer than the model needs), `Heuristic.calibrate` rescales each
formula by the median ratio of observed to estimated values: per (kind, model) where it has seen
that pair, else per model, else per kind, else overall. So the heuristic is "documented formula
x constant fitted to the data at hand". The step-time interval is the spread of those ratios
around their median (5th and 95th percentiles, at least x/1.25..x*1.25) once a group has
`MIN_SPREAD_ROWS` rows, else the deliberately wide x/3..x*3.

GPU jobs (``gpus_per_worker > 0``) are calibrated apart from CPU jobs: the formula counts CPUs
only, so its ratio to a GPU job's step time has nothing to do with a CPU job's. A GPU job is
scaled by the GPU groups (``gpu:`` + kind/model, */model, kind, *), a CPU job by the CPU groups,
and neither ever by the other's. A GPU job when no GPU job has been seen at all is the one case
without a fitting group: it gets the CPU calibration as its point estimate (no better number
exists) but the heuristic does not pretend: `gpu_unseen` flags it, the cost model says so in the
prediction's ``note``, and its interval is widened to x/`GPU_UNSEEN_FACTOR` below (a GPU can be
many times faster than the CPUs) and at least x*`INTERVAL_FACTOR` above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from raysched.schedulers.spec import KINDS

PER_STEP_S = 2e-3
WORK_S = 2.5e-9
COMM_S = 5e-3
BASE_RSS_MB = 350.0
ACT_MB_PER_SAMPLE = 0.02
TEXT_CONTEXT = 32
DEFAULT_OVERHEAD_S = 2.0
INTERVAL_FACTOR = 3.0  # heuristic intervals: [x / 3, x * 3]
MIN_INTERVAL_FACTOR = 1.25  # the narrowest interval a calibrated group gets
MIN_SPREAD_ROWS = 3  # rows a group needs before its own spread replaces INTERVAL_FACTOR
GPU_PREFIX = "gpu:"  # calibration groups of GPU jobs; CPU jobs' groups carry no prefix
GPU_UNSEEN_FACTOR = 20.0  # how much faster than the CPU calibration an unseen GPU job may be


def samples_per_step(model: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Samples a step processes: tokens for the transformer, examples otherwise."""
    return np.where(np.asarray(model) == "transformer", batch * TEXT_CONTEXT, batch)


def step_time_formula(
    *,
    model: np.ndarray,
    params: np.ndarray,
    batch: np.ndarray,
    workers: np.ndarray,
    cpus_per_worker: np.ndarray,
    speed: np.ndarray,
    load: np.ndarray,
    trials: np.ndarray,
) -> np.ndarray:
    """The uncalibrated step-time formula of the module docstring, vectorised."""
    cpus = np.maximum(workers * cpus_per_worker, 1e-3)
    speed = np.where(np.isfinite(speed) & (speed > 0), speed, 1.0)
    load = np.where(np.isfinite(load), np.clip(load, 0.0, 1.0), 0.0)
    trials = np.where(np.isfinite(trials) & (trials > 0), trials, 1.0)
    params = np.where(np.isfinite(params) & (params > 0), params, 1e5)
    work = WORK_S * params * samples_per_step(model, batch) * trials
    return (
        PER_STEP_S * trials + work / (cpus * speed * (1.0 - load / 2.0))
        + COMM_S * (workers - 1)
    )


def peak_rss_formula(*, model: np.ndarray, params: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """The uncalibrated peak-memory formula of the module docstring, vectorised."""
    params = np.where(np.isfinite(params) & (params > 0), params, 1e5)
    return (
        BASE_RSS_MB + 16.0 * params / 2**20
        + ACT_MB_PER_SAMPLE * samples_per_step(model, batch)
    )


class Heuristic:
    """The formulas above, each scaled by a constant fitted to whatever rows exist."""

    def __init__(self) -> None:
        self.step_scale: dict[str, float] = {}
        # group -> (low factor, high factor) of observed / calibrated step time
        self.step_spread: dict[str, list[float]] = {}
        self.rss_scale: float = 1.0
        self.overhead_s: float = DEFAULT_OVERHEAD_S
        self.n_rows: int = 0

    def calibrate(
        self, rows: pd.DataFrame, step_est: np.ndarray, rss_est: np.ndarray
    ) -> Heuristic:
        """Fit the scales: median observed / estimated per group (kind/model, */model, kind, *),
        GPU jobs and CPU jobs apart (module docstring)."""
        self.n_rows = len(rows)
        if not len(rows):
            return self
        ratio = rows["step_time_s"].to_numpy(float) / step_est
        ok = np.isfinite(ratio) & (ratio > 0)
        gpu = _gpu_mask(rows["gpus_per_worker"].to_numpy(float) if "gpus_per_worker" in rows
                        else None, len(rows))
        if ok.any():
            kinds = rows["kind"].to_numpy().astype(str)
            models = rows["model"].to_numpy().astype(str) if "model" in rows else None
            groups: dict[str, np.ndarray] = {}
            for prefix, device in (("", ok & ~gpu), (GPU_PREFIX, ok & gpu)):
                groups[prefix + "*"] = device
                for kind in KINDS:
                    groups[prefix + kind] = device & (kinds == kind)
                    if models is not None:
                        for model in np.unique(models[groups[prefix + kind]]):
                            groups[prefix + group_key(kind, model)] = (
                                groups[prefix + kind] & (models == model))
                if models is not None:
                    for model in np.unique(models[device]):
                        groups[prefix + group_key("*", model)] = device & (models == model)
            for key, sel in groups.items():
                if sel.any():
                    self._fit_group(key, ratio[sel])
        if "peak_rss_mb" in rows:
            rss = rows["peak_rss_mb"].to_numpy(float) / rss_est
            rss = rss[np.isfinite(rss) & (rss > 0)]
            if len(rss):
                self.rss_scale = float(np.median(rss))
        return self

    def _fit_group(self, key: str, ratio: np.ndarray) -> None:
        scale = float(np.median(ratio))
        self.step_scale[key] = scale
        if len(ratio) >= MIN_SPREAD_ROWS:
            lo, hi = np.quantile(ratio / scale, [0.05, 0.95])
            self.step_spread[key] = [
                min(float(lo), 1.0 / MIN_INTERVAL_FACTOR), max(float(hi), MIN_INTERVAL_FACTOR)]

    def _group(self, kind: str, model: str | None, gpu: bool = False) -> str:
        """The most specific calibrated group for a row: kind/model, */model, kind, *, among
        the GPU groups for a GPU job (the CPU ones when no GPU job was seen: `gpu_unseen`)."""
        prefix = GPU_PREFIX if gpu and self.seen_gpu else ""
        for key in ((group_key(kind, model), group_key("*", model)) if model else ()):
            if prefix + key in self.step_scale:
                return prefix + key
        return prefix + kind if prefix + kind in self.step_scale else prefix + "*"

    @property
    def seen_gpu(self) -> bool:
        """Whether any GPU job was calibrated on (never, for heuristics saved before GPUs)."""
        return GPU_PREFIX + "*" in self.step_scale

    def gpu_unseen(self, gpus: np.ndarray | None, n: int) -> np.ndarray:
        """Rows that are GPU jobs although no GPU job was ever calibrated on."""
        if self.seen_gpu:
            return np.zeros(n, dtype=bool)
        return _gpu_mask(gpus, n)

    def step_time(self, kinds: np.ndarray, estimate: np.ndarray,
                  models: np.ndarray | None = None, gpus: np.ndarray | None = None) -> np.ndarray:
        """Calibrated step time for rows of `kinds` (and `models`, `gpus` per worker) with
        uncalibrated `estimate`."""
        return self.step_time_interval(kinds, estimate, models, gpus)[0]

    def step_time_interval(
        self, kinds: np.ndarray, estimate: np.ndarray, models: np.ndarray | None = None,
        gpus: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(step time, low, high): each row scaled by its group, interval from its spread
        (widened for `gpu_unseen` rows)."""
        scale_of = self.step_scale
        spread_of = getattr(self, "step_spread", {})  # models pickled before spreads existed
        wide = (1.0 / INTERVAL_FACTOR, INTERVAL_FACTOR)
        model_of = [None] * len(kinds) if models is None else [str(m) for m in models]
        gpu = _gpu_mask(gpus, len(kinds))
        names = [self._group(str(k), m, bool(g))
                 for k, m, g in zip(kinds, model_of, gpu, strict=True)]
        scale = np.array([scale_of.get(g, 1.0) for g in names], dtype=float)
        lo_hi = np.array([spread_of.get(g, wide) for g in names], dtype=float).reshape(-1, 2)
        step = np.asarray(estimate, dtype=float) * scale
        lo, hi = widen_unseen_gpu(step, step * lo_hi[:, 0], step * lo_hi[:, 1],
                                  self.gpu_unseen(gpus, len(kinds)))
        return step, lo, hi

    def peak_rss(self, estimate: np.ndarray) -> np.ndarray:
        return estimate * self.rss_scale

    def to_dict(self) -> Mapping[str, object]:
        return {"step_scale": dict(self.step_scale),
                "step_spread": dict(getattr(self, "step_spread", {})),
                "rss_scale": self.rss_scale, "overhead_s": self.overhead_s,
                "n_rows": self.n_rows}


def widen_unseen_gpu(
    step: np.ndarray, lo: np.ndarray, hi: np.ndarray, unseen: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) with the rows of `unseen` GPU jobs widened to at least
    [step / GPU_UNSEEN_FACTOR, step * INTERVAL_FACTOR]."""
    if not unseen.any():
        return lo, hi
    lo = np.where(unseen, np.minimum(lo, step / GPU_UNSEEN_FACTOR), lo)
    hi = np.where(unseen, np.maximum(hi, step * INTERVAL_FACTOR), hi)
    return lo, hi


def _gpu_mask(gpus: np.ndarray | None, n: int) -> np.ndarray:
    """Rows with GPUs per worker > 0 (NaN or no column: CPU jobs)."""
    if gpus is None:
        return np.zeros(n, dtype=bool)
    g = np.asarray(gpus, dtype=float)
    return np.isfinite(g) & (g > 0)


def group_key(kind: str, model: str) -> str:
    """The calibration group of one (kind, model) pair."""
    return f"{kind}/{model}"


def interval(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The heuristic's deliberately wide interval around `x`."""
    return x / INTERVAL_FACTOR, x * INTERVAL_FACTOR


def finite_or(value: float, default: float) -> float:
    """`value` unless it is None/NaN/inf, else `default`."""
    return value if value is not None and math.isfinite(value) else default
