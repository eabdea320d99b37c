"""A GPipe schedule that posts each receive one action ahead of the compute it feeds.

torch's `ScheduleGPipe` posts the receive of a micro-batch's activations (or gradients) only
when that micro-batch is next, then waits for it, so every transfer's latency is idle time on
top of the schedule's own bubble. This runs the same actions in the same order but posts the
next action's receive before the current action computes, so the transfer overlaps that
compute. Sends are posted after each compute and waited for at the end of the
step. Each micro-batch has its own receive buffer in the stage, so a receive posted early
cannot overwrite data still in use; the arithmetic is unchanged (the same losses, bit for bit,
in the unit tests).

Measured with `benchmarks/training.py --pipeline-only` (2 stages on 2 cores, BENCHMARKS.md):
the transformer's bubble at batch 512 fell from 0.24 to 0.19 at M=4 (ideal 0.20) and from 0.27
to 0.16 at M=8 (ideal 0.11). torch's `Schedule1F1B` already sends each output together with
the next receive; the same receive-ahead order measured no better there, so 1F1B stays torch's.

It reuses `ScheduleGPipe`'s private set-up and loss helpers (`_check_inputs`,
`_initialize_stage`, `_maybe_compute_loss`, ...) as torch 2.13, the pinned version, defines
them; `tests/unit/test_jobs_pipeline_schedules.py` fails if a torch upgrade changes them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.distributed as dist
from torch.distributed.pipelining import ScheduleGPipe

Action = tuple[Literal["F", "B"], int]  # forward or backward of micro-batch i


def gpipe_actions(micro_batches: int) -> list[Action]:
    """Every forward, then every backward (fill-drain), on every stage."""
    return [("F", i) for i in range(micro_batches)] + [("B", i) for i in range(micro_batches)]


def _post(ops: list[dist.P2POp]) -> list[dist.Work]:
    return dist.batch_isend_irecv(ops) if ops else []


def _wait(works: list[dist.Work]) -> None:
    for work in works:
        work.wait()


class ReceiveAheadGPipe(ScheduleGPipe):
    """GPipe (fill-drain) with each receive posted one action ahead of the compute it feeds.

    torch's own set-up (`_check_inputs`, `_initialize_stage`) and loss handling are reused."""

    def _receives(self, action: Action) -> list[dist.P2POp]:
        kind, i = action
        if kind == "F":
            return self._stage.get_fwd_recv_ops(i)
        return self._stage.get_bwd_recv_ops(i)

    def _step_microbatches(
        self,
        arg_mbs: list | None = None,
        kwarg_mbs: list | None = None,
        target_mbs: list | None = None,
        losses: list | None = None,
        return_outputs: bool = True,
        loss_kwargs: dict[str, Any] | None = None,
    ) -> None:
        arg_mbs, kwarg_mbs = self._check_inputs(arg_mbs, kwarg_mbs, target_mbs, losses)
        first_target = target_mbs[0] if target_mbs is not None else None
        self._initialize_stage(arg_mbs[0], kwarg_mbs[0], first_target, loss_kwargs)
        stage, last = self._stage, self._n_microbatches - 1
        actions = gpipe_actions(self._n_microbatches)
        sends: list[dist.Work] = []
        ahead = _post(self._receives(actions[0]))
        for k, (kind, i) in enumerate(actions):
            _wait(ahead)
            ahead = _post(self._receives(actions[k + 1])) if k + 1 < len(actions) else []
            if kind == "F":
                output = stage.forward_one_chunk(i, arg_mbs[i], kwarg_mbs[i],
                                                 save_forward_output=return_outputs)
                sends += _post(stage.get_fwd_send_ops(i))
                self._maybe_compute_loss(stage, output, target_mbs, i, loss_kwargs)
            else:
                loss = self._maybe_get_loss(stage, i)
                stage.backward_one_chunk(i, loss=loss, last_backward=i == last)
                sends += _post(stage.get_bwd_send_ops(i))
        _wait(sends)
        self._update_losses(stage, losses)
        stage.perform_reduce_grad(self._n_microbatches if self.scale_grads else 1)
