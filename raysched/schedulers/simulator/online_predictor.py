"""Trace-duration model trained online during a replay, only on jobs already finished.

- `History`: rolling medians of log run time per (VC, GPUs), VC, user, name and overall,
  updated when a job finishes; QSSF and the learned model's features read it.
- `OnlineDurationModel`: the history median plus a HistGradientBoostingRegressor correction,
  on log duration. A job's features are frozen at its submit time (history baseline, VC code,
  log2 GPUs, hour of day, day of week, history medians, counts and most recent durations,
  submission gaps and bursts of its VC), so a training row never holds anything learned after
  its submission; a finished job joins the training set; the model is refit every
  `retrain_every` finished jobs. The out-of-sample residuals of finished jobs (log duration -
  the prediction it had), per (VC, units) group where there are enough, give a duration
  distribution `exp(mu + eps)`; from it come the Gittins rank (`rank`), the expected remaining
  time given attained age (`expected_remaining`) and SPRPT's (`predicted_remaining`).
- Submission bursts: jobs of one (VC, units) group submitted at most `burst_gap_s` apart form a
  burst (a sweep: on Philly, log durations within a burst vary ~3x less than overall). When a
  member of a burst finishes, the still-active members' prediction becomes the mean log
  duration of the burst's finished members, with its own residual pool ("burst"), and
  `finish` reports which jobs changed (`changed_`).
- Options (all off by default; BENCHMARKS.md has their tuning-week figures):
  `history_weight` w moves every prediction towards QSSF's history estimate (baseline +
  (1 - w) x correction; w=1 is QSSF's estimate); `burst_prior` k shrinks a burst mean
  towards the job's own model prediction, as if k more members had finished at it (the first
  finishers of a burst are its shortest, so its mean is low early); `burst_group_pools`
  gives burst-informed jobs of each (VC, units) group their own residual pool (at least
  `min_group` residuals, else the pool of all burst-informed jobs).

Nothing here reads the duration of a job that has not finished at the simulated time.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime

import numpy as np

from raysched.schedulers.simulator.traces import TraceJob

DEFAULT_LOG_DURATION = math.log(3600.0)  # prior before any job finished: one hour


class History:
    """Rolling medians of log durations of finished jobs, by group."""

    def __init__(self, window: int = 50, global_window: int = 200) -> None:
        self.window = window
        self.groups: dict[tuple, deque[float]] = {}
        self.counts: dict[tuple, int] = {}
        self.recent: deque[float] = deque(maxlen=global_window)
        self.last_submit: dict[str, float] = {}  # VC -> last submit time
        self.submits: dict[str, deque[float]] = {}  # VC -> submit times in the last hour

    def note_submit(self, job: TraceJob) -> tuple[float, float]:
        """Record a submission; returns (log1p s since the VC's previous submit (NaN if none),
        log1p submits of the VC in the past hour). Submit-side only: no durations."""
        t = job.submit_s
        prev = self.last_submit.get(job.vc)
        q = self.submits.setdefault(job.vc, deque())
        while q and q[0] < t - 3600.0:
            q.popleft()
        out = (math.nan if prev is None else math.log1p(max(t - prev, 0.0)), math.log1p(len(q)))
        q.append(t)
        self.last_submit[job.vc] = t
        return out

    def last(self, key: tuple, k: int = 1) -> float:
        """Mean of the `k` most recent log durations of a group (NaN if none)."""
        d = self.groups.get(key)
        if not d:
            return math.nan
        tail = list(d)[-k:]
        return sum(tail) / len(tail)

    @staticmethod
    def keys(job: TraceJob) -> list[tuple]:
        """Groups a job belongs to, most specific first (user/name only when present)."""
        keys: list[tuple] = [("vcg", job.vc, job.gpus, job.cpus)]
        if job.name:
            keys.append(("name", job.name))
        if job.user:
            keys.append(("user", job.user))
        keys.append(("vc", job.vc))
        return keys

    def observe(self, job: TraceJob, duration: float) -> None:
        """Record a finished job's run time."""
        y = math.log(max(duration, 1.0))
        for k in self.keys(job):
            d = self.groups.get(k)
            if d is None:
                d = self.groups[k] = deque(maxlen=self.window)
            d.append(y)
            self.counts[k] = self.counts.get(k, 0) + 1
        self.recent.append(y)

    @staticmethod
    def _median(values: deque[float]) -> float:
        s = sorted(values)
        n = len(s)
        return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])

    def median(self, key: tuple) -> float:
        """Median log duration of a group; NaN when the group has no finished job yet."""
        d = self.groups.get(key)
        return self._median(d) if d else math.nan

    def global_median(self) -> float:
        """Median log duration of the most recent finished jobs overall."""
        return self._median(self.recent) if self.recent else math.nan

    def estimate(self, job: TraceJob) -> float:
        """Log duration estimate from the most specific group with history (QSSF's rule)."""
        for k in self.keys(job):
            m = self.median(k)
            if not math.isnan(m):
                return m
        g = self.global_median()
        return DEFAULT_LOG_DURATION if math.isnan(g) else g


