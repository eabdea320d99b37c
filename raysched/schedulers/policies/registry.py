"""Named scheduling policies the controller, the CLI and the benchmarks can ask for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raysched.schedulers.policies.base import AdmitAll, FifoOrder, SchedulingPolicy
from raysched.schedulers.policies.heuristic_placement import (
    LeastLoadedPlacement,
    PackPlacement,
    RandomPlacement,
    RayDefaultPlacement,
    SpreadPlacement,
)

PolicyFactory = Callable[[Any], SchedulingPolicy]  # takes the cost model (baselines ignore it)


def _fifo_with(placement: object, name: str) -> PolicyFactory:
    def build(cost_model: Any = None) -> SchedulingPolicy:
        return SchedulingPolicy(name=name, admission=AdmitAll(), ordering=FifoOrder(),
                                placement=placement() if callable(placement) else placement)

    return build


def _learned(cost_model: Any) -> SchedulingPolicy:
    from raysched.schedulers.policies.learned import build_learned

    if cost_model is None:
        raise ValueError("the learned policy needs a cost model")
    return build_learned(cost_model)


POLICIES: dict[str, PolicyFactory] = {
    "learned": _learned,
    "least_loaded": _fifo_with(LeastLoadedPlacement, "least_loaded"),
    "fifo_least_loaded": _fifo_with(LeastLoadedPlacement, "fifo_least_loaded"),
    "fifo_ray_default": _fifo_with(RayDefaultPlacement, "fifo_ray_default"),
    "pack": _fifo_with(PackPlacement, "pack"),
    "spread": _fifo_with(SpreadPlacement, "spread"),
    "random": _fifo_with(RandomPlacement, "random"),
}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make a policy available by name (used by the learned and oracle policies)."""
    POLICIES[name] = factory


def needs_cost_model(name: str) -> bool:
    return name == "learned"


def make_policy(name: str, cost_model: Any = None) -> SchedulingPolicy:
    """Build the policy called `name`; a clear error lists the known names."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}"
        ) from None
    return factory(cost_model)
