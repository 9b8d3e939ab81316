"""Data parallelism with torch.distributed (launched by torchrun): the process group, each rank's shard of a batch,
and the averaging of gradients across ranks.

Every rank holds the whole dataset and draws the same global batches (the loaders' generators are seeded alike);
rank r computes on its contiguous share of each batch. Gradients are averaged so that N ranks take the step one
process would take on the whole batch: each rank's loss is weighed by its share of the batch. BatchNorm normalises
each rank's share with that share's statistics, as plain DistributedDataParallel does (SyncBatchNorm is CUDA-only,
and the fused cells call batch_norm directly).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

from .errors import ConfigError, RunDirError


@dataclass(frozen=True)
class DataParallel:
    """This process's place among `world_size` ranks; rank 0 writes the run directory and prints."""

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(this rank's share of x, of y, the weight of its mean loss): world_size * share / batch, so that averaging
        the ranks' gradients gives the gradient of the whole batch's mean loss."""
        n = len(y)
        if n < self.world_size:
            raise ConfigError(f"a batch of {n} images cannot be shared by {self.world_size} ranks; use a larger "
                              "--batch-size, or a --subset that does not leave so small a last batch")
        xs, ys = torch.tensor_split(x, self.world_size)[self.rank], torch.tensor_split(y, self.world_size)[self.rank]
        return xs, ys, self.world_size * len(ys) / n

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the ranks, in place (one all-reduce for all of them)."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over the ranks, in place."""
        dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        dist.barrier()


def data_parallel(module: torch.nn.Module, ignore: Sequence[str] = ()) -> torch.nn.Module:
    """`module` under DistributedDataParallel, which averages the gradients of its parameters over the ranks, except
    those named in `ignore` (the caller averages them). Unused parameters are allowed: hard sampling, sparse
    skipping and drop-path leave some out of a step."""
    from torch.nn.parallel import DistributedDataParallel

    if ignore:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
    return DistributedDataParallel(module, find_unused_parameters=True)


def from_environment() -> DataParallel | None:
    """The data-parallel place torchrun gives this process (RANK, WORLD_SIZE, LOCAL_RANK); None for a single one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return DataParallel(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(dp: DataParallel, device: torch.device) -> torch.device:
    """Join the process group (gloo on the CPU, NCCL on GPUs) and return this rank's device (cuda:LOCAL_RANK)."""
    if device.type == "cuda":
        device = torch.device("cuda", dp.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=dp.rank, world_size=dp.world_size)
    return device


def release_others(dp: DataParallel, error: str | None, run_dir: str | None = None) -> None:
    """Rank 0, once it has claimed the run directory (error None) or failed to: let the other ranks go on in the same
    directory (rank 0's path: a default name holds the time), or stop."""
    dist.broadcast_object_list([error, run_dir], src=0)


def wait_for_main(dp: DataParallel) -> str:
    """The other ranks: wait until rank 0 has claimed the run directory, and return its path; RunDirError with its
    reason if it could not."""
    message: list[str | None] = [None, None]
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise RunDirError(f"rank 0 could not start the run: {message[0]}")
    return str(message[1])


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
