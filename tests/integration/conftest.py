"""One real local Ray cluster (4 heterogeneous worker nodes + head, controller) per test session."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from raysched.platform.local_cluster import LocalCluster, LocalClusterConfig, default_nodes

REPO = Path(__file__).resolve().parents[2]


# Modules whose tests start and stop clusters of their own.
OWN_CLUSTER_MODULES = frozenset({"test_cli_cluster.py", "test_notebooks.py"})


def pytest_collection_modifyitems(session, config, items):
    """Run the tests that start their own cluster before the shared one exists.

    On a 2-core machine two clusters at once (the shared one idles, but its raylets, GCS and
    dashboard still tick) slow both down; this way only one runs at a time.
    """
    integration = [i for i in items if "integration" in i.path.parts]
    if not integration:
        return
    own = [i for i in integration if i.path.name in OWN_CLUSTER_MODULES]
    first = items.index(integration[0])
    rest = [i for i in items[first:] if i not in own]
    items[:] = [*items[:first], *own, *rest]


@pytest.fixture(scope="session")
def cluster():
    state_dir = Path(tempfile.mkdtemp(prefix="raysched-it-"))
    config = LocalClusterConfig(nodes=default_nodes(4), state_dir=state_dir,
                                dashboard_port=0)
    with LocalCluster(config) as c:
        yield c


@pytest.fixture(scope="module")
def nodes():
    """Two worker node ids, for the job-kind tests (reuses the session cluster if connected)."""
    from tests.integration.jobs_support import small_cluster, worker_node_ids

    with small_cluster():
        ids = worker_node_ids()
        assert len(ids) >= 2
        yield ids[:2]


@pytest.fixture(scope="session")
def client(cluster):
    from raysched.platform.client import Client

    return Client(cluster.address)
