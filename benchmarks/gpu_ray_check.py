"""GPU check through Ray: the controller places a GPU data-parallel job on a GPU node and moves it.

A local Ray cluster of one CPU node and two nodes with one GPU each (on a one-GPU machine both
nodes' GPU is the same device) runs the learned policy's controller. The check submits:

- a GPU job (DDP over NCCL, one worker, `gpus_per_worker=1`) that must land on a GPU node;
- a CPU job at the same time, which must succeed beside it;
- a job asking for more GPUs per worker than any node has, which must be refused at submit.

Once the GPU job has run a few checkpoints its node is slowed down (emulated noisy neighbour,
`raysched.platform.interference`); the learned policy must move it to the other GPU node, where it
resumes from its checkpoint on CUDA and finishes. While jobs run, `nvidia-smi` is polled for the
processes using the GPU and matched with the PIDs of each job's Ray worker actors.

Run on a machine with a GPU (Ray, torch with CUDA)::

    PYTHONPATH=. python3 benchmarks/gpu_ray_check.py --output benchmarks/results/gpu_ray_check.json

`--cpu-rehearsal` runs the same flow with GPU-less "GPU" nodes and a CPU job in place of the
GPU job: it checks the script's own mechanics on a machine without a GPU and proves nothing about
GPUs. Exit status 0: every check passed; 1: a check failed; 2: no CUDA device (without
`--cpu-rehearsal`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "gpu_ray_check.json"


class GpuProcessPoller(threading.Thread):
    """Collects the PIDs `nvidia-smi` lists as using a GPU, every `every_s` seconds."""

    def __init__(self, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.pids: set[int] = set()
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=10, check=True).stdout
                self.pids.update(int(t) for t in out.split() if t.strip().isdigit())
            except (OSError, subprocess.SubprocessError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()


def wait_for_steps(client: Any, job_id: str, steps: int, timeout_s: float) -> dict[str, Any]:
    """Poll until `job_id` has reported `steps` steps (or finished); returns its row."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = client.job(job_id)
        if row["steps_done"] >= steps or row["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_id} reported {row['steps_done']} of {steps} steps "
                               f"in {timeout_s:.0f} s (state {row['state']})")
        time.sleep(0.5)


def run_check(*, gpu: bool, steps: int, slowdown: float, timeout_s: float,
              state_dir: Path) -> dict[str, Any]:
    """Start the cluster, run the three jobs, slow the GPU job's node; returns the findings."""
    import ray

    from raysched.platform import interference
    from raysched.platform.client import Client, start_controller
    from raysched.platform.job_actors import worker_pids_by_job
    from raysched.platform.local_cluster import LocalCluster, LocalClusterConfig, NodeSpec
    from raysched.platform.telemetry import TelemetryStore
    from raysched.schedulers.policies.learned import build_learned
    from raysched.schedulers.predictor.cost_model import CostModel

    gpus = 1 if gpu else 0
    nodes = (NodeSpec(cpus=2), NodeSpec(cpus=4, gpus=gpus), NodeSpec(cpus=4, gpus=gpus))
    config = LocalClusterConfig(nodes=nodes, state_dir=state_dir, dashboard_port=0,
                                start_controller=False)
    findings: dict[str, Any] = {"gpu": gpu, "checks": {}}
    checks: dict[str, bool] = findings["checks"]
    poller = GpuProcessPoller()
    with LocalCluster(config) as cluster:
        storage = state_dir.resolve() / "storage"
        start_controller(cluster.address, store_path=config.store_path, storage_dir=storage,
                         policy=build_learned(CostModel().fit([])))
        client = Client(cluster.address)
        gpu_nodes = sorted(n["NodeID"] for n in ray.nodes()
                           if n["Alive"] and n["Resources"].get("CPU") == 4)
        if gpu:
            poller.start()
        t0 = time.monotonic()
        gpu_job = client.submit({
            "name": "gpu-ddp", "kind": "data_parallel", "model": "cnn", "dataset": "digits",
            "num_workers": 1, "cpus_per_worker": 4, "gpus_per_worker": gpus, "steps": steps,
            "batch_size": 256, "learning_rate": 0.1, "checkpoint_every": 100})
        cpu_job = client.submit({"name": "cpu-mlp", "model": "mlp", "num_workers": 1,
                                 "cpus_per_worker": 2, "steps": 300, "batch_size": 64})
        try:
            client.submit({"name": "too-wide", "num_workers": 1, "cpus_per_worker": 1,
                           "gpus_per_worker": 2})
            findings["too_wide"] = "admitted"
        except ValueError as exc:
            findings["too_wide"] = str(exc)
        checks["too_wide_refused_at_submit"] = (findings["too_wide"] != "admitted"
                                                and "GPU" in findings["too_wide"])

        row = wait_for_steps(client, gpu_job, 300, timeout_s)
        first = tuple(row["node_ids"])
        findings["gpu_job_first_nodes"] = first
        findings["gpu_job_steps_before_slowdown"] = row["steps_done"]
        findings["pids_first_attempt"] = sorted(worker_pids_by_job().get(gpu_job, ()))
        checks["gpu_job_placed_on_a_gpu_node"] = bool(first) and first[0] in gpu_nodes
        interference.slow_down(storage, first[0], slowdown)
        slowed_at = time.monotonic()
        try:
            client.wait([gpu_job, cpu_job], timeout_s=timeout_s)
        except TimeoutError as exc:
            findings["timeout"] = str(exc)
        finally:
            interference.recover(storage, first[0])
        rows = {j: client.job(j) for j in (gpu_job, cpu_job)}
        findings["decisions"] = {j: [(d["action"], d["node_ids"], d["reason"])
                                     for d in client.explain(j)["decisions"]]
                                 for j in (gpu_job, cpu_job)}
        findings["nodes"] = client.nodes()
        findings["node_decisions"] = [(d["action"], d["node_ids"], d["reason"])
                                      for d in TelemetryStore(config.store_path).decisions("-")]
        findings["pids_last_attempt"] = sorted(worker_pids_by_job().get(gpu_job, ()))
        poller.stop()
        g, c = rows[gpu_job], rows[cpu_job]
        findings["wall_s"] = round(time.monotonic() - t0, 1)
        findings["gpu_job_after_slowdown_s"] = round(time.monotonic() - slowed_at, 1)
        findings["gpu_job"] = {k: g[k] for k in ("state", "node_ids", "migrations", "error")}
        findings["cpu_job"] = {k: c[k] for k in ("state", "node_ids", "error")}
        checks["gpu_job_succeeded"] = g["state"] == "SUCCEEDED"
        checks["cpu_job_succeeded"] = c["state"] == "SUCCEEDED"
        checks["gpu_job_moved_to_the_other_gpu_node"] = (
            g["migrations"] >= 1 and tuple(g["node_ids"]) != first
            and all(n in gpu_nodes for n in g["node_ids"]))
        store = TelemetryStore(config.store_path)
        records = store.steps(gpu_job)
        findings["moves"] = [d["reason"] for d in client.explain(gpu_job)["decisions"]
                             if d["action"] == "migrate"]
        findings.update(resume_findings(records, checkpoint_every=100, steps=steps))
        checks["resumed_from_a_checkpoint_and_finished"] = findings["resumed_ok"]
        if gpu:
            findings["nvidia_smi_error"] = poller.error
            findings["nvidia_smi_pids"] = sorted(poller.pids)
            workers = set(findings["pids_first_attempt"]) | set(findings["pids_last_attempt"])
            cpu_pids = worker_pids_by_job().get(cpu_job, set())
            findings["gpu_job_worker_pids_on_gpu"] = sorted(workers & poller.pids)
            checks["gpu_job_workers_seen_on_the_gpu"] = bool(workers & poller.pids)
            checks["cpu_job_never_on_the_gpu"] = not (cpu_pids & poller.pids)
    return findings


