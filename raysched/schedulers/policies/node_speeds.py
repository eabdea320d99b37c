"""How fast each node really is now: jobs' measured step times, node against node.

A node's speed label says how fast it should be. A noisy neighbour, throttling or a failing
disk make it slower than that, and a job placed there after the fact measures its own early
steps at the slow pace, so no job-level yardstick shows it. What does show it is the node
*next to* the others: a job's measured step time times its node's speed label is the step
time it would have on a speed-1 node, and jobs of one group (kind, model, workers, batch)
have similar such times wherever they run (contention on shared hardware hits them alike). A
slowed node's jobs have times several times higher. `MeasuredNodeSpeeds` keeps each running
job's latest label-normalised step time for a window, and estimates a node's slowdown as the
median, over the jobs on it, of that time over the median of the same group's jobs on *other*
nodes measured at about the same time (within `match_s`): contention comes and goes, so a time
measured during a burst of job start-ups is compared only with times from that burst. (In a
live run the same pipeline job group stepped 0.08-0.12 s during the first minute's start-ups
and 0.02-0.07 s two minutes later; that run drained a healthy node on two jobs' times.) A job
whose group runs on no other node says nothing: comparing different groups, or measured with
predicted step times, mistakes the cost model's bias (different per group and per speed label)
for slowness; a live run where it did drained three of four nodes.

Single-node jobs speak for their node; a gang spread over several nodes (normalised by its
slowest label) only speaks for a node no single-node job covers, and not when one of its other
nodes is already known to be slow. Estimates under `min_factor` count as 1 (noise); an
estimate is kept `hold_s` after its last evidence (a node whose jobs have moved away produces
none). Times are recorded every round; the estimates are redone at most every `every_s`.

`KnownNodeSpeeds` is the oracle's version: it knows each node's true speed.
`with_node_speeds` turns a view into the same view with each node's speed label divided by its
slowdown, so that everything downstream (the cost model, candidate order, the decision log)
sees the speed the node has now.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

_RUNNING = (JobState.RUNNING, JobState.PLACED)


class NodeSpeedSource(Protocol):
    """Per-node slowdown factors (>= 1) relative to the speed labels."""

    def update(self, view: ClusterView) -> None: ...

    def slowdown(self, node: NodeView) -> float: ...

    def jobs_seen(self, node: NodeView) -> int: ...

    def evidence(self, node: NodeView) -> str: ...


class _Obs(NamedTuple):
    time: float
    nodes: frozenset[str]
    group: tuple[object, ...]
    norm_step_s: float  # measured step time x the slowest label speed of its nodes
    job_id: str


class _Shape(NamedTuple):
    """What `_Obs` keeps of a job besides its time: built from these node ids and spec."""

    node_ids: tuple[str, ...]
    spec: JobSpec
    nodes: frozenset[str]
    group: tuple[object, ...]


class _Factor(NamedTuple):
    """A node's slowdown and the ratio of each of its jobs that had a reference (job id, its
    time over the reference), highest first: the estimate rests on that many jobs."""

    factor: float
    ratios: tuple[tuple[str, float], ...]


def _median(values: list[float]) -> float:
    """`statistics.median` of a non-empty list, the same arithmetic without its overhead."""
    data = sorted(values)
    n = len(data)
    if n % 2 == 1:
        return data[n // 2]
    return (data[n // 2 - 1] + data[n // 2]) / 2


def job_group(job: JobView) -> tuple[object, ...]:
    """Jobs expected to step alike on equal nodes: same kind, model, gang size and batch."""
    s = job.spec
    return (s.kind, s.model, s.num_workers, s.batch_size)


class MeasuredNodeSpeeds:
    """Node slowdowns estimated from running jobs' measured step times, node against node."""

    def __init__(self, *, window_s: float = 180.0, hold_s: float = 120.0,
                 min_factor: float = 1.5, max_factor: float = 20.0, min_steps: int = 5,
                 every_s: float = 5.0, match_s: float = 30.0) -> None:
        if min_factor < 1.0 or max_factor < min_factor:
            raise ValueError(f"need 1 <= min_factor <= max_factor, got {min_factor}, "
                             f"{max_factor}")
        self.window_s = window_s
        self.hold_s = hold_s
        self.min_factor = min_factor
        self.max_factor = max_factor
        self.min_steps = min_steps
        self.every_s = every_s  # re-estimate at most this often (view time)
        if match_s < 0:
            raise ValueError(f"match_s must be >= 0, got {match_s}")
        self.match_s = match_s  # how close in time a reference must be to the time it judges
        self._estimated_at = -math.inf
        self.version = 0  # bumped by every estimate: adjusted views are redone after one
        self._obs: dict[str, _Obs] = {}  # job_id -> its latest normalised step time
        self._shapes: dict[str, _Shape] = {}  # job_id -> its nodes and group (same keys)
        self._estimates: dict[str, tuple[float, _Factor]] = {}  # node -> (when, estimate)

    def update(self, view: ClusterView) -> None:
        """Record the running jobs' step times; every `every_s`, re-estimate their nodes.

        A job's node set and group are kept from the last round while its node ids and spec
        are the same objects or equal (`_shapes`), so a round rebuilds them only for jobs that
        started, moved or changed spec; the label speeds are read every round.
        """
        now = view.time
        labels = {n.node_id: n.speed for n in view.nodes}
        obs, shapes, min_steps = self._obs, self._shapes, self.min_steps
        for j in view.jobs:
            measured = j.recent_step_time_s
            if not measured or measured <= 0 or j.state not in _RUNNING:
                continue
            ids = j.node_ids
            if not ids or j.steps_done < min_steps:
                continue
            try:
                slowest = min([labels[n] for n in ids])
            except KeyError:  # on a node the view does not hold
                continue
            if slowest > 0:
                jid = j.job_id
                shape = shapes.get(jid)
                if shape is None or shape.spec is not j.spec or (
                        shape.node_ids is not ids and shape.node_ids != ids):
                    shape = shapes[jid] = _Shape(ids, j.spec, frozenset(ids), job_group(j))
                obs[jid] = _Obs(now, shape.nodes, shape.group, measured * slowest, jid)
        if now - self._estimated_at < self.every_s:
            return
        self._estimated_at = now
        self.version += 1
        for k in [k for k, o in obs.items() if now - o.time > self.window_s]:
            del obs[k]
            shapes.pop(k, None)
        fresh = self._estimate()
        for nid, got in fresh.items():
            self._estimates[nid] = (now, got)
        for nid in [n for n, (t, _) in self._estimates.items()
                    if n not in fresh and now - t > self.hold_s]:
            del self._estimates[nid]

    def _estimate(self) -> dict[str, _Factor]:
        by_group: dict[tuple[object, ...], list[_Obs]] = {}
        single: dict[str, list[_Obs]] = {}
        gangs: list[_Obs] = []
        for o in self._obs.values():
            by_group.setdefault(o.group, []).append(o)
            if len(o.nodes) == 1:
                single.setdefault(next(iter(o.nodes)), []).append(o)
            else:
                gangs.append(o)
        out: dict[str, _Factor] = {}
        for nid, mine in single.items():
            got = self._factor(nid, mine, by_group)
            if got is not None:
                out[nid] = got
        slow = {n for n, got in out.items() if got.factor >= self.min_factor}
        spread: dict[str, list[_Obs]] = {}
        for o in gangs:
            if o.nodes & slow:
                continue  # explained by a node single-node jobs already show slow
            for nid in o.nodes:
                if nid not in single:
                    spread.setdefault(nid, []).append(o)
        for nid, mine in spread.items():
            got = self._factor(nid, mine, by_group)
            if got is not None:
                out[nid] = got
        return out

    def _factor(self, nid: str, mine: list[_Obs],
                by_group: dict[tuple[object, ...], list[_Obs]]) -> _Factor | None:
        """Median over `mine` of its time over its group's median time on other nodes at
        about the same time (`match_s`), how many of `mine` had such a reference, and each
        one's ratio (None if none had)."""
        ratios: list[tuple[str, float]] = []
        match_s = self.match_s
        for o in mine:
            group = by_group[o.group]
            if len(group) == 1:
                continue  # only `o` itself, which is on `nid`
            t = o.time
            same = [x for when, nodes, _, x, _ in group
                    if nid not in nodes and abs(when - t) <= match_s]
            if same:
                ratios.append((o.job_id, o.norm_step_s / _median(same)))
        if not ratios:
            return None
        factor = min(max(_median([r for _, r in ratios]), 1e-3), self.max_factor)
        return _Factor(factor, tuple(sorted(ratios, key=lambda j: -j[1])))

    def _current(self, node: NodeView) -> _Factor | None:
        got = self._estimates.get(node.node_id)
        return got[1] if got is not None else None

    def slowdown(self, node: NodeView) -> float:
        """How many times slower than its label the node is now (1 when on par or unknown)."""
        got = self._current(node)
        return got.factor if got is not None and got.factor >= self.min_factor else 1.0

    def jobs_seen(self, node: NodeView) -> int:
        """How many jobs the node's current estimate rests on (0 without one)."""
        got = self._current(node)
        return len(got.ratios) if got is not None else 0

    def evidence(self, node: NodeView) -> str:
        got = self._current(node)
        if got is None:
            return "no measurement"
        n = len(got.ratios)
        shown = ", ".join(f"{jid} {ratio:.2g}x" for jid, ratio in got.ratios[:4])
        more = f", {n - 4} more" if n > 4 else ""
        return (f"its jobs step {got.factor:.2g}x slower, speed labels allowed for, than the "
                f"same kind of job on other nodes at the same time ({n} "
                f"job{'s' if n != 1 else ''}: {shown}{more})")