class _FastTrees:
    """Single-row evaluation of a fitted HistGradientBoostingRegressor (numerical features).

    sklearn's `predict` costs milliseconds per call in input validation; this walks all trees
    at once with numpy. It is checked against `predict` after every fit and not used on a
    mismatch."""

    def __init__(self, model: object, x_check: np.ndarray) -> None:
        preds = [p[0] for p in model._predictors]  # type: ignore[attr-defined]
        sizes = [len(p.nodes) for p in preds]
        offsets = np.cumsum([0, *sizes[:-1]])
        nodes = np.concatenate([p.nodes for p in preds])
        tree_of = np.repeat(offsets, sizes)
        self.feat = nodes["feature_idx"].astype(np.intp)
        self.thr = nodes["num_threshold"].astype(float)
        self.left = nodes["left"].astype(np.intp) + tree_of
        self.right = nodes["right"].astype(np.intp) + tree_of
        self.leaf = nodes["is_leaf"].astype(bool)
        self.miss_left = nodes["missing_go_to_left"].astype(bool)
        self.value = nodes["value"].astype(float)
        self.roots = offsets.astype(np.intp)
        self.depth = int(nodes["depth"].max()) + 1
        self.base = float(np.ravel(model._baseline_prediction)[0])  # type: ignore[attr-defined]
        want = model.predict(x_check)  # type: ignore[attr-defined]
        got = np.array([self(row) for row in x_check])
        if not np.allclose(want, got, atol=1e-6):
            raise ValueError("fast tree walk disagrees with predict()")

    def __call__(self, x: np.ndarray) -> float:
        idx = self.roots
        for _ in range(self.depth):
            leaf = self.leaf[idx]
            if leaf.all():
                break
            v = x[self.feat[idx]]
            go_left = np.where(np.isnan(v), self.miss_left[idx], v <= self.thr[idx])
            idx = np.where(leaf, idx, np.where(go_left, self.left[idx], self.right[idx]))
        return self.base + float(self.value[idx].sum())


