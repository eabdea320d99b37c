"""Frozen decisions that policies return and the controller (or simulator) applies."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidate:
    """One placement option a policy considered, with its score (lower is better)."""

    node_ids: tuple[str, ...]
    predicted_completion_s: float
    note: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Admission:
    """Whether a submitted job may enter the queue."""

    job_id: str
    admitted: bool
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Placement:
    """Run job `job_id` with worker i on `node_ids[i]`; `node_ids` empty means let Ray place it."""

    job_id: str
    node_ids: tuple[str, ...]
    reason: str
    policy: str
    candidates: tuple[Candidate, ...] = ()
    predicted_duration_s: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Migration:
    """Checkpoint job `job_id`, stop it and relaunch it on `to_node_ids`."""

    job_id: str
    from_node_ids: tuple[str, ...]
    to_node_ids: tuple[str, ...]
    reason: str
    predicted_gain_s: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeFlag:
    """Mark a node degraded (drain it) or healthy again."""

    node_id: str
    degraded: bool
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class RebalanceDecision:
    """What the rebalancer wants done this round."""

    migrations: tuple[Migration, ...] = ()
    node_flags: tuple[NodeFlag, ...] = ()
