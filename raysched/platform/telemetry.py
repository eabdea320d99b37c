"""The telemetry store: SQLite on the head node holding the durable queue, job outcomes and samples.

Schema (one table per record kind; times are unix seconds, UTC):

- ``jobs``: one row per job. Features known before it ran (spec fields, ``param_count``,
  ``node_ids`` / ``node_cpus`` / ``node_speeds`` as JSON lists, ``cluster_load_at_start``,
  ``free_cpus_at_start``, ``predicted_duration_s``) and outcomes (``state``, ``queue_time_s``,
  ``run_time_s``, ``steps_done``, ``steps_per_s``, ``final_loss``, ``peak_rss_mb``, ``error``,
  ``attempts``, ``migrations``). The queue is the set of rows in state QUEUED.
- ``job_events``: every state transition with its reason (the job state machine's log).
- ``steps``: one row per training step per worker (loss, step time, samples, peak RSS).
- ``node_samples``: periodic node measurements (free CPUs, load, free memory, speed label).
- ``decisions``: every placement / migration decision with its reason and candidates.
- ``models``: predictor versions (target, rows trained on, metrics, file path, sha256, promoted).

Every write is one transaction; WAL mode and a busy timeout make concurrent writers from
several processes safe. Bad rows are rejected before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import JobState, check_transition

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    num_workers INTEGER NOT NULL,
    cpus_per_worker REAL NOT NULL,
    steps INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    learning_rate REAL NOT NULL,
    priority INTEGER NOT NULL,
    param_count INTEGER,
    spec_json TEXT NOT NULL,
    source TEXT NOT NULL,
    ray_job_id TEXT,
    state TEXT NOT NULL,
    submit_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    queue_time_s REAL,
    run_time_s REAL,
    node_ids TEXT,
    node_cpus TEXT,
    node_speeds TEXT,
    cluster_load_at_start REAL,
    free_cpus_at_start REAL,
    predicted_duration_s REAL,
    policy TEXT,
    steps_done INTEGER NOT NULL DEFAULT 0,
    steps_per_s REAL,
    final_loss REAL,
    peak_rss_mb REAL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    migrations INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    time REAL NOT NULL,
    old_state TEXT,
    new_state TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    loss REAL NOT NULL,
    step_time_s REAL NOT NULL,
    samples INTEGER NOT NULL,
    peak_rss_mb REAL NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_job ON steps(job_id, step);
CREATE TABLE IF NOT EXISTS node_samples (
    time REAL NOT NULL,
    node_id TEXT NOT NULL,
    cpus_total REAL NOT NULL,
    cpus_free REAL NOT NULL,
    load REAL NOT NULL,
    memory_free_mb REAL NOT NULL,
    speed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    job_id TEXT NOT NULL,
    action TEXT NOT NULL,
    policy TEXT NOT NULL,
    node_ids TEXT NOT NULL,
    reason TEXT NOT NULL,
    candidates TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    created REAL NOT NULL,
    n_rows INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    promoted INTEGER NOT NULL DEFAULT 0
);
"""

# Columns a caller may set through `transition(..., **fields)`.
_UPDATABLE = {
    "start_time", "end_time", "queue_time_s", "run_time_s", "node_ids", "node_cpus",
    "node_speeds", "cluster_load_at_start", "free_cpus_at_start", "predicted_duration_s",
    "policy", "steps_done", "steps_per_s", "final_loss", "peak_rss_mb", "error", "attempts",
    "migrations", "stop_requested", "priority", "ray_job_id", "param_count",
}
_JSON_COLUMNS = {"node_ids", "node_cpus", "node_speeds"}
_NON_NEGATIVE = {"queue_time_s", "run_time_s", "steps_done", "steps_per_s", "peak_rss_mb",
                 "attempts", "migrations", "predicted_duration_s", "free_cpus_at_start"}


class TelemetryError(ValueError):
    """A record the store refuses; nothing was written."""


class UnknownJob(KeyError):
    """No job with that id."""

    def __str__(self) -> str:
        return f"unknown job {self.args[0]!r}"


