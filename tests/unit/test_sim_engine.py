"""Hand-computed schedules and conservation checks for the discrete-event simulator."""

from __future__ import annotations

import random

import pytest

from raysched.schedulers.simulator import (
    ClusterSpec,
    EngineConfig,
    NodeSpec,
    SimulationError,
    Simulator,
    TraceJob,
    make_policy,
    simulate,
    uniform_cluster,
)
from raysched.schedulers.simulator.online_predictor import OnlineDurationModel
from raysched.schedulers.simulator.sim_policies import LearnedPolicy, TiresiasPolicy
from raysched.schedulers.simulator.traces import Trace, jobs_from_records

CHECK = EngineConfig(check_invariants=True)


def trace(*rows: tuple) -> Trace:
    """Rows of (name, submit, duration, gpus[, vc])."""
    recs = []
    for r in rows:
        name, submit, dur, gpus = r[:4]
        vc = r[4] if len(r) > 4 else ""
        recs.append(dict(job_id=name, submit_s=float(submit), duration_s=float(dur), gpus=gpus,
                         vc=vc))
    return jobs_from_records(recs)


def times(result) -> dict[str, tuple[float, float]]:
    return {
        j: (float(s), float(f))
        for j, s, f in zip(result.job_ids, result.start, result.finish, strict=True)
    }


def test_fifo_backfills_small_jobs_behind_a_blocked_head():
    tr = trace(("A", 0, 10, 1), ("B", 1, 5, 2), ("C", 2, 3, 1))
    r = simulate(tr, uniform_cluster(1, gpus_per_node=2), "fifo", CHECK)
    assert times(r) == {"A": (0, 10), "B": (10, 15), "C": (2, 5)}
    assert list(r.jct) == [10, 14, 3]


def test_strict_fifo_without_backfill_blocks_behind_the_head():
    tr = trace(("A", 0, 10, 1), ("B", 1, 5, 2), ("C", 2, 3, 1))
    cfg = EngineConfig(check_invariants=True, backfill=False)
    r = simulate(tr, uniform_cluster(1, gpus_per_node=2), "fifo", cfg)
    assert times(r) == {"A": (0, 10), "B": (10, 15), "C": (15, 18)}


def test_sjf_runs_the_shortest_waiting_job_first():
    tr = trace(("A", 0, 10, 1), ("B", 1, 5, 1), ("C", 2, 1, 1))
    assert times(simulate(tr, uniform_cluster(1, gpus_per_node=1), "fifo", CHECK)) == {
        "A": (0, 10), "B": (10, 15), "C": (15, 16)
    }
    assert times(simulate(tr, uniform_cluster(1, gpus_per_node=1), "sjf", CHECK)) == {
        "A": (0, 10), "B": (11, 16), "C": (10, 11)
    }


def test_srtf_preempts_for_a_shorter_job_and_charges_the_restart_cost():
    tr = trace(("A", 0, 10, 1), ("B", 1, 2, 1))
    r = simulate(tr, uniform_cluster(1, gpus_per_node=1), "srtf", CHECK)
    assert r.finish.tolist() == [12, 3]
    assert r.preemptions.tolist() == [1, 0]
    kinds = [(e.kind, e.job_id, e.time) for e in r.events if e.kind != "submit"]
    assert kinds == [
        ("start", "A", 0), ("preempt", "A", 1), ("start", "B", 1), ("finish", "B", 3),
        ("start", "A", 3), ("finish", "A", 12),
    ]
    cfg = EngineConfig(check_invariants=True, preempt_cost_s=1.5)
    r = simulate(tr, uniform_cluster(1, gpus_per_node=1), "srtf", cfg)
    assert r.finish.tolist() == [13.5, 3]


def test_tiresias_demotes_at_the_threshold_and_is_fifo_within_a_queue():
    tr = trace(("A", 0, 10, 1), ("B", 1, 10, 1))
    sim = Simulator(uniform_cluster(1, gpus_per_node=1), TiresiasPolicy(thresholds=(5.0,)), CHECK)
    r = sim.run(tr)
    # A demoted at 5 -> B (queue 0) preempts it; B demoted at 10 -> both in queue 1, where
    # the running job keeps running; A resumes when B finishes.
    assert r.finish[0] == pytest.approx(20, abs=1e-4)
    assert r.finish[1] == pytest.approx(15, abs=1e-4)
    assert r.preemptions.tolist() == [1, 0]


def test_gpu_units_count_service_in_tiresias():
    # 2 GPUs x 3 s = 6 GPU-s > 5: demoted after 2.5 s of a 2-GPU job.
    tr = trace(("A", 0, 10, 2), ("B", 1, 1, 2))
    sim = Simulator(uniform_cluster(1, gpus_per_node=2), TiresiasPolicy(thresholds=(5.0,)), CHECK)
    r = sim.run(tr)
    assert r.start[1] == pytest.approx(2.5, abs=1e-4)
    assert r.finish.tolist() == pytest.approx([11, 3.5], abs=1e-4)


