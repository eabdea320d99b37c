"""Driver for `ray job submit -- python -m raysched.jobs.run SPEC.yaml`: register, wait, report.

The job does not train in this driver: it registers with the raysched controller, which queues
it, places it by policy and launches it; the driver waits, prints progress, and exits 0 only if
the job succeeded, so `ray job status` agrees with `raysched status`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from raysched.platform.status_table import format_table, job_rows
from raysched.schedulers.spec import SpecError, load_spec
from raysched.schedulers.types import JobState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raysched.jobs.run")
    parser.add_argument("spec", help="job spec YAML")
    parser.add_argument("--address", default=None, help="Ray address (default: this Ray job's)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from raysched.platform.client import Client, connect

    connect(args.address or os.environ.get("RAY_ADDRESS") or "auto")
    import ray

    ray_job_id = os.environ.get("RAY_JOB_SUBMISSION_ID") or ray.get_runtime_context().get_job_id()
    client = Client()
    try:
        job_id = client.submit(spec, source="ray_job", ray_job_id=ray_job_id)
    except (SpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"raysched job {job_id} queued (Ray job {ray_job_id})", flush=True)
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        row = client.job(job_id)
        summary = (row["state"], row["steps_done"])
        if summary != last:
            print(f"{job_id}: {row['state']} step {row['steps_done']}/{spec.steps}", flush=True)
            last = summary
        if JobState(row["state"]).finished:
            break
        if time.monotonic() > deadline:
            print(f"error: {job_id} not finished after {args.timeout:.0f} s", file=sys.stderr)
            return 3
        time.sleep(1.0)
    print(format_table(job_rows([row])))
    if row["error"]:
        print(f"error: {row['error']}", file=sys.stderr)
    return 0 if row["state"] == JobState.SUCCEEDED.value else 1


if __name__ == "__main__":
    sys.exit(main())
