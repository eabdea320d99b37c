"""The `raysched model` subcommand: train, evaluate and explain the learned cost model.

    python -m raysched.model_cmd [--store PATH] train
    python -m raysched.model_cmd [--store PATH] evaluate [--test-fraction F] [--philly [CSV]]
    python -m raysched.model_cmd [--store PATH] explain JOB_ID [--top N]

The store defaults to $RAYSCHED_STORE, else ``.raysched/telemetry.db``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_STORE = ".raysched/telemetry.db"


def default_store() -> str:
    return os.environ.get("RAYSCHED_STORE", DEFAULT_STORE)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `model` with its `train`, `evaluate` and `explain` actions."""
    parser = subparsers.add_parser("model", help="train, evaluate and explain the cost model")
    _add_arguments(parser)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None,
                        help=f"telemetry store (default $RAYSCHED_STORE or {DEFAULT_STORE})")
    parser.add_argument("--model-dir", default=None,
                        help="where model files go (default: models/ beside the store)")
    actions = parser.add_subparsers(dest="model_action", required=True)
    train = actions.add_parser("train", help="train a version now; promote it if no worse")
    train.add_argument("--min-rows", type=int, default=20,
                       help="rows needed before the model replaces the heuristic")
    evaluate = actions.add_parser("evaluate", help="time-ordered evaluation against baselines")
    evaluate.add_argument("--test-fraction", type=float, default=0.25)
    evaluate.add_argument("--philly", nargs="?", const="", default=None, metavar="CSV",
                          help="also evaluate on the Philly trace (default path if no CSV)")
    explain = actions.add_parser("explain", help="the features behind one job's prediction")
    explain.add_argument("job_id", metavar="JOB")
    explain.add_argument("--top", type=int, default=8)


def _open_store(args: argparse.Namespace):  # noqa: ANN202 - lazy import keeps --help fast
    from raysched.platform.telemetry import TelemetryStore

    path = Path(args.store or default_store())
    if not path.exists():
        raise FileNotFoundError(f"no telemetry store at {path} (set --store or RAYSCHED_STORE)")
    return TelemetryStore(path)


def run(args: argparse.Namespace) -> int:
    """Run the parsed `model` command; returns the exit status."""
    from raysched.platform.model_registry import ModelIntegrityError
    from raysched.schedulers.predictor.features import TelemetryDataError

    try:
        if args.model_action == "train":
            return _train(args)
        if args.model_action == "evaluate":
            return _evaluate(args)
        if args.model_action == "explain":
            return _explain(args)
    except (FileNotFoundError, TelemetryDataError, ModelIntegrityError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unknown action {args.model_action!r}")  # argparse prevents this


def _train(args: argparse.Namespace) -> int:
    from raysched.platform.model_registry import ModelRegistry

    store = _open_store(args)
    registry = ModelRegistry(store, args.model_dir, cost_model_params={"min_rows": args.min_rows})
    result = registry.train()
    holdout = result.metrics.get("holdout")
    print(f"version {result.version}: {result.n_rows} training rows, "
          f"{'promoted' if result.promoted else 'not promoted'} ({result.metrics['source']})")
    if holdout:
        print(f"  holdout ({result.metrics['holdout_rows']} newest jobs): "
              f"MAE {holdout['mae_s']:.3g} s, Spearman {holdout['spearman']:.3f}, "
              f"coverage {holdout.get('interval_coverage', float('nan')):.2f}")
    if "promoted_on_holdout" in result.metrics:
        print(f"  previous promoted on the same rows: MAE "
              f"{result.metrics['promoted_on_holdout']['mae_s']:.3g} s")
    print(f"  file {result.path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from raysched.schedulers.predictor.evaluation import evaluate_platform, format_table
    from raysched.schedulers.predictor.features import validate_jobs

    store = _open_store(args)
    frame = validate_jobs(store.list_jobs())
    samples = pd.DataFrame(store.table("node_samples"))
    report = evaluate_platform(frame, test_fraction=args.test_fraction, node_samples=samples)
    print(format_table(
        report["results"],
        f"platform telemetry: train {report['train_rows']} jobs, test {report['test_rows']} "
        "newest (run time, seconds)",
    ))
    if args.philly is not None:
        from raysched.schedulers.predictor.philly import DEFAULT_TRACE, evaluate_philly

        philly = evaluate_philly(args.philly or DEFAULT_TRACE)
        print()
        print(format_table(
            {"model": philly["model"], "vc_gpu_median": philly["baseline"]},
            f"Philly {philly['week']}: train {philly['train_rows']}, "
            f"test {philly['test_rows']} jobs",
        ))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from raysched.platform.model_registry import ModelRegistry
    from raysched.platform.telemetry import UnknownJob
    from raysched.schedulers.predictor.cost_model import CostModel
    from raysched.schedulers.predictor.features import build_features, validate_jobs

    store = _open_store(args)
    try:
        row = store.get_job(args.job_id)
    except UnknownJob as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = ModelRegistry(store, args.model_dir)
    model = registry.load_promoted()
    origin = "promoted version"
    if model is None:
        model = CostModel().fit(registry.finished_jobs(), registry.node_samples())
        origin = "fitted now (nothing promoted yet)"
    frame = validate_jobs([row])
    X = build_features(  # noqa: N806
        frame, history=model.history_, param_counts=model.param_counts_,
        node_samples=registry.node_samples(),
    )
    steps = float(frame["steps"].iloc[0])
    pred = model.predict_matrix(
        X, steps_left=[steps], batch=frame["batch_size"].to_numpy(float),
        overhead=[model._overhead(str(frame["kind"].iloc[0]))],
    )[0]
    print(f"job {args.job_id} ({frame['kind'].iloc[0]}, {frame['model'].iloc[0]}, "
          f"user {frame['user'].iloc[0]}), model: {origin}, source: {pred.source}")
    print(f"  step time {pred.step_time_s:.4g} s [{pred.step_time_lo_s:.4g}, "
          f"{pred.step_time_hi_s:.4g}], run time {pred.duration_s:.4g} s "
          f"[{pred.duration_lo_s:.4g}, {pred.duration_hi_s:.4g}], peak RSS "
          f"{pred.peak_rss_mb:.0f} MiB")
    if pred.note:
        print(f"  note: {pred.note}")
    if row.get("run_time_s") is not None:
        print(f"  actual: run time {row['run_time_s']:.4g} s, peak RSS "
              f"{row.get('peak_rss_mb') or float('nan'):.0f} MiB")
    print("  top features (factor by which each value moves the step time away from what the")
    print("  training median of that feature would give):")
    for name, value, contrib in model.explain_matrix(X[0], top=args.top):
        print(f"    {name:<20} = {value:<12.4g} x{pow(2.718281828459045, contrib):.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raysched model", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
