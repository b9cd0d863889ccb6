"""Distributed training from torchrun's environment: who this process is, the process group, and collectives.

Under ``torchrun --nproc_per_node=N`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) every process
joins one process group (``nccl`` on CUDA, ``gloo`` on CPU); without those variables a run is rank 0 of 1 and every
collective here returns its input unchanged, so the trainer has no single-process branches of its own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from estinet import runtime
from estinet.config import ConfigError

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "barrier",
    "broadcast_flag",
    "env_int",
    "is_main_process",
    "local_rank_from_env",
    "mean_over_ranks",
    "resolve_device",
    "setup_distributed",
    "teardown",
    "wrap_model",
]


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        owns_group: whether :func:`setup_distributed` created the process group (and must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1


def env_int(name: str, default: int) -> int:
    """An integer variable of torchrun's environment, or ``default`` when it is unset or empty.

    Raises:
        ConfigError: the variable is set but is not an integer.
    """
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def local_rank_from_env() -> int:
    """``LOCAL_RANK`` (else ``RANK``, else 0) from torchrun's environment."""
    return env_int("LOCAL_RANK", env_int("RANK", 0))


def is_main_process() -> bool:
    """Whether this process is rank 0 according to the environment (true without torchrun)."""
    return env_int("RANK", 0) == 0


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``train.device`` as a device (:func:`estinet.runtime.resolve_device`; ``auto``/``cuda``: ``cuda:LOCAL_RANK``).

    Raises:
        ConfigError: an unknown device, or CUDA/MPS requested where it is not available.
    """
    return runtime.resolve_device(spec, local_rank=local_rank, option="train.device", error=ConfigError)


def setup_distributed(device: torch.device | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group that torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Args:
        device: the device this process trains on; selects the default backend.
        backend: ``nccl`` or ``gloo``; default ``nccl`` for a CUDA device (or, without ``device``, when CUDA is
            present), else ``gloo``.

    Returns:
        The process's :class:`DistInfo` (rank 0 of 1 without torchrun's variables).
    """
    world = env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    local_rank = local_rank_from_env()
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    on_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    backend = backend or ("nccl" if on_cuda else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(device if device is not None and device.type == "cuda" else local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup_distributed` created it for ``info``."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait until every process arrives (nothing to wait for in a single process)."""
    if info.distributed:
        dist.barrier()


def all_gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_flag(info: DistInfo, flag: bool) -> bool:
    """Rank 0's ``flag`` on every process."""
    if not info.distributed:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def mean_over_ranks(info: DistInfo, values: Tensor) -> Tensor:
    """The mean of ``values`` (any shape) over the processes, in place; unchanged in a single process."""
    if info.distributed:
        dist.all_reduce(values)
        values /= info.world_size
    return values


def wrap_model(info: DistInfo, model: nn.Module, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` under DDP, else ``model`` itself.

    Args:
        info: this process's place in the run.
        model: the network, already on ``device``.
        device: this process's device (a CUDA device is DDP's only device id).
        find_unused_parameters: let DDP skip parameters that the forward pass never uses.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )
