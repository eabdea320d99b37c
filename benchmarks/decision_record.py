"""Record every decision of the decision-latency scenario, to check a speed-up changes none.

Runs the scenario of `benchmarks.decision_latency` (fill the empty cluster, then `--rounds`
steady rounds), optionally promoting a second cost model (fitted on other synthetic rows) to
every policy part after `--swap-at` steady rounds, and writes each round's `Placement`s and
`RebalanceDecision` (their reprs: every float to the last bit) to a JSON file. Run it on the old
code and the new (same script: put the old package first on the path, e.g. run it from a
`git worktree` of the old commit) and compare the two files::

    python -m benchmarks.decision_record --out /tmp/new.json [--swap-at 30]
    python -m benchmarks.decision_record --compare /tmp/old.json /tmp/new.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.decision_latency import T0, Sim, _refill, make_job, make_nodes
from raysched.schedulers.decisions import Placement
from raysched.schedulers.policies.base import SchedulingPolicy, place_in_order
from raysched.schedulers.policies.learned import learned_policy
from raysched.schedulers.predictor.cost_model import CostModel
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from raysched.schedulers.types import ClusterView, JobView


def one_round(policy: SchedulingPolicy, sim: Sim) -> tuple[list[str], str, int]:
    """One round as the benchmark runs it: reprs of the placements and of the rebalance
    decision, and how many jobs were placed."""

    def launch(job: JobView, p: Placement, view: ClusterView) -> ClusterView:
        sim.launch(p)
        return sim.view()

    placed, view = place_in_order(policy, sim.view(), launch)
    decision = policy.rebalancing.rebalance(view)
    sim.apply_migrations(decision)
    return [repr(p) for p in placed], repr(decision), len(placed)


def record(rounds: int, swap_at: int | None, seed: int = 0) -> list[dict[str, object]]:
    """Every round's decisions (fill rounds first) of the benchmark's scenario."""
    rng = random.Random(seed)
    np.random.seed(seed)
    out: list[dict[str, object]] = []
    with threadpool_limits(1):
        model = CostModel().fit(synthetic_jobs(1000, seed=seed))
        policy = learned_policy(model)
        sim = Sim(make_nodes(100, rng),
                  [make_job(i, T0 - rng.uniform(0, 600), rng) for i in range(1000)], seed=seed)
        while True:
            placed, rebalance, n = one_round(policy, sim)
            out.append({"phase": "fill", "placed": placed, "rebalance": rebalance})
            _refill(sim, 1000)
            if n == 0:
                break
            sim.t += 1.0
        for r in range(rounds):
            if swap_at is not None and r == swap_at:
                model = CostModel().fit(synthetic_jobs(1000, seed=seed + 1))
                for part in (policy.ordering, policy.placement, policy.rebalancing):
                    part.cost_model = model  # type: ignore[union-attr]
            sim.advance(model, policy)
            placed, rebalance, _ = one_round(policy, sim)
            out.append({"phase": "steady", "placed": placed, "rebalance": rebalance})
    return out


def compare(a: Path, b: Path) -> int:
    """0 if the two recordings are equal, else 1 (the first difference is printed)."""
    old, new = json.loads(a.read_text()), json.loads(b.read_text())
    if old["args"] != new["args"]:
        print(f"different scenarios: {old['args']} vs {new['args']}")
        return 1
    for i, (x, y) in enumerate(zip(old["rounds"], new["rounds"], strict=False)):
        if x != y:
            print(f"round {i} ({x['phase']}) differs:\nold {x}\nnew {y}")
            return 1
    if len(old["rounds"]) != len(new["rounds"]):
        print(f"{len(old['rounds'])} rounds vs {len(new['rounds'])}")
        return 1
    placements = sum(len(r["placed"]) for r in new["rounds"])
    migrations = sum(r["rebalance"].count("Migration(") for r in new["rounds"])
    print(f"equal: {len(new['rounds'])} rounds, {placements} placements, "
          f"{migrations} migrations")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--swap-at", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", type=Path, nargs=2)
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    rounds = record(args.rounds, args.swap_at, args.seed)
    args.out.write_text(json.dumps({
        "args": {"rounds": args.rounds, "swap_at": args.swap_at, "seed": args.seed},
        "rounds": rounds}, indent=0) + "\n")
    print(f"wrote {args.out}: {len(rounds)} rounds")


if __name__ == "__main__":
    main()
