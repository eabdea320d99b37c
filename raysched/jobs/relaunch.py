"""Run one gang of actors to the end, relaunching it from its checkpoint when an actor dies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import ray
from ray.exceptions import RayActorError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RELAUNCHES = 3
# After the first failed ref, how long the others get to fail too (a peer of a dead actor
# usually fails fast on a closed socket) before the gang is judged.
_SETTLE_S = 10.0


class GangActorDied(Exception):
    """An actor of the gang died; the attempt can be relaunched from the last checkpoint."""


def wait_gang(refs: Sequence[ray.ObjectRef]) -> list[Any]:
    """ray.get all `refs`; raise GangActorDied if any actor died, else the first task error.

    A dead actor leaves its peers blocked in (or failing out of) collectives, so a task error
    seen first may only be a symptom; an actor death anywhere in the gang takes precedence.
    """
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            ray.get(done[0])
        except Exception:
            settled, _ = ray.wait(pending, num_returns=len(pending), timeout=_SETTLE_S)
            errors = []
            for ref in [done[0], *settled]:
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - sorted below
                    errors.append(exc)
            died = [e for e in errors if isinstance(e, RayActorError)]
            if died:
                raise GangActorDied(str(died[0])) from died[0]
            raise
    return ray.get(list(refs))


def kill_all(actors: Sequence[Any]) -> None:
    """Kill every actor of a gang (dead ones included); never raises."""
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def run_with_relaunch(
    attempt: Callable[[int], T], *, max_relaunches: int = MAX_RELAUNCHES
) -> tuple[T, int]:
    """Call `attempt(relaunch)` until it returns; relaunch on GangActorDied at most N times.

    Returns the attempt's result and how many relaunches it took. `attempt` must create its
    actors, resume from the newest checkpoint and kill its actors on the way out.
    """
    for relaunch in range(max_relaunches + 1):
        try:
            return attempt(relaunch), relaunch
        except GangActorDied as exc:
            if relaunch == max_relaunches:
                raise RuntimeError(
                    f"gang actor died {max_relaunches + 1} times; last: {exc}"
                ) from exc
            log.warning("gang actor died (%s); relaunch %d from checkpoint", exc, relaunch + 1)
    raise AssertionError("unreachable")  # pragma: no cover
