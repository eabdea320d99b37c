"""The platform's ClusterView counts GPUs like CPUs: Ray's node table stubbed, no cluster."""

from __future__ import annotations

from typing import Any

import pytest

cluster_view = pytest.importorskip("raysched.platform.cluster_view")

NODES: list[dict[str, Any]] = [
    {"NodeID": "gpu", "Alive": True, "Resources": {"CPU": 8.0, "GPU": 4.0}, "Labels": {}},
    {"NodeID": "cpu", "Alive": True, "Resources": {"CPU": 16.0}, "Labels": {}},
    {"NodeID": "gone", "Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}},
]


def _observe(monkeypatch: pytest.MonkeyPatch, available: dict[str, dict[str, float]],
             **kw: Any) -> dict[str, Any]:
    monkeypatch.setattr(cluster_view.ray, "nodes", lambda: NODES)
    monkeypatch.setattr(cluster_view.ray_state, "available_resources_per_node",
                        lambda: available)
    view = cluster_view.observe_cluster(now=0.0, allocated_cpus=kw.pop("cpus", {}), **kw)
    return {n.node_id: n for n in view.nodes} | {"max_gpus": view.max_node_gpus}


def test_gpus_are_read_and_the_smaller_of_ray_and_ours_is_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray sees 3 GPUs free on "gpu"; raysched has allocated 2 there: 2 are free.
    got = _observe(monkeypatch, {"gpu": {"CPU": 8.0, "GPU": 3.0}, "cpu": {"CPU": 16.0}},
                   allocated_gpus={"gpu": 2.0})
    assert (got["gpu"].gpus_total, got["gpu"].gpus_free) == (4.0, 2.0)
    assert (got["cpu"].gpus_total, got["cpu"].gpus_free) == (0.0, 0.0)
    assert got["max_gpus"] == 4.0 and "gone" not in got


def test_gpus_fully_used_in_ray_are_not_free(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fully used resource is missing from Ray's available map.
    got = _observe(monkeypatch, {"gpu": {"CPU": 4.0}, "cpu": {"CPU": 16.0}})
    assert got["gpu"].gpus_free == 0.0 and got["gpu"].cpus_free == 4.0
