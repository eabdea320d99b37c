"""Emulated interference: slow a node mid-run, as a noisy neighbour would (local clusters only).

A file `<storage>/interference/<node_id>` holding a factor f >= 1 makes every training step on that
node take f times longer (read by `JobContext.speed_of` each step). Removing the file ends it.
On a real cluster nothing writes these files and nothing is stretched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


def interference_dir(storage_dir: str | Path) -> Path:
    return Path(storage_dir) / "interference"


def slow_down(storage_dir: str | Path, node_id: str, factor: float) -> None:
    """Make `node_id` `factor` times slower from the next step on."""
    if factor < 1.0:
        raise ValueError(f"a slowdown factor must be >= 1, got {factor}")
    directory = interference_dir(storage_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{node_id}.tmp"
    tmp.write_text(f"{factor}\n")
    os.replace(tmp, directory / node_id)


def recover(storage_dir: str | Path, node_id: str) -> None:
    """End the injected slowdown on `node_id`."""
    (interference_dir(storage_dir) / node_id).unlink(missing_ok=True)


def slow_once(storage_dir: str | Path, node_id: str, factor: float,
              at_s: float) -> Callable[[float], None]:
    """A callback for a workload runner: slows `node_id` once `at_s` seconds have passed."""
    done: list[float] = []

    def slow(elapsed: float) -> None:
        if not done and elapsed >= at_s:
            slow_down(storage_dir, node_id, factor)
            done.append(elapsed)

    return slow


class TrueSpeeds(Mapping[str, float]):
    """Each node's true emulated speed now (label / injected slowdown): what an oracle knows.

    The slowdown files are re-read at most every `max_age_s` seconds per node (the oracle asks
    for every candidate of every prediction)."""

    def __init__(self, label_speeds: Mapping[str, float], directory: str,
                 max_age_s: float = 1.0) -> None:
        self._labels = dict(label_speeds)
        self._dir = directory
        self._max_age_s = max_age_s
        self._read: dict[str, tuple[float, float]] = {}  # node -> (monotonic time, slowdown)

    def __getitem__(self, node_id: str) -> float:
        from raysched.jobs.base import read_slowdown

        label = self._labels[node_id]
        now = time.monotonic()
        seen = self._read.get(node_id)
        if seen is None or now - seen[0] > self._max_age_s:
            seen = self._read[node_id] = (now, read_slowdown(self._dir, node_id))
        return label / seen[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)
