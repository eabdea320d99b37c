"""The cost model the scheduling policies call: step time, run time and peak memory of a placement.

Pure decision code (no Ray). `CostModel.fit(jobs)` learns from finished-job telemetry rows;
`predict(job, nodes, cluster)` answers for one candidate placement and `predict_many(pairs,
cluster)` for a batch of (job, nodes) candidates with one scikit-learn call per target.

- step time: `StepTimeRegressor` (boosted trees on log step time, conformal interval);
- duration: ``steps_left * step_time + overhead``, where the start-up overhead is the median, per
  kind, of ``run_time_s - steps_done * step_time_s`` over the training rows (not added for a
  running job asked about the nodes it already runs on);
- throughput: ``batch_size / step_time`` samples per second;
- peak memory: `PeakMemoryRegressor` (its upper bound is what an out-of-memory check should use).

Decision-time path (`predict_many`): a job's spec, history and time columns are built once,
when the model first sees the job, without pandas; the trees are evaluated by `FlatForest`
(numpy, no input validation, same numbers as scikit-learn bit for bit) for batches of up to
`_FLAT_MAX_ROWS` rows; the log step time is cached per row *key* (which side of every split
threshold each feature is on: equal keys give equal predictions, so the cache is exact); peak
memory is cached per job. Caches live on the model object and are emptied by `fit`, so a newly
promoted model starts with fresh ones.

Until a target has `min_rows` training rows the model answers with the calibrated heuristic of
`heuristics.py` and says so: ``source == "heuristic"`` (else ``"model"``).

GPU jobs: the features carry the job's GPUs and its history is GPU jobs' history only; the
heuristic calibrates GPU jobs apart. When the training data held no GPU job at all, neither the
trees nor the heuristic know what a GPU does to a step, so a GPU job's prediction says so in its
``note`` and its interval is widened (`heuristics.widen_unseen_gpu`) instead of passing a CPU
job's number off as a GPU job's.

Saved models: a fitted model keeps the feature names it was trained on (``features_``); one
saved before that attribute existed was trained on `FEATURES_V1`. Feature rows are always built
with today's `FEATURES` and each estimator is handed its own columns by name, so an older model
predicts exactly as it did (its history keeps its old grouping too). A model whose features
this code cannot build raises `IncompatibleModelError` when it is loaded (retrain it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from raysched.schedulers.predictor import heuristics
from raysched.schedulers.predictor.estimators import (
    LogTargetRegressor,
    PeakMemoryRegressor,
    StepTimeRegressor,
)
from raysched.schedulers.predictor.fast_trees import FlatForest
from raysched.schedulers.predictor.features import (
    FEATURES,
    FEATURES_V1,
    NODE_FEATURES,
    History,
    build_features,
    cluster_features,
    feature_index,
    job_matrix,
    model_param_counts,
    node_block,
    training_rows,
    validate_jobs,
)
from raysched.schedulers.spec import MODELS
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

TARGET = "cost_model"
# Parameter counts of raysched.jobs.models (checked by a unit test); telemetry overrides them.
DEFAULT_PARAM_COUNTS: dict[str, float] = {"mlp": 42634.0, "cnn": 76522.0, "transformer": 110400.0}
_NODE_COLS = [feature_index(n) for n in (
    "n_nodes", "speed_min", "speed_mean", "node_cpus_min", "node_load_mean", "node_mem_free_min",
)]
# Peak memory is a property of the job, not of where it runs: its model only sees these columns,
# so a batch needs one memory prediction per distinct job rather than per candidate.
JOB_COLUMNS = np.array([i for i, name in enumerate(FEATURES) if name not in NODE_FEATURES])
_GPUS = feature_index("gpus_per_worker")
_CLUSTER_LOAD = feature_index("cluster_load")
_FREE_CPUS = feature_index("log_free_cpus")
_JOB_CACHE_MAX = 200_000
_STEP_CACHE_MAX = 200_000
_FLAT_MAX_ROWS = 256  # above this, scikit-learn's compiled loop is faster than FlatForest
_UNBUILT = object()

Pair = tuple[JobView, Sequence[NodeView]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prediction:
    """What the cost model expects of one job on one candidate placement."""

    step_time_s: float
    step_time_lo_s: float
    step_time_hi_s: float
    duration_s: float  # remaining run time: steps_left * step_time (+ start-up overhead)
    duration_lo_s: float
    duration_hi_s: float
    peak_rss_mb: float
    peak_rss_hi_mb: float
    throughput_sps: float  # samples per second
    source: str  # "model" or "heuristic" (the step-time predictor's)
    note: str = ""  # what the prediction could not know (e.g. a GPU job and no GPU data); or ""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class PredictionBatch:
    """Predictions for a batch of candidates as arrays (index it for a `Prediction`)."""

    step_time_s: np.ndarray
    step_time_lo_s: np.ndarray
    step_time_hi_s: np.ndarray
    duration_s: np.ndarray
    duration_lo_s: np.ndarray
    duration_hi_s: np.ndarray
    peak_rss_mb: np.ndarray
    peak_rss_hi_mb: np.ndarray
    throughput_sps: np.ndarray
    source: str
    notes: tuple[str, ...] = ()  # one per row (`Prediction.note`), or () when none has one

    def __len__(self) -> int:
        return len(self.step_time_s)

    def __getitem__(self, i: int) -> Prediction:
        return Prediction(
            **{f.name: float(getattr(self, f.name)[i]) for f in dataclasses.fields(self)
               if f.name not in ("source", "notes")},
            source=self.source,
            note=self.notes[i] if self.notes else "",
        )


class IncompatibleModelError(RuntimeError):
    """A saved cost model trained on features this version cannot build: retrain it."""


GPU_UNSEEN_NOTE = (
    "GPU job, but {why}: step time as for the same CPU job, interval widened "
    "(a GPU may be up to {factor:g}x faster)"
)


class CostModel:
    """Facade over the feature builder, the estimators and the cold-start heuristic."""

    def __init__(
        self,
        *,
        min_rows: int = 20,
        alpha: float = 0.1,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        random_state: int | None = 0,
    ) -> None:
        self.min_rows = min_rows
        self.alpha = alpha
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state
        self._reset_caches()

    def _reset_caches(self) -> None:
        """Forget everything derived from the fitted estimators (after `fit` or unpickling)."""
        self._job_cache: dict[str, np.ndarray] = {}
        self._rss_cache: dict[str, float] = {}
        self._step_cache: dict[bytes, float] = {}
        self._forests: dict[str, Any] = {"step": _UNBUILT, "rss": _UNBUILT}
        self._columns: dict[str, np.ndarray | None] | None = None
        self._cluster_memo: tuple[ClusterView | None, tuple[float, float]] = (None, (0.0, 0.0))

    # -- training ---------------------------------------------------------------------------

    def _estimator_params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "max_iter": self.max_iter,
                "learning_rate": self.learning_rate, "random_state": self.random_state}

    def fit(
        self, jobs: Sequence[Mapping[str, Any]] | pd.DataFrame,
        node_samples: pd.DataFrame | Sequence[Mapping[str, Any]] | None = None,
        *,
        as_of: float | None = None,
    ) -> CostModel:
        """Learn from job rows (`TelemetryStore.list_jobs()` or a frame of the jobs table).

        With `as_of`, only jobs that had finished (``end_time``) before that time are used, as
        if the model had been trained then.
        """
        if int(self.min_rows) < 1:
            raise ValueError(f"min_rows must be >= 1, got {self.min_rows}")
        frame = validate_jobs(jobs)
        if as_of is not None:
            frame = frame[frame["end_time"].notna() & (frame["end_time"] < as_of)]
            frame = frame.reset_index(drop=True)
        samples = None if node_samples is None else pd.DataFrame(list(node_samples)) \
            if not isinstance(node_samples, pd.DataFrame) else node_samples
        rows = training_rows(frame)
        self.param_counts_ = {**DEFAULT_PARAM_COUNTS, **model_param_counts(frame)}
        self.history_ = History(frame)
        X = build_features(  # noqa: N806
            rows, history=self.history_, param_counts=self.param_counts_, node_samples=samples
        )
        self.features_ = FEATURES
        self.n_rows_ = len(rows)
        self.n_gpu_rows_ = int((rows["gpus_per_worker"].to_numpy(float) > 0).sum())
        self.heuristic_ = heuristics.Heuristic()
        if len(rows):
            step_est, rss_est = _heuristic_raw(X)
            self.heuristic_.calibrate(rows, step_est, rss_est)
        self.overhead_s_ = _overheads(rows)
        self.step_model_: StepTimeRegressor | None = None
        self.rss_model_: PeakMemoryRegressor | None = None
        if len(rows) >= self.min_rows:
            self.step_model_ = StepTimeRegressor(**self._estimator_params()).fit(
                X, rows["step_time_s"].to_numpy(float)
            )
        has_rss = rows["peak_rss_mb"].notna().to_numpy() if "peak_rss_mb" in rows else None
        self.n_rss_rows_ = int(has_rss.sum()) if has_rss is not None else 0
        if has_rss is not None and self.n_rss_rows_ >= self.min_rows:
            self.rss_model_ = PeakMemoryRegressor(**self._estimator_params()).fit(
                X[has_rss][:, JOB_COLUMNS], rows["peak_rss_mb"].to_numpy(float)[has_rss]
            )
        self.feature_medians_ = _column_medians(X)
        self.trained_until_ = float(rows["end_time"].max()) if len(rows) else 0.0
        self._reset_caches()
        return self

    @property
    def source(self) -> str:
        """"model" once the step-time predictor is trained, else "heuristic"."""
        return "model" if getattr(self, "step_model_", None) is not None else "heuristic"

    def _check_fitted(self) -> None:
        if not hasattr(self, "history_"):
            raise RuntimeError("CostModel is not fitted; call fit(jobs) first (it may be empty)")

    @property
    def trained_features(self) -> tuple[str, ...]:
        """The feature names the estimators were trained on, in their order."""
        return tuple(getattr(self, "features_", FEATURES_V1))

    def check_features(self) -> None:
        """Raise `IncompatibleModelError` unless every trained feature is one `FEATURES` builds."""
        if not hasattr(self, "history_"):
            return
        missing = [n for n in self.trained_features if n not in FEATURES]
        if missing:
            raise IncompatibleModelError(
                f"this cost model was trained on features this raysched does not build "
                f"({', '.join(missing)}): retrain it (`raysched model train`) with this version"
            )

    def _cols(self, name: str) -> np.ndarray | None:
        """Columns of a full `FEATURES` row the step ("step") or memory ("rss") model was
        trained on; None for the step model of a model trained on today's `FEATURES`."""
        if self._columns is None:
            self.check_features()
            trained = self.trained_features
            step = np.array([feature_index(n) for n in trained], dtype=np.intp)
            rss = np.array([feature_index(n) for n in trained if n not in NODE_FEATURES],
                           dtype=np.intp)
            self._columns = {"step": None if trained == FEATURES else step, "rss": rss}
        return self._columns[name]

    def _own(self, name: str, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """`X` (full `FEATURES` rows) cut to the columns the `name` model was trained on."""
        cols = self._cols(name)
        if cols is None:
            return X
        if X.shape[1] != len(FEATURES):
            raise ValueError(f"expected rows of {len(FEATURES)} features, got {X.shape[1]}")
        return X[:, cols]

    # -- features ---------------------------------------------------------------------------

    def _job_rows(self, jobs: Sequence[JobView], now: float) -> np.ndarray:
        missing = [j for j in jobs if j.job_id not in self._job_cache]
        if missing:
            if len(self._job_cache) > _JOB_CACHE_MAX:
                self._job_cache.clear()
                self._rss_cache.clear()
            rows = job_matrix(missing, self.history_, self.param_counts_, now)
            for j, row in zip(missing, rows, strict=True):
                self._job_cache[j.job_id] = row
        return np.stack([self._job_cache[j.job_id] for j in jobs])

    def matrix(self, pairs: Sequence[Pair], cluster: ClusterView) -> np.ndarray:
        """Feature rows (columns `FEATURES`) for (job, nodes) candidates."""
        return self._matrix(pairs, cluster)[0]

    def _matrix(
        self, pairs: Sequence[Pair], cluster: ClusterView
    ) -> tuple[np.ndarray, list[JobView], np.ndarray, np.ndarray]:
        """Feature rows, the distinct jobs, their rows, and each candidate's index into those."""
        self._check_fitted()
        job_index: dict[str, int] = {}
        jobs: list[JobView] = []
        # A row per distinct tuple of node objects, not node ids: one id can stand for two
        # states in one batch (a busy node asked about as idle, and as it is now). `pairs`
        # holds every node, so no id is reused while this runs.
        node_index: dict[tuple[int, ...], int] = {}
        node_rows: list[list[float]] = []
        js: list[int] = []
        ns: list[int] = []
        for job, nodes in pairs:
            j = job_index.get(job.job_id)
            if j is None:
                j = job_index[job.job_id] = len(jobs)
                jobs.append(job)
            key = tuple(map(id, nodes))
            n = node_index.get(key)
            if n is None:
                n = node_index[key] = len(node_rows)
                node_rows.append(node_block(nodes))
            js.append(j)
            ns.append(n)
        ji = np.array(js, dtype=np.intp)
        ni = np.array(ns, dtype=np.intp)
        job_rows = self._job_rows(jobs, cluster.time)
        X = job_rows[ji]  # noqa: N806
        X[:, _NODE_COLS] = np.asarray(node_rows, dtype=float)[ni]
        X[:, _CLUSTER_LOAD], X[:, _FREE_CPUS] = self._cluster_features(cluster)
        return X, jobs, job_rows, ji

    def _cluster_features(self, cluster: ClusterView) -> tuple[float, float]:
        """`cluster_features`, remembered for the last view (views are immutable)."""
        seen, values = self._cluster_memo
        if seen is not cluster:
            values = cluster_features(cluster)
            self._cluster_memo = (cluster, values)
        return values

    def _forest(self, name: str) -> FlatForest | None:
        """The flat form of the step ("step") or memory ("rss") model, built on first use."""
        got = self._forests.get(name, _UNBUILT)
        if got is _UNBUILT:
            est = self.step_model_ if name == "step" else self.rss_model_
            got = self._forests[name] = FlatForest.of(est) if est is not None else None
        return got

    def _predict_log(self, name: str, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """`predict_log` of the step or memory model on full `FEATURES` rows (each model gets
        its own columns): FlatForest for small batches."""
        X = self._own(name, X)  # noqa: N806
        est: LogTargetRegressor = self.step_model_ if name == "step" else self.rss_model_
        forest = self._forest(name) if len(X) <= _FLAT_MAX_ROWS else None
        if forest is None:
            return est.predict_log(X)
        return forest.predict_log(np.ascontiguousarray(X, dtype=np.float64))

    def _cached_log_step(self, X: np.ndarray) -> np.ndarray | None:  # noqa: N803
        """The step model's log prediction per row through the exact per-key cache, or None
        when there is no flat form to key by (heuristic, or an unusual estimator)."""
        forest = self._forest("step") if self.step_model_ is not None else None
        if forest is None:
            return None
        keys = forest.keys(self._own("step", X))
        cache = self._step_cache
        miss: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in cache and k not in miss:
                miss[k] = i
        if miss:
            if len(cache) + len(miss) > _STEP_CACHE_MAX:
                cache.clear()
            fresh = self._predict_log("step", X[list(miss.values())])
            cache.update(zip(miss, fresh.tolist(), strict=True))
        return np.array([cache[k] for k in keys], dtype=np.float64)

    # -- prediction -------------------------------------------------------------------------

    def predict(self, job: JobView, nodes: Sequence[NodeView], cluster: ClusterView) -> Prediction:
        """Expected step time, remaining duration and peak memory of `job` on `nodes`."""
        return self.predict_many([(job, nodes)], cluster)[0]

    def predict_many(self, pairs: Sequence[Pair], cluster: ClusterView) -> PredictionBatch:
        """Vectorised `predict` over (job, nodes) candidates: one sklearn call per target."""
        X, jobs, job_rows, ji = self._matrix(pairs, cluster)  # noqa: N806
        steps_left = np.array([j.steps_left for j in jobs], dtype=float)[ji]
        batch = np.array([j.spec.batch_size for j in jobs], dtype=float)[ji]
        overhead = np.array([self._overhead(j.spec.kind) for j in jobs])[ji]
        for k, (job, nodes) in enumerate(pairs):
            if job.state is not JobState.QUEUED and _already_there(job, nodes):
                overhead[k] = 0.0
        log_rss = None
        if self.rss_model_ is not None:
            missing = [i for i, j in enumerate(jobs) if j.job_id not in self._rss_cache]
            if missing:
                fresh = self._predict_log("rss", job_rows[missing])
                for i, value in zip(missing, fresh, strict=True):
                    self._rss_cache[jobs[i].job_id] = float(value)
            log_rss = np.array([self._rss_cache[j.job_id] for j in jobs])[ji]
        return self.predict_matrix(
            X, steps_left=steps_left, batch=batch, overhead=overhead, log_rss=log_rss,
            log_step=self._cached_log_step(X),
        )

    def predict_matrix(
        self, X: np.ndarray, *, steps_left: np.ndarray, batch: np.ndarray,  # noqa: N803
        overhead: np.ndarray, log_rss: np.ndarray | None = None,
        log_step: np.ndarray | None = None,
    ) -> PredictionBatch:
        """Predictions from ready feature rows (used by `predict_many` and evaluation).

        `log_rss` and `log_step`, when given, are the memory and step models' answers per row
        already (`predict_many` caches them: memory per job, step time per row key).
        """
        self._check_fitted()
        X = np.asarray(X, dtype=float)  # noqa: N806
        gpus = X[:, _GPUS]
        unseen = self._gpu_unseen(gpus)
        if self.step_model_ is not None:
            if log_step is None:
                log_step = self._predict_log("step", X)
            step = np.exp(log_step)
            step_lo = np.exp(log_step + self.step_model_.residual_lo_)
            step_hi = np.exp(log_step + self.step_model_.residual_hi_)
            step_lo, step_hi = heuristics.widen_unseen_gpu(step, step_lo, step_hi, unseen)
            source = "model"
        else:
            raw, _ = _heuristic_raw(X)
            step, step_lo, step_hi = self.heuristic_.step_time_interval(
                _kinds(X), raw, _models(X), gpus if self._knows_gpus else None)
            step_lo, step_hi = heuristics.widen_unseen_gpu(step, step_lo, step_hi, unseen)
            source = "heuristic"
        if self.rss_model_ is not None:
            if log_rss is None:
                log_rss = self._predict_log("rss", X)
            rss = np.exp(log_rss)
            rss_hi = np.exp(log_rss + self.rss_model_.residual_hi_)
        else:
            _, raw_rss = _heuristic_raw(X)
            rss = self.heuristic_.peak_rss(raw_rss)
            rss_hi = heuristics.interval(rss)[1]
        return PredictionBatch(
            step_time_s=step,
            step_time_lo_s=step_lo,
            step_time_hi_s=step_hi,
            duration_s=steps_left * step + overhead,
            duration_lo_s=steps_left * step_lo + overhead,
            duration_hi_s=steps_left * step_hi + overhead,
            peak_rss_mb=rss,
            peak_rss_hi_mb=rss_hi,
            throughput_sps=batch / step,
            source=source,
            notes=self._notes(unseen),
        )

    @property
    def _knows_gpus(self) -> bool:
        """Whether this model was fitted with GPU features (not one saved before them)."""
        return "gpus_per_worker" in self.trained_features

    def _gpu_unseen(self, gpus: np.ndarray) -> np.ndarray:
        """Rows that are GPU jobs although the training data held no GPU job."""
        gpu = np.isfinite(gpus) & (gpus > 0)
        if self._knows_gpus and getattr(self, "n_gpu_rows_", 0) > 0:
            return np.zeros(len(gpus), dtype=bool)
        return gpu

    def _notes(self, unseen: np.ndarray) -> tuple[str, ...]:
        if not unseen.any():
            return ()
        why = ("no GPU job was in its training data" if self._knows_gpus else
               "this model was trained before GPU features existed (retrain it)")
        note = GPU_UNSEEN_NOTE.format(why=why, factor=heuristics.GPU_UNSEEN_FACTOR)
        return tuple(note if u else "" for u in unseen)

    def _overhead(self, kind: str) -> float:
        table = getattr(self, "overhead_s_", {})
        return table.get(kind, table.get("*", heuristics.DEFAULT_OVERHEAD_S))

    # -- explanation ------------------------------------------------------------------------

    def explain_matrix(self, x: np.ndarray, top: int = 8) -> list[tuple[str, float, float]]:
        """Top features behind one row's step time: (name, value, log-ratio contribution).

        A feature's contribution is ``log(step(x)) - log(step(x with that feature replaced by
        its training median))``: positive means it made the job slower. `x` is a full
        `FEATURES` row; only the features the model was trained on are listed.
        """
        self._check_fitted()
        x = np.asarray(x, dtype=float).reshape(1, -1)
        trained = self.trained_features
        idx = np.array([feature_index(n) for n in trained], dtype=np.intp)
        variants = np.repeat(x, len(trained), axis=0)
        variants[np.arange(len(trained)), idx] = self.feature_medians_
        both = np.vstack([x, variants])
        if self.step_model_ is not None:
            logs = self.step_model_.predict_log(self._own("step", both))
        else:
            raw, _ = _heuristic_raw(both)
            gpus = both[:, _GPUS] if self._knows_gpus else None
            logs = np.log(self.heuristic_.step_time(_kinds(both), raw, _models(both), gpus))
        contrib = logs[0] - logs[1:]
        order = np.argsort(-np.abs(contrib))[:top]
        return [(trained[i], float(x[0, idx[i]]), float(contrib[i])) for i in order]

    # -- persistence ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        caches = ("_job_cache", "_rss_cache", "_step_cache", "_forests", "_cluster_memo",
                  "_columns")
        return {k: v for k, v in self.__dict__.items() if k not in caches}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_caches()
        self.check_features()


def _column_medians(X: np.ndarray) -> np.ndarray:  # noqa: N803
    """Median of each column over its non-NaN values (NaN for an empty column)."""
    out = np.full(X.shape[1], np.nan)
    for i in range(X.shape[1]):
        col = X[:, i][~np.isnan(X[:, i])]
        if len(col):
            out[i] = float(np.median(col))
    return out


def _already_there(job: JobView, nodes: Sequence[NodeView]) -> bool:
    """True for a running job asked about the very nodes it runs on (no restart cost)."""
    return (
        job.state in (JobState.RUNNING, JobState.PLACED)
        and bool(job.node_ids)
        and tuple(n.node_id for n in nodes) == tuple(job.node_ids)
    )


def _kinds(X: np.ndarray) -> np.ndarray:  # noqa: N803
    from raysched.schedulers.spec import KINDS

    codes = X[:, feature_index("kind")]
    return np.array([KINDS[int(c)] if np.isfinite(c) else "" for c in codes], dtype=object)


def _models(X: np.ndarray) -> np.ndarray:  # noqa: N803
    codes = X[:, feature_index("model")]
    return np.array([MODELS[int(c)] if np.isfinite(c) else "" for c in codes], dtype=object)


def _heuristic_raw(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Uncalibrated heuristic step time and peak memory from feature rows."""
    model = _models(X)
    params = np.exp(X[:, feature_index("log_params")])
    batch = np.exp(X[:, feature_index("log_batch")])
    step = heuristics.step_time_formula(
        model=model,
        params=params,
        batch=batch,
        workers=X[:, feature_index("num_workers")],
        cpus_per_worker=X[:, feature_index("cpus_per_worker")],
        speed=X[:, feature_index("speed_min")],
        load=X[:, feature_index("node_load_mean")],
        trials=X[:, feature_index("num_trials")],
    )
    rss = heuristics.peak_rss_formula(model=model, params=params, batch=batch)
    return step, rss


def _overheads(rows: pd.DataFrame) -> dict[str, float]:
    """Median start-up overhead (run time not spent stepping) per kind and overall."""
    if not len(rows) or "run_time_s" not in rows:
        return {}
    over = rows["run_time_s"].to_numpy(float) - rows["steps_done"].to_numpy(float) * rows[
        "step_time_s"
    ].to_numpy(float)
    over = np.maximum(over, 0.0)
    ok = np.isfinite(over)
    out = {"*": float(np.median(over[ok]))} if ok.any() else {}
    kinds = rows["kind"].to_numpy()
    for kind in set(kinds[ok].tolist()):
        out[kind] = float(np.median(over[ok & (kinds == kind)]))
    return {k: v for k, v in out.items() if math.isfinite(v)}
