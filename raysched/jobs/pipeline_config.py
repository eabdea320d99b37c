"""A pipeline job's shape from its spec (stages, micro-batches, schedule): torch-free.

Kept apart from the stage code so that the runner that launches the stage actors imports no
torch (torch and torch.distributed.pipelining are about 5 CPU-seconds of imports here, paid
once per attempt); only the stage actors do.
"""

from __future__ import annotations

import dataclasses

from raysched.schedulers.spec import JobSpec

SCHEDULE_NAMES = ("1f1b", "gpipe")
DEFAULT_MICRO_BATCHES = 4


def stage_part(rank: int) -> str:
    """Checkpoint part name of stage `rank`."""
    return f"stage-{rank}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """The pipeline shape of a spec: S stages, M micro-batches, schedule name."""

    num_stages: int
    micro_batches: int
    schedule: str

    @classmethod
    def from_spec(cls, spec: JobSpec) -> PipelineConfig:
        """Validate the spec's pipeline options; ValueError names the offending option."""
        stages = spec.options.get("stages", spec.num_workers)
        if stages != spec.num_workers:
            raise ValueError(
                f"options.stages ({stages}) must equal num_workers ({spec.num_workers})"
            )
        micro = spec.options.get("micro_batches", DEFAULT_MICRO_BATCHES)
        schedule = spec.options.get("schedule", "gpipe").lower()
        if schedule not in SCHEDULE_NAMES:
            raise ValueError(
                f"options.schedule must be one of {list(SCHEDULE_NAMES)}, got {schedule!r}"
            )
        if micro <= 0 or spec.batch_size % micro:
            raise ValueError(
                f"options.micro_batches ({micro}) must divide batch_size ({spec.batch_size}) "
                "so that the mean of micro-batch losses equals the batch loss"
            )
        if schedule == "1f1b" and micro < stages:
            raise ValueError(f"1f1b needs micro_batches ({micro}) >= stages ({stages})")
        return cls(num_stages=stages, micro_batches=micro, schedule=schedule)
