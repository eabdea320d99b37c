"""What one migration costs on this cluster, from what the controller has measured."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def measured_migration_cost(downtimes: Sequence[float],
                            startups: Sequence[float]) -> float | None:
    """The median downtime of past migrations (decision to the relaunch's first step).

    Before any migration has been measured, the median start-up of launches (placement to
    first step): a relaunch pays at least that again, on top of the checkpoint and stop. A
    live run migrated twice for predicted gains of 2 and 24 s where start-ups took 45-180 s,
    because the cost model predicted start-ups under the 30 s default. None when neither has
    been measured (the policy then falls back on its own estimate).
    """
    if downtimes:
        return statistics.median(downtimes)
    if startups:
        return statistics.median(startups)
    return None
