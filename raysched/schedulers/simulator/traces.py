"""Job-trace loaders for the simulator: Philly, a documented generic CSV, and raysched telemetry.

Every loader returns a `Trace`: `TraceJob`s sorted by submit time plus counts of rows it left
out and why. Malformed input raises `TraceError` naming the data row (1-based, header excluded)
and the file line, e.g. ``row 17 (line 18): duration is negative (-3.0)``.

Formats
- ``philly``: ``timestamp,duration,num_gpus,gpu_time,cluster`` (see the trace's README);
  `cluster` becomes the job's VC, `duration` its run time once started.
- ``generic``: a CSV with ``submit_time`` (unix seconds or an ISO date-time, taken as UTC),
  ``duration`` (seconds of run time at speed 1.0), and ``gpus`` and/or ``cpus`` (at least one
  column; a missing or empty cell counts 0). Optional: ``job_id``, ``user``, ``vc`` (alias
  ``partition``), ``name``; any column named ``feat_*`` is kept as a string feature.
- ``telemetry``: raysched's own `jobs` table export (CSV or parquet) with job_id, name, user,
  kind, model, num_workers, cpus_per_worker, submit_time (unix s), start_time, end_time,
  run_time_s, queue_time_s, state. CPUs = num_workers * cpus_per_worker; the duration is
  run_time_s (else end_time - start_time); jobs that never ran are left out and counted.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

FORMATS: tuple[str, ...] = ("philly", "generic", "telemetry")


class TraceError(ValueError):
    """A trace the simulator cannot read; the message names the file row."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TraceJob:
    """One job of a trace: when it was submitted, what it asked for, how long it ran."""

    job_id: str
    submit_s: float  # unix seconds
    duration_s: float  # run time once started, at node speed 1.0
    gpus: int = 0
    cpus: float = 0.0
    vc: str = ""
    user: str = ""
    name: str = ""
    features: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trace:
    """Jobs sorted by submit time, plus the rows left out (reason -> count)."""

    jobs: tuple[TraceJob, ...]
    skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.jobs)


def parse_time(value: str, *, end_of_day: bool = False) -> float:
    """Unix seconds from an ISO date or date-time (UTC); a bare date with `end_of_day` means
    the end of that day (so ``--end 2017-10-07`` includes all of Oct 7)."""
    text = str(value).strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(f"not a date or date-time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if end_of_day and len(text) <= 10:
        dt = dt + timedelta(days=1)
    return dt.timestamp()


def _where(row: int) -> str:
    return f"row {row} (line {row + 1})"


def _float(row: int, field: str, value: object, *, allow_negative: bool = False) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TraceError(f"{_where(row)}: {field} is not a number ({value!r})") from None
    if math.isnan(out) or math.isinf(out):
        raise TraceError(f"{_where(row)}: {field} is not a finite number ({value!r})")
    if out < 0 and not allow_negative:
        raise TraceError(f"{_where(row)}: {field} is negative ({out})")
    return out


def _count(row: int, field: str, value: object) -> int:
    out = _float(row, field, value)
    if out != int(out):
        raise TraceError(f"{_where(row)}: {field} must be a whole number ({value!r})")
    return int(out)


def _time(row: int, field: str, value: object) -> float:
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(
            f"{_where(row)}: {field} is neither unix seconds nor a date-time ({value!r})"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _require(columns: Iterable[str], needed: Sequence[str], path: Path) -> None:
    have = list(columns)
    missing = [c for c in needed if c not in have]
    if missing:
        raise TraceError(
            f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(have) or 'none'})"
        )


def _finish(
    jobs: list[TraceJob],
    skipped: dict[str, int],
    source: str,
    start: float | None,
    end: float | None,
    sort: bool,
) -> Trace:
    if sort:
        jobs.sort(key=lambda j: j.submit_s)
    else:
        for i in range(1, len(jobs)):
            if jobs[i].submit_s < jobs[i - 1].submit_s:
                raise TraceError(
                    f"{_where(i + 1)}: submit time {jobs[i].submit_s} is earlier than the "
                    f"previous row's ({jobs[i - 1].submit_s}); the trace must be sorted by "
                    "submit time"
                )
    if start is not None or end is not None:
        lo = -math.inf if start is None else start
        hi = math.inf if end is None else end
        kept = [j for j in jobs if lo <= j.submit_s < hi]
        if len(kept) < len(jobs):
            skipped["outside the time window"] = len(jobs) - len(kept)
        jobs = kept
    return Trace(jobs=tuple(jobs), skipped=skipped, source=source)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise TraceError(f"{path}: empty file (no header)")
            return [h.strip() for h in header], list(reader)
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from exc


