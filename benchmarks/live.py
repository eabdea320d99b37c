"""Live benchmark: the same seeded workload under each policy on a local emulated 4-node cluster.

    .venv/bin/python benchmarks/live.py [--jobs 20] [--warmup-jobs 24] [--policies ...]
        [--workload mixed|heavy_tailed] [--warmup-store PATH]

One local cluster (4 worker nodes with different CPU counts and emulated speeds) serves every
run. First a warm-up workload runs under the least-loaded policy; the cost model is trained on
its telemetry only (never on the evaluation workload). Then, for each policy, a fresh controller
with a fresh telemetry store runs the evaluation workload: staggered seeded arrivals of jobs of
every kind, and one node slowed 4x part-way through (an emulated noisy neighbour). It prints avg
and p95 JCT, makespan, queue time and migrations, and writes benchmarks/results/live.json and a
plot. All speeds are emulated (speed labels and injected slowdowns), not hardware figures.
`--workload heavy_tailed` draws warm-up and evaluation jobs from templates where a few jobs are
8-50x longer in steps than most (`HEAVY_TAILED_TEMPLATES`); the default mix differs by 5x in steps.
`--warmup-store PATH` reuses the `warmup.db` an earlier run left in its state folder instead of
running the warm-up again (19 minutes for the heavy-tailed mix): it must hold exactly the jobs
this run's warm-up would submit (same workload, seed and `--warmup-jobs`), all ended; it is
copied (with SQLite's backup, so a write-ahead log is included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from raysched.platform.workload import (
    WORKLOADS,
    check_warmup_store,
    run_workload,
    summarise,
    template_key,
    true_step_profile,
    workload,
)

RESULTS = Path(__file__).resolve().parent / "results"
# The headline comparison first: a run cut short keeps learned vs FIFO and the oracle.
POLICIES = ("fifo_ray_default", "learned", "oracle", "fifo_least_loaded", "random")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    # 24: enough finished jobs (>= the cost model's min_rows, 20) for its trees to be trained.
    parser.add_argument("--warmup-jobs", type=int, default=24)
    parser.add_argument("--mean-gap", type=float, default=6.0, help="mean seconds between jobs")
    parser.add_argument("--slow-at", type=float, default=60.0, help="seconds into each run")
    parser.add_argument("--slow-factor", type=float, default=4.0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mixed",
                        help="job templates of warm-up and evaluation (default mixed)")
    parser.add_argument("--output", type=Path, default=RESULTS / "live.json")
    parser.add_argument("--warmup-store", type=Path, default=None,
                        help="an earlier run's warmup.db with this run's warm-up jobs: reused "
                             "(copied) instead of running the warm-up")
    args = parser.parse_args(argv)
    templates = WORKLOADS[args.workload]
    warmup_jobs = workload(args.warmup_jobs, args.seed + 1000, args.mean_gap, templates)
    if args.warmup_store is not None:
        try:
            reused = check_warmup_store(args.warmup_store, warmup_jobs)
        except ValueError as e:
            parser.error(str(e))

    import ray

    from raysched.platform import interference
    from raysched.platform.client import replace_controller
    from raysched.platform.local_cluster import LocalCluster, LocalClusterConfig, default_nodes
    from raysched.platform.model_registry import ModelRegistry
    from raysched.platform.telemetry import TelemetryStore

    state = Path(tempfile.mkdtemp(prefix="raysched-live-"))
    config = LocalClusterConfig(nodes=default_nodes(4), state_dir=state, dashboard_port=0,
                                start_controller=False)
    results: dict[str, Any] = {"policies": {}, "setup": {
        "nodes": [dataclasses.asdict(n) for n in config.nodes], "jobs": args.jobs,
        "warmup_jobs": args.warmup_jobs, "mean_gap_s": args.mean_gap, "seed": args.seed,
        "workload": args.workload,
        "warmup_reused_from": str(args.warmup_store) if args.warmup_store else None,
        "slow_at_s": args.slow_at, "slow_factor": args.slow_factor,
        "note": "emulated heterogeneity on one machine (speed labels, injected slowdown)",
        "load_avg_1m_start": os.getloadavg()[0]}}
    with LocalCluster(config) as cluster:
        storage = state / "storage"
        nodes = sorted((n for n in ray.nodes() if n["Resources"].get("CPU")),
                       key=lambda n: -float(n["Labels"].get("raysched.io/speed", 1)))
        victim = nodes[0]["NodeID"]  # the fastest node turns slow mid-run

        def controller(policy: Any, store: Path) -> Any:
            return replace_controller(cluster.address, store_path=store, storage_dir=storage,
                                      policy=policy)

        warm_store = state / "warmup.db"
        if args.warmup_store is not None:
            copy_store(args.warmup_store, warm_store)
            print(f"warm-up reused from {args.warmup_store}: {reused} jobs succeeded",
                  flush=True)
        else:
            print(f"warm-up: {args.warmup_jobs} jobs under least_loaded", flush=True)
            run_workload(controller("least_loaded", warm_store), warmup_jobs)
        registry = ModelRegistry(TelemetryStore(warm_store))
        trained = registry.train()
        model = registry.load_version(trained.version)
        profile = true_step_profile(warm_store)
        print(f"cost model trained on {trained.n_rows} warm-up jobs ({model.source})", flush=True)

        for name in args.policies.split(","):
            interference.recover(storage, victim)
            store = state / f"{name}.db"
            policy: Any = name
            if name == "learned":
                from raysched.schedulers.policies.learned import build_learned

                policy = build_learned(model)
            elif name == "oracle":
                from raysched.platform.interference import TrueSpeeds
                from raysched.schedulers.policies.oracle import OracleCostModel, oracle_policy

                speeds = {n["NodeID"]: float(n["Labels"].get("raysched.io/speed", 1))
                          for n in ray.nodes() if n["Resources"].get("CPU")}
                policy = oracle_policy(OracleCostModel(
                    true_step_time_s=lambda job, p=profile: p.get(template_key(job.spec), 0.05),
                    true_speed=TrueSpeeds(speeds, str(interference.interference_dir(storage))),
                    overhead_s=statistics.median(model.overhead_s_.values() or [15.0]),
                ))
            print(f"policy {name}: {args.jobs} jobs", flush=True)
            client = controller(policy, store)
            began = time.monotonic()
            slow = interference.slow_once(storage, victim, args.slow_factor, args.slow_at)
            jobs = workload(args.jobs, args.seed, args.mean_gap, templates)
            ids = run_workload(client, jobs, slow=slow)
            summary = summarise(store, ids)
            summary["wall_s"] = time.monotonic() - began
            summary["load_avg_1m_end"] = os.getloadavg()[0]
            results["policies"][name] = summary
            # Written after every policy: a later failure keeps what was measured.
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(results, indent=2))
            print("  " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in summary.items()), flush=True)
        interference.recover(storage, victim)

    print_table(results["policies"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    plot(results["policies"], args.output.with_suffix(".png"))
    print(f"wrote {args.output}")
    return 0


def copy_store(source: Path, target: Path) -> None:
    """Copy a telemetry store with SQLite's online backup (its write-ahead log included)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def print_table(policies: dict[str, dict[str, float]]) -> None:
    cols = ("avg_jct_s", "p95_jct_s", "makespan_s", "avg_queue_s", "migrations", "drains",
            "failed")
    print(f"\n{'policy':<18}" + "".join(f"{c:>13}" for c in cols))
    for name, row in policies.items():
        print(f"{name:<18}" + "".join(
            f"{row[c]:>13.1f}" if isinstance(row.get(c), float) else f"{row.get(c, '-'):>13}"
            for c in cols))
    if "learned" in policies and "fifo_ray_default" in policies:
        ratio = policies["fifo_ray_default"]["avg_jct_s"] / policies["learned"]["avg_jct_s"]
        print(f"\nfifo_ray_default / learned avg JCT: {ratio:.2f}x (target >= 1.5x)")
    if "learned" in policies and "oracle" in policies:
        gap = policies["learned"]["avg_jct_s"] / policies["oracle"]["avg_jct_s"] - 1
        print(f"learned vs oracle avg JCT: {gap:+.0%} (target within 15%)")


def plot(policies: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(policies)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, [policies[n]["avg_jct_s"] for n in names], label="avg JCT")
    ax.scatter(names, [policies[n]["p95_jct_s"] for n in names], color="k", zorder=3,
               label="p95 JCT")
    ax.set_ylabel("seconds (emulated cluster)")
    ax.set_title("Job completion time per policy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
