"""torchrun entry point of the training benchmark: runs ddp_loop and writes rank 0's timing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ddp_loop import ddp_train_loop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="JSON of the loop config")
    parser.add_argument("--out", required=True, help="where rank 0 writes its timing (JSON)")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    result = ddp_train_loop(json.loads(args.config))
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
