"""The `raysched simulate` subcommand: replay a job trace under several policies and compare."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register `simulate` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="replay a job trace on a simulated cluster under several policies",
        description="Trace-driven discrete-event simulation of scheduling policies.",
    )
    _add_arguments(p)
    p.set_defaults(func=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", required=True, help="trace file (CSV; parquet for telemetry)")
    p.add_argument("--format", default="philly", choices=("philly", "generic", "telemetry"))
    p.add_argument("--cluster", required=True, help="cluster CSV/YAML (e.g. philly_vc.csv)")
    p.add_argument("--policies", default="fifo,sjf,srtf,tiresias,qssf,learned",
                   help="comma-separated: fifo,sjf,srtf,tiresias,qssf,learned")
    p.add_argument("--start", help="keep jobs submitted from this date/time (UTC)")
    p.add_argument("--end", help="keep jobs submitted up to this date (inclusive) or time")
    p.add_argument("--gpus-per-node", type=int, default=8,
                   help="GPUs per node where the cluster file does not say (default 8)")
    p.add_argument("--preempt-cost", type=float, default=0.0,
                   help="seconds of restart overhead after a preemption")
    p.add_argument("--migrate-cost", type=float, default=0.0,
                   help="seconds of restart overhead after a migration")
    p.add_argument("--no-backfill", action="store_true", help="strict queue order")
    p.add_argument("--strict", action="store_true",
                   help="fail instead of skipping jobs that cannot run on the cluster")
    p.add_argument("--json", help="write per-policy metrics as JSON here")
    p.add_argument("--plot", help="write JCT CDF + queue length plot (PNG) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the simulations; prints a table, returns a process exit code."""
    from tqdm import tqdm

    from raysched.schedulers.simulator import (
        POLICY_NAMES,
        ClusterSpecError,
        EngineConfig,
        SimulationError,
        Simulator,
        TraceError,
        load_cluster,
        load_trace,
        make_policy,
        parse_time,
    )
    from raysched.schedulers.simulator.metrics import (
        format_table,
        plot_results,
        summarize,
        write_json,
    )

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        print(f"error: unknown policy {', '.join(unknown) or '(none)'}; "
              f"expected some of {','.join(POLICY_NAMES)}", file=sys.stderr)
        return 2
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end, end_of_day=True) if args.end else None
        trace = load_trace(args.trace, args.format, start=start, end=end)
        cluster = load_cluster(args.cluster, gpus_per_node=args.gpus_per_node)
    except (TraceError, ClusterSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = EngineConfig(
        preempt_cost_s=args.preempt_cost,
        migrate_cost_s=args.migrate_cost,
        backfill=not args.no_backfill,
        strict=args.strict,
        record_events=False,
    )
    print(f"{len(trace)} jobs from {args.trace}; cluster: {len(cluster.nodes)} nodes, "
          f"{cluster.capacity():g} {cluster.resource.upper()}s, "
          f"{len(cluster.partitions)} partition(s)")
    results, summaries = [], {}
    bar = tqdm(total=len(trace) * len(names), file=sys.stderr, unit="job",
               disable=args.no_progress)
    try:
        for k, name in enumerate(names):
            bar.set_description(name)
            try:
                result = Simulator(cluster, make_policy(name), config).run(trace, bar.update)
            except SimulationError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            bar.update((k + 1) * len(trace) - bar.n)  # skipped jobs never report progress
            results.append(result)
            summaries[name] = summarize(result)
    finally:
        bar.close()
    skipped = results[0].skipped if results else {}
    for reason, count in skipped.items():
        print(f"left out: {count} job(s): {reason}")
    print(format_table(summaries))
    if args.json:
        write_json(args.json, {"trace": str(args.trace), "policies": summaries})
        print(f"wrote {args.json}")
    if args.plot:
        plot_results(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m raysched.simulate_cmd --trace ... --cluster ...`."""
    parser = argparse.ArgumentParser(prog="raysched simulate")
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