def load_philly(
    path: str | Path,
    *,
    start: float | None = None,
    end: float | None = None,
    sort: bool = False,
) -> Trace:
    """Load the Philly trace (columns timestamp,duration,num_gpus,gpu_time,cluster)."""
    path = Path(path)
    header, rows = _read_csv(path)
    _require(header, ("timestamp", "duration", "num_gpus", "cluster"), path)
    c_ts, c_dur = header.index("timestamp"), header.index("duration")
    c_gpu, c_vc = header.index("num_gpus"), header.index("cluster")
    width = len(header)
    jobs: list[TraceJob] = []
    for i, rec in enumerate(rows, start=1):
        if len(rec) < width:
            raise TraceError(f"{_where(i)}: expected {width} fields, got {len(rec)}")
        try:
            ts = datetime.fromisoformat(rec[c_ts]).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise TraceError(f"{_where(i)}: timestamp is not a date-time ({rec[c_ts]!r})") from None
        gpus = _count(i, "num_gpus", rec[c_gpu])
        jobs.append(
            TraceJob(
                job_id=f"philly-{i}",
                submit_s=ts,
                duration_s=_float(i, "duration", rec[c_dur]),
                gpus=gpus,
                vc=rec[c_vc].strip(),
            )
        )
    return _finish(jobs, {}, str(path), start, end, sort)


_GENERIC_ALIASES = {
    "submit": "submit_time",
    "timestamp": "submit_time",
    "duration_s": "duration",
    "num_gpus": "gpus",
    "num_cpus": "cpus",
    "partition": "vc",
    "cluster": "vc",
}


def load_generic(
    path: str | Path,
    *,
    start: float | None = None,
    end: float | None = None,
    sort: bool = False,
) -> Trace:
    """Load a generic CSV trace (see the module docstring for its columns)."""
    path = Path(path)
    header, rows = _read_csv(path)
    cols = [_GENERIC_ALIASES.get(h.lower(), h.lower()) for h in header]
    _require(cols, ("submit_time", "duration"), path)
    if "gpus" not in cols and "cpus" not in cols:
        raise TraceError(f"{path}: missing column(s) gpus or cpus (have: {', '.join(header)})")
    pos = {c: k for k, c in enumerate(cols)}
    feats = [(c, k) for k, c in enumerate(cols) if c.startswith("feat_")]
    jobs: list[TraceJob] = []
    for i, rec in enumerate(rows, start=1):
        if len(rec) < len(cols):
            raise TraceError(f"{_where(i)}: expected {len(cols)} fields, got {len(rec)}")

        def get(name: str, rec: list[str] = rec) -> str:
            return rec[pos[name]].strip() if name in pos else ""

        gpus = _count(i, "gpus", get("gpus")) if get("gpus") else 0
        cpus = _float(i, "cpus", get("cpus")) if get("cpus") else 0.0
        jobs.append(
            TraceJob(
                job_id=get("job_id") or f"job-{i}",
                submit_s=_time(i, "submit_time", get("submit_time")),
                duration_s=_float(i, "duration", get("duration")),
                gpus=gpus,
                cpus=cpus,
                vc=get("vc"),
                user=get("user"),
                name=get("name"),
                features=tuple((c, rec[k].strip()) for c, k in feats),
            )
        )
    return _finish(jobs, {}, str(path), start, end, sort)


TELEMETRY_COLUMNS: tuple[str, ...] = (
    "job_id", "name", "user", "kind", "model", "num_workers", "cpus_per_worker",
    "submit_time", "start_time", "end_time", "run_time_s", "queue_time_s", "state",
)


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", "nan", "None", "NaN")