def gittins_rank_table(
    ratios: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    """Gittins rank of a duration distribution given by samples `ratios` (scale 1), at the
    normalised ages `grid`: min over quanta q of E[min(D - a, q) | D > a] / P(D - a <= q | D > a).
    Lower is better; it equals the expected remaining time for a point mass and is the
    optimal priority for mean completion time in an M/G/1 queue with this distribution."""
    x = np.sort(np.asarray(ratios, dtype=float))
    out = np.empty(len(grid))
    for k, a in enumerate(grid):
        y = x[x > a] - a
        n = len(y)
        if n == 0:
            out[k] = math.nan
            continue
        i = np.arange(1, n + 1)
        ratio = (np.cumsum(y) + (n - i) * y) / i
        out[k] = ratio.min()
    return out


class OnlineDurationModel:
    """Predicts log run time of submitted jobs from finished ones; refit as jobs finish.

    Prediction = history baseline (QSSF's estimate) + a HistGradientBoostingRegressor fit to the
    baseline's error, shrunk (small learning rate, large leaves, L2) so that with little signal
    it stays at the baseline. The duration distribution of an active job is exp(mu + eps) with
    eps drawn from the recent out-of-sample residuals of its own (VC, units) group, else its VC,
    else all jobs (at least `min_group` residuals); its Gittins rank table is precomputed per
    group at each refit.
    """

    N_FEATURES = 15

    def __init__(
        self,
        *,
        retrain_every: int = 500,
        min_train: int = 200,
        max_train: int = 20_000,
        residual_window: int = 2_000,
        group_window: int = 200,
        min_group: int = 30,
        max_iter: int = 60,
        seed: int = 0,
        burst_gap_s: float | None = 30.0,
        history_weight: float = 0.0,
        burst_prior: float = 0.0,
        burst_group_pools: bool = False,
    ) -> None:
        if not 0.0 <= history_weight <= 1.0:
            raise ValueError(f"history_weight must be in [0, 1], got {history_weight}")
        if burst_prior < 0:
            raise ValueError(f"burst_prior must be >= 0, got {burst_prior}")
        self.retrain_every = retrain_every
        self.min_train = min_train
        self.max_train = max_train
        self.residual_window = residual_window
        self.group_window = group_window
        self.min_group = min_group
        self.max_iter = max_iter
        self.seed = seed
        self.burst_gap_s = burst_gap_s
        self.history_weight = history_weight
        self.burst_prior = burst_prior
        self.burst_group_pools = burst_group_pools
        self.history = History()
        self.vc_codes: dict[str, int] = {}
        self.X: list[np.ndarray] = []
        self.y: list[float] = []
        self.residuals: deque[float] = deque(maxlen=residual_window)
        self.group_residuals: dict[tuple, deque[float]] = {}
        self.active: dict[int, np.ndarray] = {}  # job idx -> features frozen at submit
        self.mu: dict[int, float] = {}  # job idx -> current predicted log duration
        self.mu_model: dict[int, float] = {}  # job idx -> the model's own prediction
        self.groups_of: dict[int, tuple[tuple, ...]] = {}
        self.version = 0  # bumps whenever predictions or rank tables change
        self.n_finished = 0
        self.model_: object | None = None
        self.fast_: _FastTrees | None = None
        self.grid_ = np.geomspace(1e-3, 1e3, 241)
        self.log_grid_ = np.log(self.grid_)
        self.tables_: dict[tuple, tuple[np.ndarray, float]] = {}  # group -> (ranks, max ratio)
        self.spread_: dict[tuple, float] = {}  # group -> s.d. of its log-duration residuals
        self.fit_seconds_ = 0.0
        self.cols_ = np.ones(self.N_FEATURES, dtype=bool)
        self.burst_last: dict[tuple, tuple[float, int]] = {}  # group -> (last submit, burst)
        self.burst_of: dict[int, int] = {}  # active job -> burst id
        self.burst_members: dict[int, set[int]] = {}  # burst -> active members
        self.burst_scout: dict[int, int] = {}  # burst -> its first member (scouts for the rest)
        self.burst_size: dict[int, int] = {}  # burst -> members submitted so far
        self.burst_logs: dict[int, list[float]] = {}  # burst -> finished members' log durations
        self.informed: set[int] = set()  # active jobs predicted from finished burst siblings
        self.job_version: dict[int, int] = {}  # active job -> bumps when its prediction changes
        self.changed_: list[int] = []  # jobs whose prediction the last `finish` changed
        self.n_bursts = 0

    def get_params(self) -> dict[str, object]:
        """The keyword arguments this model was built with (to build an untrained copy)."""
        import inspect

        names = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in names if k != "self"}

    def key_version(self, idx: int) -> tuple[int, int]:
        """Changes whenever job `idx`'s prediction or rank table may have changed."""
        return self.version, self.job_version.get(idx, 0)

    @property
    def rank_table_(self) -> np.ndarray | None:
        """The pooled rank table (None before enough jobs finished)."""
        t = self.tables_.get(("all",))
        return None if t is None else t[0]

    # -- features --------------------------------------------------------------------------------
    @staticmethod
    def _groups(job: TraceJob) -> tuple[tuple, ...]:
        return (("vcg", job.vc, job.gpus, job.cpus), ("vc", job.vc), ("all",))

    def features(self, job: TraceJob) -> np.ndarray:
        """Features known at submit time (history only from already-finished jobs).

        [0] baseline (history estimate), [1] VC code, [2] log2 units, [3] hour, [4] weekday,
        [5-8] median log duration of (VC, units) / VC / user-or-name / recent overall,
        [9-10] log1p finished counts of (VC, units) / VC, [11] last and [12] mean of the last 5
        log durations of (VC, units), [13] log1p seconds since the VC's previous submit,
        [14] log1p submits of the VC in the past hour."""
        h = self.history
        code = self.vc_codes.setdefault(job.vc, len(self.vc_codes))
        when = datetime.fromtimestamp(job.submit_s, tz=UTC)
        units = job.gpus if job.gpus > 0 else job.cpus
        vcg = ("vcg", job.vc, job.gpus, job.cpus)
        person = ("name", job.name) if job.name else ("user", job.user)
        gap, burst = h.note_submit(job)
        return np.array(
            [
                h.estimate(job),
                float(code) if code < 250 else math.nan,
                math.log2(max(units, 1e-3)),
                when.hour + when.minute / 60.0,
                float(when.weekday()),
                h.median(vcg),
                h.median(("vc", job.vc)),
                h.median(person) if (job.name or job.user) else math.nan,
                h.global_median(),
                math.log1p(h.counts.get(vcg, 0)),
                math.log1p(h.counts.get(("vc", job.vc), 0)),
                h.last(vcg),
                h.last(vcg, 5),
                gap,
                burst,
            ]
        )

    def _predict(self, x: np.ndarray) -> float:
        """History baseline (QSSF's estimate) + (1 - `history_weight`) x the correction."""
        base = float(x[0])
        if self.model_ is None:
            return base
        xs = x[self.cols_]
        if self.fast_ is not None:
            corr = self.fast_(xs)
        else:
            corr = float(self.model_.predict(xs[None, :])[0])  # type: ignore[attr-defined]
        return base + (1.0 - self.history_weight) * corr

    def _burst_mean(self, logs: list[float], own: float) -> float:
        """Mean log duration of a burst's finished members, shrunk towards the job's own
        model prediction `own` with the weight of `burst_prior` finished jobs."""
        k = self.burst_prior
        return (sum(logs) + k * own) / (len(logs) + k)

    # -- lifecycle -------------------------------------------------------------------------------
    def submit(self, idx: int, job: TraceJob) -> float:
        """Register a submitted job; returns its predicted log duration."""
        x = self.features(job)
        self.active[idx] = x
        self.groups_of[idx] = self._groups(job)
        mu = self._predict(x)
        self.mu[idx] = self.mu_model[idx] = mu
        if self.burst_gap_s is not None:
            g = ("vcg", job.vc, job.gpus, job.cpus)
            last, b = self.burst_last.get(g, (-math.inf, -1))
            if job.submit_s - last > self.burst_gap_s:
                b = self._new_burst()
                self.burst_scout[b] = idx
            self.burst_last[g] = (job.submit_s, b)
            self.burst_of[idx] = b
            self.burst_members.setdefault(b, set()).add(idx)
            self.burst_size[b] = self.burst_size.get(b, 0) + 1
            logs = self.burst_logs.get(b)
            if logs:  # a sibling already finished: start from the burst's mean
                self.mu[idx] = mu = self._burst_mean(logs, mu)
                self.informed.add(idx)
        return mu

    def deferred(self, idx: int, min_burst: int = 0) -> bool:
        """True for an active job whose burst has no finished member yet and whose first
        member (the burst's scout) is another job: the scout's run will tell its duration.
        With `min_burst` k, only once the burst has at least k members submitted so far."""
        if idx in self.informed:
            return False
        b = self.burst_of.get(idx)
        return (
            b is not None
            and self.burst_scout.get(b, idx) != idx
            and self.burst_size.get(b, 0) >= min_burst
        )

    def burst_reached(self, idx: int, k: int) -> list[int]:
        """When job `idx`'s submission made its burst reach exactly `k` members: the burst's
        other active members that `deferred(., k)` now holds for (their keys changed; their
        versions are bumped). Else an empty list."""
        b = self.burst_of.get(idx)
        if b is None or self.burst_size.get(b, 0) != k:
            return []
        out = [m for m in self.burst_members.get(b, ()) if m != idx and self.deferred(m, k)]
        for m in out:
            self.job_version[m] = self.job_version.get(m, 0) + 1
        return sorted(out)

    def _new_burst(self) -> int:
        self.n_bursts += 1
        return self.n_bursts

    def finish(self, idx: int, job: TraceJob, duration: float) -> bool:
        """A job finished: learn from it. Returns True when predictions or ranks changed."""
        x = self.active.pop(idx)
        mu = self.mu.pop(idx)
        self.mu_model.pop(idx, None)
        groups = self.groups_of.pop(idx)
        y = math.log(max(duration, 1.0))
        informed = idx in self.informed
        self.informed.discard(idx)
        self.job_version.pop(idx, None)
        if informed:
            for pool in self._burst_pools(groups):
                d = self.group_residuals.get(pool)
                if d is None:
                    size = self.residual_window if pool == ("burst",) else self.group_window
                    d = self.group_residuals[pool] = deque(maxlen=size)
                d.append(y - mu)
        else:
            self.residuals.append(y - mu)
            for g in groups[:-1]:
                d = self.group_residuals.get(g)
                if d is None:
                    d = self.group_residuals[g] = deque(maxlen=self.group_window)
                d.append(y - mu)
        self.changed_ = self._burst_finished(idx, y)
        self.history.observe(job, duration)
        self.X.append(x)
        self.y.append(y)
        self.n_finished += 1
        if self.n_finished % self.retrain_every == 0 and self.n_finished >= self.min_train:
            self.refit()
            return True
        if not self.tables_ and len(self.residuals) >= 20:
            self._update_ranks()
            return True
        return False

    def _burst_finished(self, idx: int, y: float) -> list[int]:
        """A burst member finished: its active siblings' predictions become the burst mean."""
        b = self.burst_of.pop(idx, None)
        if b is None:
            return []
        members = self.burst_members[b]
        members.discard(idx)
        logs = self.burst_logs.setdefault(b, [])
        logs.append(y)
        if not members:
            del self.burst_members[b]
            return []
        for m in members:
            self.mu[m] = self._burst_mean(logs, self.mu_model[m])
            self.informed.add(m)
            self.job_version[m] = self.job_version.get(m, 0) + 1
        return list(members)

    def refit(self) -> None:
        """Fit the correction on the finished jobs seen so far (the last `max_train`)."""
        import time

        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        X = np.array(self.X[-self.max_train :])
        y = np.array(self.y[-self.max_train :]) - X[:, 0]  # learn the baseline's error
        # keep columns with at least two distinct known values (e.g. no user in Philly)
        self.cols_ = np.array(
            [len(np.unique(c[~np.isnan(c)])) >= 2 for c in X.T], dtype=bool
        )
        X = X[:, self.cols_]
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=0.05, max_leaf_nodes=31,
            min_samples_leaf=100, l2_regularization=1.0, early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(1):
            model.fit(X, y)
            try:
                self.fast_ = _FastTrees(model, X[-50:])
            except (AttributeError, KeyError, ValueError, IndexError):
                self.fast_ = None
            self.model_ = model
            if self.active:
                ids = list(self.active)
                xs = np.array([self.active[i] for i in ids])
                corr = model.predict(xs[:, self.cols_])
                preds = xs[:, 0] + (1.0 - self.history_weight) * corr
                for i, p in zip(ids, preds, strict=True):
                    self.mu_model[i] = float(p)
                    if i not in self.informed:
                        self.mu[i] = float(p)
                    elif self.burst_prior:  # burst evidence, shrunk to the new prediction
                        b = self.burst_of.get(i)
                        logs = self.burst_logs.get(b) if b is not None else None
                        if logs:
                            self.mu[i] = self._burst_mean(logs, float(p))
        self._update_ranks()
        self.fit_seconds_ += time.perf_counter() - t0

    def _update_ranks(self) -> None:
        pools: dict[tuple, deque[float]] = {("all",): self.residuals}
        pools.update(
            (g, d) for g, d in self.group_residuals.items() if len(d) >= self.min_group
        )
        self.tables_ = {}
        self.spread_ = {}
        for g, pool in pools.items():
            logs = np.array(pool)
            ratios = np.exp(logs)
            self.tables_[g] = (gittins_rank_table(ratios, self.grid_), float(ratios.max()))
            self.spread_[g] = float(logs.std()) if len(logs) > 1 else 0.0
        self.version += 1

    # -- ranks -----------------------------------------------------------------------------------
    def _burst_pools(self, groups: tuple[tuple, ...]) -> tuple[tuple, ...]:
        """Residual pools of a burst-informed job: its (VC, units) group's burst pool when
        `burst_group_pools`, then the pool of all burst-informed jobs."""
        if self.burst_group_pools:
            return (("burst", *groups[0][1:]), ("burst",))
        return (("burst",),)

    def _pools(self, idx: int) -> tuple[tuple, ...]:
        if idx in self.informed:
            return (*self._burst_pools(self.groups_of[idx]), *self.groups_of[idx])
        return self.groups_of[idx]

    def _table(self, idx: int) -> tuple[np.ndarray, float] | None:
        for g in self._pools(idx):
            t = self.tables_.get(g)
            if t is not None:
                return t
        return None

    def spread(self, idx: int) -> float:
        """S.d. of the log-duration residuals behind job `idx`'s distribution (its uncertainty;
        NaN before any rank table exists)."""
        for g in self._pools(idx):
            s = self.spread_.get(g)
            if s is not None:
                return s
        return math.nan

    def rank(self, idx: int, age: float) -> float:
        """Gittins rank (seconds; lower first) of active job `idx` after `age` s of work."""
        scale = math.exp(self.mu[idx])
        table = self._table(idx)
        if table is None:
            return max(scale - age, 0.0) if age < scale else age  # point-mass prior
        ranks, max_ratio = table
        z = age / scale
        if z >= max_ratio:
            return max(age, scale)  # outlived every error seen: assume it runs as long again
        if z <= self.grid_[0]:
            r = float(ranks[0])
        else:
            r = float(np.interp(math.log(z), self.log_grid_, ranks))
        if math.isnan(r):
            return max(age, scale)
        return r * scale

    def expected_remaining(self, idx: int, age: float) -> float:
        """Mean remaining run time given `age` s done, from the job's residual distribution."""
        scale = math.exp(self.mu[idx])
        pool = next(
            (self.group_residuals[g] for g in self._pools(idx)[:-1]
             if len(self.group_residuals.get(g, ())) >= self.min_group),
            self.residuals,
        )
        if not pool:
            return max(scale - age, 0.0)
        d = scale * np.exp(np.array(pool))
        alive = d[d > age]
        return float(alive.mean() - age) if len(alive) else max(age, scale)

    def predicted_remaining(self, idx: int, age: float) -> float:
        """Shortest-predicted-remaining (SPRPT) rank: point prediction minus `age` while the job
        is within its prediction; once it overruns, the expected remaining time of the tail."""
        scale = math.exp(self.mu[idx])
        if age < scale:
            return scale - age
        return self.expected_remaining(idx, age)
