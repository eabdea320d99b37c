"""The job spec: what a user asks raysched to run, from YAML or Python, validated."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

KINDS: tuple[str, ...] = ("data_parallel", "pipeline_parallel", "parameter_server", "sweep")
MODELS: tuple[str, ...] = ("mlp", "cnn", "transformer")
DATASETS: tuple[str, ...] = ("digits", "synthetic_text")

# Options each kind understands (spec field `options`); anything else is rejected by name.
# Kinds whose workers can hold GPUs (gpus_per_worker > 0). The others run on CPU only for now.
GPU_KINDS: tuple[str, ...] = ("data_parallel",)

KIND_OPTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "data_parallel": {
        "parallelism": str,  # "ddp" | "fsdp" (FSDP2 fully_shard: sharded params and state)
        "compression": str,  # "none" | "fp16" | "powersgd" (DDP communication hooks)
        "hetero_sharding": bool,
        # Times Ray Train restarts the worker group from the last checkpoint after a worker
        # dies or raises (default 2); 0 fails the job at the first error.
        "max_failures": int,
    },
    "pipeline_parallel": {
        "stages": int,
        "micro_batches": int,
        "schedule": str,  # "gpipe" | "1f1b"
    },
    "parameter_server": {
        "num_servers": int,
        "mode": str,  # "sync" | "async"
        "max_staleness": int,
    },
    "sweep": {
        "num_trials": int,
        "learning_rates": list,
        "early_stopping": bool,
    },
}
# Options whose value must be one of a few words.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "parallelism": ("ddp", "fsdp"),
    "compression": ("none", "fp16", "powersgd"),
    "schedule": ("gpipe", "1f1b"),
    "mode": ("sync", "async"),
}
# Options every kind understands.
COMMON_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "fail_at_step": int,  # fault injection: raise at this step (for testing FAILED handling)
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SpecError(ValueError):
    """A job spec that cannot run; the message names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid job spec: field '{field}': {message}")
        self.field = field
        self.detail = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Crosses process boundaries intact (the controller raises it into the client).
        return (SpecError, (self.field, self.detail))


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One training job as the user describes it. Immutable; validated on construction."""

    name: str
    kind: str = "data_parallel"
    model: str = "mlp"
    dataset: str = "digits"
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: int = 0  # whole GPUs per worker; data_parallel only (see GPU_KINDS)
    memory_mb_per_worker: int = 0
    steps: int = 100
    batch_size: int = 64
    learning_rate: float = 0.05
    user: str = "default"
    priority: int = 0
    seed: int = 0
    checkpoint_every: int = 0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_spec(self)
        object.__setattr__(self, "options", dict(self.options))

    @property
    def total_cpus(self) -> float:
        """CPUs the whole gang needs."""
        return self.num_workers * self.cpus_per_worker

    @property
    def total_gpus(self) -> int:
        """GPUs the whole gang needs."""
        return self.num_workers * self.gpus_per_worker

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (YAML/JSON-ready)."""
        out = dataclasses.asdict(self)
        out["options"] = dict(self.options)
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, max_node_cpus: float | None = None,
        max_node_gpus: float | None = None,
    ) -> JobSpec:
        """Build and validate a spec from a mapping; unknown keys are errors."""
        return spec_from_dict(data, max_node_cpus=max_node_cpus, max_node_gpus=max_node_gpus)


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "kind": str,
    "model": str,
    "dataset": str,
    "num_workers": int,
    "cpus_per_worker": (int, float),
    "gpus_per_worker": int,
    "memory_mb_per_worker": int,
    "steps": int,
    "batch_size": int,
    "learning_rate": (int, float),
    "user": str,
    "priority": int,
    "seed": int,
    "checkpoint_every": int,
    "options": dict,
}


def _check_type(field: str, value: Any, expected: type | tuple[type, ...]) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    # bool is an int subclass; a YAML `true` must not pass as a count.
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise SpecError(field, f"expected {names}, got {type(value).__name__} ({value!r})")


