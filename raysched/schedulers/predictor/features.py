"""Telemetry as a dataset: validated job rows -> feature rows known at decision time, and targets.

A training row describes one finished job with only what the scheduler knew when it placed it:

- spec: kind, model, log parameter count, log batch size, log steps, workers, CPUs per worker,
  log total CPUs, GPUs per worker and log1p of the gang's total GPUs (``gpus_per_worker`` of the
  spec: a column of the row if given, else read from ``spec`` / ``spec_json``; rows from before
  GPU jobs existed have none and are CPU jobs), kind options that change the work (pipeline
  stages and micro-batches, parameter servers, sweep trials);
- nodes: number of distinct nodes, slowest and mean speed label, smallest node CPU count (the
  ``node_cpus`` / ``node_speeds`` JSON lists), and, where ``node_samples`` are given, the mean
  measured load and smallest free memory of those nodes at start;
- cluster at start: ``cluster_load_at_start`` (mean measured load of the alive nodes) and
  ``free_cpus_at_start`` (free CPUs over the whole cluster just before the placement);
- history: for the same user, the same model and the same kind, each on the same device (a GPU
  job's groups hold only GPU jobs, a CPU job's only CPU jobs: `device_of`), outcomes of jobs that
  FINISHED (``end_time``) strictly before this job was submitted: how many (capped), the mean log
  step time of the last few, the last log step time, and the mean log run time of the last few;
- time: hour of day and day of week of the submit time (UTC).

At decision time `CostModel.matrix` builds the same columns from `JobView`s (`job_matrix`), the
candidate `NodeView`s (`node_block`) and the `ClusterView` (`cluster_features`), with history
queried at the cluster's clock. Rows are validated on the way in (`validate_jobs`); a bad row
raises `TelemetryDataError` naming it.

No per-node GPU column: a GPU job can only be placed on nodes with free GPUs and a CPU job does
not use a node's GPUs, so "the candidate nodes have GPUs" says nothing the job's own
``gpus_per_worker`` does not (and the jobs table records no per-node GPU counts to train it on).

Models fitted before the GPU columns existed were trained on `FEATURES_V1`; `CostModel` keeps the
names it was trained on and hands its trees only those columns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from raysched.schedulers.spec import KINDS, MODELS, JobSpec
from raysched.schedulers.types import ClusterView, JobView, NodeView

HISTORY_RECENT = 10  # finished jobs per group the "recent" history means average over
HISTORY_GROUPS = ("user", "model", "kind")
SPEC_FEATURES = (
    "kind", "model", "log_params", "log_batch", "log_steps", "num_workers", "cpus_per_worker",
    "log_total_cpus", "gpus_per_worker", "log_total_gpus", "stages", "micro_batches",
    "num_servers", "num_trials",
)
NODE_FEATURES = (
    "n_nodes", "speed_min", "speed_mean", "node_cpus_min", "node_load_mean", "node_mem_free_min",
    "cluster_load", "log_free_cpus",
)
HISTORY_FEATURES = tuple(
    f"h_{g}_{s}" for g in HISTORY_GROUPS for s in ("n", "step_mean", "step_last", "run_mean")
)
TIME_FEATURES = ("hour", "weekday")
FEATURES: tuple[str, ...] = SPEC_FEATURES + NODE_FEATURES + HISTORY_FEATURES + TIME_FEATURES
_INDEX = {name: i for i, name in enumerate(FEATURES)}
# The columns (in order) of every model fitted before the GPU columns existed (raysched up to
# commit 3c93669); its History grouped CPU and GPU jobs together.
FEATURES_V1: tuple[str, ...] = tuple(n for n in FEATURES if n not in (
    "gpus_per_worker", "log_total_gpus"))

FINISHED_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
_REQUIRED = ("job_id", "user", "kind", "model", "num_workers", "cpus_per_worker", "steps",
             "batch_size", "state", "submit_time")
_NUMERIC = {  # column -> must be non-negative
    "num_workers": True, "cpus_per_worker": True, "steps": True, "batch_size": True,
    "param_count": True, "submit_time": True, "start_time": True, "end_time": True,
    "queue_time_s": True, "run_time_s": True, "steps_done": True, "steps_per_s": True,
    "peak_rss_mb": True, "cluster_load_at_start": True, "free_cpus_at_start": True,
    "attempts": True, "migrations": True,
}
_COLUMNS = {*_REQUIRED, *_NUMERIC, "node_ids", "node_cpus", "node_speeds", "step_time_s",
            "throughput_sps", "opt_stages", "opt_micro_batches", "opt_num_servers",
            "opt_num_trials", "gpus_per_worker"}
# What a SUCCEEDED row must carry to be a training row.
_OUTCOMES = ("start_time", "end_time", "run_time_s", "steps_done")


class TelemetryDataError(ValueError):
    """A telemetry row that cannot be used; the message names the row and the field."""


def _where(i: int, row: Mapping[str, Any]) -> str:
    return f"jobs row {i} (job {row.get('job_id', '?')})"


def _json_list(where: str, field: str, value: Any) -> list[Any] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise TelemetryDataError(f"{where}: {field} is not a JSON list ({value!r})") from exc
    if not isinstance(value, list | tuple):
        raise TelemetryDataError(f"{where}: {field} must be a list, got {value!r}")
    return list(value)


def _spec_dict(where: str, row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The row's spec as a mapping (`spec` from `list_jobs`, else ``spec_json``), or {}."""
    spec = row.get("spec")
    if isinstance(spec, JobSpec):
        return {"options": spec.options, "gpus_per_worker": spec.gpus_per_worker}
    raw = row.get("spec_json")
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TelemetryDataError(f"{where}: spec_json is not a JSON object") from exc
        if not isinstance(data, dict):
            raise TelemetryDataError(f"{where}: spec_json is not a JSON object")
        return data
    return {}


