"""Build the scheduler's ClusterView from Ray's node table plus raysched's own allocations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ray
from ray._private import state as ray_state

from raysched.schedulers.types import SPEED_LABEL, ClusterView, JobView, NodeView


def node_speed(labels: Mapping[str, str]) -> float:
    """The emulated speed label, 1.0 on nodes without one (real hardware)."""
    try:
        return float(labels.get(SPEED_LABEL, 1.0))
    except ValueError:
        return 1.0


def observe_cluster(
    *,
    now: float,
    allocated_cpus: Mapping[str, float],
    allocated_gpus: Mapping[str, float] | None = None,
    jobs: Sequence[JobView] = (),
    degraded: frozenset[str] = frozenset(),
) -> ClusterView:
    """Alive nodes with CPUs; free CPUs = min(Ray's available, total - raysched's allocations).

    Ray's view lags (actors appear a moment after launch), raysched's misses work Ray placed
    for others; taking the smaller keeps both from over-committing a node. GPUs (Ray's "GPU"
    resource, set by ``ray start --num-gpus``) are counted the same way.
    """
    allocated_gpus = allocated_gpus or {}
    try:
        available = ray_state.available_resources_per_node()
    except Exception:  # noqa: BLE001 - the GCS may be briefly unavailable; fall back to ours
        available = {}
    nodes = []
    for info in ray.nodes():
        if not info.get("Alive"):
            continue
        total = float(info.get("Resources", {}).get("CPU", 0.0))
        if total <= 0:
            continue  # the head (or a GPU-only node) runs no CPU workers
        node_id = info["NodeID"]
        labels = dict(info.get("Labels") or {})
        ours = total - float(allocated_cpus.get(node_id, 0.0))
        # A fully used resource is omitted from Ray's available map: treat it as 0.
        rays = float(available.get(node_id, {}).get("CPU", 0.0)) if available else ours
        free = max(0.0, min(ours, rays))
        gpus = float(info.get("Resources", {}).get("GPU", 0.0))
        ours_gpus = gpus - float(allocated_gpus.get(node_id, 0.0))
        rays_gpus = float(available.get(node_id, {}).get("GPU", 0.0)) if available else ours_gpus
        mem = float(available.get(node_id, {}).get("memory", 0.0)) / 2**20 if available else 0.0
        nodes.append(
            NodeView(
                node_id=node_id,
                cpus_total=total,
                cpus_free=free,
                gpus_total=gpus,
                gpus_free=max(0.0, min(ours_gpus, rays_gpus)),
                memory_free_mb=mem,
                speed=node_speed(labels),
                load=1.0 - free / total,
                labels=labels,
                alive=True,
                degraded=node_id in degraded,
            )
        )
    nodes.sort(key=lambda n: n.node_id)
    return ClusterView(time=now, nodes=tuple(nodes), jobs=tuple(jobs))
