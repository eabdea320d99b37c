"""Step-versioned checkpoints written in parts by several actors (stages, parameter servers).

Each part is one atomic file (raysched.jobs.checkpoint) under step-NNNNNNNN/<part>.pt; a step
counts as restorable only once every part of it exists, so an actor dying mid-checkpoint
leaves the previous complete step to resume from.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from raysched.jobs.checkpoint import load_checkpoint, save_checkpoint

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def step_dir(root: str | Path, step: int) -> Path:
    """Folder holding every part of the checkpoint taken after `step` steps."""
    return Path(root) / f"step-{step:08d}"


def save_part(root: str | Path, step: int, part: str, state: dict[str, Any]) -> Path:
    """Save one part of the checkpoint after `step` steps (atomic)."""
    return save_checkpoint(step_dir(root, step), {**state, "step": step}, name=f"{part}.pt")


def load_part(root: str | Path, step: int, part: str) -> dict[str, Any]:
    """Load one part written by `save_part`."""
    state = load_checkpoint(step_dir(root, step), name=f"{part}.pt")
    if state is None:
        raise FileNotFoundError(f"no checkpoint part {part!r} at step {step} in {root}")
    return state


def complete_steps(root: str | Path, parts: list[str]) -> list[int]:
    """Steps, ascending, whose checkpoint has every one of `parts`."""
    root = Path(root)
    if not root.is_dir():
        return []
    steps = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and all((child / f"{p}.pt").is_file() for p in parts):
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_step(root: str | Path, parts: list[str]) -> int | None:
    """The newest step with a complete checkpoint, or None."""
    steps = complete_steps(root, parts)
    return steps[-1] if steps else None


def prune(root: str | Path, parts: list[str], keep: int = 2) -> None:
    """Delete every step folder older than the newest `keep` complete checkpoints."""
    complete = complete_steps(root, parts)
    if len(complete) <= keep:
        return
    oldest_kept = complete[-keep]
    for child in Path(root).iterdir():
        m = _STEP_DIR.match(child.name)
        if m and int(m.group(1)) < oldest_kept:
            shutil.rmtree(child, ignore_errors=True)
