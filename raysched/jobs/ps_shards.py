"""Parameter-server arithmetic (pure torch): sharding weights over servers, combining gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def assign_shards(sizes: Sequence[int], num_servers: int) -> list[list[int]]:
    """Parameter indices per server: largest tensor first onto the lightest server.

    Every server gets at least one tensor (so num_servers <= len(sizes)); each list ascends.
    """
    if not 1 <= num_servers <= len(sizes):
        raise ValueError(f"cannot shard {len(sizes)} tensors over {num_servers} servers")
    load = [0] * num_servers
    shards: list[list[int]] = [[] for _ in range(num_servers)]
    for idx in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        target = min(range(num_servers), key=lambda s: (load[s], s))
        shards[target].append(idx)
        load[target] += sizes[idx]
    return [sorted(s) for s in shards]


def weighted_mean(
    grads: Sequence[Sequence[torch.Tensor] | None], weights: Sequence[int]
) -> list[torch.Tensor]:
    """sum_i w_i g_i / sum_i w_i over workers (None / zero weight: a worker with no samples).

    With g_i the gradient of the mean loss on shard i and w_i its size, this is the
    gradient of the mean loss over the whole global batch.
    """
    pairs = [(g, w) for g, w in zip(grads, weights, strict=True) if g is not None and w > 0]
    if not pairs:
        raise ValueError("no worker contributed a gradient")
    total = float(sum(w for _, w in pairs))
    out = [t.detach().clone().mul_(pairs[0][1] / total) for t in pairs[0][0]]
    for g, w in pairs[1:]:
        for acc, t in zip(out, g, strict=True):
            acc.add_(t, alpha=w / total)
    return out


def split_by_shard(tensors: Sequence[torch.Tensor], shards: list[list[int]]) -> list[list]:
    """Regroup a model-ordered list of tensors into one list per server."""
    return [[tensors[i] for i in shard] for shard in shards]