def validate_spec(spec: JobSpec) -> None:
    """Raise SpecError naming the first field that makes `spec` unrunnable."""
    for field, expected in _FIELD_TYPES.items():
        _check_type(field, getattr(spec, field), expected)
    if not _NAME_RE.match(spec.name):
        raise SpecError("name", "1-64 characters of letters, digits, '_', '.', '-'")
    if spec.kind not in KINDS:
        raise SpecError("kind", f"unknown kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
    if spec.model not in MODELS:
        known = ", ".join(MODELS)
        raise SpecError("model", f"unknown model {spec.model!r}; expected one of {known}")
    if spec.dataset not in DATASETS:
        raise SpecError(
            "dataset", f"unknown dataset {spec.dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    if (spec.model == "transformer") != (spec.dataset == "synthetic_text"):
        raise SpecError("dataset", f"model {spec.model!r} cannot train on dataset {spec.dataset!r}")
    for field in ("num_workers", "steps", "batch_size"):
        if getattr(spec, field) <= 0:
            raise SpecError(field, f"must be positive, got {getattr(spec, field)}")
    if spec.cpus_per_worker <= 0:
        raise SpecError("cpus_per_worker", f"must be positive, got {spec.cpus_per_worker}")
    if spec.learning_rate <= 0:
        raise SpecError("learning_rate", f"must be positive, got {spec.learning_rate}")
    for field in ("gpus_per_worker", "memory_mb_per_worker", "checkpoint_every"):
        if getattr(spec, field) < 0:
            raise SpecError(field, f"must be zero or positive, got {getattr(spec, field)}")
    if spec.gpus_per_worker > 0 and spec.kind not in GPU_KINDS:
        raise SpecError("gpus_per_worker", f"kind {spec.kind!r} runs on CPU only; GPUs are "
                                           f"supported for {', '.join(GPU_KINDS)}")
    allowed = {**COMMON_OPTIONS, **KIND_OPTIONS[spec.kind]}
    for key, value in spec.options.items():
        if key not in allowed:
            raise SpecError(
                f"options.{key}",
                f"unknown option for kind {spec.kind!r}; known: {', '.join(sorted(allowed))}",
            )
        _check_type(f"options.{key}", value, allowed[key])
        if key in OPTION_CHOICES and value not in OPTION_CHOICES[key]:
            raise SpecError(f"options.{key}", f"{value!r} is not one of "
                                              f"{', '.join(OPTION_CHOICES[key])}")
    if spec.options.get("max_failures", 0) < 0:
        raise SpecError("options.max_failures",
                        f"must be zero or positive, got {spec.options['max_failures']}")
    if (spec.options.get("parallelism") == "fsdp"
            and spec.options.get("compression", "none") != "none"):
        raise SpecError("options.compression", "compression hooks are DDP communication hooks; "
                                               "they do not apply with options.parallelism 'fsdp'")


def spec_from_dict(
    data: Mapping[str, Any], *, max_node_cpus: float | None = None,
    max_node_gpus: float | None = None,
) -> JobSpec:
    """Build a JobSpec from a mapping, rejecting unknown keys and gangs that fit no node.

    `max_node_cpus` / `max_node_gpus` are the largest node's totals when the cluster is known
    (None: not checked; 0 GPUs is a known answer: no node has a GPU).
    """
    if not isinstance(data, Mapping):
        raise SpecError("<root>", f"expected a mapping of fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(JobSpec)}
    for key in data:
        if key not in known:
            raise SpecError(str(key), f"unknown field; known fields: {', '.join(sorted(known))}")
    if "name" not in data:
        raise SpecError("name", "required")
    try:
        spec = JobSpec(**dict(data))
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise SpecError("<root>", str(exc)) from exc
    if max_node_cpus is not None and spec.cpus_per_worker > max_node_cpus:
        raise SpecError(
            "cpus_per_worker",
            f"{spec.cpus_per_worker} CPUs per worker, but the largest node has {max_node_cpus}",
        )
    if max_node_gpus is not None and spec.gpus_per_worker > max_node_gpus:
        raise SpecError(
            "gpus_per_worker",
            f"{spec.gpus_per_worker} GPUs per worker, but the largest node has {max_node_gpus:g}"
            + (" (no node has a GPU: start nodes with `ray start --num-gpus N`)"
               if max_node_gpus == 0 else ""),
        )
    return spec


def load_spec(
    path: str | Path, *, max_node_cpus: float | None = None, max_node_gpus: float | None = None,
) -> JobSpec:
    """Load and validate a YAML job spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError("<file>", f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError("<file>", f"{path} is not valid YAML: {exc}") from exc
    return spec_from_dict(data, max_node_cpus=max_node_cpus, max_node_gpus=max_node_gpus)
