"""Whether a job's workers fit a node: the one CPU-and-GPU check every policy shares.

Every placement algorithm here counts free CPUs per node. A GPU worker also needs
`gpus_per_worker` free GPUs, so for a GPU job a node's *usable* CPUs are capped at what its
free GPUs allow::

    usable = min(cpus_free, floor(gpus_free / gpus_per_worker) * cpus_per_worker)

With that, "usable CPUs >= cpus_per_worker" is exactly "one more worker fits" in both resources,
and taking `cpus_per_worker` off the usable CPUs per worker placed keeps it exact, so every
CPU-counting algorithm (greedy, spread, least-loaded, the learned candidates) handles GPUs by
starting from `usable_cpus` instead of `cpus_free`. For a CPU job usable CPUs are the free CPUs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import NodeView

EPS = 1e-9


def usable_cpus(
    cpus_free: float, gpus_free: float, cpus_per_worker: float, gpus_per_worker: int = 0
) -> float:
    """Free CPUs that workers of this shape can use: capped by the free GPUs for GPU workers."""
    if gpus_per_worker <= 0:
        return cpus_free
    workers = math.floor((max(gpus_free, 0.0) + EPS) / gpus_per_worker)
    return min(cpus_free, workers * cpus_per_worker)


def job_free_cpus(nodes: Iterable[NodeView], spec: JobSpec) -> dict[str, float]:
    """Per node id: the free CPUs `spec`'s workers can use there (see the module docstring)."""
    cpw, gpw = spec.cpus_per_worker, spec.gpus_per_worker
    return {n.node_id: usable_cpus(n.cpus_free, n.gpus_free, cpw, gpw) for n in nodes}


def worker_slots(node: NodeView, spec: JobSpec) -> int:
    """How many of `spec`'s workers fit in `node`'s free CPUs and GPUs now."""
    usable = usable_cpus(node.cpus_free, node.gpus_free, spec.cpus_per_worker,
                         spec.gpus_per_worker)
    return max(int((usable + EPS) // spec.cpus_per_worker), 0)


def could_ever_fit(node: NodeView, spec: JobSpec) -> bool:
    """Whether one of `spec`'s workers fits `node` when the node is empty."""
    return (node.cpus_total + EPS >= spec.cpus_per_worker
            and node.gpus_total + EPS >= spec.gpus_per_worker)
