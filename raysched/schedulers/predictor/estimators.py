"""Scikit-learn regressors for the cost model: boosted trees on log targets, conformal intervals.

`LogTargetRegressor` is the one learned building block: a HistGradientBoostingRegressor fitted to
``log(y)`` (targets are positive and spread over orders of magnitude: step times, run times,
memory), whose prediction interval comes from split-conformal calibration: the model is fitted on
the first ``1 - calibration_fraction`` of the rows (callers pass rows in time order, so the
calibration rows are the most recent ones), the signed log residuals on the rest give the
interval's quantiles (with too few rows for that tail, out-of-fold residuals of five contiguous
folds), and the model is then refitted on all rows (``refit=True``; this makes the
interval slightly optimistic, the usual cross-conformal trade for using every row).

The four targets the scheduler needs are thin subclasses that only change defaults and names:
`StepTimeRegressor`, `DurationRegressor`, `ThroughputRegressor` and `PeakMemoryRegressor`.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted, validate_data

_LOG_FLOOR = 1e-9


class LogTargetRegressor(RegressorMixin, BaseEstimator):
    """Gradient-boosted trees on ``log(y)`` with split-conformal prediction intervals.

    Parameters are stored untouched; everything is validated in `fit`. `predict` returns the
    point estimate ``exp(f(x))`` (a median-like estimate in the original units);
    `predict_interval` returns ``(lo, hi)`` covering about ``1 - alpha`` of outcomes.
    """

    def __init__(
        self,
        *,
        max_iter: int = 150,
        learning_rate: float = 0.08,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 5,
        l2_regularization: float = 1.0,
        alpha: float = 0.1,
        calibration_fraction: float = 0.2,
        min_calibration_rows: int = 8,
        refit: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.alpha = alpha
        self.calibration_fraction = calibration_fraction
        self.min_calibration_rows = min_calibration_rows
        self.refit = refit
        self.random_state = random_state

    def _new_model(self, n_rows: int) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            # A leaf may not hold more rows than a tiny data set has.
            min_samples_leaf=max(1, min(self.min_samples_leaf, n_rows // 2)),
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.random_state,
        )

    def _check_params(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ValueError(
                f"calibration_fraction must be in [0, 1), got {self.calibration_fraction!r}"
            )
        if int(self.min_calibration_rows) < 1:
            raise ValueError(f"min_calibration_rows must be >= 1, got {self.min_calibration_rows}")

    def fit(self, X, y) -> LogTargetRegressor:  # noqa: N803 (sklearn API)
        """Fit on rows `X` (in time order) and positive targets `y`."""
        self._check_params()
        X, y = validate_data(
            self, X, y, ensure_all_finite="allow-nan", dtype=np.float64, y_numeric=True
        )
        y = np.asarray(y, dtype=np.float64)
        if np.any(~np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values")
        if np.any(y < 0):
            bad = int(np.flatnonzero(y < 0)[0])
            raise ValueError(f"y must be non-negative (row {bad} is {y[bad]})")
        log_y = np.log(np.maximum(y, _LOG_FLOOR))
        # Columns that are all NaN carry nothing (and break the binner): leave them out.
        keep = ~np.all(np.isnan(X), axis=0)
        self.used_columns_ = None if keep.all() else np.flatnonzero(keep)
        if self.used_columns_ is not None:
            X = X[:, self.used_columns_]
        n = len(y)
        n_cal = int(math.floor(n * self.calibration_fraction))
        if n_cal >= int(self.min_calibration_rows) and n - n_cal >= 2:
            head = slice(0, n - n_cal)
            tail = slice(n - n_cal, n)
            first = self._new_model(n - n_cal).fit(X[head], log_y[head])
            residuals = log_y[tail] - first.predict(X[tail])
            self.calibration_rows_ = n_cal
        else:
            first = None
            residuals = np.zeros(0)
            self.calibration_rows_ = 0
        if first is None or self.refit:
            self.model_ = self._new_model(n).fit(X, log_y)
        else:
            self.model_ = first
        if len(residuals) == 0:
            residuals = self._cross_residuals(X, log_y)
        self.residual_lo_, self.residual_hi_ = _conformal_bounds(residuals, self.alpha)
        self.n_rows_ = n
        self.n_iter_ = self.model_.n_iter_
        return self

    def _cross_residuals(self, X: np.ndarray, log_y: np.ndarray) -> np.ndarray:  # noqa: N803
        """Too few rows for a held-out tail: out-of-fold residuals of 5 contiguous folds.

        Below 10 rows there is nothing to learn an interval from: a factor-of-3 band.
        """
        n = len(log_y)
        if n < 10:
            return np.array([-math.log(3.0), math.log(3.0)])
        out = np.empty(n)
        for fold in np.array_split(np.arange(n), 5):
            rest = np.setdiff1d(np.arange(n), fold)
            model = self._new_model(len(rest)).fit(X[rest], log_y[rest])
            out[fold] = log_y[fold] - model.predict(X[fold])
        return out

    def predict_log(self, X) -> np.ndarray:  # noqa: N803
        """The fitted ``log(y)`` (fast path; used by the cost model)."""
        check_is_fitted(self, "model_")
        X = validate_data(
            self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64
        )
        if self.used_columns_ is not None:
            X = X[:, self.used_columns_]
        return self.model_.predict(X)

    def predict(self, X) -> np.ndarray:  # noqa: N803
        """Point estimate in the target's units."""
        return np.exp(self.predict_log(X))

    def predict_interval(self, X) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """Lower and upper bounds covering about ``1 - alpha`` of outcomes."""
        log_pred = self.predict_log(X)
        return np.exp(log_pred + self.residual_lo_), np.exp(log_pred + self.residual_hi_)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.positive_only = True
        return tags


def _conformal_bounds(residuals: np.ndarray, alpha: float) -> tuple[float, float]:
    """Finite-sample split-conformal quantiles of signed residuals for a central interval."""
    r = np.sort(np.asarray(residuals, dtype=np.float64))
    n = len(r)
    if n == 0:
        return 0.0, 0.0
    half = alpha / 2.0
    k_hi = min(n - 1, int(math.ceil((n + 1) * (1.0 - half))) - 1)
    k_lo = max(0, int(math.floor((n + 1) * half)) - 1)
    return float(min(r[k_lo], 0.0)), float(max(r[k_hi], 0.0))


class StepTimeRegressor(LogTargetRegressor):
    """Seconds per training step of a job on a given placement."""


class DurationRegressor(LogTargetRegressor):
    """Wall-clock run time of a whole job (start to end), seconds."""


class ThroughputRegressor(LogTargetRegressor):
    """Training samples per second of a job on a given placement."""


class PeakMemoryRegressor(LogTargetRegressor):
    """Peak resident memory of a job's worker, MiB."""
