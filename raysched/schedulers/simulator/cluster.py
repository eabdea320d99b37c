"""Cluster specs for the simulator: nodes, partitions (virtual clusters) and their loaders.

A cluster is a tuple of nodes, each in one partition. A node carries GPUs and/or CPUs and an
emulated `speed` (1.0 = the speed the trace durations were measured at). The simulator schedules
one resource: GPUs when any node has GPUs, else CPUs (`ClusterSpec.resource`).

Cluster files are CSV (or YAML) rows, each a group of identical nodes:

    partition,nodes,gpus_per_node,cpus_per_node,speed,quota
    vc_a,4,8,32,1.0,
    vc_a,2,8,32,0.5,
    vc_b,10,8,32,1.0,16

Only `partition` (alias `vc`) and `nodes` (alias `node num`) are required; `gpus_per_node`
defaults to the loader's `gpus_per_node` (8, as for Philly), `cpus_per_node` to 0, `speed` to
1.0. `quota` caps the units the partition's jobs may hold at once (empty: its whole capacity).
The Philly VC files (`philly_vc.csv`: `vc,node num`; `philly_vc_contended.csv`: `vc,nodes`) are
this format with only the two required columns. YAML: a list of mappings with the same keys.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ClusterSpecError(ValueError):
    """A cluster file or spec that cannot be simulated; the message names the row or field."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One simulated node."""

    node_id: str
    partition: str
    gpus: int = 0
    cpus: float = 0.0
    speed: float = 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """All nodes of a simulated cluster plus optional per-partition quotas (in resource units)."""

    nodes: tuple[NodeSpec, ...]
    quotas: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ClusterSpecError("a cluster needs at least one node")
        ids = set()
        for n in self.nodes:
            if n.node_id in ids:
                raise ClusterSpecError(f"duplicate node id {n.node_id!r}")
            ids.add(n.node_id)
            if n.speed <= 0:
                raise ClusterSpecError(f"node {n.node_id}: speed must be positive, got {n.speed}")
            if n.gpus < 0 or n.cpus < 0:
                raise ClusterSpecError(f"node {n.node_id}: negative resources")
        for part, q in self.quotas.items():
            if part not in self.partitions:
                raise ClusterSpecError(f"quota for unknown partition {part!r}")
            if q <= 0:
                raise ClusterSpecError(f"partition {part}: quota must be positive, got {q}")
        object.__setattr__(self, "quotas", dict(self.quotas))

    @property
    def resource(self) -> str:
        """'gpu' when any node has GPUs, else 'cpu': the one resource the simulator schedules."""
        return "gpu" if any(n.gpus > 0 for n in self.nodes) else "cpu"

    def units(self, node: NodeSpec) -> float:
        """Capacity of `node` in the scheduled resource."""
        return float(node.gpus) if self.resource == "gpu" else float(node.cpus)

    @property
    def partitions(self) -> tuple[str, ...]:
        """Partition names in first-seen order."""
        return tuple(dict.fromkeys(n.partition for n in self.nodes))

    def capacity(self, partition: str | None = None) -> float:
        """Total units of the cluster, or of one partition."""
        return sum(self.units(n) for n in self.nodes if partition in (None, n.partition))


def uniform_cluster(
    num_nodes: int,
    *,
    gpus_per_node: int = 8,
    cpus_per_node: float = 0.0,
    partition: str = "default",
    speed: float = 1.0,
) -> ClusterSpec:
    """A homogeneous one-partition cluster (handy for tests and scale runs)."""
    return ClusterSpec(
        nodes=tuple(
            NodeSpec(
                node_id=f"{partition}-{i}",
                partition=partition,
                gpus=gpus_per_node,
                cpus=cpus_per_node,
                speed=speed,
            )
            for i in range(num_nodes)
        )
    )


_ALIASES = {"vc": "partition", "node num": "nodes", "num_nodes": "nodes", "node_num": "nodes"}


def _num(row: int, field: str, value: Any, *, integer: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ClusterSpecError(f"row {row}: {field} is not a number ({value!r})") from None
    if math.isnan(out) or out < 0:
        raise ClusterSpecError(f"row {row}: {field} must be zero or positive, got {value!r}")
    if integer and out != int(out):
        raise ClusterSpecError(f"row {row}: {field} must be a whole number, got {value!r}")
    return out


def cluster_from_rows(
    rows: Sequence[Mapping[str, Any]], *, gpus_per_node: int = 8
) -> ClusterSpec:
    """Build a ClusterSpec from node-group rows (see the module docstring for the keys)."""
    nodes: list[NodeSpec] = []
    quotas: dict[str, float] = {}
    counters: dict[str, int] = {}
    for i, raw in enumerate(rows, start=1):
        row = {_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v
               for k, v in raw.items()}
        for req in ("partition", "nodes"):
            if req not in row or row[req] in (None, ""):
                raise ClusterSpecError(f"row {i}: missing {req}")
        part = str(row["partition"]).strip()
        count = int(_num(i, "nodes", row["nodes"], integer=True))
        gpus = row.get("gpus_per_node")
        if gpus in (None, ""):
            gpus = gpus_per_node
        else:
            gpus = int(_num(i, "gpus_per_node", gpus, integer=True))
        cpus = row.get("cpus_per_node")
        cpus = 0.0 if cpus in (None, "") else _num(i, "cpus_per_node", cpus)
        speed = row.get("speed")
        speed = 1.0 if speed in (None, "") else _num(i, "speed", speed)
        if speed <= 0:
            raise ClusterSpecError(f"row {i}: speed must be positive, got {speed}")
        quota = row.get("quota")
        if quota not in (None, ""):
            quotas[part] = _num(i, "quota", quota)
        for _ in range(count):
            k = counters.get(part, 0)
            counters[part] = k + 1
            nodes.append(
                NodeSpec(node_id=f"{part}-{k}", partition=part, gpus=gpus, cpus=cpus, speed=speed)
            )
    if not nodes:
        raise ClusterSpecError("the cluster file lists no nodes")
    return ClusterSpec(nodes=tuple(nodes), quotas=quotas)


def load_cluster(path: str | Path, *, gpus_per_node: int = 8) -> ClusterSpec:
    """Load a cluster CSV (including the Philly VC files) or YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterSpecError(f"cannot read cluster file {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(text)
        if isinstance(data, Mapping):
            data = data.get("groups", data.get("nodes"))
        if not isinstance(data, list):
            raise ClusterSpecError(f"{path}: expected a list of node groups")
        return cluster_from_rows(data, gpus_per_node=gpus_per_node)
    rows = list(csv.DictReader(text.splitlines()))
    return cluster_from_rows(rows, gpus_per_node=gpus_per_node)
