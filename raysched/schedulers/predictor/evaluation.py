"""Evaluation of duration predictions: metrics, naive baselines and a time-ordered split.

Metrics: MAE (seconds), MAPE, Spearman rank correlation (what ordering by expected run time
needs) and, where an interval is given, its empirical coverage. Baselines a learned model must
beat: the global median, the per-kind median and the last value of the same user and model
(falling back to the per-kind median, then the global median), all fitted on the past only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def regression_report(
    y: np.ndarray, pred: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
) -> dict[str, float]:
    """MAE, MAPE, Spearman and (with `lo`/`hi`) interval coverage of `pred` against `y`."""
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if y.shape != pred.shape or len(y) == 0:
        raise ValueError(f"need matching non-empty arrays, got {y.shape} and {pred.shape}")
    if np.all(pred == pred[0]) or np.all(y == y[0]):
        rho = 0.0  # a constant ranks nothing
    else:
        rho = float(spearmanr(pred, y).statistic)
    out = {
        "n": int(len(y)),
        "mae_s": float(np.mean(np.abs(pred - y))),
        "mape": float(np.mean(np.abs(pred - y) / np.maximum(np.abs(y), 1e-9))),
        "spearman": rho,
    }
    if lo is not None and hi is not None:
        lo = np.asarray(lo, dtype=float)
        hi = np.asarray(hi, dtype=float)
        out["interval_coverage"] = float(np.mean((y >= lo) & (y <= hi)))
        out["interval_width_ratio"] = float(np.median(hi / np.maximum(lo, 1e-12)))
    return out


def time_ordered_split(
    times: Sequence[float] | np.ndarray, test_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, test): the last `test_fraction` of rows by time are the test set."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    t = np.asarray(times, dtype=float)
    order = np.argsort(t, kind="stable")
    n_test = max(1, int(round(len(t) * test_fraction)))
    if n_test >= len(t):
        raise ValueError(f"{len(t)} rows are too few to split")
    return order[:-n_test], order[-n_test:]


def naive_baselines(
    train: pd.DataFrame, test: pd.DataFrame, target: str = "run_time_s"
) -> dict[str, np.ndarray]:
    """Predictions of the naive baselines for `test`, fitted on `train` (both time-ordered).

    ``last_user_model`` uses the most recent job of the same user and model that finished
    before the test job was submitted (train and already finished test jobs both count).
    """
    y_train = train[target].to_numpy(dtype=float)
    global_median = float(np.median(y_train))
    kind_median = train.groupby("kind")[target].median()
    per_kind = np.array([float(kind_median.get(k, global_median)) for k in test["kind"]])
    history = pd.concat([train, test])[["user", "model", "end_time", target]]
    history = history.sort_values("end_time", kind="stable")
    last = np.empty(len(test))
    by_key = {k: g for k, g in history.groupby(["user", "model"], sort=False)}
    for i, (user, model, submit) in enumerate(
        zip(test["user"], test["model"], test["submit_time"], strict=True)
    ):
        g = by_key.get((user, model))
        value = math.nan
        if g is not None:
            done = g[g["end_time"].to_numpy() < submit]
            if len(done):
                value = float(done[target].iloc[-1])
        last[i] = per_kind[i] if math.isnan(value) else value
    return {
        "global_median": np.full(len(test), global_median),
        "per_kind_median": per_kind,
        "last_user_model": last,
    }


def format_table(rows: dict[str, dict[str, Any]], title: str = "") -> str:
    """A plain-text table of metric dicts, one line per named predictor."""
    cols = ("n", "mae_s", "mape", "spearman", "interval_coverage")
    lines = [title] if title else []
    lines.append(f"{'predictor':<22}" + "".join(f"{c:>18}" for c in cols))
    for name, metrics in rows.items():
        cells = []
        for c in cols:
            v = metrics.get(c)
            cells.append(f"{'-':>18}" if v is None else f"{v:>18.4g}")
        lines.append(f"{name:<22}" + "".join(cells))
    return "\n".join(lines)


def score_cost_model(model: Any, test: pd.DataFrame) -> dict[str, float]:
    """Run-time metrics of a fitted `CostModel` on finished jobs `test` (validated rows).

    Features use the model's own history (jobs it was trained on), as they would live.
    """
    from raysched.schedulers.predictor.features import build_features

    X = build_features(test, history=model.history_, param_counts=model.param_counts_)  # noqa: N806
    pred = model.predict_matrix(
        X,
        steps_left=test["steps_done"].to_numpy(float),
        batch=test["batch_size"].to_numpy(float),
        overhead=np.array([model._overhead(k) for k in test["kind"]]),
    )
    y = test["run_time_s"].to_numpy(float)
    out = regression_report(y, pred.duration_s, pred.duration_lo_s, pred.duration_hi_s)
    out["mae_log"] = float(np.mean(np.abs(np.log(pred.duration_s) - np.log(np.maximum(y, 1e-9)))))
    out["source"] = pred.source
    return out


def evaluate_platform(
    frame: pd.DataFrame,
    *,
    test_fraction: float = 0.25,
    node_samples: pd.DataFrame | None = None,
    cost_model_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time-ordered evaluation on validated job rows: the cost model against naive baselines.

    The newest `test_fraction` of the successful jobs (by submit time) are the test set; the
    model and the baselines learn only from jobs submitted before the first of them.
    """
    from raysched.schedulers.predictor.cost_model import CostModel
    from raysched.schedulers.predictor.features import training_rows

    rows = training_rows(frame)
    train_idx, test_idx = time_ordered_split(rows["submit_time"].to_numpy(float), test_fraction)
    test = rows.iloc[np.sort(test_idx)].reset_index(drop=True)
    cut = float(test["submit_time"].min())
    past = frame[frame["submit_time"] < cut]
    train = training_rows(past)
    model = CostModel(**(cost_model_params or {})).fit(past, node_samples)
    results: dict[str, dict[str, Any]] = {"cost_model": score_cost_model(model, test)}
    y = test["run_time_s"].to_numpy(float)
    for name, pred in naive_baselines(train, test).items():
        results[name] = regression_report(y, pred)
    return {"train_rows": len(train), "test_rows": len(test), "results": results}
