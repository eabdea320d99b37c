"""Atomic checkpoints in a job's checkpoint directory, shared by every job kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

LATEST = "latest.pt"


def save_checkpoint(directory: str | Path, state: dict[str, Any], name: str = LATEST) -> Path:
    """Write `state` (must hold 'step') atomically: a reader sees the old file or the new one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if "step" not in state:
        raise ValueError("a checkpoint must record the step it was taken at")
    path = directory / name
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | Path, name: str = LATEST) -> dict[str, Any] | None:
    """The newest checkpoint in `directory`, or None if there is none yet."""
    path = Path(directory) / name
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
