"""The placement's running-job end times, updated per launch instead of rebuilt: every view of a
random round gives what a from-scratch build gives, and a promoted model starts afresh."""

from __future__ import annotations

import dataclasses
import math
import random
import types
from collections.abc import Sequence

import numpy as np

from raysched.schedulers.policies.placement import LearnedPlacement
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobState, JobView, NodeView


class Stub:
    """Durations from the job and its nodes; NaN for job ids ending in "n" when asked to."""

    def __init__(self, scale: float = 1.0, nan: bool = False) -> None:
        self.scale = scale
        self.nan = nan
        self.calls: list[int] = []

    def predict_many(self, pairs: Sequence[tuple[JobView, Sequence[NodeView]]],
                     cluster: ClusterView) -> types.SimpleNamespace:
        self.calls.append(len(pairs))
        dur = np.array([
            math.nan if self.nan and j.job_id.endswith("n") else
            self.scale * (j.steps_left + 1) / max(min(n.speed for n in ns), 0.1)
            for j, ns in pairs], dtype=float)
        step = dur / 100.0
        return types.SimpleNamespace(step_time_s=step, step_time_hi_s=step * 1.5,
                                     duration_s=dur, duration_hi_s=dur * 1.5,
                                     peak_rss_hi_mb=np.full(len(pairs), 10.0))


def _job(jid: str, rng: random.Random, t: float) -> JobView:
    spec = JobSpec(name=jid, steps=rng.randint(5, 50), num_workers=rng.randint(1, 3),
                   cpus_per_worker=float(rng.choice([1, 2])))
    return JobView(job_id=jid, spec=spec, state=JobState.QUEUED, submit_time=t)


def _reference(placement: LearnedPlacement, dur: dict[tuple[str, int], float],
               view: ClusterView) -> tuple[dict, dict]:
    """A fresh placement with the same known durations, built from scratch on `view`."""
    ref = LearnedPlacement(placement.cost_model)
    ref._running_dur = dict(dur)
    ends = ref._node_ends(ref._nodes(view))
    return ends, ref._running_dur


def _check(placement: LearnedPlacement, view: ClusterView) -> None:
    dur = dict(placement._running_dur)
    got = placement._node_ends(placement._nodes(view))
    want, want_dur = _reference(placement, dur, view)
    assert repr(sorted(got.items())) == repr(sorted(want.items()))  # NaN, and list order
    assert repr(sorted(placement._running_dur.items())) == repr(sorted(want_dur.items()))


def _random_round(seed: int, model: Stub) -> None:
    rng = random.Random(seed)
    nodes = {f"n{i}": NodeView(node_id=f"n{i}", cpus_total=8.0, cpus_free=8.0,
                               speed=rng.choice([0.5, 1.0])) for i in range(6)}
    jobs = {f"j{i}{'n' if rng.random() < 0.1 else ''}": None for i in range(30)}
    jobs = {k: _job(k, rng, 0.0) for k in jobs}
    placement = LearnedPlacement(model)
    t = 10.0
    for _ in range(60):
        hidden = {nid for nid in nodes if rng.random() < 0.05}
        view = ClusterView(time=t, nodes=tuple(n for nid, n in nodes.items()
                                               if nid not in hidden),
                           jobs=tuple(jobs.values()))
        _check(placement, view)
        action = rng.random()
        queued = [j for j in jobs.values() if j.state is JobState.QUEUED]
        running = [j for j in jobs.values() if j.state is not JobState.QUEUED]
        if action < 0.4 and queued:  # a launch, as the controller does after `place`
            j = rng.choice(queued)
            if rng.random() < 0.5:
                placement._running_dur[(j.job_id, 0)] = rng.uniform(1, 50)
                placement._dur_set.add(j.job_id)
            ids = tuple(rng.choice(list(nodes)) for _ in range(j.spec.num_workers))
            jobs[j.job_id] = dataclasses.replace(j, state=JobState.PLACED, node_ids=ids,
                                                 start_time=t - rng.choice([0.0, 3.0]))
        elif action < 0.55 and running:  # progress: a measured step time, or steps only
            j = rng.choice(running)
            jobs[j.job_id] = dataclasses.replace(
                j, state=JobState.RUNNING, steps_done=min(j.steps_done + 1, j.spec.steps),
                recent_step_time_s=rng.choice([None, 0.5, 2.0]))
        elif action < 0.65 and running:  # a job ends
            del jobs[rng.choice(running).job_id]
        elif action < 0.7 and running:  # `place` asked about a running job: a new duration
            j = rng.choice(running)
            placement._running_dur[(j.job_id, j.steps_done)] = rng.uniform(1, 50)
            placement._dur_set.add(j.job_id)
        elif action < 0.8:  # the next round
            t += 1.0
        elif action < 0.85:  # the same jobs, a new view object
            pass
        elif action < 0.875 and running:  # stopped and queued again, in its place
            j = rng.choice(running)
            jobs[j.job_id] = dataclasses.replace(j, state=JobState.QUEUED, node_ids=(),
                                                 steps_done=0, recent_step_time_s=None)
        elif action < 0.9:  # the same jobs in another order (not aligned with the last view)
            order = list(jobs.items())
            rng.shuffle(order)
            jobs = dict(order)
        else:
            k = f"j{rng.randrange(10**6)}"
            jobs[k] = _job(k, rng, t)


def test_end_times_updated_per_launch_equal_a_rebuild() -> None:
    for seed in range(30):
        _random_round(seed, Stub())


def test_non_finite_end_times_fall_back_to_a_rebuild() -> None:
    for seed in range(30):
        _random_round(seed, Stub(nan=True))


def test_a_promoted_model_rebuilds_the_end_times() -> None:
    old, new = Stub(), Stub(scale=3.0)
    placement = LearnedPlacement(old)
    nodes = (NodeView(node_id="a", cpus_total=8.0, cpus_free=4.0),)
    rng = random.Random(0)
    running = dataclasses.replace(_job("r", rng, 0.0), state=JobState.PLACED,
                                  node_ids=("a",), start_time=5.0)
    first = ClusterView(time=5.0, nodes=nodes, jobs=(running,))
    before = placement._node_ends(placement._nodes(first))
    placement.cost_model = new
    assert placement._ends_state is None and not placement._running_dur
    again = ClusterView(time=5.0, nodes=nodes, jobs=(running, _job("q", rng, 5.0)))
    new.calls.clear()
    after = placement._node_ends(placement._nodes(again))
    assert new.calls == [1]  # the running job's duration asked of the new model
    assert after == _reference(LearnedPlacement(new), {}, again)[0]
    assert after["a"][0][0] - 5.0 == 3.0 * (before["a"][0][0] - 5.0)
