"""Predictor versions: retrain every K finished jobs, evaluate on the newest, promote if no worse.

A version is a fitted `CostModel` saved with skops (never pickle) under ``model_dir``, recorded in
the telemetry store's ``models`` table with the rows it was trained on, its metrics and the file's
sha256. Loading checks both: the file's sha256 must match the store's record, and the file may
hold no type outside `TRUSTED_TYPES`; otherwise `ModelIntegrityError` is raised and nothing from
the file is executed.

Promotion: the candidate is fitted on all but the most recent ``holdout_fraction`` of the
finished jobs (time order by submit time) and scored on those; the promoted model is scored on
the same rows. The candidate (refitted on every row) is promoted when its mean absolute log
error of the run time is no worse than the promoted one's times ``1 + tolerance``.

Feature lists: a saved model carries the names of the features it was trained on (``features_``;
one saved before GPU features existed has none and was trained on `features.FEATURES_V1`). It
keeps predicting on those columns after the feature list grows; one that names a feature this
version cannot build raises `IncompatibleModelError` on load, asking for a retrain. Stored files
and records are never rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import skops.io as sio

from raysched.platform.telemetry import TelemetryStore
from raysched.schedulers.predictor.cost_model import TARGET, CostModel, IncompatibleModelError
from raysched.schedulers.predictor.evaluation import score_cost_model
from raysched.schedulers.predictor.features import training_rows, validate_jobs
from raysched.schedulers.types import JobState

# Every non-builtin type a saved CostModel may contain. skops refuses anything else.
TRUSTED_TYPES: tuple[str, ...] = (
    "raysched.schedulers.predictor.cost_model.CostModel",
    "raysched.schedulers.predictor.estimators.StepTimeRegressor",
    "raysched.schedulers.predictor.estimators.PeakMemoryRegressor",
    "raysched.schedulers.predictor.estimators.DurationRegressor",
    "raysched.schedulers.predictor.estimators.ThroughputRegressor",
    "raysched.schedulers.predictor.estimators.LogTargetRegressor",
    "raysched.schedulers.predictor.features.History",
    "raysched.schedulers.predictor.heuristics.Heuristic",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfSquaredError",
    "numpy.float64",
    "numpy.int64",
    "numpy.intp",
    "numpy.dtype",
    "numpy.ndarray",
    "builtins.slice",
    "builtins.float",
)


class ModelIntegrityError(RuntimeError):
    """A saved model file that is missing, altered, or holds types we do not trust."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainResult:
    """The outcome of one retraining round."""

    version: int
    n_rows: int
    promoted: bool
    metrics: dict[str, Any]
    path: str


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_model(model: CostModel) -> bytes:
    """Serialise a fitted CostModel with skops."""
    return sio.dumps(model)


def load_model_bytes(data: bytes, *, expected_sha256: str | None = None) -> CostModel:
    """Load a CostModel from skops bytes after checking the hash and the list of types."""
    if expected_sha256 is not None:
        actual = sha256_of(data)
        if actual != expected_sha256:
            raise ModelIntegrityError(
                f"model file sha256 {actual} does not match the store's {expected_sha256}: "
                "refusing to load a modified file"
            )
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not our file"
        raise ModelIntegrityError(f"model file is not a readable skops file: {exc}") from exc
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise ModelIntegrityError(
            f"model file holds types outside the trusted list: {', '.join(unknown)}"
        )
    model = sio.loads(data, trusted=list(TRUSTED_TYPES))
    if not isinstance(model, CostModel):
        raise ModelIntegrityError(f"model file holds a {type(model).__name__}, not a CostModel")
    return model


