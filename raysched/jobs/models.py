"""Models the job kinds train: an MLP and a small CNN on digits, a small transformer LM on text."""

from __future__ import annotations

import torch
from torch import nn

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10


class DigitsMLP(nn.Sequential):
    """Three-layer MLP on the 8x8 digits, flattened."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__(
            nn.Linear(DIGITS_FEATURES, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, DIGITS_CLASSES),
        )


class DigitsCNN(nn.Sequential):
    """Small CNN on the 8x8 digits as one-channel images."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(channels * 16, 128),
            nn.ReLU(),
            nn.Linear(128, DIGITS_CLASSES),
        )


class TransformerBlock(nn.Module):
    """Pre-norm causal self-attention block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyTransformerLM(nn.Sequential):
    """Causal transformer LM on tokens: embedding, blocks, head (a Sequential, so it splits)."""

    def __init__(
        self, vocab: int = 64, dim: int = 64, heads: int = 4, layers: int = 2, context: int = 32
    ) -> None:
        super().__init__(
            TokenAndPositionEmbedding(vocab, dim, context),
            *[TransformerBlock(dim, heads) for _ in range(layers)],
            nn.LayerNorm(dim),
            nn.Linear(dim, vocab),
        )


class TokenAndPositionEmbedding(nn.Module):
    """Token plus learned position embedding."""

    def __init__(self, vocab: int, dim: int, context: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        return self.tok(x) + self.pos(positions)


def build_model(name: str, seed: int = 0) -> nn.Sequential:
    """Build model `name` with deterministic initial weights for `seed`."""
    torch.manual_seed(seed)
    if name == "mlp":
        return DigitsMLP()
    if name == "cnn":
        return DigitsCNN()
    if name == "transformer":
        return TinyTransformerLM()
    raise ValueError(f"unknown model {name!r}")


def loss_fn(model_name: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classifiers and for next-token prediction alike."""
    if model_name == "transformer":
        flat = logits.reshape(-1, logits.shape[-1])
        return nn.functional.cross_entropy(flat, targets.reshape(-1))
    return nn.functional.cross_entropy(logits, targets)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
