"""Split an nn.Sequential into pipeline stages balanced by parameter count (pure torch)."""

from __future__ import annotations

from torch import nn

from raysched.jobs.models import parameter_count


def balanced_cuts(weights: list[int], num_parts: int) -> list[int]:
    """Cut points [0, c1, ..., len] of contiguous non-empty parts minimising the heaviest part.

    Exact dynamic programme (O(n^2 * k)); ties prefer earlier cuts, so the split is
    deterministic for a given model and part count.
    """
    n = len(weights)
    if not 1 <= num_parts <= n:
        raise ValueError(f"cannot split {n} layers into {num_parts} non-empty stages")
    prefix = [0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    inf = float("inf")
    # best[k][i]: min over splits of the first i layers into k parts of the heaviest part.
    best = [[inf] * (n + 1) for _ in range(num_parts + 1)]
    arg = [[0] * (n + 1) for _ in range(num_parts + 1)]
    best[0][0] = 0
    for k in range(1, num_parts + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                cost = max(best[k - 1][j], prefix[i] - prefix[j])
                if cost < best[k][i]:
                    best[k][i], arg[k][i] = cost, j
    cuts = [n]
    for k in range(num_parts, 0, -1):
        cuts.append(arg[k][cuts[-1]])
    return cuts[::-1]


def split_sequential(model: nn.Sequential, num_stages: int) -> list[nn.Sequential]:
    """The stages of `model`, sharing its modules (so weights equal the unsplit model's)."""
    layers = list(model.children())
    # A parameter-free layer weighs 1 so it still counts towards balance but not much.
    weights = [max(parameter_count(layer), 1) for layer in layers]
    cuts = balanced_cuts(weights, num_stages)
    return [nn.Sequential(*layers[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
