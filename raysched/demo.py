"""The README's demo: a local heterogeneous cluster, one workload under two policies, tables.

Run with `python -m raysched.demo`. It starts everything it needs and stops only what it started.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from raysched.platform.status_table import format_table, job_rows
from raysched.schedulers.types import JobState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_JOBS = 6
DEMO_GAP_S = 4.0
SLOW_AT_S = 25.0


def _progress_line(rows: list[dict]) -> str:
    return " | ".join(f"{r['job_id'][:14]}:{r['state'][:4]}:{r['steps_done']}" for r in rows)


def _run(client: Any, jobs: list, label: str, began: float, slow: Any) -> list[dict]:
    from raysched.platform.workload import run_workload

    def tick(elapsed: float) -> None:
        slow(elapsed)
        if int(elapsed) % 10 == 0:
            rows = [r for r in client.status() if r["source"] == "benchmark"]
            print(f"[{time.monotonic() - began:5.0f} s] {label}: {_progress_line(rows)}",
                  flush=True)

    ids = run_workload(client, jobs, slow=tick)
    return [r for r in client.status() if r["job_id"] in ids]


def run_demo(nodes: int = 3, dashboard_port: int = 28365) -> int:
    """Run one seeded workload under FIFO with Ray's placement, then under the learned policy."""
    from raysched.platform import interference
    from raysched.platform.client import replace_controller
    from raysched.platform.local_cluster import LocalCluster, LocalClusterConfig, default_nodes
    from raysched.platform.model_registry import ModelRegistry
    from raysched.platform.telemetry import TelemetryStore
    from raysched.platform.workload import summarise, workload

    state_dir = Path(tempfile.mkdtemp(prefix="raysched-demo-"))
    config = LocalClusterConfig(nodes=default_nodes(nodes), state_dir=state_dir,
                                dashboard_port=dashboard_port, start_controller=False)
    storage = state_dir / "storage"
    print(f"starting a local cluster: {nodes} worker nodes "
          f"({', '.join(f'{n.cpus} CPU, speed {n.speed:g}' for n in config.nodes)}; speeds are "
          "emulated)", flush=True)
    began = time.monotonic()
    jobs = workload(DEMO_JOBS, seed=3, mean_gap_s=DEMO_GAP_S)
    summaries: dict[str, dict] = {}
    failed = 0
    with LocalCluster(config) as cluster:
        import ray

        print(f"cluster up in {time.monotonic() - began:.0f} s; dashboard {cluster.dashboard_url}",
              flush=True)
        fastest = max((n for n in ray.nodes() if n["Resources"].get("CPU")),
                      key=lambda n: float(n["Labels"].get("raysched.io/speed", 1)))["NodeID"]
        for policy in ("fifo_ray_default", "learned"):
            store = state_dir / f"{policy}.db"
            chosen: Any = policy
            if policy == "learned":
                registry = ModelRegistry(TelemetryStore(state_dir / "fifo_ray_default.db"))
                trained = registry.train()
                chosen = _learned(registry.load_version(trained.version))
                print(f"cost model trained on the first run's {trained.n_rows} jobs", flush=True)
            client = replace_controller(cluster.address, store_path=store, storage_dir=storage,
                                        policy=chosen)
            interference.recover(storage, fastest)
            print(f"\n== {len(jobs)} jobs under {policy}; the fastest node turns 4x slower at "
                  f"{SLOW_AT_S:.0f} s ==", flush=True)
            rows = _run(client, jobs, policy, began,
                        interference.slow_once(storage, fastest, 4.0, SLOW_AT_S))
            interference.recover(storage, fastest)
            print(format_table(job_rows(rows)))
            failed += sum(r["state"] != JobState.SUCCEEDED.value for r in rows)
            summaries[policy] = summarise(store, [r["job_id"] for r in rows])
    print("\npolicy            avg JCT s  p95 JCT s  makespan s  migrations")
    for name, s in summaries.items():
        print(f"{name:<17} {s['avg_jct_s']:>9.1f}  {s['p95_jct_s']:>9.1f}  {s['makespan_s']:>10.1f}"
              f"  {s['migrations']:>10}")
    ratio = summaries["fifo_ray_default"]["avg_jct_s"] / summaries["learned"]["avg_jct_s"]
    print(f"avg JCT, FIFO with Ray's placement / learned: {ratio:.2f}x (emulated cluster; the "
          "learned policy was trained on the first run's telemetry; benchmarks/live.py is the "
          "full comparison)")
    print(f"\ndemo finished in {time.monotonic() - began:.0f} s; the local cluster is stopped")
    return 1 if failed else 0


def _learned(model: Any) -> Any:
    from raysched.schedulers.policies.learned import build_learned

    return build_learned(model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raysched.demo", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dashboard-port", type=int, default=28365)
    args = parser.parse_args(argv)
    return run_demo(args.nodes, args.dashboard_port)


if __name__ == "__main__":
    sys.exit(main())
