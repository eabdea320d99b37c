"""Work the queue walk skips: `walk_end` past the overdue prefix, slot counts per view."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import numpy as np

from raysched.schedulers.policies import base
from raysched.schedulers.policies.base import gang_slots
from raysched.schedulers.policies.learned import learned_policy
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import ClusterView, JobView
from tests.unit.learned_policy_helpers import job, node


class _TimeModel:
    """Predictions that change with the view's time and free CPUs (so when a job is
    predicted shows in its remaining time); counts the rows of each call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict_many(self, pairs, cluster):
        self.calls.append([j.job_id for j, _ in pairs])
        free = sum(n.cpus_free for n in cluster.nodes)
        step = np.array([1.0 + (int(j.job_id[1:]) % 7) / 10 + cluster.time / 1000 + free / 100
                         for j, _ in pairs])
        left = np.array([j.steps_left for j, _ in pairs], dtype=float)
        return SimpleNamespace(step_time_s=step, step_time_hi_s=step * 1.5,
                               duration_s=left * step, duration_hi_s=left * step * 1.5,
                               peak_rss_hi_mb=np.zeros(len(pairs)))



def _rounds(seed: int, n_rounds: int = 60):
    """Random queues over time: jobs leave and arrive, some are rebuilt (same or fewer steps
    left, another priority), sometimes a job id is queued twice or the free CPUs change."""
    rng = random.Random(seed)
    queue: list[JobView] = []
    next_id = 0
    t = 0.0
    for _ in range(n_rounds):
        t += rng.choice([1.0, 1.0, 5.0, 30.0])
        for j in [j for j in queue if rng.random() < 0.1]:
            queue.remove(j)
        for _ in range(rng.randint(0, 6)):
            queue.append(job(f"j{next_id}", steps=rng.randint(1, 300), t=t - rng.uniform(0, 90),
                             workers=rng.randint(1, 3), priority=rng.choice([0, 0, 1, 2])))
            next_id += 1
        for k, j in enumerate(queue):
            r = rng.random()
            if r < 0.05:
                queue[k] = dataclasses.replace(j)  # another object, the same job
            elif r < 0.08:
                queue[k] = dataclasses.replace(j, steps_done=min(j.steps_done + 5, j.spec.steps))
            elif r < 0.10:
                queue[k] = dataclasses.replace(
                    j, spec=dataclasses.replace(j.spec, priority=rng.choice([0, 1, 2])))
        rng.shuffle(queue)
        shown = list(queue)
        if shown and rng.random() < 0.05:
            shown.append(rng.choice(shown))  # a job id twice
        free = rng.choice([0.0, 8.0, 16.0])
        nodes = (node("a", total=16, free=free), node("b", total=16, speed=0.5))
        yield ClusterView(time=t, nodes=nodes, jobs=tuple(shown)), shown, rng


def test_walk_end_stops_looking_after_the_overdue_prefix_with_the_same_answer() -> None:
    cut = 0
    for seed in range(6):
        model = _TimeModel()
        policy = learned_policy(model, node_speeds=None)
        wrapper = policy.ordering
        for view, queued, rng in _rounds(seed, 40):
            nodes = tuple(node(f"n{i}", total=8, free=float(rng.choice([0, 1, 2, 8])))
                          for i in range(3))
            view = dataclasses.replace(view, nodes=nodes)
            order = wrapper.ordering.order(queued, view)
            if not order:
                continue
            prefix = wrapper.ordering.overdue_prefix(order)
            unique = len({j.job_id for j in queued}) == len(queued)
            assert (prefix is not None) == unique
            if prefix is not None:  # exactly the overdue jobs lead the order
                assert [wrapper.ordering.overdue(j, view) for j in order] == \
                    [i < prefix for i in range(len(order))]
                cut += prefix < len(order)
            fast = wrapper.walk_end(order, view)
            wrapper.ordering._last = None  # no prefix known: every job is looked at
            assert fast == wrapper.walk_end(order, view)
    assert cut > 50  # the shortcut was taken


def test_slot_counts_are_those_of_the_view_asked_about() -> None:
    rng = random.Random(3)
    views = []
    for t in range(12):
        nodes = tuple(node(f"n{i}", total=8, free=float(rng.choice([0, 1, 2, 3, 8])),
                           gpus_total=2.0, gpus_free=float(rng.choice([0, 1, 2])),
                           degraded=rng.random() < 0.1) for i in range(6))
        views.append(ClusterView(time=float(t), nodes=nodes))
    shapes = [JobSpec(name="s", cpus_per_worker=c, gpus_per_worker=g)
              for c in (1.0, 2.0, 3.0) for g in (0, 1)]
    for _ in range(300):  # views asked about in any order, again and again
        view, spec, empty = rng.choice(views), rng.choice(shapes), rng.random() < 0.5
        want = base._count_slots(spec.cpus_per_worker, spec.gpus_per_worker, view, empty)
        assert gang_slots(spec, view, empty=empty) == want
