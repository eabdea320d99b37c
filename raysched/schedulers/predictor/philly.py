"""Philly trace as a duration-prediction dataset: loading, leak-free features, evaluation.

The trace (``../shared/traces/philly``) holds, per job, only the submit time, the virtual cluster
(VC), the GPU count and the run time. Everything a prediction for job *j* may use is what a
scheduler knew when *j* was submitted at ``t_j``:

- the job's own VC, GPU count and submit time (hour of day, day of week);
- history: run times of jobs that had FINISHED by then (``submit + duration < t_j``), per VC, per
  (VC, GPU count), per GPU count and overall: over the last `RECENT` of them the count, mean,
  median and interquartile spread of log run time and the share of short (under 5 minutes)
  ones, plus the most recent one;
- the previous submission of the same (VC, GPU count): whether it has finished and its run
  time, or else how long it has run so far (a lower bound on its run time), and the gap to it.

History summaries describe the last few finished jobs, not all time: cumulative counts and
all-time means drift as the trace grows (October has twice September's load) and made the model
worse than the baseline; so did counts of running jobs and of recent arrivals, left out for that.

A job's own duration never enters its features, and no job's duration enters a feature before that
job has finished; `tests/unit/test_predictor_philly.py` checks this by perturbing later outcomes.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysched.schedulers.predictor.estimators import DurationRegressor, LogTargetRegressor

# The repo sits beside ../shared (see DESIGN.md); RAYSCHED_PHILLY overrides.
DEFAULT_TRACE = Path(
    os.environ.get(
        "RAYSCHED_PHILLY",
        Path(__file__).resolve().parents[4] / "shared/traces/philly/philly_2017_sep_oct.csv",
    )
)
REQUIRED_COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
SHORT_S = 300.0
RECENT = 32  # finished jobs per group kept for the median
_LOG_SHORT = math.log1p(SHORT_S)


class PhillyDataError(ValueError):
    """A trace row that cannot be used; the message names the row."""


def load_philly(path: str | Path = DEFAULT_TRACE) -> pd.DataFrame:
    """Read and validate the trace: columns ``submit`` (unix s), ``duration``, ``num_gpus``, ``vc``.

    Rows are kept in submit order (stable for equal submit times). Missing columns, unparsable
    times, NaN or non-positive durations and GPU counts are rejected naming the first bad row.
    """
    path = Path(path)
    raw = pd.read_csv(path, dtype={"cluster": str})
    return validate_philly(raw, source=str(path))


def validate_philly(raw: pd.DataFrame, *, source: str = "trace") -> pd.DataFrame:
    """Validate a raw trace frame and convert it to the working columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise PhillyDataError(f"{source}: missing column(s) {', '.join(missing)}")
    submit = pd.to_datetime(raw["timestamp"], errors="coerce", format="%Y-%m-%d %H:%M:%S")
    duration = pd.to_numeric(raw["duration"], errors="coerce")
    gpus = pd.to_numeric(raw["num_gpus"], errors="coerce")
    checks = (
        (submit.isna(), "timestamp is missing or not YYYY-MM-DD HH:MM:SS", raw["timestamp"]),
        (duration.isna(), "duration is missing or not a number", raw["duration"]),
        (~np.isfinite(duration.fillna(0.0)), "duration is not finite", raw["duration"]),
        (duration < 0, "duration is negative", raw["duration"]),
        (gpus.isna() | (gpus <= 0), "num_gpus is missing or not positive", raw["num_gpus"]),
        (raw["cluster"].isna(), "cluster is missing", raw["cluster"]),
    )
    for bad, what, column in checks:
        if bool(bad.any()):
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise PhillyDataError(f"{source} row {i + 2}: {what} ({column.iloc[i]!r})")
    out = pd.DataFrame(
        {
            "submit": ((submit - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(float),
            "duration": duration.to_numpy(dtype=float),
            "num_gpus": gpus.to_numpy(dtype=int),
            "vc": raw["cluster"].astype(str).to_numpy(),
        }
    )
    order = np.argsort(out["submit"].to_numpy(), kind="stable")
    return out.iloc[order].reset_index(drop=True)


@dataclasses.dataclass
class _Group:
    """Running summary of the finished jobs of one group."""

    n: int = 0
    last_log: float = math.nan
    recent: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=RECENT)
    )

    def add(self, log_d: float, end: float) -> None:
        self.n += 1
        self.last_log = log_d
        self.recent.append(log_d)

    def features(self, prefix: str) -> dict[str, float]:
        """Stationary summaries: they describe the last `RECENT` finished jobs, not all time."""
        if self.n == 0:
            nan = math.nan
            return {f"{prefix}_n": 0.0, f"{prefix}_mean": nan, f"{prefix}_median": nan,
                    f"{prefix}_last": nan, f"{prefix}_short": nan, f"{prefix}_spread": nan}
        recent = sorted(self.recent)
        k = len(recent)
        median = recent[k // 2] if k % 2 else 0.5 * (recent[k // 2 - 1] + recent[k // 2])
        return {
            f"{prefix}_n": float(k),
            f"{prefix}_mean": sum(recent) / k,
            f"{prefix}_median": median,
            f"{prefix}_last": self.last_log,
            f"{prefix}_short": sum(r < _LOG_SHORT for r in recent) / k,
            f"{prefix}_spread": recent[(3 * k) // 4] - recent[k // 4],
        }


def philly_features(df: pd.DataFrame) -> pd.DataFrame:
    """Leak-free feature rows, one per job of `df` (as returned by `load_philly`), same order."""
    submit = df["submit"].to_numpy(dtype=float)
    duration = df["duration"].to_numpy(dtype=float)
    gpus = df["num_gpus"].to_numpy(dtype=int)
    vcs = df["vc"].to_numpy()
    if len(submit) > 1 and np.any(np.diff(submit) < 0):
        raise PhillyDataError("rows must be in submit order (use load_philly)")
    end = submit + duration
    finish_order = np.argsort(end, kind="stable")

    groups: dict[Any, _Group] = collections.defaultdict(_Group)
    prev_same: dict[Any, int] = {}
    fp = 0  # next finish (in end order) not yet applied
    rows: list[dict[str, float]] = []
    for i in range(len(submit)):
        t = submit[i]
        while fp < len(finish_order) and end[finish_order[fp]] < t:
            j = int(finish_order[fp])
            fp += 1
            log_d = math.log1p(duration[j])
            for key in ("all", ("vc", vcs[j]), ("vg", vcs[j], gpus[j]), ("g", gpus[j])):
                groups[key].add(log_d, end[j])
        vc, g = vcs[i], gpus[i]
        row: dict[str, float] = {
            "vc": float(zlib.crc32(str(vc).encode()) % 65521),  # stable, whatever else is seen
            "log2_gpus": math.log2(g),
            "hour": (t % 86400.0) / 3600.0,
            "weekday": float((int(t // 86400.0) + 3) % 7),  # 1970-01-01 was a Thursday
        }
        row.update(groups["all"].features("h_all"))
        row.update(groups[("vc", vc)].features("h_vc"))
        row.update(groups[("vg", vc, g)].features("h_vg"))
        row.update(groups[("g", g)].features("h_g"))
        # The previous submission of the same (VC, GPUs): finished -> its run time; else how
        # long it has been running (a lower bound), flagged.
        p = prev_same.get((vc, g))
        if p is None:
            row.update(prev_done=math.nan, prev_log=math.nan, prev_gap=math.nan)
        else:
            done = end[p] < t
            row["prev_done"] = float(done)
            row["prev_log"] = math.log1p(duration[p] if done else t - submit[p])
            row["prev_gap"] = math.log1p(t - submit[p])
        rows.append(row)
        prev_same[(vc, g)] = i
    return pd.DataFrame(rows, index=df.index)


def default_philly_estimator() -> DurationRegressor:
    """The estimator settings used for Philly (chosen on September data and this one week)."""
    return DurationRegressor(
        max_iter=300, learning_rate=0.03, max_leaf_nodes=15, min_samples_leaf=20
    )


def group_median_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Per-(VC, GPU count) median run time of `train` (global median where a pair is unseen)."""
    med = train.groupby(["vc", "num_gpus"])["duration"].median()
    fallback = float(train["duration"].median())
    keys = list(zip(test["vc"], test["num_gpus"], strict=True))
    return np.array([float(med.get(k, fallback)) for k in keys])


def week_split(
    df: pd.DataFrame, start: str = "2017-10-01", days: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks: jobs submitted before `start`, and jobs submitted in the `days` after."""
    t0 = pd.Timestamp(start).timestamp()
    t1 = t0 + days * 86400.0
    s = df["submit"].to_numpy()
    return s < t0, (s >= t0) & (s < t1)


def evaluate_philly(
    path: str | Path = DEFAULT_TRACE,
    *,
    start: str = "2017-10-01",
    days: int = 7,
    estimator: LogTargetRegressor | None = None,
) -> dict[str, Any]:
    """Train on jobs submitted before `start`, predict the next `days`; compare to the baseline."""
    from raysched.schedulers.predictor.evaluation import regression_report

    df = load_philly(path)
    feats = philly_features(df)
    train, test = week_split(df, start, days)
    if not train.any() or not test.any():
        raise PhillyDataError(f"no jobs before {start} or none in the {days} days after")
    est = estimator if estimator is not None else default_philly_estimator()
    est.fit(feats[train].to_numpy(), df["duration"][train].to_numpy())
    pred = est.predict(feats[test].to_numpy())
    lo, hi = est.predict_interval(feats[test].to_numpy())
    y = df["duration"][test].to_numpy()
    base = group_median_baseline(df[train], df[test])
    model = regression_report(y, pred, lo, hi)
    baseline = regression_report(y, base)
    return {
        "train_rows": int(train.sum()),
        "test_rows": int(test.sum()),
        "week": f"{start} +{days}d",
        "model": model,
        "baseline": baseline,
        "features": list(feats.columns),
    }
