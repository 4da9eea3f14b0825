"""The few ``torch.distributed`` facts the trainer needs; everything works without a process group.

Under ``torchrun`` the environment names this process's rank; :func:`init_from_env` starts the process group (NCCL
on GPUs, gloo on CPUs) and pins each process to its GPU. Without it, rank 0 of a world of 1 is assumed.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is running."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def is_main_process() -> bool:
    """Only rank 0 writes checkpoints, logs and artifacts."""
    return rank_and_world()[0] == 0


def init_from_env() -> bool:
    """Start the process group ``torchrun`` describes in the environment; False (nothing done) outside torchrun."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def process_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK``) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0)
    return torch.device("cpu")


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank (identity without a process group)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()
