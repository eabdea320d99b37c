"""`MeasuredNodeSpeeds`: node sets and groups kept between rounds, estimates, adjusted views."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import types

from raysched.schedulers.policies.node_speeds import (
    MeasuredNodeSpeeds,
    SpeedAdjustedViews,
    _Factor,
    _median,
    with_node_speeds,
)
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView

NODES = ("a", "b", "c", "d", "e")


def _views(seed: int, rounds: int = 40) -> list[ClusterView]:
    """Rounds of a small cluster whose jobs move, change spec and step at varying speeds."""
    rng = random.Random(seed)
    specs = [JobSpec(name=f"s{i}", model=m, steps=500, num_workers=w, batch_size=b)
             for i, (m, w, b) in enumerate([("mlp", 1, 32), ("mlp", 2, 32), ("cnn", 1, 64),
                                            ("cnn", 1, 32)])]
    jobs: dict[str, JobView] = {}
    for i in range(12):
        spec = rng.choice(specs)
        jobs[f"j{i}"] = JobView(
            job_id=f"j{i}", spec=spec, state=JobState.RUNNING, submit_time=0.0, start_time=0.0,
            node_ids=tuple(rng.choice(NODES) for _ in range(spec.num_workers)), steps_done=10,
            recent_step_time_s=1.0)
    out = []
    for t in range(rounds):
        speeds = {n: rng.choice([0.5, 1.0]) for n in NODES}
        for jid, j in list(jobs.items()):
            r = rng.random()
            if r < 0.15:  # moved: new node ids (sometimes an equal tuple, another object)
                ids = tuple(rng.choice(NODES) for _ in range(j.spec.num_workers))
                j = dataclasses.replace(j, node_ids=ids)
            elif r < 0.25:  # another spec under the same id (its group may change)
                spec = rng.choice([s for s in specs if s.num_workers == j.spec.num_workers])
                j = dataclasses.replace(j, spec=spec)
            elif r < 0.3:
                j = dataclasses.replace(j, node_ids=tuple(list(j.node_ids)))
            slow = 4.0 if "c" in j.node_ids else 1.0
            jobs[jid] = dataclasses.replace(
                j, steps_done=j.steps_done + 1,
                recent_step_time_s=slow * rng.uniform(0.9, 1.1) / speeds[j.node_ids[0]])
        nodes = tuple(NodeView(node_id=n, cpus_total=8.0, cpus_free=4.0, speed=speeds[n])
                      for n in NODES)
        out.append(ClusterView(time=float(t), nodes=nodes, jobs=tuple(jobs.values())))
    return out


def test_kept_node_sets_and_groups_equal_rebuilding_them_every_round() -> None:
    for seed in range(5):
        kept = MeasuredNodeSpeeds(every_s=3.0, window_s=10.0)
        rebuilt = MeasuredNodeSpeeds(every_s=3.0, window_s=10.0)
        for v in _views(seed):
            kept.update(v)
            rebuilt._shapes.clear()  # nothing kept: every job's shape built from its view
            rebuilt.update(v)
            assert kept._obs == rebuilt._obs
            assert kept._estimates == rebuilt._estimates
            assert set(kept._shapes) == set(kept._obs)


def test_a_moved_job_speaks_for_its_new_node() -> None:
    spec = JobSpec(name="x", model="mlp", steps=500)
    nodes = tuple(NodeView(node_id=n, cpus_total=8.0, cpus_free=4.0) for n in NODES)

    def run(jid: str, node: str, step: float) -> JobView:
        return JobView(job_id=jid, spec=spec, state=JobState.RUNNING, submit_time=0.0,
                       node_ids=(node,), steps_done=10, recent_step_time_s=step)

    speeds = MeasuredNodeSpeeds(every_s=0.0)
    speeds.update(ClusterView(time=0.0, nodes=nodes, jobs=(
        run("x", "a", 4.0), run("y", "b", 1.0), run("z", "d", 1.0))))
    assert speeds.slowdown(nodes[0]) == 4.0
    # x moved to c, same spec object and step time: the slowness goes with it.
    speeds.update(ClusterView(time=1.0, nodes=nodes, jobs=(
        run("x", "c", 4.0), run("y", "b", 1.0), run("z", "d", 1.0))))
    assert speeds.slowdown(nodes[2]) == 4.0
    assert speeds._obs["x"].nodes == frozenset({"c"})



class _Factors:
    """A node-speed source with settable slowdowns."""

    def __init__(self, factors: dict[str, float]) -> None:
        self.factors = factors
        self.version = 0

    def update(self, view: ClusterView) -> None:
        """Nothing measured: the factors are set by the test."""

    def slowdown(self, node: NodeView) -> float:
        return self.factors.get(node.node_id, 1.0)

    def jobs_seen(self, node: NodeView) -> int:
        return 1

    def evidence(self, node: NodeView) -> str:
        return "set"


def test_adjusted_views_keep_a_slowed_node_only_while_it_and_its_slowdown_are_unchanged(
) -> None:
    source = _Factors({"a": 2.0, "b": 4.0})
    views = SpeedAdjustedViews(source)
    nodes = tuple(NodeView(node_id=n, cpus_total=8.0, cpus_free=8.0) for n in NODES)
    raw = [ClusterView(time=0.0, nodes=nodes)]
    first = views(raw[0])
    assert [n.speed for n in first.nodes] == [0.5, 0.25, 1.0, 1.0, 1.0]
    # A launch on b: a new object for b (here also relabelled); a's adjusted copy is kept.
    busy_b = dataclasses.replace(nodes[1], cpus_free=2.0, speed=0.5)
    raw.append(ClusterView(time=0.0, nodes=(nodes[0], busy_b, *nodes[2:])))
    second = views(raw[1])
    assert second.nodes[0] is first.nodes[0]
    assert second.nodes[1].cpus_free == 2.0 and second.nodes[1].speed == 0.125
    assert second.nodes == with_node_speeds(raw[1], source).nodes
    source.factors, source.version = {"a": 3.0}, 1  # a re-estimated, b recovered
    raw.append(ClusterView(time=1.0, nodes=raw[1].nodes))
    third = views(raw[2])
    assert third.nodes[0].speed == 1.0 / 3.0 and third.nodes[1] is busy_b
    assert third.nodes == with_node_speeds(raw[2], source).nodes
    source.factors, source.version = {}, 2
    assert views(raw[2]) is not third and views(ClusterView(time=2.0, nodes=nodes)).nodes == nodes


def _factor_by_definition(speeds: MeasuredNodeSpeeds, nid: str, mine: list,
                          by_group: dict) -> _Factor | None:
    """`MeasuredNodeSpeeds._factor` as first written (`statistics.median`, every group), with
    the time match (`match_s`) and the per-job ratios it has since."""
    rel = []
    for o in mine:
        same = [p.norm_step_s for p in by_group[o.group]
                if nid not in p.nodes and abs(p.time - o.time) <= speeds.match_s]
        if same:
            rel.append((o.job_id, o.norm_step_s / statistics.median(same)))
    if not rel:
        return None
    factor = min(max(statistics.median([r for _, r in rel]), 1e-3), speeds.max_factor)
    return _Factor(factor, tuple(sorted(rel, key=lambda j: -j[1])))


def test_estimates_equal_the_definition_with_statistics_median() -> None:
    for seed in range(5):
        speeds = MeasuredNodeSpeeds(every_s=1e9)
        for v in _views(seed, rounds=3):
            speeds.update(v)
        reference = MeasuredNodeSpeeds(every_s=1e9)
        reference._obs = dict(speeds._obs)
        reference._factor = types.MethodType(  # type: ignore[method-assign]
            lambda self, nid, mine, by_group: _factor_by_definition(self, nid, mine, by_group),
            reference)
        assert speeds._estimate() == reference._estimate()
    rng = random.Random(0)
    for _ in range(500):
        values = [rng.choice([0.1, 1 / 3, 2.0, 2.0, 7.5, math.inf]) for _ in range(
            rng.randint(1, 6))]
        assert _median(values) == statistics.median(values)
