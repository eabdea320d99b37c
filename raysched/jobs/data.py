"""Datasets the jobs train on: scikit-learn's digits and generated text; no downloads."""

from __future__ import annotations

import functools

import numpy as np
import torch

TEXT_VOCAB = 64
TEXT_CONTEXT = 32


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Digits features scaled to [0, 1] and integer labels (shipped with scikit-learn)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def synthetic_text_tokens(length: int = 200_000, seed: int = 0) -> np.ndarray:
    """A generated corpus with learnable structure: a fixed random Markov chain over 64 tokens."""
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.full(TEXT_VOCAB, 0.1), size=TEXT_VOCAB)
    cumulative = transition.cumsum(axis=1)
    tokens = np.empty(length, dtype=np.int64)
    tokens[0] = 0
    draws = rng.random(length)
    for i in range(1, length):
        tokens[i] = min(np.searchsorted(cumulative[tokens[i - 1]], draws[i]), TEXT_VOCAB - 1)
    return tokens


def batch_indices(global_step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """The sample indices of global batch `global_step`: deterministic in (step, seed)."""
    rng = np.random.default_rng(seed * 1_000_003 + global_step)
    return rng.integers(0, n, size=batch_size)


def global_batch(
    dataset: str, global_step: int, batch_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole global batch for `global_step`; workers slice their shard from it.

    Deterministic in (dataset, step, batch size, seed), so any worker on any node, before or
    after a migration, sees the same data, and distributed runs can be checked against a
    single process.
    """
    if dataset == "digits":
        x, y = digits_arrays()
        idx = batch_indices(global_step, batch_size, len(x), seed)
        return torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
    if dataset == "synthetic_text":
        tokens = synthetic_text_tokens()
        starts = batch_indices(global_step, batch_size, len(tokens) - TEXT_CONTEXT - 1, seed)
        windows = np.stack([tokens[s : s + TEXT_CONTEXT + 1] for s in starts])
        t = torch.from_numpy(windows)
        return t[:, :-1], t[:, 1:]
    raise ValueError(f"unknown dataset {dataset!r}")


def shard_bounds(batch_size: int, shares: list[float], rank: int) -> tuple[int, int]:
    """[start, end) of rank's slice of a global batch split by `shares` (need not sum to 1)."""
    total = sum(shares)
    if total <= 0 or any(s < 0 for s in shares):
        raise ValueError(f"shares must be non-negative with a positive sum, got {shares}")
    cuts = [0]
    acc = 0.0
    for s in shares:
        acc += s
        cuts.append(round(batch_size * acc / total))
    return cuts[rank], cuts[rank + 1]
