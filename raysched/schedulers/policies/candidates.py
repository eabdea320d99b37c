"""Candidate gang placements, and what a model sees of a node or a placement (cache keys)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

from raysched.schedulers.policies.prediction import (
    EPS,
    NodeIds,
)
from raysched.schedulers.types import JobView, NodeView


def signature(n: NodeView) -> Hashable:
    """What the model sees of a node (nodes with equal signatures get equal predictions)."""
    return (n.speed, n.cpus_total, load_bucket(n.load), mem_bucket(n.memory_free_mb))


def load_bucket(load: float) -> float:
    return round(load * 20) / 20  # 0.05 steps


def mem_bucket(mb: float) -> float:
    return round(mb / 500) * 500.0


def identity(n: NodeView) -> Hashable:
    return n.node_id


def node_alike(model: object) -> Callable[[NodeView], Hashable]:
    """Node signature for de-duplication; a model that knows nodes by id sees every node."""
    return identity if getattr(model, "uses_node_ids", False) else signature


def block_key(ids: NodeIds, nodes: Sequence[NodeView]) -> Hashable:
    """What a label-reading model sees of a placement (`features.node_block`, rounded)."""
    distinct = list({n.node_id: n for n in nodes}.values())
    speeds = [n.speed for n in nodes]
    return (len(nodes), len(distinct), min(speeds), round(sum(speeds) / len(speeds), 3),
            min(n.cpus_total for n in nodes),
            load_bucket(sum(n.load for n in distinct) / len(distinct)),
            mem_bucket(min(n.memory_free_mb for n in distinct)))


def ids_key(ids: NodeIds, nodes: Sequence[NodeView]) -> Hashable:
    return ids


def place_key(model: object) -> Callable[[NodeIds, Sequence[NodeView]], Hashable]:
    """Cache key of a placement's prediction: what the model sees of it."""
    return ids_key if getattr(model, "uses_node_ids", False) else block_key


def gang_candidates(
    job: JobView,
    fastest: Sequence[NodeView],
    free: dict[str, float],
    *,
    max_single: int,
    extra: Iterable[NodeIds] = (),
    alike: Callable[[NodeView], Hashable] = signature,
) -> list[NodeIds]:
    """A bounded set of gang placements (one node id per worker) that fit `free` CPUs.

    Single-node placements (best fit among nodes that look alike to the model, fastest kinds
    first, at most `max_single`), greedy fastest-first, greedy most-free-first, one worker per
    node across the fastest nodes, plus `extra` (e.g. a job's current nodes) where it fits.
    """
    nw, cpw = job.spec.num_workers, job.spec.cpus_per_worker
    total = nw * cpw
    out: list[NodeIds] = []
    seen: set[NodeIds] = set()

    def add(ids: Sequence[str] | None) -> None:
        if ids is None or len(ids) != nw:
            return
        key = tuple(sorted(ids))
        if key not in seen:
            seen.add(key)
            out.append(tuple(ids))

    best_fit: dict[Hashable, NodeView] = {}
    for n in fastest:
        if free.get(n.node_id, 0.0) + EPS >= total:
            sig = alike(n)
            cur = best_fit.get(sig)
            if cur is None:
                if len(best_fit) >= max_single:
                    continue
                best_fit[sig] = n
            elif free[n.node_id] < free[cur.node_id]:
                best_fit[sig] = n
    for n in best_fit.values():
        add((n.node_id,) * nw)
    if nw > 1:
        add(_greedy(fastest, free, nw, cpw))
        most_free = sorted(fastest, key=lambda n: -free.get(n.node_id, 0.0))
        add(_greedy(most_free, free, nw, cpw))
        add(_spread(fastest, free, nw, cpw))
    for ids in extra:
        need: dict[str, float] = {}
        for nid in ids:
            need[nid] = need.get(nid, 0.0) + cpw
        if all(free.get(nid, 0.0) + EPS >= c for nid, c in need.items()):
            add(ids)
    return out


def _greedy(nodes: Sequence[NodeView], free: dict[str, float], nw: int, cpw: float
            ) -> NodeIds | None:
    chosen: list[str] = []
    for n in nodes:
        room = free.get(n.node_id, 0.0)
        while len(chosen) < nw and room + EPS >= cpw:
            chosen.append(n.node_id)
            room -= cpw
        if len(chosen) == nw:
            return tuple(chosen)
    return None


def _spread(nodes: Sequence[NodeView], free: dict[str, float], nw: int, cpw: float
            ) -> NodeIds | None:
    left = {n.node_id: free.get(n.node_id, 0.0) for n in nodes}
    chosen: list[str] = []
    while len(chosen) < nw:
        progress = False
        for n in nodes:
            if len(chosen) < nw and left[n.node_id] + EPS >= cpw:
                chosen.append(n.node_id)
                left[n.node_id] -= cpw
                progress = True
        if not progress:
            return None
    return tuple(chosen)
