"""Plain-text job tables for the CLI and the demo (job, state, nodes, queue/run time, loss)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("job", "kind", "state", "node(s)", "queue_s", "run_s", "steps", "final_loss", "policy")


def _fmt_time(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def job_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """One display row per job; node ids shortened to 8 characters like Ray's dashboard."""
    out = []
    for r in rows:
        nodes = r.get("node_ids") or []
        spec = r.get("spec") or {}
        kind = spec.get("kind") if isinstance(spec, Mapping) else getattr(spec, "kind", "")
        out.append({
            "job": r["job_id"],
            "kind": kind or r.get("kind", ""),
            "state": r["state"],
            "node(s)": ",".join(n[:8] for n in nodes) or ("ray" if r.get("policy") else "-"),
            "queue_s": _fmt_time(r.get("queue_time_s")),
            "run_s": _fmt_time(r.get("run_time_s")),
            "steps": f"{r.get('steps_done', 0)}/{r.get('steps', spec.get('steps', '?'))}"
            if isinstance(spec, Mapping) else str(r.get("steps_done", 0)),
            "final_loss": "-" if r.get("final_loss") is None else f"{r['final_loss']:.4f}",
            "policy": r.get("policy") or "-",
        })
    return out


def format_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str] = COLUMNS) -> str:
    """Left-aligned columns sized to their widest cell."""
    if not rows:
        return "(no jobs)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
