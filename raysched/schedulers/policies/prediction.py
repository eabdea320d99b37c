"""What the learned policy's parts ask of a cost model, and helpers they share: batched
predictions, the model's view of node speed, node order and descriptions for the decision log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

import numpy as np

from raysched.schedulers.types import ClusterView, JobView, NodeView

EPS = 1e-9
NodeIds = tuple[str, ...]


class PredictionArrays(Protocol):
    """The arrays of a `PredictionBatch` the policies read."""

    step_time_s: np.ndarray
    step_time_hi_s: np.ndarray
    duration_s: np.ndarray
    duration_hi_s: np.ndarray
    peak_rss_hi_mb: np.ndarray


class BatchCostModel(Protocol):
    """What the policies need of a cost model: batched predictions for (job, nodes) pairs."""

    def predict_many(
        self, pairs: Sequence[tuple[JobView, Sequence[NodeView]]], cluster: ClusterView
    ) -> PredictionArrays: ...


class Pred(NamedTuple):
    """One candidate's predictions (floats, cached)."""

    step: float
    step_hi: float
    duration: float
    duration_hi: float
    rss_hi: float


def predict(
    model: BatchCostModel, pairs: Sequence[tuple[JobView, Sequence[NodeView]]],
    cluster: ClusterView,
) -> list[Pred]:
    if not pairs:
        return []
    b = model.predict_many(pairs, cluster)
    cols = [np.asarray(c, dtype=float).tolist() for c in (
        b.step_time_s, b.step_time_hi_s, b.duration_s, b.duration_hi_s, b.peak_rss_hi_mb)]
    return [Pred(*row) for row in zip(*cols, strict=True)]


def short_id(node_id: str) -> str:
    return node_id[:8]


def describe_nodes(nodes: NodeIds, view_nodes: dict[str, NodeView]) -> str:
    distinct = list(dict.fromkeys(nodes))
    speed = min(view_nodes[n].speed for n in distinct)
    if len(distinct) == 1:
        return f"{short_id(distinct[0])} (speed {speed:g})"
    shown = ", ".join(short_id(n) for n in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
    return f"{len(distinct)} nodes {shown} (min speed {speed:g})"



def model_speed(model: object) -> Callable[[NodeView], float]:
    """How fast the model believes a node is: its `speed(node)` if it has one, else the label."""
    speed = getattr(model, "speed", None)
    return speed if callable(speed) else label_speed


def label_speed(n: NodeView) -> float:
    return n.speed


def fastest_first(nodes: Iterable[NodeView], speed: Callable[[NodeView], float]
                  ) -> list[NodeView]:
    """Nodes by speed (highest first), then lowest load, then id."""
    return sorted(nodes, key=lambda n: (-speed(n), n.load, n.node_id))