def load_telemetry(
    path: str | Path,
    *,
    start: float | None = None,
    end: float | None = None,
    sort: bool = True,
) -> Trace:
    """Load a raysched telemetry `jobs` export (CSV or parquet); CPUs are the resource."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise TraceError(f"cannot read telemetry export {path}: {exc}") from exc
    needed = ("job_id", "num_workers", "cpus_per_worker", "submit_time")
    _require(df.columns, needed, path)
    if "run_time_s" not in df.columns and not {"start_time", "end_time"} <= set(df.columns):
        raise TraceError(f"{path}: missing column(s) run_time_s (or start_time and end_time)")
    records: list[Mapping[str, object]] = df.to_dict("records")
    jobs: list[TraceJob] = []
    skipped: dict[str, int] = {}
    for i, rec in enumerate(records, start=1):
        run = rec.get("run_time_s")
        if _missing(run):
            s, e = rec.get("start_time"), rec.get("end_time")
            if _missing(s) or _missing(e):
                skipped["never ran (no run time)"] = skipped.get("never ran (no run time)", 0) + 1
                continue
            dur = _float(i, "end_time", e, allow_negative=True) - _float(i, "start_time", s)
            if dur < 0:
                raise TraceError(f"{_where(i)}: end_time is before start_time ({dur})")
        else:
            dur = _float(i, "run_time_s", run)
        workers = _count(i, "num_workers", rec.get("num_workers"))
        cpw = _float(i, "cpus_per_worker", rec.get("cpus_per_worker"))
        feats = tuple(
            (k, str(rec[k])) for k in ("kind", "model") if k in rec and not _missing(rec[k])
        ) + (("num_workers", str(workers)),)
        jobs.append(
            TraceJob(
                job_id=str(rec["job_id"]),
                submit_s=_time(i, "submit_time", rec.get("submit_time")),
                duration_s=dur,
                cpus=workers * cpw,
                user="" if _missing(rec.get("user")) else str(rec.get("user")),
                name="" if _missing(rec.get("name")) else str(rec.get("name")),
                features=feats,
            )
        )
    return _finish(jobs, skipped, str(path), start, end, sort)


def load_trace(
    path: str | Path,
    fmt: str = "philly",
    *,
    start: float | None = None,
    end: float | None = None,
) -> Trace:
    """Load a trace in one of FORMATS, keeping jobs submitted in [start, end)."""
    loaders = {"philly": load_philly, "generic": load_generic, "telemetry": load_telemetry}
    if fmt not in loaders:
        raise TraceError(f"unknown trace format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return loaders[fmt](path, start=start, end=end)


def jobs_from_records(records: Iterable[Mapping[str, object]]) -> Trace:
    """Build a Trace from in-memory mappings with TraceJob's field names (tests, synthetic)."""
    jobs = [TraceJob(**dict(r)) for r in records]  # type: ignore[arg-type]
    for i, j in enumerate(jobs, start=1):
        if j.duration_s < 0:
            raise TraceError(f"{_where(i)}: duration is negative ({j.duration_s})")
    return _finish(jobs, {}, "records", None, None, True)


def synthetic_trace(
    n_jobs: int,
    *,
    seed: int = 0,
    mean_interarrival_s: float = 1.0,
    median_duration_s: float = 1800.0,
    duration_sigma: float = 1.5,
    gpu_choices: Sequence[int] = (1, 2, 4, 8, 16),
    gpu_weights: Sequence[float] = (0.7, 0.1, 0.1, 0.08, 0.02),
    vcs: Sequence[str] = ("default",),
    start_s: float = 1_506_816_000.0,  # 2017-10-01 00:00 UTC
) -> Trace:
    """A seeded synthetic trace: Poisson arrivals, log-normal durations, Philly-like GPU mix."""
    import numpy as np

    rng = np.random.default_rng(seed)
    submit = start_s + np.cumsum(rng.exponential(mean_interarrival_s, n_jobs))
    dur = np.round(median_duration_s * np.exp(rng.normal(0.0, duration_sigma, n_jobs)), 1)
    w = np.asarray(gpu_weights, dtype=float)
    gpus = rng.choice(np.asarray(gpu_choices), size=n_jobs, p=w / w.sum())
    vc = rng.integers(0, len(vcs), n_jobs)
    jobs = tuple(
        TraceJob(
            job_id=f"syn-{i}",
            submit_s=float(submit[i]),
            duration_s=float(dur[i]),
            gpus=int(gpus[i]),
            vc=vcs[int(vc[i])],
        )
        for i in range(n_jobs)
    )
    return Trace(jobs=jobs, source=f"synthetic(seed={seed})")
