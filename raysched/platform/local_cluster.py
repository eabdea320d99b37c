"""A local multi-node Ray cluster on one machine, with emulated heterogeneous nodes.

Each worker node carries a CPU count and the emulated speed label ``raysched.io/speed``; the
head node carries no CPUs (only the controller and job drivers, which need none) and the label
``raysched.io/role=head``. Used three ways: in-process (`LocalCluster`, for tests and
notebooks), and as a background daemon (`raysched cluster up` / `down`), whose state file
records the address, the dashboard URL and the PID to end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from raysched.platform import auth
from raysched.schedulers.types import SPEED_LABEL

ROLE_LABEL = "raysched.io/role"
DEFAULT_DASHBOARD_PORT = 28265
STATE_FILE = "cluster.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """One emulated worker node."""

    cpus: int
    speed: float = 1.0
    memory_mb: int = 1024
    gpus: int = 0  # Ray's logical "GPU" count; workers see the host's GPUs from index 0

    def __post_init__(self) -> None:
        if self.cpus <= 0:
            raise ValueError(f"a node needs at least one CPU, got {self.cpus}")
        if self.gpus < 0:
            raise ValueError(f"a node's GPU count cannot be negative, got {self.gpus}")
        if not 0 < self.speed <= 1.0:
            raise ValueError(f"speed must be in (0, 1], got {self.speed}")


# Node i of a default cluster: CPUs and speed both vary, so placement matters.
_DEFAULT_PATTERN = (NodeSpec(cpus=2, speed=1.0), NodeSpec(cpus=2, speed=0.5),
                    NodeSpec(cpus=1, speed=0.25), NodeSpec(cpus=1, speed=0.75))


def default_nodes(n: int) -> tuple[NodeSpec, ...]:
    """`n` heterogeneous nodes following a fixed pattern of CPU counts and speeds."""
    if n < 1:
        raise ValueError(f"--nodes must be at least 1, got {n}")
    return tuple(_DEFAULT_PATTERN[i % len(_DEFAULT_PATTERN)] for i in range(n))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalClusterConfig:
    """How to lay out the local cluster and where it keeps its files."""

    nodes: tuple[NodeSpec, ...] = dataclasses.field(default_factory=lambda: default_nodes(3))
    state_dir: Path = Path(".raysched")
    dashboard_port: int = DEFAULT_DASHBOARD_PORT  # 0: any free port
    start_controller: bool = True
    policy: str = "least_loaded"

    @property
    def ray_tmp(self) -> Path:
        # Short absolute path: Ray's unix sockets live under it (108-byte limit).
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:8]
        return Path(f"/tmp/raysched-{digest}-{self.dashboard_port}")

    @property
    def store_path(self) -> Path:
        return self.state_dir.resolve() / "telemetry.db"


# Ports we pick ourselves come from below the kernel's ephemeral range (32768+), where Ray's
# own servers take random ports, and above Ray's worker ports (10002-19999): a port picked in
# the ephemeral range can be taken by Ray between our check and the bind.
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A TCP port that is free now, outside both Ray's worker range and the ephemeral range."""
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*_PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


