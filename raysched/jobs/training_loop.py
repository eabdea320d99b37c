"""The single-process train step and reference trainer every job kind is checked against."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from raysched.jobs.data import global_batch
from raysched.jobs.models import build_model, loss_fn
from raysched.schedulers.spec import JobSpec


def make_optimizer(
    params: Iterable[torch.Tensor], learning_rate: float, momentum: float = 0.0
) -> torch.optim.SGD:
    """SGD (plain unless `momentum`): every kind uses it, so distributed runs match this exactly."""
    return torch.optim.SGD(params, lr=learning_rate, momentum=momentum)


def batch_loss(model: nn.Module, model_name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean loss of `model` on one batch (graph kept for backward)."""
    return loss_fn(model_name, model(x), y)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_name: str,
    x: torch.Tensor,
    y: torch.Tensor,
) -> float:
    """One SGD step on (x, y); returns the loss before the update."""
    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss(model, model_name, x, y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_single_process(
    spec: JobSpec,
    steps: int | None = None,
    *,
    learning_rate: float | None = None,
    momentum: float = 0.0,
) -> list[float]:
    """Losses of `steps` (default spec.steps) full-batch SGD steps on global_batch(step)."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, spec.seed)
    optimizer = make_optimizer(model.parameters(), learning_rate or spec.learning_rate, momentum)
    losses = []
    for step in range(spec.steps if steps is None else steps):
        x, y = global_batch(spec.dataset, step, spec.batch_size, spec.seed)
        losses.append(train_step(model, optimizer, spec.model, x, y))
    return losses