class ModelRegistry:
    """Trains, versions, promotes and loads cost models kept in a telemetry store."""

    def __init__(
        self,
        store: TelemetryStore,
        model_dir: str | Path | None = None,
        *,
        retrain_every: int = 20,
        holdout_fraction: float = 0.2,
        min_holdout: int = 5,
        tolerance: float = 0.0,
        cost_model_params: dict[str, Any] | None = None,
    ) -> None:
        if retrain_every < 1:
            raise ValueError(f"retrain_every must be >= 1, got {retrain_every}")
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        self.store = store
        self.model_dir = Path(model_dir) if model_dir else store.path.parent / "models"
        self.retrain_every = retrain_every
        self.holdout_fraction = holdout_fraction
        self.min_holdout = min_holdout
        self.tolerance = tolerance
        self.cost_model_params = dict(cost_model_params or {})

    # -- data -------------------------------------------------------------------------------

    def finished_jobs(self) -> pd.DataFrame:
        """Validated finished jobs of the store, in submit order."""
        rows = self.store.list_jobs(
            states=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]
        )
        return validate_jobs(rows)

    def node_samples(self) -> pd.DataFrame:
        return pd.DataFrame(self.store.table("node_samples"))

    # -- training ---------------------------------------------------------------------------

    def due(self) -> bool:
        """True when `retrain_every` jobs have finished since the last version was trained."""
        n = len(training_rows(self.finished_jobs()))
        versions = self.store.model_versions(TARGET)
        last = versions[-1]["n_rows"] if versions else 0
        return n - last >= self.retrain_every

    def maybe_retrain(self) -> TrainResult | None:
        """Retrain when due; None otherwise."""
        return self.train() if self.due() else None

    def train(self) -> TrainResult:
        """Train a version on everything, evaluate it on the newest jobs, promote if no worse."""
        frame = self.finished_jobs()
        samples = self.node_samples()
        rows = training_rows(frame)
        n_test = max(self.min_holdout, int(math.ceil(len(rows) * self.holdout_fraction)))
        metrics: dict[str, Any] = {"n_rows": len(rows)}
        promoted_metrics: dict[str, Any] | None = None
        if len(rows) > n_test:
            cut = rows["submit_time"].iloc[len(rows) - n_test]
            past = frame[frame["submit_time"] < cut]
            test = rows.iloc[len(rows) - n_test :]
            candidate = CostModel(**self.cost_model_params).fit(past, samples)
            metrics["holdout"] = score_cost_model(candidate, test)
            metrics["holdout_rows"] = len(test)
            current = self.load_promoted()
            if current is not None:
                promoted_metrics = score_cost_model(current, test)
                metrics["promoted_on_holdout"] = promoted_metrics
        model = CostModel(**self.cost_model_params).fit(frame, samples)
        metrics["source"] = model.source
        promote = self._better(metrics.get("holdout"), promoted_metrics)
        data = dump_model(model)
        digest = sha256_of(data)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        path = self.model_dir / f"{TARGET}-{digest[:16]}.skops"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        version = self.store.add_model_version(
            target=TARGET, n_rows=len(rows), metrics=metrics, path=str(path), sha256=digest,
            promoted=promote,
        )
        return TrainResult(
            version=version, n_rows=len(rows), promoted=promote, metrics=metrics, path=str(path)
        )

    def _better(self, candidate: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
        if current is None:
            return True  # nothing promoted yet (or nothing to compare on)
        if candidate is None:
            return False
        return candidate["mae_log"] <= current["mae_log"] * (1.0 + self.tolerance)

    # -- loading ----------------------------------------------------------------------------

    def load_version(self, version: int) -> CostModel:
        """Load one recorded version, refusing a file whose sha256 or types do not check out."""
        record = next((v for v in self.store.model_versions(TARGET) if v["version"] == version),
                      None)
        if record is None:
            raise ModelIntegrityError(f"no {TARGET} version {version} in {self.store.path}")
        path = Path(record["path"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelIntegrityError(
                f"model version {version}: cannot read {path}: {exc}"
            ) from exc
        try:
            return load_model_bytes(data, expected_sha256=record["sha256"])
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(f"model version {version} ({path}): {exc}") from exc
        except IncompatibleModelError as exc:
            raise IncompatibleModelError(f"model version {version} ({path}): {exc}") from exc

    def load_promoted(self) -> CostModel | None:
        """The promoted version, or None when none has been promoted yet."""
        record = self.store.promoted_model(TARGET)
        return None if record is None else self.load_version(int(record["version"]))
