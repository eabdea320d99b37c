"""Trace-driven discrete-event simulator: replay job traces on simulated clusters under policies.

Inputs: a `ClusterSpec` (nodes with GPUs and/or CPUs, speeds, partitions with quotas;
cluster.py) and a `Trace` (traces.py: Philly, generic CSV, raysched telemetry). Output: a
`SimResult` with every job's submit, start, preemption, migration and finish (engine.py), and
metrics (metrics.py). Event-driven: a heap of finish and wake-up events plus the sorted arrival
stream; no ticks.

Placement rule: one resource is scheduled (GPUs if the cluster has any, else CPUs). A job of
`d` units with `d` <= the largest node of its partition takes `d` units on one node (best fit,
fastest nodes first); a larger job takes ceil(d / node size) whole idle nodes. A job runs at
the speed of its slowest node; trace durations are at speed 1.0. Jobs whose partition is
unknown (several partitions) or too small are skipped and counted in `SimResult.skipped`.

Relation to the live interface (policies/base.py): the live controller calls per-job
`place(job, ClusterView)` on immutable snapshots, which costs O(nodes) per call; at 10k nodes
and 100k jobs the simulator instead keeps incremental per-partition state and asks each policy
for one thing, a priority key of a job's state at time t (`SimPolicy` in jobstate.py): the
live `OrderingPolicy.order` is a sort by that key (`KeyOrdering` adapts it), the engine's
best-fit rule stands in for `PlacementPolicy.place`, and preemption/migration are the
simulator's form of `RebalancePolicy` decisions.
"""

from __future__ import annotations

from raysched.schedulers.simulator.cluster import (
    ClusterSpec,
    ClusterSpecError,
    NodeSpec,
    load_cluster,
    uniform_cluster,
)
from raysched.schedulers.simulator.engine import (
    EngineConfig,
    SimEvent,
    SimResult,
    SimulationError,
    Simulator,
)
from raysched.schedulers.simulator.metrics import format_table, plot_results, summarize
from raysched.schedulers.simulator.sim_policies import POLICY_NAMES, make_policy
from raysched.schedulers.simulator.traces import (
    FORMATS,
    Trace,
    TraceError,
    TraceJob,
    load_trace,
    parse_time,
)


def simulate(
    trace: Trace,
    cluster: ClusterSpec,
    policy: str = "fifo",
    config: EngineConfig | None = None,
    **policy_kwargs: object,
) -> SimResult:
    """Replay `trace` on `cluster` under the named policy."""
    return Simulator(cluster, make_policy(policy, **policy_kwargs), config).run(trace)


__all__ = [
    "FORMATS",
    "POLICY_NAMES",
    "ClusterSpec",
    "ClusterSpecError",
    "EngineConfig",
    "NodeSpec",
    "SimEvent",
    "SimResult",
    "SimulationError",
    "Simulator",
    "Trace",
    "TraceError",
    "TraceJob",
    "format_table",
    "load_cluster",
    "load_trace",
    "make_policy",
    "parse_time",
    "plot_results",
    "simulate",
    "summarize",
    "uniform_cluster",
]
