"""Export the telemetry store's tables to CSV or Parquet (pandas at the edge)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from raysched.platform.telemetry import TelemetryStore

TABLES = ("jobs", "steps", "job_events", "decisions", "node_samples", "models")


def table_frame(store: TelemetryStore, name: str) -> pd.DataFrame:
    """One table as a DataFrame (the jobs table without the decoded spec object)."""
    rows = store.table(name)
    return pd.DataFrame(rows)


def export(
    store_path: str | Path, output: str | Path, *, fmt: str = "csv",
    tables: str | tuple[str, ...] = ("jobs",),
) -> list[tuple[Path, int]]:
    """Write each table to `output/<table>.<fmt>`; returns (path, rows) per table."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}; use csv or parquet")
    names = tuple(t.strip() for t in tables.split(",")) if isinstance(tables, str) else tables
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        raise ValueError(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
    store_path = Path(store_path)
    if not store_path.exists():
        raise FileNotFoundError(f"no telemetry store at {store_path}")
    store = TelemetryStore(store_path)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        frame = table_frame(store, name)
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append((path, len(frame)))
    return written