def test_partitions_do_not_share_nodes_and_unknown_vcs_are_counted():
    cluster = ClusterSpec(nodes=(
        NodeSpec(node_id="a0", partition="p1", gpus=1),
        NodeSpec(node_id="b0", partition="p2", gpus=1),
    ))
    tr = trace(("A", 0, 10, 1, "p1"), ("B", 0, 10, 1, "p1"), ("C", 0, 1, 1, "p2"),
               ("D", 0, 1, 1, "nope"), ("E", 0, 1, 2, "p2"))
    r = simulate(tr, cluster, "fifo", CHECK)
    assert times(r) == {"A": (0, 10), "B": (10, 20), "C": (0, 1)}
    assert r.skipped == {
        "partition (VC) not in the cluster": 1,
        "asks for more GPUs than its partition has": 1,
    }
    with pytest.raises(SimulationError, match="asks for more GPUs than its partition has"):
        simulate(tr, cluster, "fifo", EngineConfig(strict=True))


def test_jobs_larger_than_a_node_take_whole_nodes():
    tr = trace(("big", 0, 10, 12), ("small", 1, 1, 4), ("full", 2, 1, 16))
    r = simulate(tr, uniform_cluster(2, gpus_per_node=8), "fifo", CHECK)
    # 12 GPUs hold two whole nodes, so the 4-GPU job waits although 4 GPUs are unused.
    assert times(r) == {"big": (0, 10), "small": (10, 11), "full": (11, 12)}
    starts = {e.job_id: e.nodes for e in r.events if e.kind == "start"}
    assert sorted(starts["big"]) == ["default-0", "default-1"]
    assert len(starts["small"]) == 1


def test_consolidates_on_one_node_best_fit():
    tr = trace(("a", 0, 10, 6), ("b", 0, 10, 2), ("c", 0, 10, 8))
    r = simulate(tr, uniform_cluster(2, gpus_per_node=8), "fifo", CHECK)
    assert r.start.tolist() == [0, 0, 0]
    nodes = {e.job_id: e.nodes for e in r.events if e.kind == "start"}
    assert nodes["a"] == nodes["b"] != nodes["c"]


def test_quota_caps_a_partition():
    cluster = ClusterSpec(nodes=(NodeSpec(node_id="n", partition="p", gpus=2),), quotas={"p": 1})
    tr = trace(("A", 0, 5, 1, "p"), ("B", 0, 5, 1, "p"))
    assert simulate(tr, cluster, "fifo", CHECK).finish.tolist() == [5, 10]


def test_heterogeneous_speeds_and_migration_to_a_faster_node():
    cluster = ClusterSpec(nodes=(
        NodeSpec(node_id="fast", partition="p", gpus=1, speed=2.0),
        NodeSpec(node_id="slow", partition="p", gpus=1, speed=1.0),
    ))
    tr = trace(("A", 0, 10, 1), ("B", 0, 20, 1))
    no_move = EngineConfig(check_invariants=True, migrate=False)
    assert simulate(tr, cluster, "fifo", no_move).finish.tolist() == [5, 20]
    move = EngineConfig(check_invariants=True, migrate_min_age_s=0.0, migrate_cost_s=1.0)
    r = simulate(tr, cluster, "fifo", move)
    # B did 5 s of work on the slow node; 15 left at speed 2 after a 1 s restart.
    assert r.finish.tolist() == [5, 13.5]
    assert r.migrations.tolist() == [0, 1]
    mig = [e for e in r.events if e.kind == "migrate"]
    assert [(e.job_id, e.time, e.nodes) for e in mig] == [("B", 5, ("fast",))]


def random_trace(n: int, seed: int, vcs: tuple[str, ...]) -> Trace:
    rng = random.Random(seed)
    t = 0.0
    rows = []
    for i in range(n):
        t += rng.expovariate(1 / 20)
        rows.append((f"j{i}", round(t, 3), round(rng.lognormvariate(4, 1.5), 3),
                     rng.choice([1, 1, 1, 2, 4, 8, 16]), rng.choice(vcs)))
    return trace(*rows)


@pytest.mark.parametrize("policy", ["fifo", "sjf", "srtf", "tiresias", "qssf", "learned"])
def test_conservation_every_job_finishes_once_and_capacity_holds(policy):
    cluster = ClusterSpec(nodes=tuple(
        NodeSpec(node_id=f"{vc}{i}", partition=vc, gpus=8, speed=1.0 if i else 0.5)
        for vc in ("x", "y") for i in range(2)
    ))
    tr = random_trace(300, seed=1, vcs=("x", "y"))
    kwargs = {}
    if policy == "learned":
        kwargs = {"model": OnlineDurationModel(retrain_every=60, min_train=60, max_iter=10)}
    cfg = EngineConfig(check_invariants=True, preempt_cost_s=2.0, migrate_min_age_s=30.0)
    r = simulate(tr, cluster, policy, cfg, **kwargs)
    assert len(r.job_ids) == 300
    finishes = [e.job_id for e in r.events if e.kind == "finish"]
    assert sorted(finishes) == sorted(r.job_ids)  # each exactly once
    starts = [e.job_id for e in r.events if e.kind == "start"]
    assert len(starts) == 300 + int(r.preemptions.sum())
    assert (r.start >= r.submit).all() and (r.finish >= r.start).all()
    # a job never finishes faster than its work at the fastest speed (1.0)
    assert (r.finish - r.start >= r.duration - 1e-6).all()
    if policy in ("fifo", "sjf", "qssf"):
        assert r.preemptions.sum() == 0


