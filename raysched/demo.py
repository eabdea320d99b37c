"""The README's demo: a local heterogeneous cluster, jobs through the controller, a table.

Run with `python -m raysched.demo`. It starts everything it needs and stops only what it started.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from raysched.platform.status_table import format_table, job_rows
from raysched.schedulers.spec import load_spec
from raysched.schedulers.types import JobState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_SPECS = ("ddp_digits.yaml", "cnn_digits.yaml", "ddp_hetero.yaml", "ddp_digits.yaml")


def _progress_line(rows: list[dict]) -> str:
    parts = [f"{r['job_id'][:18]}:{r['state'][:4]}:{r['steps_done']}" for r in rows]
    return " | ".join(parts)


def run_demo(nodes: int = 3, dashboard_port: int = 28365, policy: str = "least_loaded",
             state_dir: Path | None = None) -> int:
    from raysched.platform.client import Client
    from raysched.platform.local_cluster import LocalCluster, LocalClusterConfig, default_nodes

    state_dir = state_dir or Path(tempfile.mkdtemp(prefix="raysched-demo-"))
    config = LocalClusterConfig(nodes=default_nodes(nodes), state_dir=state_dir,
                                dashboard_port=dashboard_port, policy=policy)
    print(f"starting a local cluster: {nodes} worker nodes "
          f"({', '.join(f'{n.cpus} CPU x{n.speed:g}' for n in config.nodes)}), "
          f"telemetry in {config.store_path}", flush=True)
    began = time.monotonic()
    with LocalCluster(config) as cluster:
        print(f"cluster up in {time.monotonic() - began:.0f} s; dashboard {cluster.dashboard_url}",
              flush=True)
        client = Client(cluster.address)
        ids = []
        for i, name in enumerate(DEMO_SPECS):
            spec = load_spec(EXAMPLES / name)
            data = spec.to_dict()
            data["name"] = f"{spec.name}-{i}"
            ids.append(client.submit(data, source="demo"))
        print(f"submitted {len(ids)} jobs to the raysched controller (policy {policy})",
              flush=True)
        while True:
            rows = [r for r in client.status() if r["job_id"] in ids]
            print(f"[{time.monotonic() - began:5.0f} s] {_progress_line(rows)}", flush=True)
            if all(JobState(r["state"]).finished for r in rows):
                break
            time.sleep(5.0)
        print()
        print(format_table(job_rows(rows)))
        failed = [r for r in rows if r["state"] != JobState.SUCCEEDED.value]
        for r in failed:
            print(f"{r['job_id']}: {r['state']} {r['error'] or ''}")
    print(f"\ndemo finished in {time.monotonic() - began:.0f} s; the local cluster is stopped")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raysched.demo", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dashboard-port", type=int, default=28365)
    parser.add_argument("--policy", default="least_loaded")
    args = parser.parse_args(argv)
    return run_demo(args.nodes, args.dashboard_port, args.policy)


if __name__ == "__main__":
    sys.exit(main())
