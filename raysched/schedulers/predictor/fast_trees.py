"""A fitted boosted-tree regressor flattened into numpy arrays, for small prediction batches.

`LogTargetRegressor.predict_log` costs about 2 ms however few rows it gets: scikit-learn
validates the input (several checks per call) and then calls one compiled routine per tree
(100 trees, each with its own OpenMP set-up). The scheduler asks about a handful of candidates
at a time, so that fixed cost is most of a decision. `FlatForest` holds the same trees as flat
arrays and walks every (row, tree) pair one level at a time with numpy, with no validation:

- same answers, bit for bit: a row goes left where ``x <= threshold``, a missing value (NaN)
  where the split's ``missing_go_to_left`` says, as scikit-learn's ``_predict_from_raw_data``
  does; leaf values are summed tree by tree onto the baseline in scikit-learn's order;
- `keys(X)` gives, per row, which side of every split threshold each used feature falls on.
  Two rows with equal keys reach the same leaf in every tree, so their predictions are equal:
  a cache keyed by it is exact (a cluster-wide feature moving within a bin changes nothing).

`FlatForest.of(regressor)` returns None where this does not apply (categorical splits, several
trees per iteration, a non-identity link); callers then use scikit-learn.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

_BROADCAST_MAX_ROWS = 16  # `keys`: above this, one searchsorted per column is faster


class FlatForest:
    """The trees of a fitted `LogTargetRegressor`, as arrays; `predict_log` like its own."""

    def __init__(self, regressor: object) -> None:
        hgb = regressor.model_  # type: ignore[attr-defined]
        n_features = int(regressor.n_features_in_)  # type: ignore[attr-defined]
        used = regressor.used_columns_  # type: ignore[attr-defined]
        columns = np.arange(n_features) if used is None else np.asarray(used, dtype=np.intp)
        trees = [it[0].nodes for it in hgb._predictors]
        sizes = np.array([len(t) for t in trees], dtype=np.intp)
        nodes = np.concatenate(trees)
        leaf = nodes["is_leaf"].astype(bool)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        base = np.repeat(first, sizes)
        own = np.arange(len(nodes), dtype=np.intp)
        feature = columns[nodes["feature_idx"].astype(np.intp)]
        go_left_if_nan = nodes["missing_go_to_left"].astype(bool)
        # The rows are read from [X with NaN as -inf | X]: a NaN goes left (-inf <= t) where the
        # split sends missing values left, and right (NaN <= t is False) elsewhere.
        self.n_features = n_features
        self.column = np.where(leaf, 0, np.where(go_left_if_nan, feature, feature + n_features))
        self.threshold = np.where(leaf, np.inf, nodes["num_threshold"])
        left = np.where(leaf, own, nodes["left"].astype(np.intp) + base)
        right = np.where(leaf, own, nodes["right"].astype(np.intp) + base)
        self.child = np.empty(2 * len(nodes), dtype=np.intp)  # [2i]: right, [2i + 1]: left
        self.child[0::2], self.child[1::2] = right, left
        self.value = nodes["value"].astype(np.float64)
        self.roots = first
        self.depth = int(nodes["depth"].max()) if len(nodes) else 0
        self.baseline = float(np.asarray(hgb._baseline_prediction).ravel()[0])
        # Per feature that some tree splits on: its distinct thresholds, sorted (for `keys`).
        split = ~leaf
        self.key_columns = np.unique(feature[split])
        self.key_thresholds = [np.unique(nodes["num_threshold"][split & (feature == c)])
                               for c in self.key_columns]
        width = max((len(t) for t in self.key_thresholds), default=0)
        self.padded_thresholds = np.full((len(self.key_columns), width), np.inf)
        for k, thresholds in enumerate(self.key_thresholds):
            self.padded_thresholds[k, :len(thresholds)] = thresholds

    @classmethod
    def of(cls, regressor: object) -> FlatForest | None:
        """The flat form of a fitted `LogTargetRegressor`, or None where it does not apply."""
        hgb = getattr(regressor, "model_", None)
        if hgb is None or getattr(hgb, "n_trees_per_iteration_", 1) != 1:
            return None
        if getattr(hgb, "is_categorical_", None) is not None and np.any(hgb.is_categorical_):
            return None
        if type(hgb._loss.link).__name__ != "IdentityLink" or not hgb._predictors:
            return None
        return cls(regressor)

    def predict_log(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The regressor's ``predict_log(X)`` for float64 rows of all `n_features` columns."""
        n = len(X)
        if n == 0:
            return np.zeros(0)
        wide = np.concatenate([np.where(np.isnan(X), -np.inf, X), X], axis=1).ravel()
        row = (np.arange(n, dtype=np.intp) * (2 * self.n_features))[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots)))
        for _ in range(self.depth):
            go_left = wide[row + self.column[node]] <= self.threshold[node]
            node = self.child[2 * node + go_left]
        terms = np.empty((n, len(self.roots) + 1))
        terms[:, 0] = self.baseline
        terms[:, 1:] = self.value[node]
        return np.cumsum(terms, axis=1)[:, -1]  # sequential, in tree order, as scikit-learn

    def keys(self, X: np.ndarray) -> list[Hashable]:  # noqa: N803
        """Per row, the interval each split feature falls in (equal keys: equal predictions).

        A feature's code is how many of its thresholds lie below the value (numpy's
        ``searchsorted``, side left), -1 for NaN. Small batches compare the values against
        every threshold at once (one padded matrix, +inf past a feature's last threshold,
        which no value exceeds), larger ones search each column: equal codes either way.
        """
        values = X[:, self.key_columns]
        if len(X) <= _BROADCAST_MAX_ROWS:
            codes = np.count_nonzero(values[:, :, None] > self.padded_thresholds, axis=2)
        else:
            codes = np.empty(values.shape, dtype=np.intp)
            for k, thresholds in enumerate(self.key_thresholds):
                codes[:, k] = thresholds.searchsorted(values[:, k])
        codes[np.isnan(values)] = -1
        return [r.tobytes() for r in codes]
