"""Named scheduling policies the controller, the CLI and the benchmarks can ask for."""

from __future__ import annotations

from collections.abc import Callable

from raysched.schedulers.policies.base import AdmitAll, FifoOrder, SchedulingPolicy
from raysched.schedulers.policies.heuristic_placement import (
    LeastLoadedPlacement,
    PackPlacement,
    RandomPlacement,
    RayDefaultPlacement,
    SpreadPlacement,
)


def _fifo_with(placement: object, name: str) -> Callable[[], SchedulingPolicy]:
    def build() -> SchedulingPolicy:
        return SchedulingPolicy(name=name, admission=AdmitAll(), ordering=FifoOrder(),
                                placement=placement() if callable(placement) else placement)

    return build


POLICIES: dict[str, Callable[[], SchedulingPolicy]] = {
    "least_loaded": _fifo_with(LeastLoadedPlacement, "least_loaded"),
    "fifo_least_loaded": _fifo_with(LeastLoadedPlacement, "fifo_least_loaded"),
    "fifo_ray_default": _fifo_with(RayDefaultPlacement, "fifo_ray_default"),
    "pack": _fifo_with(PackPlacement, "pack"),
    "spread": _fifo_with(SpreadPlacement, "spread"),
    "random": _fifo_with(RandomPlacement, "random"),
}


def register_policy(name: str, factory: Callable[[], SchedulingPolicy]) -> None:
    """Make a policy available by name (used by the learned and oracle policies)."""
    POLICIES[name] = factory


def make_policy(name: str) -> SchedulingPolicy:
    """Build the policy called `name`; a clear error lists the known names."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}"
        ) from None
    return factory()