def resume_findings(records: list[dict[str, Any]], *, checkpoint_every: int,
                    steps: int) -> dict[str, Any]:
    """Whether the last attempt resumed at a checkpoint boundary, continuing the loss curve."""
    rank0 = [r for r in records if r.get("rank", 0) == 0]
    attempts = sorted({r["attempt"] for r in rank0})
    if len(attempts) < 2:
        return {"attempts": attempts, "resumed_ok": False}
    before = [r for r in rank0 if r["attempt"] == attempts[0]]
    after = [r for r in rank0 if r["attempt"] == attempts[-1]]
    resumed_at = min(r["step"] for r in after)
    last_before = max(r["step"] for r in before)
    loss_at = {r["step"]: r["loss"] for r in before}
    first_loss = before[0]["loss"]
    # The loss right after resuming is near the loss before the stop, not the untrained loss.
    near = [loss_at[s] for s in range(resumed_at - 5, resumed_at) if s in loss_at]
    resumed_loss = sum(r["loss"] for r in after[:5]) / len(after[:5])
    return {
        "attempts": attempts, "stopped_after_step": last_before, "resumed_at_step": resumed_at,
        "loss_first_step": first_loss, "loss_before_stop": near and sum(near) / len(near),
        "loss_after_resume": resumed_loss, "last_step": max(r["step"] for r in after),
        # From the stop's own checkpoint, or at worst the last periodic one before it.
        "resumed_ok": ((last_before // checkpoint_every) * checkpoint_every <= resumed_at
                       <= last_before + 1 and resumed_at > 0
                       and max(r["step"] for r in after) == steps - 1
                       and resumed_loss < 0.5 * first_loss),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--slowdown", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, seconds")
    parser.add_argument("--cpu-rehearsal", action="store_true",
                        help="no GPU: run the flow on CPU to check the script itself")
    args = parser.parse_args(argv)
    gpu = not args.cpu_rehearsal
    if gpu:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device visible; use --cpu-rehearsal on a machine without one",
                  file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="raysched-gpu-") as tmp:
        findings = run_check(gpu=gpu, steps=args.steps, slowdown=args.slowdown,
                             timeout_s=args.timeout, state_dir=Path(tmp))
    ok = all(findings["checks"].values())
    findings["passed"] = ok
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(findings, indent=2, default=str) + "\n")
    print(f"{'check':<45} result")
    for name, passed in findings["checks"].items():
        print(f"{name:<45} {'pass' if passed else 'FAIL'}")
    for key in ("wall_s", "gpu_job_after_slowdown_s", "moves", "resumed_at_step",
                "loss_first_step", "loss_before_stop", "loss_after_resume"):
        print(f"{key}: {findings.get(key)}")
    print(f"wrote {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
