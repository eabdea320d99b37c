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
formula by the median ratio of observed to estimated values, per kind where it has seen that
kind, so the heuristic is "documented formula x constant fitted to the data at hand".
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
        self.rss_scale: float = 1.0
        self.overhead_s: float = DEFAULT_OVERHEAD_S
        self.n_rows: int = 0

    def calibrate(
        self, rows: pd.DataFrame, step_est: np.ndarray, rss_est: np.ndarray
    ) -> Heuristic:
        """Fit the scale constants: median observed / estimated, per kind, then overall."""
        self.n_rows = len(rows)
        if not len(rows):
            return self
        ratio = rows["step_time_s"].to_numpy(float) / step_est
        ok = np.isfinite(ratio) & (ratio > 0)
        if ok.any():
            self.step_scale["*"] = float(np.median(ratio[ok]))
            kinds = rows["kind"].to_numpy()
            for kind in KINDS:
                sel = ok & (kinds == kind)
                if sel.any():
                    self.step_scale[kind] = float(np.median(ratio[sel]))
        if "peak_rss_mb" in rows:
            rss = rows["peak_rss_mb"].to_numpy(float) / rss_est
            rss = rss[np.isfinite(rss) & (rss > 0)]
            if len(rss):
                self.rss_scale = float(np.median(rss))
        return self

    def step_time(self, kinds: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        """Calibrated step time for rows of `kinds` with uncalibrated `estimate`."""
        default = self.step_scale.get("*", 1.0)
        scale = np.array([self.step_scale.get(k, default) for k in kinds], dtype=float)
        return estimate * scale

    def peak_rss(self, estimate: np.ndarray) -> np.ndarray:
        return estimate * self.rss_scale

    def to_dict(self) -> Mapping[str, object]:
        return {"step_scale": dict(self.step_scale), "rss_scale": self.rss_scale,
                "overhead_s": self.overhead_s, "n_rows": self.n_rows}


def interval(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The heuristic's deliberately wide interval around `x`."""
    return x / INTERVAL_FACTOR, x * INTERVAL_FACTOR


def finite_or(value: float, default: float) -> float:
    """`value` unless it is None/NaN/inf, else `default`."""
    return value if value is not None and math.isfinite(value) else default
