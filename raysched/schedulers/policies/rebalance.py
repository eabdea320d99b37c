"""Rebalancing of the learned policy: stragglers and slow nodes, drains and migrations."""

from __future__ import annotations

from collections.abc import Sequence

from raysched.schedulers.decisions import (
    Migration,
    NodeFlag,
    RebalanceDecision,
)
from raysched.schedulers.fit import usable_cpus
from raysched.schedulers.policies.candidates import (
    gang_candidates,
    node_alike,
)
from raysched.schedulers.policies.node_speeds import (
    AdjustView,
    NodeSpeedSource,
    SpeedAdjustedViews,
)
from raysched.schedulers.policies.prediction import (
    EPS,
    BatchCostModel,
    NodeIds,
    describe_nodes,
    fastest_first,
    model_speed,
    predict,
    short_id,
)
from raysched.schedulers.policies.straggler_signals import (
    StragglerSignal,
    calibration,
    peer_slowdowns,
    straggler_signal,
)
from raysched.schedulers.types import ClusterView, JobView, NodeView


class StragglerRebalance:
    """Find jobs running slower than predicted, flag their nodes, migrate when it pays.

    A running job with at least `min_steps` steps whose measured step time exceeds ``step_time_hi *
    slow_factor`` (its predicted interval's upper end on its own nodes), or whose slowdown ratio
    ``recent / baseline`` (its early steps on the same nodes) exceeds ``self_factor`` times the
    median ratio of the measured jobs on nodes it does not share (floored at 1; the raw ratio when
    there are none; see `straggler_signals`), is a straggler, and its nodes are suspects. So a
    slowdown every job shares (a contended host or network) is no node's fault, while a node
    whose jobs alone slowed is; a lone job is judged on its own ratio. A suspect node also
    running an on-time job is cleared (the slowness is then the straggler's own). A suspect is
    never a migration target; it is flagged degraded (drained) once the evidence is corroborated:
    stragglers among at least two of its jobs at once, or one job's for `confirm_s` seconds in a
    row, or a migration of that job off it this round (the move acts on the evidence, and a
    relaunch placed afresh would otherwise go back to the node). One job alone can be slow for
    its own reasons: a live run drained a node for a pipeline job whose two stages shared it
    (5.6x its early steps while other nodes' jobs slowed 1.3x), which ended 10 s later. A
    straggler is migrated to the free, healthy candidate with the lowest
    predicted step time when ``steps_left * (observed_step - predicted_step_there) > migration
    cost`` (predictions rescaled to the job's measured baseline; the cost measured on the cluster
    when the view carries it, else the larger of `migration_cost_s` and the cost model's
    predicted start-up on the target, since a relaunch pays the job's start-up again); the
    migration's `predicted_gain_s` is that saving minus the cost. A job is not migrated again
    within `cooldown_s`.

    Node-level evidence, with `node_speeds` (see `node_speeds.py`): each round the running jobs'
    measured step times update the source's per-node slowdowns. A node slowed `drain_factor`
    times or more, by the evidence of at least `drain_min_jobs` jobs, is flagged degraded
    whatever its jobs' own yardsticks say, and
    every job on a node slowed `move_factor` times or more may move even though it measured its
    own early steps there (it started after the slowdown). Targets are then predicted on the
    view with measured speeds, and a mover's predictions are rescaled to its recent steps on
    the speeds measured now (not to its baseline, which may predate the slowdown).

    Drain budget: at most `max_drained_fraction` of the live nodes' CPUs are drained at once
    (like a disruption budget); a suspect node past it stays in service, its jobs may still
    move and placement sees its measured speed. A live run on 6 CPUs that drained 4 of them
    (one node on a noisy baseline) left the 2-worker jobs queued for 600 s.

    Stateful, deliberately: the view carries no memory of when a node was last seen slow, so the
    rebalancer remembers, per node it flagged, the time of the latest evidence, and flags the node
    healthy again after `recovery_s` seconds without new evidence (a drained node whose jobs have
    moved produces none, so this is its probation); and, per job, when it was last migrated.
    """

    def __init__(
        self,
        cost_model: BatchCostModel,
        *,
        slow_factor: float = 1.5,
        self_factor: float = 3.0,  # 2x drained nodes on load noise in the live benchmark
        min_steps: int = 5,
        migration_cost_s: float = 30.0,
        recovery_s: float = 300.0,
        cooldown_s: float = 600.0,
        refresh_s: float = 60.0,
        max_candidates: int = 8,
        node_speeds: NodeSpeedSource | None = None,
        move_factor: float = 2.0,
        drain_factor: float = 3.0,
        drain_min_jobs: int = 2,
        max_drained_fraction: float = 0.5,
        confirm_s: float = 60.0,
        adjust: AdjustView | None = None,
    ) -> None:
        if confirm_s < 0:
            raise ValueError(f"confirm_s must be >= 0, got {confirm_s}")
        self.confirm_s = confirm_s
        self.lone_since: dict[str, float] = {}  # node -> since when one job's signal stands
        self.node_speeds = node_speeds
        self.move_factor = move_factor
        self.drain_factor = drain_factor
        self.drain_min_jobs = drain_min_jobs
        self.max_drained_fraction = max_drained_fraction
        self.adjust = adjust if adjust is not None or node_speeds is None \
            else SpeedAdjustedViews(node_speeds)
        self.slow_factor = slow_factor
        self.self_factor = self_factor
        self.min_steps = min_steps
        self.migration_cost_s = migration_cost_s
        self.recovery_s = recovery_s
        self.cooldown_s = cooldown_s
        self.refresh_s = refresh_s
        self.max_candidates = max(max_candidates, 4)
        self.flagged_at: dict[str, float] = {}  # node -> time of the latest slowness evidence
        self.migrated_at: dict[str, float] = {}  # job -> time of its last migration
        self.cost_model = cost_model

    @property
    def cost_model(self) -> BatchCostModel:
        """The model asked; assigning a new one (a promoted version) empties the cache of
        expected step times (the observations behind flags and cooldowns are kept)."""
        return self._cost_model

    @cost_model.setter
    def cost_model(self, model: BatchCostModel) -> None:
        self._cost_model = model
        self._expected: dict[tuple[str, NodeIds], tuple[float, float, float]] = {}
        self._speed = model_speed(model)
        self._alike = node_alike(model)

    def _expected_steps(self, jobs: Sequence[JobView], view: ClusterView,
                        by_id: dict[str, NodeView]) -> dict[str, tuple[float, float]]:
        """(predicted step, its upper bound) of each job on its own nodes (cached)."""
        now = view.time
        live = {(j.job_id, j.node_ids) for j in jobs}
        for k in [k for k in self._expected if k not in live]:
            del self._expected[k]
        todo = [j for j in jobs if (hit := self._expected.get((j.job_id, j.node_ids))) is None
                or now - hit[0] > self.refresh_s]
        pairs = [(j, tuple(by_id[n] for n in j.node_ids)) for j in todo]
        for j, p in zip(todo, predict(self.cost_model, pairs, view), strict=True):
            self._expected[(j.job_id, j.node_ids)] = (now, p.step, p.step_hi)
        return {j.job_id: self._expected[(j.job_id, j.node_ids)][1:] for j in jobs}

    def rebalance(self, cluster: ClusterView) -> RebalanceDecision:
        now = cluster.time
        by_id = {n.node_id: n for n in cluster.nodes}
        measured = [j for j in cluster.running
                    if j.recent_step_time_s and j.steps_done >= self.min_steps and j.node_ids
                    and all(n in by_id for n in j.node_ids)]
        expected = self._expected_steps(measured, cluster, by_id)
        slowed: dict[str, float] = {}  # node -> measured slowdown (node-level evidence)
        if self.node_speeds is not None:
            self.node_speeds.update(cluster)
            for n in cluster.nodes:
                factor = self.node_speeds.slowdown(n)
                if factor >= self.move_factor:
                    slowed[n.node_id] = factor
        slow: list[tuple[JobView, StragglerSignal]] = []
        cleared: set[str] = set()
        peers = peer_slowdowns(measured)
        for j in measured:
            signal = straggler_signal(j, expected[j.job_id][1], slow_factor=self.slow_factor,
                                      self_factor=self.self_factor,
                                      peer_slowdown=peers[j.job_id])
            if signal is not None:
                slow.append((j, signal))
            else:
                cleared.update(j.node_ids)
        flags: list[NodeFlag] = []
        suspects: set[str] = set()

        alive = [n for n in cluster.nodes if n.alive]
        budget = self.max_drained_fraction * sum(n.cpus_total for n in alive) + EPS
        drained = sum(n.cpus_total for n in alive if n.degraded)

        def suspect(nid: str, reason: str) -> None:
            nonlocal drained
            suspects.add(nid)  # never a migration target this round, drained or not
            if nid not in self.flagged_at and not by_id[nid].degraded:
                if drained + by_id[nid].cpus_total > budget:
                    return  # over the drain budget: stays in service, placed at its speed
                drained += by_id[nid].cpus_total
                flags.append(NodeFlag(node_id=nid, degraded=True, reason=reason))
            self.flagged_at[nid] = now

        evidence: dict[str, list[tuple[JobView, StragglerSignal]]] = {}
        for j, signal in slow:
            for nid in dict.fromkeys(j.node_ids):
                if nid not in cleared:
                    evidence.setdefault(nid, []).append((j, signal))
        for nid in [n for n in self.lone_since if len(evidence.get(n, ())) != 1]:
            del self.lone_since[nid]
        pending: dict[str, str] = {}  # unconfirmed suspect -> its evidence
        for nid, found in evidence.items():
            reason = "; ".join(f"job {j.job_id} {signal.describe()}" for j, signal in found)
            if len(found) == 1 and nid not in self.flagged_at and not by_id[nid].degraded:
                since = self.lone_since.setdefault(nid, now)
                if now - since < self.confirm_s:
                    suspects.add(nid)  # not a migration target; drained once corroborated
                    pending[nid] = reason
                    continue
                reason += f" (for {now - since:.0f} s)"
            suspect(nid, reason)
        for nid, factor in slowed.items():
            if (factor >= self.drain_factor and nid not in suspects
                    and self.node_speeds.jobs_seen(by_id[nid]) >= self.drain_min_jobs):  # type: ignore[union-attr]
                node = by_id[nid]
                suspect(nid, f"node {factor:.2g}x slower than its speed label "
                             f"{node.speed:g}: {self.node_speeds.evidence(node)}")  # type: ignore[union-attr]
        for nid, t in list(self.flagged_at.items()):
            if nid not in suspects and now - t >= self.recovery_s:
                del self.flagged_at[nid]
                if nid in by_id and by_id[nid].degraded:
                    flags.append(NodeFlag(node_id=nid, degraded=False, reason=(
                        f"no slowness seen for {now - t:.0f} s (recovery after "
                        f"{self.recovery_s:g} s)")))
        movers = {j.job_id: (j, "straggler") for j, _ in slow}
        for j in measured:
            on = [n for n in dict.fromkeys(j.node_ids) if n in slowed]
            if j.job_id not in movers and on:
                movers[j.job_id] = (j, f"on {short_id(on[0])}, measured {slowed[on[0]]:.2g}x "
                                       "slower than its label")
        migrations = self._migrations(movers, cluster, by_id, suspects, set(slowed), expected)
        # Moving a job off an unconfirmed suspect acts on its evidence: drain the node too, or
        # the relaunch (placed afresh) goes back to it. A live test's job did just that.
        for m in migrations:
            for nid in dict.fromkeys(m.from_node_ids):
                if nid in pending:
                    suspect(nid, f"{pending.pop(nid)}; its job {m.job_id} is moved off it")
        return RebalanceDecision(migrations=tuple(migrations), node_flags=tuple(flags))

    def _migrations(self, candidates: dict[str, tuple[JobView, str]], view: ClusterView,
                    by_id: dict[str, NodeView], suspects: set[str], slowed: set[str],
                    expected: dict[str, tuple[float, float]]) -> list[Migration]:
        """Moves whose saving (in the job's measured units) beats one migration's cost.

        The cost is the cluster's measured one when the view carries it; before any migration
        was measured, the larger of the default and the start-up the model predicts for the
        relaunch on the target (its duration there less the steps' time). A live run migrated
        twice on the flat 30 s default where a relaunch really cost 45-180 s of start-up.
        A job on a node measured slow (`slowed`) is rescaled to its recent steps on the
        adjusted view; any other to its baseline (its own yardstick, from before it slowed).
        """
        bad = suspects | slowed
        now = view.time
        measured_cost = view.migration_cost_s
        for k in [k for k, t in self.migrated_at.items() if now - t >= self.cooldown_s]:
            del self.migrated_at[k]
        movable = [j for j, _ in candidates.values() if j.job_id not in self.migrated_at]
        if not movable:
            return []
        if self.adjust is not None:  # predict on the speeds measured now
            view = self.adjust(view)
            by_id = {n.node_id: n for n in view.nodes}
        healthy = [n for n in by_id.values()
                   if n.schedulable and n.cpus_total > 0 and n.node_id not in bad]
        free = {n.node_id: max(n.cpus_free, 0.0) for n in healthy}
        gpus = {n.node_id: n.gpus_free for n in healthy}
        # A full node is in no candidate: leave it out of the (then shorter) sort.
        fastest = fastest_first([n for n in healthy if free[n.node_id] > EPS], self._speed)
        options: list[tuple[JobView, NodeIds]] = []
        for j in movable:
            cpw, gpw = j.spec.cpus_per_worker, j.spec.gpus_per_worker
            room = free if gpw <= 0 else {
                nid: usable_cpus(f, gpus[nid], cpw, gpw) for nid, f in free.items()}
            for ids in gang_candidates(j, fastest, room, max_single=self.max_candidates - 3,
                                       alike=self._alike):
                options.append((j, ids))
        on_slowed = [j for j in movable if slowed.intersection(j.node_ids)]
        own = [(j, tuple(by_id[n] for n in j.node_ids)) for j in on_slowed]
        pairs = [(j, tuple(by_id[n] for n in ids)) for j, ids in options]
        preds = predict(self.cost_model, own + pairs, view)
        scale = {j.job_id: calibration(j, expected[j.job_id][0]) for j in movable}
        for j, p in zip(on_slowed, preds[:len(own)], strict=True):
            # Its recent steps over its prediction on the speeds measured now.
            scale[j.job_id] = calibration(j, p.step, j.recent_step_time_s)
        best: dict[str, tuple[float, NodeIds, float]] = {}
        for (j, ids), p in zip(options, preds[len(own):], strict=True):
            step = p.step * scale[j.job_id]
            if j.job_id not in best or step < best[j.job_id][0]:
                # The relaunch's start-up: the predicted duration there beyond its steps.
                startup = max(p.duration - j.steps_left * p.step, 0.0)
                best[j.job_id] = (step, ids, startup)
        out: list[Migration] = []
        for j in sorted(movable, key=lambda j: -j.steps_left * (j.recent_step_time_s or 0.0)):
            if j.job_id not in best:
                continue
            step, ids, startup = best[j.job_id]
            cost = measured_cost if measured_cost is not None \
                else max(self.migration_cost_s, startup)
            need: dict[str, float] = {}
            for nid in ids:
                need[nid] = need.get(nid, 0.0) + j.spec.cpus_per_worker
            gpw = j.spec.gpus_per_worker
            gpu_need = {nid: ids.count(nid) * gpw for nid in need} if gpw > 0 else {}
            if any(free[nid] + EPS < c for nid, c in need.items()) or any(
                    gpus[nid] + EPS < g for nid, g in gpu_need.items()):
                continue  # taken by an earlier migration this round
            saving = j.steps_left * ((j.recent_step_time_s or 0.0) - step)
            if saving <= cost:
                continue
            for nid, c in need.items():
                free[nid] -= c
            for nid, g in gpu_need.items():
                gpus[nid] -= g
            self.migrated_at[j.job_id] = now
            out.append(Migration(
                job_id=j.job_id, from_node_ids=j.node_ids, to_node_ids=ids,
                predicted_gain_s=saving - cost,
                reason=(f"{candidates[j.job_id][1]}: {j.recent_step_time_s:.3g} s/step measured, "
                        f"{step:.3g} s/step predicted on {describe_nodes(ids, by_id)}; "
                        f"{j.steps_left} steps left save {saving:.1f} s > migration cost "
                        f"{cost:.1f} s"
                        f"{_cost_source(measured_cost, startup, self.migration_cost_s)}"),
            ))
        return out


def _cost_source(measured: float | None, startup: float, default: float) -> str:
    """Where a migration's cost came from, for its decision reason."""
    if measured is not None:
        return " (measured)"
    return " (predicted start-up)" if startup > default else " (default)"
