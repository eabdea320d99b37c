"""Hand-built nodes, jobs and a call-counting oracle shared by the learned-policy unit tests."""

from __future__ import annotations

from raysched.schedulers.policies.oracle import OracleCostModel
from raysched.schedulers.spec import JobSpec
from raysched.schedulers.types import JobState, JobView, NodeView


def node(nid: str, total: float = 8, free: float | None = None, **kw: object) -> NodeView:
    return NodeView(node_id=nid, cpus_total=total, cpus_free=total if free is None else free,
                    **kw)


def job(jid: str, *, steps: int = 100, workers: int = 1, cpus: float = 1.0, t: float = 0.0,
        priority: int = 0, **kw: object) -> JobView:
    spec = JobSpec(name=jid, steps=steps, num_workers=workers, cpus_per_worker=cpus,
                   priority=priority)
    return JobView(job_id=jid, spec=spec, state=kw.pop("state", JobState.QUEUED),
                   submit_time=t, **kw)


class Counting(OracleCostModel):
    """The oracle, counting predict_many calls and rows."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)
        self.calls: list[int] = []

    def predict_many(self, pairs, cluster):
        self.calls.append(len(pairs))
        return super().predict_many(pairs, cluster)
