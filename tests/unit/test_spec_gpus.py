"""`gpus_per_worker` in job specs: validation, the largest-node check, the CPU-only kinds."""

from __future__ import annotations

import pytest

from raysched.schedulers.spec import JobSpec, SpecError, spec_from_dict

GOOD = {"name": "g", "kind": "data_parallel", "num_workers": 2, "cpus_per_worker": 2,
        "gpus_per_worker": 1}


def test_gpus_default_to_zero_and_total_counts_the_gang() -> None:
    assert JobSpec(name="cpu").gpus_per_worker == 0
    spec = spec_from_dict(GOOD)
    assert spec.total_gpus == 2 and spec.total_cpus == 4
    assert JobSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(-1, "must be zero or positive"), (1.5, "expected int"), (True, "expected int"),
     ("1", "expected int")],
)
def test_bad_gpu_counts_name_the_field(value: object, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict({**GOOD, "gpus_per_worker": value})
    assert err.value.field == "gpus_per_worker"
    assert fragment in str(err.value)


@pytest.mark.parametrize("kind", ["pipeline_parallel", "parameter_server", "sweep"])
def test_only_data_parallel_takes_gpus(kind: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict({**GOOD, "kind": kind})
    assert err.value.field == "gpus_per_worker"
    assert "CPU only" in str(err.value) and "data_parallel" in str(err.value)
    assert spec_from_dict({**GOOD, "kind": kind, "gpus_per_worker": 0}).kind == kind


def test_more_gpus_than_the_largest_node_is_refused() -> None:
    assert spec_from_dict({**GOOD, "gpus_per_worker": 4}, max_node_gpus=4).gpus_per_worker == 4
    with pytest.raises(SpecError) as err:
        spec_from_dict({**GOOD, "gpus_per_worker": 4}, max_node_gpus=2)
    assert err.value.field == "gpus_per_worker" and "largest node has 2" in str(err.value)
    with pytest.raises(SpecError, match="--num-gpus"):
        spec_from_dict(GOOD, max_node_gpus=0)  # a cluster without GPUs says how to add them
    assert spec_from_dict({**GOOD, "gpus_per_worker": 0}, max_node_gpus=0).total_gpus == 0
    assert spec_from_dict(GOOD, max_node_gpus=None).gpus_per_worker == 1  # unknown: no check
