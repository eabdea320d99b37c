"""Parameter-server arithmetic: sharding covers every tensor, weighted mean == full-batch grad."""

from __future__ import annotations

import pytest
import torch

from raysched.jobs.data import global_batch, shard_bounds
from raysched.jobs.models import build_model
from raysched.jobs.ps_shards import assign_shards, split_by_shard, weighted_mean
from raysched.jobs.training_loop import batch_loss


def test_assign_shards_partitions_and_balances():
    sizes = [100, 10, 90, 5, 5]
    shards = assign_shards(sizes, 2)
    assert sorted(i for s in shards for i in s) == list(range(5))
    loads = [sum(sizes[i] for i in s) for s in shards]
    assert max(loads) - min(loads) <= 10


def test_assign_shards_needs_a_tensor_per_server():
    with pytest.raises(ValueError):
        assign_shards([1, 2], 3)


def _grads(model, x, y):
    model.zero_grad(set_to_none=True)
    batch_loss(model, "mlp", x, y).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(("batch", "workers"), [(30, 2), (31, 3), (2, 3)])
def test_size_weighted_mean_of_shard_gradients_is_the_full_batch_gradient(batch, workers):
    model = build_model("mlp", seed=2)
    x, y = global_batch("digits", 4, batch, seed=2)
    full = _grads(model, x, y)
    grads, weights = [], []
    for rank in range(workers):
        a, b = shard_bounds(batch, [1.0] * workers, rank)
        grads.append(_grads(model, x[a:b], y[a:b]) if b > a else None)
        weights.append(b - a)
    for got, want in zip(weighted_mean(grads, weights), full, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_split_by_shard_regroups_in_shard_order():
    tensors = [torch.full((1,), float(i)) for i in range(4)]
    out = split_by_shard(tensors, [[0, 3], [1, 2]])
    assert [[float(t) for t in s] for s in out] == [[0.0, 3.0], [1.0, 2.0]]
