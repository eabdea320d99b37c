"""The `raysched` command: cluster up/down/address, submit, status, cancel, priority, explain,
telemetry export, and the subcommands of the model and simulator modules."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from raysched.platform.status_table import format_table, job_rows

DEFAULT_STATE_DIR = Path(os.environ.get("RAYSCHED_HOME", ".raysched"))
# Optional subcommand modules, each with add_parser(subparsers) and run(args).
EXTRA_COMMANDS = ("raysched.model_cmd", "raysched.simulate_cmd")


def _address(args: argparse.Namespace) -> str:
    """--address, else $RAY_ADDRESS, else the local cluster started by `raysched cluster up`."""
    if getattr(args, "address", None):
        return args.address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    from raysched.platform.local_cluster import read_state

    state = read_state(args.state_dir)
    if state is None:
        raise SystemExit(
            "error: no cluster: pass --address, set RAY_ADDRESS, or run `raysched cluster up`"
        )
    return state["address"]


def _client(args: argparse.Namespace) -> Any:
    from raysched.platform.client import Client

    return Client(_address(args))


def cmd_cluster(args: argparse.Namespace) -> int:
    from raysched.platform import local_cluster as lc

    if args.action == "up":
        nodes = lc.parse_nodes(args.node_spec) if args.node_spec else lc.default_nodes(args.nodes)
        config = lc.LocalClusterConfig(nodes=nodes, state_dir=args.state_dir,
                                       dashboard_port=args.dashboard_port, policy=args.policy)
        state = lc.up(config)
        print(f"local cluster up: {len(config.nodes)} worker nodes + head (pid {state['pid']})")
        for i, node in enumerate(state["nodes"]):
            gpus = f", {node['gpus']} GPU(s)" if node.get("gpus") else ""
            print(f"  node {i}: {node['cpus']} CPUs{gpus}, speed {node['speed']:g} (emulated)")
        print(f"dashboard:  {state['dashboard_url']}")
        print(f"address:    {state['address']}")
        print(f"ray job submit --address {state['dashboard_url']} --working-dir . -- "
              "python -m raysched.jobs.run examples/ddp_digits.yaml")
        print("(clients need RAY_AUTH_MODE=token; the token is in ~/.ray/auth_token)")
        return 0
    if args.action == "down":
        if lc.down(args.state_dir):
            print("local cluster stopped")
            return 0
        print("no local cluster is up", file=sys.stderr)
        return 1
    state = lc.read_state(args.state_dir)
    if state is None:
        print("no local cluster is up; run `raysched cluster up`", file=sys.stderr)
        return 1
    if args.action == "address":
        print(state["address"])
    else:  # dashboard
        print(state["dashboard_url"])
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from raysched.schedulers.spec import load_spec

    client = _client(args)
    ids = []
    for path in args.specs:
        spec = load_spec(path)
        job_id = client.submit(spec, source="cli")
        ids.append(job_id)
        print(f"submitted {job_id}")
    if args.wait:
        rows = client.wait(ids, timeout_s=args.timeout)
        print(format_table(job_rows(rows)))
        return 0 if all(r["state"] == "SUCCEEDED" for r in rows) else 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = _client(args).status(args.job)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(format_table(job_rows(rows)))
        for r in rows:
            if r["error"]:
                print(f"{r['job_id']}: {r['error']}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    print(f"{args.job}: {_client(args).cancel(args.job)}")
    return 0


def cmd_priority(args: argparse.Namespace) -> int:
    _client(args).set_priority(args.job, args.priority)
    print(f"{args.job}: priority {args.priority}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    info = _client(args).explain(args.job)
    job = info["job"]
    print(f"{job['job_id']}: {job['state']} on {', '.join(job['node_ids'] or []) or '-'}")
    for e in info["events"]:
        t = time.strftime("%H:%M:%S", time.localtime(e["time"]))
        print(f"  {t} {e['old_state'] or '-':>9} -> {e['new_state']:<9} {e['reason']}")
    for d in info["decisions"]:
        print(f"  decision [{d['policy']}] {d['action']} -> {', '.join(d['node_ids']) or 'Ray'}:"
              f" {d['reason']}")
        for c in d["candidates"]:
            print(f"    candidate {', '.join(n[:8] for n in c['node_ids'])}: predicted "
                  f"{c['predicted_completion_s']:.1f} s {c.get('note', '')}")
    return 0


def cmd_telemetry(args: argparse.Namespace) -> int:
    from raysched.platform.telemetry_export import export

    store = args.store or _store_path(args)
    written = export(store, args.output, fmt=args.format, tables=args.tables)
    for path, n in written:
        print(f"wrote {n} rows to {path}")
    return 0


def _store_path(args: argparse.Namespace) -> Path:
    from raysched.platform.local_cluster import read_state

    state = read_state(args.state_dir)
    if state is not None:
        return Path(state["store"])
    default = args.state_dir / "telemetry.db"
    if not default.exists():
        raise SystemExit(f"error: no telemetry store at {default}; pass --store PATH")
    return default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysched", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="where the local cluster keeps its state (default .raysched)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cluster", help="a local multi-node Ray cluster on this machine")
    p.add_argument("action", choices=["up", "down", "address", "dashboard"])
    p.add_argument("--nodes", type=int, default=3, help="worker nodes (default 3)")
    p.add_argument("--node-spec", help="the worker nodes as CPUS[:SPEED[:GPUS]],... (e.g. "
                   "2:1,4:0.5:1); overrides --nodes")
    p.add_argument("--dashboard-port", type=int, default=28265)
    p.add_argument("--policy", default="least_loaded", help="the controller's policy")
    p.set_defaults(func=cmd_cluster)

    def with_address(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--address", help="Ray address (default: $RAY_ADDRESS or the local cluster)")
        return p

    p = with_address(sub.add_parser("submit", help="submit job spec YAML files"))
    p.add_argument("specs", nargs="+", type=Path)
    p.add_argument("--wait", action="store_true", help="wait and print the results")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.set_defaults(func=cmd_submit)

    p = with_address(sub.add_parser("status", help="every job with state, nodes and times"))
    p.add_argument("job", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = with_address(sub.add_parser("cancel", help="cancel a job"))
    p.add_argument("job")
    p.set_defaults(func=cmd_cancel)

    p = with_address(sub.add_parser("priority", help="change a job's priority"))
    p.add_argument("job")
    p.add_argument("priority", type=int)
    p.set_defaults(func=cmd_priority)

    p = with_address(sub.add_parser("explain", help="why a job runs where it runs"))
    p.add_argument("job")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("telemetry", help="telemetry store tools")
    p.add_argument("action", choices=["export"])
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--output", type=Path, default=Path("telemetry_export"))
    p.add_argument("--store", type=Path, help="store path (default: the local cluster's)")
    p.add_argument("--tables", default="jobs,steps,job_events,decisions,node_samples",
                   help="comma-separated tables to export")
    p.set_defaults(func=cmd_telemetry)

    for module_name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:  # a subcommand module registered itself with run()
        module = next(m for m in EXTRA_COMMANDS if m.endswith(f".{args.command}_cmd"))
        func = importlib.import_module(module).run
    try:
        return int(func(args) or 0)
    except (ValueError, KeyError, RuntimeError, TimeoutError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
