"""Turn a scheduler decision (a node per worker) into Ray's public placement hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NODE_ID_LABEL = "ray.io/node-id"


def node_selector(node_id: str) -> dict[str, str]:
    """Label selector pinning work to one node by Ray's built-in node-id label."""
    return {NODE_ID_LABEL: node_id}


def actor_options_for_node(node_id: str | None, num_cpus: float, **extra: Any) -> dict[str, Any]:
    """`.options(...)` for an actor or task that must run on `node_id` (None: Ray decides)."""
    opts: dict[str, Any] = {"num_cpus": num_cpus, **extra}
    if node_id:
        opts["label_selector"] = node_selector(node_id)
    return opts


def worker_resources(cpus: float, gpus: int = 0) -> dict[str, float]:
    """Ray resources of one worker: its CPUs, and its GPUs when it has any."""
    out: dict[str, float] = {"CPU": cpus}
    if gpus > 0:
        out["GPU"] = gpus
    return out


def worker_label_selectors(node_ids: Sequence[str]) -> list[dict[str, str]] | None:
    """Per-worker selectors for Ray Train's `ScalingConfig(label_selector=[...])`."""
    if not node_ids:
        return None
    return [node_selector(n) for n in node_ids]
