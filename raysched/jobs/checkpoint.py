"""Atomic checkpoints in a job's checkpoint directory, shared by every job kind.

Checkpoints hold CPU tensors only, whatever device the job trained on, and are loaded with a
`map_location` (CPU by default), so a job stopped on a GPU resumes on a CPU node and vice versa.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch is imported where a tensor is read or written: a process that only looks for the newest
# step (a pipeline job's runner) then starts without it (about 3 CPU-seconds of imports here).

LATEST = "latest.pt"


def to_cpu(value: Any) -> Any:
    """`value` with every tensor (in nested dicts, lists and tuples) detached onto the CPU."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    return value


def save_checkpoint(directory: str | Path, state: dict[str, Any], name: str = LATEST) -> Path:
    """Write `state` (must hold 'step') atomically: a reader sees the old file or the new one.

    Tensors are stored on the CPU, so the file does not depend on the device that wrote it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if "step" not in state:
        raise ValueError("a checkpoint must record the step it was taken at")
    path = directory / name
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    import torch

    torch.save(to_cpu(state), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    directory: str | Path, name: str = LATEST, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """The newest checkpoint in `directory` (tensors on `map_location`), or None if none yet."""
    path = Path(directory) / name
    if not path.exists():
        return None
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)
