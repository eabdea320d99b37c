"""`raysched cluster up/address/status/down` as typed: a daemon that outlives the commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from raysched.platform.local_cluster import free_port
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def raysched(state_dir, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "raysched.cli", "--state-dir", str(state_dir),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "RAY_AUTH_MODE": "token"})


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_cluster_up_address_status_export_down(tmp_path):
    state = tmp_path / "state"
    up = raysched(state, "cluster", "up", "--nodes", "3", "--dashboard-port", str(free_port()))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "dashboard:  http://127.0.0.1:" in up.stdout and "address:" in up.stdout
    info = json.loads((state / "cluster.json").read_text())
    try:
        again = raysched(state, "cluster", "up")
        assert again.returncode != 0 and "already up" in again.stderr
        address = raysched(state, "cluster", "address")
        assert address.stdout.strip() == info["address"]
        status = raysched(state, "status")
        assert status.returncode == 0 and "(no jobs)" in status.stdout
        export = raysched(state, "telemetry", "export", "--format", "csv", "--output",
                          str(tmp_path / "export"), "--tables", "jobs")
        assert export.returncode == 0 and (tmp_path / "export" / "jobs.csv").exists()
    finally:
        down = raysched(state, "cluster", "down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 30
    while alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(info["pid"])
    # Nothing that `up` started survives: no process still uses its Ray temp dir.
    def leftovers() -> str:
        out = subprocess.run(["pgrep", "-f", info["ray_tmp"]], capture_output=True, text=True)
        return out.stdout.strip()

    deadline = time.monotonic() + 30
    while leftovers() and time.monotonic() < deadline:
        time.sleep(1.0)
    assert leftovers() == ""
    assert raysched(state, "cluster", "address").returncode == 1
