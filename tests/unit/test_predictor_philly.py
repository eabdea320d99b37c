"""Tests for the Philly trace features: validation and no use of unfinished jobs' outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysched.schedulers.predictor.philly import (
    DEFAULT_TRACE,
    PhillyDataError,
    group_median_baseline,
    philly_features,
    validate_philly,
    week_split,
)


def _raw(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2017-09-20")
    times = t0 + pd.to_timedelta(np.sort(rng.uniform(0, 20 * 86400, n)), unit="s")
    gpus = rng.choice([1, 2, 4, 8], size=n)
    vc = rng.choice(["aa11", "bb22", "cc33"], size=n)
    duration = np.exp(rng.normal(7, 1.5, n)).round()
    return pd.DataFrame({
        "timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "duration": duration,
        "num_gpus": gpus, "gpu_time": duration * gpus, "cluster": vc,
    })


def test_features_never_use_outcomes_of_jobs_unfinished_at_submit() -> None:
    df = validate_philly(_raw())
    base = philly_features(df)
    k = 200
    t_k = df["submit"].iloc[k]
    changed = df.copy()
    # Jobs submitted from k on get other durations; so do earlier jobs still running at t_k.
    later = changed["submit"] >= t_k
    running = (changed["submit"] < t_k) & (changed["submit"] + changed["duration"] >= t_k)
    changed.loc[later, "duration"] *= 3.0
    changed.loc[running, "duration"] += 1e6  # still unfinished at t_k either way
    other = philly_features(changed)
    pd.testing.assert_frame_equal(base.iloc[: k + 1], other.iloc[: k + 1])
    assert not base.iloc[k + 1 :].equals(other.iloc[k + 1 :])


def test_running_previous_job_contributes_only_its_elapsed_time() -> None:
    raw = pd.DataFrame({
        "timestamp": ["2017-10-01 00:00:00", "2017-10-01 01:00:00"], "duration": [7200.0, 5.0],
        "num_gpus": [1, 1], "gpu_time": [7200.0, 5.0], "cluster": ["v", "v"],
    })
    feats = philly_features(validate_philly(raw))
    assert feats["prev_done"].iloc[1] == 0.0
    assert feats["prev_log"].iloc[1] == pytest.approx(np.log1p(3600.0))
    assert np.isnan(feats["h_vc_median"].iloc[1])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("duration", -3.0, r"row 7: duration is negative \(-3.0\)"),
        ("duration", np.nan, r"row 7: duration is missing"),
        ("num_gpus", 0, r"row 7: num_gpus is missing or not positive"),
        ("timestamp", "yesterday", r"row 7: timestamp"),
    ],
)
def test_bad_trace_rows_are_rejected(column: str, value: object, message: str) -> None:
    raw = _raw(10)
    raw[column] = raw[column].astype(object)
    raw.loc[5, column] = value
    with pytest.raises(PhillyDataError, match=message):
        validate_philly(raw)


def test_truncated_trace_is_rejected() -> None:
    with pytest.raises(PhillyDataError, match="missing column"):
        validate_philly(_raw(5).drop(columns=["cluster"]))


def test_baseline_and_split() -> None:
    df = validate_philly(_raw())
    train, test = week_split(df, "2017-10-01", 7)
    assert train.any() and test.any() and not (train & test).any()
    pred = group_median_baseline(df[train], df[test])
    assert pred.shape == (int(test.sum()),) and np.all(pred > 0)


@pytest.mark.skipif(not DEFAULT_TRACE.exists(), reason="Philly trace not present")
def test_real_trace_loads_in_submit_order() -> None:
    from raysched.schedulers.predictor.philly import load_philly

    df = load_philly()
    assert len(df) == 52849
    assert np.all(np.diff(df["submit"].to_numpy()) >= 0)