class KnownNodeSpeeds:
    """The oracle's source: each node's true speed now (a live mapping, read every time)."""

    def __init__(self, true_speed: Mapping[str, float]) -> None:
        self.true_speed = true_speed

    def update(self, view: ClusterView) -> None:
        """Nothing to learn: the true speeds are known."""

    def slowdown(self, node: NodeView) -> float:
        true = float(self.true_speed.get(node.node_id, node.speed))
        return max(node.speed / true, 1.0) if true > 0 else 1.0

    def jobs_seen(self, node: NodeView) -> int:
        """Known, not seen: as good as any number of jobs."""
        return 1 << 30

    def evidence(self, node: NodeView) -> str:
        return f"true speed {self.true_speed.get(node.node_id, node.speed):g}, label {node.speed:g}"


def with_node_speeds(view: ClusterView, source: NodeSpeedSource) -> ClusterView:
    """`view` with each slowed node's speed label divided by its slowdown (`view` if none)."""
    nodes = []
    changed = False
    for n in view.nodes:
        factor = source.slowdown(n)
        if factor > 1.0:
            changed = True
            n = dataclasses.replace(n, speed=n.speed / factor)
        nodes.append(n)
    return dataclasses.replace(view, nodes=tuple(nodes)) if changed else view


class SpeedAdjustedViews:
    """`with_node_speeds` memoised on the last view seen and the source's version, so that
    every part of a round sees one and the same adjusted view object (the placement's caches
    are keyed on view identity); an adjusted view passed back in is returned as it is.

    A slowed node that is the same object as in the last view, with the same slowdown, keeps
    its adjusted copy (`_nodes`): a launch replaces only the nodes it lands on.
    """

    def __init__(self, source: NodeSpeedSource) -> None:
        self.source = source
        self._last: tuple[ClusterView, int, ClusterView] | None = None
        # node_id -> (the node as labelled, its slowdown, the adjusted node), last view's
        self._nodes: dict[str, tuple[NodeView, float, NodeView]] = {}

    def __call__(self, view: ClusterView) -> ClusterView:
        version = getattr(self.source, "version", 0)
        last = self._last
        if last is not None and last[1] == version and (last[0] is view or last[2] is view):
            return last[2]
        adjusted = self._adjust(view)
        self._last = (view, version, adjusted)
        return adjusted

    def _adjust(self, view: ClusterView) -> ClusterView:
        """`with_node_speeds(view, self.source)`, reusing the last view's adjusted nodes."""
        slowdown = self.source.slowdown
        memo = self._nodes
        kept: dict[str, tuple[NodeView, float, NodeView]] = {}
        nodes = []
        for n in view.nodes:
            factor = slowdown(n)
            if factor > 1.0:
                hit = memo.get(n.node_id)
                if hit is not None and hit[0] is n and hit[1] == factor:
                    adjusted = hit[2]
                else:
                    adjusted = dataclasses.replace(n, speed=n.speed / factor)
                kept[n.node_id] = (n, factor, adjusted)
                n = adjusted
            nodes.append(n)
        self._nodes = kept
        return dataclasses.replace(view, nodes=tuple(nodes)) if kept else view


AdjustView = Callable[[ClusterView], ClusterView]
