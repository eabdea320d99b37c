"""Start the raysched controller on an existing Ray cluster (on the head node, e.g. by `ray up`).

    python -m raysched.platform.serve [--address auto] [--state-dir ~/raysched-state]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raysched.platform.serve", description=__doc__)
    parser.add_argument("--address", default="auto", help="Ray address (default: this node's)")
    parser.add_argument("--state-dir", type=Path, default=Path.home() / "raysched-state",
                        help="telemetry store and checkpoints (must be shared storage for "
                             "checkpoints to follow migrated jobs across machines)")
    parser.add_argument("--policy", default="least_loaded")
    args = parser.parse_args(argv)
    from raysched.platform.client import start_controller

    state_dir = args.state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    start_controller(args.address, store_path=state_dir / "telemetry.db",
                     storage_dir=state_dir / "storage", policy=args.policy)
    print(f"raysched controller running (policy {args.policy}, state in {state_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
