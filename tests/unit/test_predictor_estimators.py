"""Tests for the scikit-learn regressors: the estimator contract, log targets and intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from raysched.schedulers.predictor.estimators import LogTargetRegressor, StepTimeRegressor


@parametrize_with_checks([LogTargetRegressor(max_iter=10)])
def test_sklearn_estimator_checks(estimator, check) -> None:  # noqa: ANN001
    check(estimator)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 3, size=(n, 3))  # noqa: N806
    y = np.exp(X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 0.2, n))
    return X, y


def test_params_untouched_and_learned_attributes_end_in_underscore() -> None:
    est = StepTimeRegressor(alpha=0.2, max_iter=30)
    assert est.get_params()["alpha"] == 0.2
    assert clone(est).get_params() == est.get_params()
    X, y = _data(200)  # noqa: N806
    est.fit(X, y)
    assert est.get_params()["alpha"] == 0.2
    assert est.n_rows_ == 200 and est.calibration_rows_ == 40


def test_interval_covers_about_the_nominal_share() -> None:
    X, y = _data(1200, seed=1)  # noqa: N806
    est = LogTargetRegressor(max_iter=60, alpha=0.1).fit(X[:800], y[:800])
    lo, hi = est.predict_interval(X[800:])
    coverage = np.mean((y[800:] >= lo) & (y[800:] <= hi))
    assert 0.8 <= coverage <= 0.98
    assert np.all(lo <= est.predict(X[800:])) and np.all(est.predict(X[800:]) <= hi)


def test_validation_happens_in_fit() -> None:
    est = LogTargetRegressor(alpha=2.0)  # accepted at construction, like every sklearn estimator
    X, y = _data(50)  # noqa: N806
    with pytest.raises(ValueError, match="alpha"):
        est.fit(X, y)
    with pytest.raises(ValueError, match="non-negative"):
        LogTargetRegressor(max_iter=5).fit(X, -y)


def test_all_nan_column_is_tolerated() -> None:
    X, y = _data(100)  # noqa: N806
    X[:, 2] = np.nan
    est = LogTargetRegressor(max_iter=10).fit(X, y)
    assert np.all(np.isfinite(est.predict(X)))