def test_timeline_never_exceeds_capacity():
    tr = random_trace(200, seed=2, vcs=("",))
    r = simulate(tr, uniform_cluster(3), "srtf", CHECK)
    assert r.timeline_used.max() <= r.capacity
    assert r.timeline_queued[-1] == 0 and r.timeline_running[-1] == 0


def test_learned_policy_prefers_jobs_of_a_short_history_group():
    # After 'short' jobs finish fast and 'long' jobs slowly, a newly queued short-group job
    # is ranked ahead of a long-group one.
    model = OnlineDurationModel(retrain_every=1000, min_train=1000)
    pol = LearnedPolicy(model)
    rows = []
    for i in range(40):
        rows.append((f"s{i}", i * 100, 10, 1, "short"))
        rows.append((f"l{i}", i * 100, 5000, 1, "long"))
    rows += [("Lq", 10_000_000, 5000, 1, "long"), ("Sq", 10_000_001, 10, 1, "short")]
    cluster = ClusterSpec(nodes=(
        NodeSpec(node_id="a", partition="short", gpus=1),
        NodeSpec(node_id="b", partition="long", gpus=1),
    ))
    Simulator(cluster, pol).run(trace(*rows))
    assert model.history.median(("vc", "short")) < model.history.median(("vc", "long"))


def test_make_policy_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown policy 'lottery'"):
        make_policy("lottery")


def test_job_bigger_than_any_partition_is_skipped_not_hung():
    tr = trace(("huge", 0, 10, 64), ("ok", 0, 1, 8))
    r = simulate(tr, uniform_cluster(2), "tiresias", CHECK)
    assert r.job_ids == ("ok",)
    assert r.skipped == {"asks for more GPUs than its partition has": 1}


def test_trace_jobs_must_be_sorted_for_the_engine():
    jobs = (
        TraceJob(job_id="b", submit_s=5.0, duration_s=1.0, gpus=1),
        TraceJob(job_id="a", submit_s=1.0, duration_s=1.0, gpus=1),
    )
    with pytest.raises(SimulationError, match="not sorted"):
        Simulator(uniform_cluster(1), make_policy("fifo")).run(jobs)


def test_key_ordering_adapts_a_simulator_policy_to_the_live_interface():
    from raysched.schedulers.simulator.sim_policies import FifoPolicy, KeyOrdering
    from raysched.schedulers.spec import JobSpec
    from raysched.schedulers.types import ClusterView, JobState, JobView

    def view(jid: str, t: float) -> JobView:
        return JobView(job_id=jid, spec=JobSpec(name=jid), state=JobState.QUEUED, submit_time=t)

    jobs = [view("b", 2.0), view("a", 1.0), view("c", 3.0)]
    order = KeyOrdering(FifoPolicy()).order(jobs, ClusterView(time=5.0, nodes=()))
    assert [j.job_id for j in order] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="needs simulator state"):
        KeyOrdering(make_policy("learned"))


def test_tiresias_promotes_a_starved_job_back_to_the_highest_queue():
    # 1 GPU, threshold 5 GPU-s. A runs 0-6 (demoted at 5), B arrives at 6 and preempts it.
    # Without promotion B keeps running in queue 1 (running first) and A resumes at 18.
    tr = trace(("A", 0, 12, 1), ("B", 6, 12, 1))
    one = uniform_cluster(1, gpus_per_node=1)
    r = Simulator(one, TiresiasPolicy(thresholds=(5.0,)), CHECK).run(tr)
    assert r.finish.tolist() == pytest.approx([24, 18], abs=1e-4)
    # PROMOTEKNOB 1: A waited 6 s = 1 x its 6 s run -> promoted at 12 (queue 0) and preempts B
    # (queue 1); A runs its last 6 s to 18, B waited 12-18 = 1 x its 6 s run and resumes.
    r = Simulator(one, TiresiasPolicy(thresholds=(5.0,), promote_knob=1.0), CHECK).run(tr)
    assert r.finish.tolist() == pytest.approx([18, 24], abs=1e-4)
    assert r.preemptions.tolist() == [1, 1]


def test_tiresias_promotion_keeps_every_job_finishing_once():
    rng = random.Random(3)
    rows = [(f"j{i}", 10 * i, rng.choice([3, 30, 300, 3000]), rng.choice([1, 2, 4, 8]))
            for i in range(300)]
    pol = TiresiasPolicy(thresholds=(100.0, 1000.0), promote_knob=1.0)
    r = Simulator(uniform_cluster(2), pol, EngineConfig(check_invariants=True)).run(trace(*rows))
    assert len(r.job_ids) == 300 and (r.finish >= r.start).all() and (r.start >= r.submit).all()
    assert r.preemptions.sum() > 0
    assert r.held == pytest.approx(r.duration)  # no restart cost: held time is exactly the work