class LocalCluster:
    """Start, use and stop a local heterogeneous Ray cluster in this process."""

    def __init__(self, config: LocalClusterConfig | None = None) -> None:
        self.config = config or LocalClusterConfig()
        self._cluster: Any = None
        self.address: str | None = None
        self.dashboard_url: str | None = None

    def start(self) -> LocalCluster:
        auth.enable_token_auth()
        from ray.cluster_utils import Cluster

        if self.config.dashboard_port == 0:
            self.config = dataclasses.replace(self.config, dashboard_port=free_port())
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        ray_tmp = cfg.ray_tmp
        (ray_tmp / "ray").mkdir(parents=True, exist_ok=True)
        # Ray writes "the current cluster" file under RAY_TMPDIR: keep it ours, not /tmp/ray.
        os.environ["RAY_TMPDIR"] = str(ray_tmp)
        # `ray job submit -- python ...` entrypoints run with the head's PATH: find our Python.
        bin_dir = str(Path(sys.executable).parent)
        if not os.environ.get("PATH", "").startswith(bin_dir + os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        self._cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "temp_dir": str(ray_tmp / "ray"),
                "include_dashboard": True,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": cfg.dashboard_port,
                # The default (52365) collides with any other Ray head on this host; without
                # its agent, `ray job submit` answers "No available agent".
                "dashboard_agent_listen_port": free_port(),
                "labels": {ROLE_LABEL: "head"},
            },
        )
        for node in cfg.nodes:
            self._cluster.add_node(
                num_cpus=node.cpus,
                num_gpus=node.gpus,
                labels={SPEED_LABEL: f"{node.speed:g}", ROLE_LABEL: "worker"},
                object_store_memory=80 * 1024 * 1024,
            )
        self._cluster.wait_for_nodes()
        self.address = self._cluster.address
        self.dashboard_url = f"http://127.0.0.1:{cfg.dashboard_port}"
        wait_for_job_agent(self.dashboard_url)
        from raysched.platform.client import connect

        connect(self.address)  # this process becomes a driver of the cluster it started
        if cfg.start_controller:
            from raysched.platform.client import start_controller

            start_controller(self.address, store_path=cfg.store_path, policy=cfg.policy,
                             storage_dir=cfg.state_dir.resolve() / "storage")
        return self

    def stop(self) -> None:
        """End everything this cluster started (only that)."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_job_agent(dashboard_url: str, timeout_s: float = 300.0) -> None:
    """Block until `ray job submit` works: the head's job agent registers a while after start.

    Probes with one no-op Ray job (it shows in the dashboard as `raysched-ready-...`).
    """
    import uuid

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(dashboard_url, headers=auth.bearer_header())
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sub = client.submit_job(entrypoint="true",
                                    submission_id=f"raysched-ready-{uuid.uuid4().hex[:6]}")
            break
        except RuntimeError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray's job agent not ready after {timeout_s:.0f} s") from exc
            time.sleep(1.0)
    while client.get_job_status(sub) not in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                             JobStatus.STOPPED):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray's ready probe job did not finish in {timeout_s:.0f} s")
        time.sleep(0.5)


# -- daemon: `raysched cluster up` / `down` -----------------------------------------------------


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's state, or None when no cluster is up (stale files are removed)."""
    path = state_path(state_dir)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if not _alive(state["pid"]):
        path.unlink(missing_ok=True)
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def up(config: LocalClusterConfig, *, timeout_s: float = 180.0) -> dict[str, Any]:
    """Start the cluster daemon in the background and wait until it is ready."""
    state_dir = config.state_dir
    existing = read_state(state_dir)
    if existing is not None:
        raise RuntimeError(
            f"a cluster is already up (pid {existing['pid']}, address {existing['address']}); "
            "run `raysched cluster down` first"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    nodes_arg = format_nodes(config.nodes)
    log = open(state_dir / "cluster.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "raysched.platform.local_cluster", "serve",
         "--state-dir", str(state_dir.resolve()), "--nodes", nodes_arg,
         "--dashboard-port", str(config.dashboard_port), "--policy", config.policy],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state is not None and state["pid"] == proc.pid:
            return state
        if proc.poll() is not None:
            tail = (state_dir / "cluster.log").read_text()[-3000:]
            raise RuntimeError(f"the cluster daemon exited with code {proc.returncode}:\n{tail}")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise TimeoutError(f"the cluster did not come up in {timeout_s:.0f} s; see {log.name}")


def down(state_dir: Path, *, timeout_s: float = 60.0) -> bool:
    """Stop the daemon started by `up` (and the Ray processes it started). False if none."""
    state = read_state(state_dir)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.3)
    if _alive(pid):
        # The daemon is its own session leader: its group holds only what it started.
        os.killpg(pid, signal.SIGKILL)
    state_path(state_dir).unlink(missing_ok=True)
    return True


def parse_nodes(text: str) -> tuple[NodeSpec, ...]:
    """Parse `CPUS[:SPEED[:GPUS]],...`, e.g. `2:1,4:0.5:1` (a CPU node and a node with a GPU)."""
    nodes = []
    for part in text.split(","):
        fields = part.strip().split(":")
        try:
            if not 1 <= len(fields) <= 3:
                raise ValueError(f"{len(fields)} fields")
            cpus, speed, gpus = (*fields, "", "")[:3]
            nodes.append(NodeSpec(cpus=int(cpus), speed=float(speed or 1.0),
                                  gpus=int(gpus or 0)))
        except ValueError as exc:
            raise ValueError(f"bad node {part!r} (expected CPUS[:SPEED[:GPUS]], e.g. 2:0.5 or "
                             f"4:1:1): {exc}") from exc
    return tuple(nodes)


def format_nodes(nodes: tuple[NodeSpec, ...]) -> str:
    """The `parse_nodes` text for `nodes` (GPUs only where a node has some)."""
    return ",".join(f"{n.cpus}:{n.speed:g}" + (f":{n.gpus}" if n.gpus else "") for n in nodes)


def _serve(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m raysched.platform.local_cluster serve")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--nodes", required=True)
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    parser.add_argument("--policy", default="least_loaded")
    args = parser.parse_args(argv)
    config = LocalClusterConfig(nodes=parse_nodes(args.nodes), state_dir=args.state_dir,
                                dashboard_port=args.dashboard_port, policy=args.policy)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    cluster = LocalCluster(config).start()
    state = {
        "pid": os.getpid(),
        "address": cluster.address,
        "dashboard_url": cluster.dashboard_url,
        "store": str(config.store_path),
        "ray_tmp": str(config.ray_tmp),
        "nodes": [dataclasses.asdict(n) for n in config.nodes],
        "started": time.time(),
    }
    tmp = state_path(args.state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_path(args.state_dir))
    print(f"raysched local cluster up at {cluster.address}", flush=True)
    while not stopping:
        time.sleep(0.5)
    print("raysched local cluster shutting down", flush=True)
    cluster.stop()
    state_path(args.state_dir).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        sys.exit(_serve(sys.argv[2:]))
    print("usage: python -m raysched.platform.local_cluster serve --state-dir D --nodes SPEC")
    sys.exit(2)
