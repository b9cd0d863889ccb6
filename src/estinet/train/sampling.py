"""Training data: the dataset a config names, the order its samples are drawn in, and the DataLoader.

Sample content depends only on ``(train.seed, data epoch, sample index)`` (the datasets' own contract), and the order
of samples is a seeded permutation per data epoch, cut into global batches of ``data.batch_size * world_size``
samples; process ``rank`` takes every ``world_size``-th sample of each global batch (like
:class:`torch.utils.data.DistributedSampler`). So one step of N processes sees exactly the samples one process with
an N times larger batch would see, and a resumed run continues at the same sample. DataLoader workers derive their
seeds from the loader's generator, seeded with ``train.seed + rank``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from estinet import runtime
from estinet.config import HELDOUT_KIND, ConfigError, ExperimentConfig

__all__ = ["BatchPlan", "EpochView", "build_train_dataset", "collate", "make_loader"]


def build_train_dataset(config: ExperimentConfig) -> Dataset:
    """The training dataset of a config (training mode: crops, flips, seeded by ``train.seed``).

    Raises:
        ConfigError: ``data.train`` is a ``heldout:`` spec, or ``data.clean`` is given for a non-synthetic kind.
        DatasetError: as :func:`estinet.data.datasets.open_dataset`, or the dataset has no ground truth.
    """
    from estinet.data.datasets import DatasetError, open_dataset

    d = config.data
    kind = runtime.parse_dataset_spec(d.train).kind
    num_frames = 1 if config.train.veil_only else config.model.num_frames  # the veil head sees one frame
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
            still=d.still,
            veil=d.veil,
            veiled=config.model.veil_head,
        )
    if config.model.veil_head and config.train.trains_veil:
        raise ConfigError(
            f"model.veil_head trains on rain whose veil is known: use synthetic:PRESETS training data, not "
            f"{d.train!r}, or set train.veil_weight=0 to carry the veil head along unchanged while the derainer learns "
            "the pairs"
        )
    if d.clean is not None:
        raise ConfigError(f"data.clean is only used by synthetic: training data, not {d.train!r}; remove it")
    dataset = open_dataset(
        d.train, split=d.split, num_frames=num_frames, train=True, crop=d.crop, flip=d.flip, seed=config.train.seed
    )
    if not getattr(dataset, "has_clean", True):
        raise DatasetError(f"training dataset {d.train!r} has no ground truth; train on paired data")
    return dataset


class EpochView(Dataset):
    """Index a dataset by ``(epoch, index)`` so one DataLoader (and its workers) can run across data epochs.

    Args:
        dataset: the training dataset; its ``set_epoch(epoch)`` is called before each sample when it has one.
    """

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
        # (T, 3, h, w) each, and what synthetic rain knows besides: rain_mask (T, h, w), veiled (T, 3, h, w)
        return {key: sample[key] for key in ("rainy", "clean", "rain_mask", "veiled") if key in sample}


def collate(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack samples into a batch: ``rainy`` and ``clean``, each (B, T, 3, h, w), and ``rain_mask`` (B, T, h, w) and
    ``veiled`` (B, T, 3, h, w) when every sample has them (synthetic rain: the pixels the rain changed, known before
    compression; the clean clip under the veil, ``SyntheticRain(veiled=True)``)."""
    keys = ["rainy", "clean"] + [key for key in ("rain_mask", "veiled") if all(key in s for s in samples)]
    return {key: torch.stack([s[key] for s in samples]) for key in keys}


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

    Raises:
        DatasetError: the dataset holds fewer samples than one global batch.
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


def make_loader(dataset: Dataset, batches: BatchPlan, workers: int, seed: int, pin_memory: bool) -> DataLoader:
    """The DataLoader of a training run: ``batches``' keys, ``workers`` processes seeded from ``seed``.

    Args:
        dataset: the training dataset (indexed through :class:`EpochView`).
        batches: this process's batch plan, positioned where the run continues.
        workers: ``data.workers``.
        seed: ``train.seed + rank``: seeds the loader's generator, from which each worker's seed derives.
        pin_memory: pin batches for a faster copy to a CUDA device.

    Returns:
        The loader; its batches are ``rainy`` and ``clean``, each (B, T, 3, h, w) in [0, 1].
    """
    return DataLoader(
        EpochView(dataset),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(seed),
    )