def _spec_options(where: str, spec: Mapping[str, Any]) -> Mapping[str, Any]:
    options = spec.get("options") or {}
    if not isinstance(options, Mapping):
        raise TelemetryDataError(f"{where}: spec_json options is not a JSON object")
    return options


def _gpus_per_worker(where: str, row: Mapping[str, Any], spec: Mapping[str, Any]) -> float:
    """GPUs per worker: the row's own column if set, else the spec's; 0 (a CPU job) if neither."""
    value = row.get("gpus_per_worker")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = spec.get("gpus_per_worker")
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TelemetryDataError(f"{where}: gpus_per_worker must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise TelemetryDataError(f"{where}: gpus_per_worker is {value}, not a GPU count")
    return value


def device_of(gpus_per_worker: float) -> str:
    """"gpu" for a job whose workers hold GPUs, else "cpu"."""
    return "gpu" if gpus_per_worker > 0 else "cpu"


def validate_jobs(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Check every row (as `TelemetryStore.list_jobs()` or `table('jobs')` returns them).

    Returns a frame in submit order with JSON lists decoded, kind options flattened and the
    targets added (`step_time_s`, `throughput_sps`); raises `TelemetryDataError` naming the first
    bad row: a missing required field (truncated row), NaN/infinite or negative numbers, an
    unknown kind or model, times out of order, or a SUCCEEDED row without its outcomes. Rows as
    dicts use None for "unknown" and NaN is an error; in a DataFrame NaN in an optional column
    is read as unknown (that is how pandas holds SQL NULLs).
    """
    nan_is_missing = isinstance(rows, pd.DataFrame)
    records = rows.to_dict("records") if nan_is_missing else list(rows)
    clean: list[dict[str, Any]] = []
    for i, raw in enumerate(records):
        if not isinstance(raw, Mapping):
            raise TelemetryDataError(f"jobs row {i}: expected a mapping, got {type(raw).__name__}")
        row = dict(raw)
        where = _where(i, row)
        for field in _REQUIRED:
            value = row.get(field)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise TelemetryDataError(f"{where}: {field} is missing (truncated row?)")
        for field, non_negative in _NUMERIC.items():
            value = row.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TelemetryDataError(f"{where}: {field} must be a number, got {value!r}")
            value = float(value)
            if math.isnan(value):
                if field in _REQUIRED or not nan_is_missing:
                    raise TelemetryDataError(f"{where}: {field} is NaN")
                row[field] = None  # in a DataFrame, NaN is how pandas spells SQL NULL
                continue
            if math.isinf(value):
                raise TelemetryDataError(f"{where}: {field} is {value}")
            if non_negative and value < 0:
                raise TelemetryDataError(f"{where}: {field} is negative ({value})")
        if row["kind"] not in KINDS:
            raise TelemetryDataError(f"{where}: unknown kind {row['kind']!r}")
        if row["model"] not in MODELS:
            raise TelemetryDataError(f"{where}: unknown model {row['model']!r}")
        for field in ("num_workers", "steps", "batch_size", "cpus_per_worker"):
            if float(row[field]) <= 0:
                raise TelemetryDataError(f"{where}: {field} must be positive ({row[field]})")
        for field in ("node_ids", "node_cpus", "node_speeds"):
            row[field] = _json_list(where, field, row.get(field))
        for field in ("node_cpus", "node_speeds"):
            for v in row[field] or ():
                if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                    raise TelemetryDataError(f"{where}: {field} holds {v!r}, not a positive number")
        if row["state"] == "SUCCEEDED":
            for field in _OUTCOMES:
                if row.get(field) is None:
                    raise TelemetryDataError(f"{where}: SUCCEEDED but {field} is missing")
        start, end = row.get("start_time"), row.get("end_time")
        if start is not None and end is not None and end < start:
            raise TelemetryDataError(f"{where}: end_time {end} is before start_time {start}")
        spec = _spec_dict(where, row)
        options = _spec_options(where, spec)
        row["gpus_per_worker"] = _gpus_per_worker(where, row, spec)
        for opt in ("stages", "micro_batches", "num_servers", "num_trials"):
            v = options.get(opt)
            row[f"opt_{opt}"] = float(v) if isinstance(v, int | float) else math.nan
        row["step_time_s"] = _step_time(row)
        row["throughput_sps"] = (
            row["batch_size"] / row["step_time_s"] if row["step_time_s"] else math.nan
        )
        clean.append(row)
    columns = sorted({k for r in clean for k in r} | _COLUMNS)
    frame = pd.DataFrame(clean, columns=columns)
    if len(frame):
        frame = frame.sort_values(["submit_time", "job_id"], kind="stable").reset_index(drop=True)
    return frame


def _step_time(row: Mapping[str, Any]) -> float:
    """Seconds per step: ``1 / steps_per_s`` where recorded, else run time over steps done."""
    sps = row.get("steps_per_s")
    if sps:
        return 1.0 / float(sps)
    done, run = row.get("steps_done"), row.get("run_time_s")
    if done and run is not None and done > 0:
        return float(run) / float(done)
    return math.nan


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The SUCCEEDED jobs with a usable step time, in submit order: the training set."""
    ok = (frame["state"] == "SUCCEEDED") & frame["step_time_s"].notna()
    ok &= frame["step_time_s"] > 0
    return frame[ok].reset_index(drop=True)


class History:
    """Outcomes of finished jobs per user / model / kind (each per device), queryable "as of" any
    time.

    Built once from finished jobs; `query(group, keys, times)` only counts jobs whose
    ``end_time`` is strictly before each time, so a row's history never holds its own or a
    later job's outcome. A group's key is the user, model or kind, with ``|gpu`` appended for
    GPU jobs (`group_keys`), so GPU and CPU jobs never share a history. A History saved before
    that (``by_device`` absent) keeps its plain keys: the models it belongs to were trained so.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.by_device = True
        done = frame[frame["end_time"].notna() & frame["step_time_s"].notna()]
        done = done[done["step_time_s"] > 0]
        keys = self.keys_of(done)
        self.groups: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for group in HISTORY_GROUPS:
            per_key: dict[str, dict[str, np.ndarray]] = {}
            for key, g in done.groupby(np.asarray(keys[group], dtype=object), sort=False):
                g = g.sort_values("end_time", kind="stable")
                step = np.log(g["step_time_s"].to_numpy(float))
                run = np.log1p(g["run_time_s"].fillna(0.0).to_numpy(float))
                per_key[str(key)] = {
                    "end": g["end_time"].to_numpy(float),
                    "step": step,
                    "step_cum": np.concatenate([[0.0], np.cumsum(step)]),
                    "run_cum": np.concatenate([[0.0], np.cumsum(run)]),
                }
            self.groups[group] = per_key

    def keys_of(self, frame: pd.DataFrame) -> dict[str, list[str]]:
        """Each group's key for `frame`'s rows (validated rows: `gpus_per_worker` is set)."""
        gpus = frame["gpus_per_worker"] if "gpus_per_worker" in frame else None
        devices = (["cpu"] * len(frame) if gpus is None
                   else [device_of(float(g)) for g in gpus.fillna(0.0)])
        return self.group_keys({g: frame[g].astype(str).tolist() for g in HISTORY_GROUPS},
                               devices)

    def group_keys(
        self, values: Mapping[str, Sequence[str]], devices: Sequence[str]
    ) -> dict[str, list[str]]:
        """Keys of rows with these user / model / kind `values` on these `devices`."""
        if not getattr(self, "by_device", False):  # saved before device keys existed
            return {g: [str(v) for v in values[g]] for g in HISTORY_GROUPS}
        return {g: [str(v) if d == "cpu" else f"{v}|{d}" for v, d in
                    zip(values[g], devices, strict=True)] for g in HISTORY_GROUPS}

    def query(self, group: str, keys: Sequence[str], times: np.ndarray) -> np.ndarray:
        """Columns (n, step_mean, step_last, run_mean) for each (key, time), NaN where none."""
        out = np.full((len(keys), 4), np.nan)
        out[:, 0] = 0.0
        keys_arr = np.asarray([str(k) for k in keys], dtype=object)
        times = np.asarray(times, dtype=float)
        for key in set(keys_arr.tolist()):
            arrays = self.groups[group].get(key)
            if arrays is None:
                continue
            rows = np.flatnonzero(keys_arr == key)
            n = np.searchsorted(arrays["end"], times[rows], side="left")  # end < time
            has = n > 0
            lo = np.maximum(n - HISTORY_RECENT, 0)
            k = np.maximum(n - lo, 1)
            out[rows, 0] = np.log1p(np.minimum(n, 100))
            step_mean = (arrays["step_cum"][n] - arrays["step_cum"][lo]) / k
            run_mean = (arrays["run_cum"][n] - arrays["run_cum"][lo]) / k
            last = arrays["step"][np.maximum(n - 1, 0)]
            out[rows, 1] = np.where(has, step_mean, np.nan)
            out[rows, 2] = np.where(has, last, np.nan)
            out[rows, 3] = np.where(has, run_mean, np.nan)
        return out

    def features(self, frame: pd.DataFrame, times: np.ndarray) -> np.ndarray:
        """All history columns (in `HISTORY_FEATURES` order) for `frame`'s rows at `times`."""
        return self.features_of(self.keys_of(frame), times)

    def features_of(self, keys: Mapping[str, Sequence[str]], times: np.ndarray) -> np.ndarray:
        """`features` from each group's keys (`HISTORY_GROUPS` -> one key per row, as
        `group_keys` makes them)."""
        return np.hstack([self.query(g, keys[g], times) for g in HISTORY_GROUPS])


def _code(values: Iterable[str], vocabulary: Sequence[str]) -> np.ndarray:
    lookup = {v: float(i) for i, v in enumerate(vocabulary)}
    return np.array([lookup.get(v, np.nan) for v in values], dtype=float)


def _time_features(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=float)
    hour = (t % 86400.0) / 3600.0
    weekday = (np.floor(t / 86400.0) + 3) % 7  # 1970-01-01 was a Thursday
    return np.column_stack([hour, weekday])


def _node_sample_features(
    frame: pd.DataFrame, node_samples: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean load and smallest free memory of each job's nodes, latest sample at or before start."""
    load = np.full(len(frame), np.nan)
    mem = np.full(len(frame), np.nan)
    if node_samples is None or len(node_samples) == 0:
        return load, mem
    by_node = {
        str(k): g.sort_values("time", kind="stable") for k, g in node_samples.groupby("node_id")
    }
    for i, (nodes, start) in enumerate(zip(frame["node_ids"], frame["start_time"], strict=True)):
        if not nodes or start is None or (isinstance(start, float) and math.isnan(start)):
            continue
        loads, mems = [], []
        for node in set(nodes):
            g = by_node.get(str(node))
            if g is None:
                continue
            j = int(np.searchsorted(g["time"].to_numpy(float), float(start), side="right")) - 1
            if j >= 0:
                loads.append(float(g["load"].iloc[j]))
                mems.append(float(g["memory_free_mb"].iloc[j]))
        if loads:
            load[i], mem[i] = float(np.mean(loads)), float(np.min(mems))
    return load, mem


def _list_stat(values: Iterable[Any], fn: Any) -> float:
    vals = list(values) if values is not None else []
    return float(fn(vals)) if vals else math.nan


def spec_matrix(frame: pd.DataFrame, param_counts: Mapping[str, float]) -> np.ndarray:
    """`SPEC_FEATURES` columns for validated job rows."""
    params = frame["param_count"] if "param_count" in frame else pd.Series(np.nan, frame.index)
    params = params.astype(float).fillna(frame["model"].map(param_counts)).to_numpy(float)
    return _spec_columns(
        frame["kind"], frame["model"], params, frame["batch_size"].to_numpy(float),
        frame["steps"].to_numpy(float), frame["num_workers"].to_numpy(float),
        frame["cpus_per_worker"].to_numpy(float), _gpus_column(frame),
        [frame.get(f"opt_{o}", pd.Series(np.nan, frame.index)).to_numpy(float)
         for o in _OPTIONS],
    )


def _gpus_column(frame: pd.DataFrame) -> np.ndarray:
    """GPUs per worker of validated rows (0 where the frame has no such column)."""
    if "gpus_per_worker" not in frame:
        return np.zeros(len(frame))
    return frame["gpus_per_worker"].astype(float).fillna(0.0).to_numpy(float)


_OPTIONS = ("stages", "micro_batches", "num_servers", "num_trials")


def _spec_columns(
    kinds: Iterable[str], models: Iterable[str], params: np.ndarray, batch: np.ndarray,
    steps: np.ndarray, workers: np.ndarray, cpw: np.ndarray, gpw: np.ndarray,
    options: Sequence[np.ndarray],
) -> np.ndarray:
    """`SPEC_FEATURES` columns from per-job values (float arrays; options in `_OPTIONS` order)."""
    return np.column_stack([
        _code(kinds, KINDS),
        _code(models, MODELS),
        np.log(np.maximum(params, 1.0)),
        np.log(batch),
        np.log(steps),
        workers,
        cpw,
        np.log(workers * cpw),
        gpw,
        np.log1p(workers * gpw),
        *options,
    ])


def build_features(
    frame: pd.DataFrame,
    *,
    history: History | None = None,
    param_counts: Mapping[str, float] | None = None,
    node_samples: pd.DataFrame | None = None,
) -> np.ndarray:
    """Feature matrix (columns `FEATURES`) for validated rows, history as of each submit time.

    `history` defaults to one built from `frame` itself; either way each row only sees jobs that
    finished before it was submitted.
    """
    history = history if history is not None else History(frame)
    param_counts = param_counts if param_counts is not None else model_param_counts(frame)
    n = len(frame)
    nodes = np.full((n, len(NODE_FEATURES)), np.nan)
    for i, (ids, cpus, speeds) in enumerate(
        zip(frame["node_ids"], frame["node_cpus"], frame["node_speeds"], strict=True)
    ):
        nodes[i, 0] = float(len(set(ids))) if ids else math.nan
        nodes[i, 1] = _list_stat(speeds, min)
        nodes[i, 2] = _list_stat(speeds, np.mean)
        nodes[i, 3] = _list_stat(cpus, min)
    nodes[:, 4], nodes[:, 5] = _node_sample_features(frame, node_samples)
    nodes[:, 6] = _float_column(frame, "cluster_load_at_start")
    nodes[:, 7] = np.log1p(_float_column(frame, "free_cpus_at_start"))
    submit = frame["submit_time"].to_numpy(float)
    return np.hstack([
        spec_matrix(frame, param_counts),
        nodes,
        history.features(frame, submit),
        _time_features(submit),
    ])


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(float)


def model_param_counts(frame: pd.DataFrame) -> dict[str, float]:
    """Median recorded parameter count per model name (models without one are left out)."""
    if "param_count" not in frame or not len(frame):
        return {}
    known = frame[frame["param_count"].notna()]
    return {str(k): float(v) for k, v in known.groupby("model")["param_count"].median().items()}


def job_frame(jobs: Sequence[JobView], param_counts: Mapping[str, float]) -> pd.DataFrame:
    """A minimal validated-style frame for jobs seen at decision time (no outcomes)."""
    specs = [j.spec for j in jobs]
    data: dict[str, Any] = {
        "job_id": [j.job_id for j in jobs],
        "user": [s.user for s in specs],
        "kind": [s.kind for s in specs],
        "model": [s.model for s in specs],
        "num_workers": [s.num_workers for s in specs],
        "cpus_per_worker": [s.cpus_per_worker for s in specs],
        "gpus_per_worker": [float(s.gpus_per_worker) for s in specs],
        "steps": [s.steps for s in specs],
        "batch_size": [s.batch_size for s in specs],
        "param_count": [param_counts.get(s.model, math.nan) for s in specs],
        "submit_time": [j.submit_time for j in jobs],
    }
    for opt in ("stages", "micro_batches", "num_servers", "num_trials"):
        data[f"opt_{opt}"] = [_option(s.options.get(opt)) for s in specs]
    return pd.DataFrame(data)


def job_matrix(
    jobs: Sequence[JobView], history: History, param_counts: Mapping[str, float], now: float
) -> np.ndarray:
    """Spec, history (as of `now`) and time columns for jobs; node columns left NaN.

    Built from the specs directly (no DataFrame: this runs at decision time); the values are
    those `job_frame` + `spec_matrix` + `History.features` give, bit for bit.
    """
    specs = [j.spec for j in jobs]
    n = len(jobs)
    out = np.full((n, len(FEATURES)), np.nan)
    if not n:
        return out
    ns, nn, nh = len(SPEC_FEATURES), len(NODE_FEATURES), len(HISTORY_FEATURES)
    models = [s.model for s in specs]
    out[:, :ns] = _spec_columns(
        [s.kind for s in specs], models,
        np.array([param_counts.get(m, math.nan) for m in models], dtype=float),
        np.array([s.batch_size for s in specs], dtype=float),
        np.array([s.steps for s in specs], dtype=float),
        np.array([s.num_workers for s in specs], dtype=float),
        np.array([s.cpus_per_worker for s in specs], dtype=float),
        np.array([s.gpus_per_worker for s in specs], dtype=float),
        [np.array([_option(s.options.get(o)) for s in specs], dtype=float) for o in _OPTIONS],
    )
    keys = history.group_keys(
        {"user": [str(s.user) for s in specs], "model": [str(m) for m in models],
         "kind": [str(s.kind) for s in specs]},
        [device_of(s.gpus_per_worker) for s in specs],
    )
    out[:, ns + nn : ns + nn + nh] = history.features_of(keys, np.full(n, now))
    out[:, ns + nn + nh :] = _time_features(np.array([j.submit_time for j in jobs], dtype=float))
    return out


def _option(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def cluster_features(cluster: ClusterView) -> tuple[float, float]:
    """(mean load of alive nodes, log1p of free CPUs over the cluster), as stored at start."""
    alive = [n for n in cluster.nodes if n.alive]
    if not alive:
        return math.nan, 0.0
    load = sum(n.load for n in alive) / len(alive)
    return load, math.log1p(sum(max(n.cpus_free, 0.0) for n in alive))


def node_block(nodes: Sequence[NodeView]) -> list[float]:
    """The first six `NODE_FEATURES` for one candidate placement (one node per worker)."""
    if not nodes:
        return [math.nan] * 6
    first = nodes[0]
    if nodes.count(first) == len(nodes):  # one node object per worker: the same numbers
        speeds = [first.speed] * len(nodes)
        mem = first.memory_free_mb
        return [1.0, first.speed, sum(speeds) / len(speeds), first.cpus_total,
                sum([first.load]) / 1, mem if mem else math.nan]
    distinct = {n.node_id: n for n in nodes}.values()
    speeds = [n.speed for n in nodes]
    return [
        float(len(distinct)),
        min(speeds),
        sum(speeds) / len(speeds),
        min(n.cpus_total for n in nodes),
        sum(n.load for n in distinct) / len(distinct),
        min(n.memory_free_mb for n in distinct) if any(n.memory_free_mb for n in distinct)
        else math.nan,
    ]


def feature_index(name: str) -> int:
    """Column of feature `name` in `FEATURES`."""
    return _INDEX[name]
