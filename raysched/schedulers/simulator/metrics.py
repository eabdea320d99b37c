"""Metrics of simulation runs: JCT and queueing statistics, utilisation, tables, JSON and plots.

Definitions: JCT = finish - submit. Queueing delay = first start - submit (`avg_queue_s`);
waiting = JCT - time holding resources, which also counts time spent preempted
(`avg_wait_s`). Makespan = last finish - first submit. Utilisation = time-weighted share of the
cluster's units held by running jobs (whole nodes for jobs larger than a node) between the
first submit and the last finish.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raysched.schedulers.simulator.engine import SimResult


def utilisation_curve(result: SimResult) -> tuple[np.ndarray, np.ndarray]:
    """(time since first submit in s, held share of capacity) after every event instant."""
    if not len(result.timeline_t):
        return np.zeros(0), np.zeros(0)
    return result.timeline_t - result.timeline_t[0], result.timeline_used / result.capacity


def mean_utilisation(result: SimResult) -> float:
    """Time-weighted average utilisation between the first and last event."""
    t, u = result.timeline_t, result.timeline_used
    if len(t) < 2 or t[-1] <= t[0]:
        return 0.0
    return float(np.sum(u[:-1] * np.diff(t)) / (t[-1] - t[0]) / result.capacity)


def summarize(result: SimResult) -> dict[str, Any]:
    """The headline numbers of one run (seconds unless named otherwise)."""
    n = len(result.job_ids)
    if n == 0:
        return {"jobs": 0, "skipped": dict(result.skipped), "wall_s": result.wall_s}
    jct = result.jct
    queue = result.start - result.submit
    wait = jct - result.held
    return {
        "jobs": n,
        "avg_jct_s": float(jct.mean()),
        "median_jct_s": float(np.median(jct)),
        "p95_jct_s": float(np.percentile(jct, 95)),
        "p99_jct_s": float(np.percentile(jct, 99)),
        "avg_queue_s": float(queue.mean()),
        "median_queue_s": float(np.median(queue)),
        "avg_wait_s": float(wait.mean()),
        "makespan_s": float(result.finish.max() - result.submit.min()),
        "utilisation": mean_utilisation(result),
        "preemptions": int(result.preemptions.sum()),
        "migrations": int(result.migrations.sum()),
        "skipped": dict(result.skipped),
        "wall_s": float(result.wall_s),
    }


_COLUMNS = (
    ("avg_jct_s", "avg JCT h", 3600.0),
    ("median_jct_s", "med JCT h", 3600.0),
    ("p95_jct_s", "p95 JCT h", 3600.0),
    ("p99_jct_s", "p99 JCT h", 3600.0),
    ("avg_queue_s", "avg queue h", 3600.0),
    ("makespan_s", "makespan h", 3600.0),
    ("utilisation", "util", 1.0),
    ("preemptions", "preempt", 1.0),
    ("wall_s", "wall s", 1.0),
)


def format_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table, one row per policy (times in hours)."""
    head = f"{'policy':<10}" + "".join(f"{label:>12}" for _, label, _ in _COLUMNS)
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        cells = []
        for key, _, scale in _COLUMNS:
            v = s.get(key)
            if v is None:
                cells.append(f"{'-':>12}")
            elif key == "preemptions":
                cells.append(f"{int(v):>12d}")
            elif key == "utilisation":
                cells.append(f"{v:>12.2f}")
            else:
                cells.append(f"{v / scale:>12.2f}" if key != "wall_s" else f"{v:>12.3f}")
        lines.append(f"{name:<10}" + "".join(cells))
    return "\n".join(lines)


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write `payload` as indented JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def plot_results(results: Sequence[SimResult], path: str | Path) -> Path:
    """Two panels: JCT CDF per policy (log x) and queue length over time; saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        jct = np.sort(np.maximum(r.jct, 1.0))
        if len(jct):
            ax1.plot(jct / 3600.0, np.arange(1, len(jct) + 1) / len(jct), label=r.policy)
        if len(r.timeline_t):
            ax2.step((r.timeline_t - r.timeline_t[0]) / 3600.0, r.timeline_queued,
                     where="post", label=r.policy, linewidth=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("JCT (hours, log scale)")
    ax1.set_ylabel("fraction of jobs")
    ax1.set_title("JCT CDF")
    ax1.grid(alpha=0.3)
    ax1.legend()
    ax2.set_xlabel("hours since first submit")
    ax2.set_ylabel("queued jobs")
    ax2.set_title("Queue length over time")
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
