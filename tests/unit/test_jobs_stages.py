"""Stage splitting for the pipeline kind: balanced, contiguous, same function as the model."""

from __future__ import annotations

import pytest
import torch

from raysched.jobs.data import global_batch
from raysched.jobs.models import build_model, parameter_count
from raysched.jobs.stages import balanced_cuts, split_sequential


def test_balanced_cuts_minimise_the_heaviest_part():
    assert balanced_cuts([5, 1, 1, 5], 2) == [0, 2, 4]
    assert balanced_cuts([1, 1, 1, 1, 10], 2) == [0, 4, 5]
    assert balanced_cuts([3, 3, 3], 3) == [0, 1, 2, 3]


def test_balanced_cuts_rejects_more_parts_than_layers():
    with pytest.raises(ValueError, match="non-empty"):
        balanced_cuts([1, 2], 3)


@pytest.mark.parametrize(
    ("model", "dataset"), [("mlp", "digits"), ("cnn", "digits"), ("transformer", "synthetic_text")]
)
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_stages_compose_to_the_whole_model(model, dataset, stages):
    full = build_model(model, seed=1)
    parts = split_sequential(full, stages)
    assert len(parts) == stages
    assert sum(parameter_count(p) for p in parts) == parameter_count(full)
    x, _ = global_batch(dataset, 0, 8, seed=0)
    h = x
    for part in parts:
        h = part(h)
    torch.testing.assert_close(h, full(x), rtol=0, atol=0)


def test_two_stage_mlp_split_is_balanced():
    sizes = [parameter_count(p) for p in split_sequential(build_model("mlp"), 2)]
    assert max(sizes) / sum(sizes) < 0.6
