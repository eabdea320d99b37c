"""Size a contended cluster for a trace window: each VC gets just the nodes its demand needs.

The rule behind `philly_vc_contended.csv` (checked: it reproduces all eleven VC sizes of the
week 2017-10-01..07): a VC gets ceil(its GPU-seconds / (window seconds x GPUs per node))
nodes, and at least enough for its largest job. Applied to another week it gives that week a
cluster of the same character (every VC near full load), e.g. to tune on 2017-09-24..30
without looking at the benchmark week.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from raysched.schedulers.simulator.cluster import ClusterSpec, cluster_from_rows
from raysched.schedulers.simulator.traces import TraceJob


def sized_rows(
    jobs: Iterable[TraceJob], window_s: float, *, gpus_per_node: int = 8
) -> list[dict[str, object]]:
    """Cluster-file rows (`vc`, `nodes`), one per VC, in first-seen order."""
    if window_s <= 0 or gpus_per_node <= 0:
        raise ValueError("window_s and gpus_per_node must be positive")
    gpu_s: dict[str, float] = {}
    largest: dict[str, int] = {}
    for j in jobs:
        gpu_s[j.vc] = gpu_s.get(j.vc, 0.0) + j.gpus * j.duration_s
        largest[j.vc] = max(largest.get(j.vc, 0), j.gpus)
    per_node = window_s * gpus_per_node
    return [
        {"vc": vc, "nodes": max(math.ceil(gpu_s[vc] / per_node),
                                math.ceil(largest[vc] / gpus_per_node), 1)}
        for vc in gpu_s
    ]


def sized_cluster(
    jobs: Iterable[TraceJob], window_s: float, *, gpus_per_node: int = 8
) -> ClusterSpec:
    """A one-partition-per-VC cluster sized to the jobs' demand over `window_s` seconds."""
    return cluster_from_rows(
        sized_rows(jobs, window_s, gpus_per_node=gpus_per_node), gpus_per_node=gpus_per_node
    )