def _check_number(where: str, field: str, value: Any, *, non_negative: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TelemetryError(f"{where}: {field} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise TelemetryError(f"{where}: {field} is {value}")
    if non_negative and value < 0:
        raise TelemetryError(f"{where}: {field} is negative ({value})")


class TelemetryStore:
    """SQLite-backed store; safe to share across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # executescript commits on its own; CREATE ... IF NOT EXISTS makes it idempotent.
        self._conn().executescript(_SCHEMA)
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) != SCHEMA_VERSION:
                raise TelemetryError(
                    f"{self.path}: schema version {row[0]}, this raysched reads {SCHEMA_VERSION}"
                )

    # -- plumbing -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.local()

    # -- jobs -----------------------------------------------------------------------------

    def add_job(
        self,
        job_id: str,
        spec: JobSpec,
        *,
        submit_time: float | None = None,
        source: str = "sdk",
        ray_job_id: str | None = None,
        param_count: int | None = None,
    ) -> None:
        """Queue a new job; a duplicate id is an error and leaves the existing row untouched."""
        submit_time = time.time() if submit_time is None else submit_time
        _check_number(f"job {job_id}", "submit_time", submit_time, non_negative=True)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE job_id=?", (job_id,)).fetchone():
                raise TelemetryError(f"job {job_id!r} already exists")
            conn.execute(
                """INSERT INTO jobs(job_id, name, user, kind, model, dataset, num_workers,
                cpus_per_worker, steps, batch_size, learning_rate, priority, param_count,
                spec_json, source, ray_job_id, state, submit_time)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (job_id, spec.name, spec.user, spec.kind, spec.model, spec.dataset,
                 spec.num_workers, spec.cpus_per_worker, spec.steps, spec.batch_size,
                 spec.learning_rate, spec.priority, param_count, json.dumps(spec.to_dict()),
                 source, ray_job_id, JobState.QUEUED.value, submit_time),
            )
            conn.execute(
                "INSERT INTO job_events(job_id, time, old_state, new_state, reason) "
                "VALUES (?,?,?,?,?)",
                (job_id, submit_time, None, JobState.QUEUED.value, f"submitted via {source}"),
            )

    def transition(
        self, job_id: str, new_state: JobState, reason: str, *, expect: JobState | None = None,
        **fields: Any,
    ) -> JobState:
        """Move a job to `new_state` (checked against the state machine) and set `fields`.

        With `expect`, the move only happens if the job is currently in that state (a
        compare-and-set that protects against racing writers). Returns the old state.
        """
        self._validate_fields(job_id, fields)
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJob(job_id)
            old = JobState(row["state"])
            if expect is not None and old is not expect:
                raise TelemetryError(
                    f"job {job_id}: expected state {expect.value}, found {old.value}"
                )
            if old is not new_state:
                check_transition(job_id, old, new_state)
            self._update(conn, job_id, {"state": new_state.value, **fields})
            conn.execute(
                "INSERT INTO job_events(job_id, time, old_state, new_state, reason) "
                "VALUES (?,?,?,?,?)",
                (job_id, time.time(), old.value, new_state.value, reason),
            )
        return old

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set fields of a job without changing its state."""
        self._validate_fields(job_id, fields)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE job_id=?", (job_id,)).fetchone() is None:
                raise UnknownJob(job_id)
            self._update(conn, job_id, fields)

    @staticmethod
    def _validate_fields(job_id: str, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key not in _UPDATABLE:
                raise TelemetryError(f"job {job_id}: field {key!r} cannot be set")
            if key in _JSON_COLUMNS or key in ("error", "policy", "ray_job_id"):
                continue
            _check_number(f"job {job_id}", key, value, non_negative=key in _NON_NEGATIVE)

    @staticmethod
    def _update(conn: sqlite3.Connection, job_id: str, fields: dict[str, Any]) -> None:
        if not fields:
            return
        values = [json.dumps(list(v)) if k in _JSON_COLUMNS else v for k, v in fields.items()]
        assignments = ", ".join(f"{k}=?" for k in fields)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE job_id=?", (*values, job_id))

    def get_job(self, job_id: str) -> dict[str, Any]:
        row = self._conn().execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return self._decode(row)

    def list_jobs(self, states: Iterable[JobState] | None = None) -> list[dict[str, Any]]:
        """Jobs in submit order, optionally only those in `states`."""
        sql = "SELECT * FROM jobs"
        args: tuple[str, ...] = ()
        if states is not None:
            args = tuple(s.value for s in states)
            sql += f" WHERE state IN ({','.join('?' * len(args))})"
        rows = self._conn().execute(sql + " ORDER BY submit_time, job_id", args).fetchall()
        return [self._decode(r) for r in rows]

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in _JSON_COLUMNS:
            if out.get(key) is not None:
                out[key] = json.loads(out[key])
        out["spec"] = JobSpec.from_dict(json.loads(out.pop("spec_json")))
        return out

    def events(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT time, old_state, new_state, reason FROM job_events WHERE job_id=? ORDER BY id",
            (job_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    # -- samples --------------------------------------------------------------------------

    def add_steps(self, records: Sequence[Any]) -> None:
        """Append step records (objects with StepRecord's fields); all or nothing."""
        rows = []
        for i, r in enumerate(records):
            where = f"step record {i} (job {r.job_id}, step {r.step})"
            _check_number(where, "loss", r.loss)
            for field in ("step_time_s", "samples", "peak_rss_mb", "step"):
                _check_number(where, field, getattr(r, field), non_negative=True)
            rows.append((r.job_id, r.attempt, r.rank, r.node_id, r.step, r.loss, r.step_time_s,
                         r.samples, r.peak_rss_mb, r.time))
        with self._tx() as conn:
            conn.executemany("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def add_node_samples(self, samples: Sequence[dict[str, Any]]) -> None:
        cols = ("time", "node_id", "cpus_total", "cpus_free", "load", "memory_free_mb", "speed")
        rows = []
        for i, s in enumerate(samples):
            for c in cols[2:]:
                _check_number(f"node sample {i} ({s.get('node_id')})", c, s.get(c),
                              non_negative=True)
            rows.append(tuple(s[c] for c in cols))
        with self._tx() as conn:
            conn.executemany("INSERT INTO node_samples VALUES (?,?,?,?,?,?,?)", rows)

    def add_decision(
        self, *, job_id: str, action: str, policy: str, node_ids: Sequence[str], reason: str,
        candidates: Sequence[dict[str, Any]] = (),
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO decisions(time, job_id, action, policy, node_ids, reason, candidates)"
                " VALUES (?,?,?,?,?,?,?)",
                (time.time(), job_id, action, policy, json.dumps(list(node_ids)), reason,
                 json.dumps(list(candidates))),
            )

    def decisions(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT * FROM decisions WHERE job_id=? ORDER BY id", (job_id,)
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["node_ids"] = json.loads(d["node_ids"])
            d["candidates"] = json.loads(d["candidates"])
            out.append(d)
        return out

    def steps(self, job_id: str) -> list[dict[str, Any]]:
        """Step records of one job, in order."""
        rows = self._conn().execute(
            "SELECT * FROM steps WHERE job_id=? ORDER BY attempt, step, rank", (job_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def startup_delays(self) -> list[float]:
        """Seconds from each job's first placement to its first step, oldest placement first.

        What any launch costs on this cluster before training starts (scheduling, process
        start-up, imports, the gang forming): the least a migration's relaunch pays again.
        A job placed but not yet stepping is left out.
        """
        conn = self._conn()
        rows = conn.execute(
            "SELECT d.placed AS placed, MIN(s.time - s.step_time_s) AS first FROM "
            "(SELECT job_id, MIN(time) AS placed FROM decisions WHERE action='place' "
            "GROUP BY job_id) AS d JOIN steps AS s ON s.job_id = d.job_id "
            "WHERE s.attempt = (SELECT MIN(attempt) FROM steps WHERE job_id = d.job_id) "
            "GROUP BY d.job_id ORDER BY d.placed"
        ).fetchall()
        return [max(r["first"] - r["placed"], 0.0) for r in rows]

    def migration_downtimes(self) -> list[float]:
        """Seconds from each migrate decision to the first step of the job's next attempt.

        What one migration costs on this cluster (stop, checkpoint, relaunch, start-up); a
        migration whose next attempt has not stepped yet is left out.
        """
        conn = self._conn()
        starts: dict[str, list[tuple[int, float, float]]] = {}
        for r in conn.execute(
            "SELECT job_id, attempt, MIN(time) AS first, MAX(time) AS last FROM steps "
            "WHERE job_id IN (SELECT job_id FROM decisions WHERE action='migrate') "
            "GROUP BY job_id, attempt ORDER BY job_id, attempt"
        ):
            starts.setdefault(r["job_id"], []).append((r["attempt"], r["first"], r["last"]))
        out = []
        for d in conn.execute(
            "SELECT job_id, time FROM decisions WHERE action='migrate' ORDER BY time"
        ):
            attempts = starts.get(d["job_id"], [])
            current = [a for a, first, _ in attempts if first <= d["time"]]
            if not current:
                continue
            later = [first for a, first, _ in attempts if a > max(current)]
            if later:
                out.append(min(later) - d["time"])
        return out

    def table(self, name: str) -> list[dict[str, Any]]:
        """All rows of one table as dicts (for export and analysis)."""
        if name not in ("jobs", "job_events", "steps", "node_samples", "decisions", "models"):
            raise TelemetryError(f"unknown table {name!r}")
        return [dict(r) for r in self._conn().execute(f"SELECT * FROM {name}").fetchall()]

    # -- model versions ---------------------------------------------------------------------

    def add_model_version(
        self, *, target: str, n_rows: int, metrics: dict[str, Any], path: str, sha256: str,
        promoted: bool,
    ) -> int:
        """Record a trained predictor version; promoting it demotes the previous one."""
        with self._tx() as conn:
            if promoted:
                conn.execute("UPDATE models SET promoted=0 WHERE target=?", (target,))
            cur = conn.execute(
                "INSERT INTO models(target, created, n_rows, metrics, path, sha256, promoted)"
                " VALUES (?,?,?,?,?,?,?)",
                (target, time.time(), n_rows, json.dumps(metrics), path, sha256, int(promoted)),
            )
            return int(cur.lastrowid)

    def model_versions(self, target: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM models", ()
        if target is not None:
            sql, args = sql + " WHERE target=?", (target,)
        rows = self._conn().execute(sql + " ORDER BY version", args).fetchall()
        return [{**dict(r), "metrics": json.loads(r["metrics"])} for r in rows]

    def promoted_model(self, target: str) -> dict[str, Any] | None:
        versions = [v for v in self.model_versions(target) if v["promoted"]]
        return versions[-1] if versions else None
