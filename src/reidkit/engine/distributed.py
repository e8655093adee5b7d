"""Device and DDP set-up: one process per GPU under ``torchrun`` (NCCL on CUDA, gloo on CPU)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """This process's place in the job: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_size() -> int:
    """The number of processes torchrun started (1 without torchrun); no torch needed."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """Read torchrun's environment, pick this rank's device and join the process group."""
    world = world_size()
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device_pref == "auto":
        device = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_pref)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{d.local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def wrap_ddp(net: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """``net`` under DistributedDataParallel when there are several processes, else ``net`` itself."""
    if d.world == 1:
        return net
    return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def all_finite(value: torch.Tensor, d: Dist) -> bool:
    """Is ``value`` finite on every rank? (All ranks must stop together, or the healthy ones hang.)"""
    finite = torch.isfinite(value.detach()).all().to(torch.int32).reshape(1)
    if d.world > 1:
        finite = finite.to(value.device)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def mean_over_ranks(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of a scalar over all ranks (the loss of the global batch, not rank 0's share)."""
    value = value.detach().float()
    if d.world > 1:
        dist.all_reduce(value)
        value /= d.world
    return value


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def ranks_agree(net: nn.Module, device: torch.device) -> bool:
    """DDP keeps the parameters of all replicas identical; check it (a digest per parameter, gathered).
    BN running statistics are not compared: each rank updates them from its own batches."""
    digest = torch.stack([p.detach().double().sum() for p in net.parameters()]).to(device)
    gathered = [torch.zeros_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, digest)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
