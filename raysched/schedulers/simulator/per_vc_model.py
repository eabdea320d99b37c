"""One online duration model per virtual cluster (VC), behind the single model's interface.

`OnlineDurationModel` shares everything across VCs: the gradient-boosted correction, the
recent-overall history feature, the pooled residual distribution (Gittins ranks, preemption
margins of jobs without a group pool of their own) and the refit schedule (every
`retrain_every` finished jobs of any VC). `PerVcModel` gives each VC its own model built by a
factory, so a VC's predictions and ranks depend only on its own finished jobs: replaying a VC
inside the full cluster then decides exactly as replaying it alone. Each model still learns
only from jobs finished at the simulated time.

With a `shared` model and `own_after` n > 0 the two are combined: every job is submitted to and
learnt by both the shared model and its VC's own model, and a job is decided (prediction,
rank, spread, scouting) by the shared model until its VC's own model has n finished jobs, then
by its VC's own model (jobs already waiting switch too). Small VCs keep the other VCs'
evidence; a busy VC is ranked by its own.
"""

from __future__ import annotations

from collections.abc import Callable

from raysched.schedulers.simulator.online_predictor import OnlineDurationModel
from raysched.schedulers.simulator.traces import TraceJob


class PerVcModel:
    """Dispatches every call about a job to the model of the job's VC (created on first use)."""

    def __init__(
        self,
        make: Callable[[], OnlineDurationModel],
        *,
        shared: OnlineDurationModel | None = None,
        own_after: int = 0,
    ) -> None:
        if own_after < 0 or (own_after > 0 and shared is None):
            raise ValueError("own_after must be >= 0, and > 0 only with a shared model")
        self.make = make
        self.shared = shared if own_after > 0 else None
        self.own_after = own_after
        self.models: dict[str, OnlineDurationModel] = {}
        self.own: dict[int, OnlineDurationModel] = {}  # active job -> its VC's model
        self.changed_: list[int] = []

    @property
    def version(self) -> int:
        """Total refits and rank-table updates over all VCs' models (and the shared one)."""
        return sum(m.version for m in self._all())

    @property
    def fit_seconds_(self) -> float:
        """Time spent fitting, all models together."""
        return sum(m.fit_seconds_ for m in self._all())

    def _all(self) -> list[OnlineDurationModel]:
        return [*self.models.values(), *([self.shared] if self.shared is not None else [])]

    def model_of(self, job: TraceJob) -> OnlineDurationModel:
        """The model of `job`'s VC."""
        m = self.models.get(job.vc)
        if m is None:
            m = self.models[job.vc] = self.make()
        return m

    def owner(self, idx: int) -> OnlineDurationModel:
        """The model that decides active job `idx` now."""
        own = self.own[idx]
        if self.shared is None or own.n_finished >= self.own_after:
            return own
        return self.shared

    def key_version(self, idx: int) -> tuple[int, ...]:
        """Changes whenever job `idx`'s prediction or rank table may have changed."""
        m = self.owner(idx)
        return (int(m is self.shared), *m.key_version(idx))

    def submit(self, idx: int, job: TraceJob) -> float:
        """Register a submitted job with its VC's model (and the shared one); returns the
        predicted log duration of the model that decides it."""
        own = self.own[idx] = self.model_of(job)
        mu = own.submit(idx, job)
        if self.shared is None:
            return mu
        shared_mu = self.shared.submit(idx, job)
        return mu if own.n_finished >= self.own_after else shared_mu

    def finish(self, idx: int, job: TraceJob, duration: float) -> bool:
        """A job finished: its VC's model (and the shared one) learn from it; True when a model
        refit or a VC's own model took over. `changed_`: the jobs whose burst prediction changed
        in either model."""
        own = self.own.pop(idx)
        changed = own.finish(idx, job, duration) or own.n_finished == self.own_after
        self.changed_ = list(own.changed_)
        if self.shared is not None:
            changed = self.shared.finish(idx, job, duration) or changed
            self.changed_ = sorted({*self.changed_, *self.shared.changed_})
        return changed

    def shared_decides(self, idx: int) -> bool:
        """True while active job `idx` is decided by the shared model (its VC's own model has
        fewer than `own_after` finished jobs)."""
        return self.owner(idx) is self.shared

    def deferred(self, idx: int, min_burst: int = 0) -> bool:
        """See `OnlineDurationModel.deferred`."""
        return self.owner(idx).deferred(idx, min_burst)

    def burst_reached(self, idx: int, k: int) -> list[int]:
        """See `OnlineDurationModel.burst_reached` (asked of both models a job may be decided
        by, so that whichever decides sees the changed keys)."""
        out = set(self.own[idx].burst_reached(idx, k))
        if self.shared is not None:
            out.update(self.shared.burst_reached(idx, k))
        return sorted(out)

    def rank(self, idx: int, age: float) -> float:
        """See `OnlineDurationModel.rank`."""
        return self.owner(idx).rank(idx, age)

    def expected_remaining(self, idx: int, age: float) -> float:
        """See `OnlineDurationModel.expected_remaining`."""
        return self.owner(idx).expected_remaining(idx, age)

    def predicted_remaining(self, idx: int, age: float) -> float:
        """See `OnlineDurationModel.predicted_remaining`."""
        return self.owner(idx).predicted_remaining(idx, age)

    def spread(self, idx: int) -> float:
        """See `OnlineDurationModel.spread`."""
        return self.owner(idx).spread(idx)
