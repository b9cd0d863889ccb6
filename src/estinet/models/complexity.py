"""Parameter and FLOP counts per output frame, in streaming and per-window form.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on meta tensors (no memory, no time):
convolutions and matrix products, one multiply-add = 2 FLOPs. Element-wise operations, interpolation, pooling and
the FFT-based motion estimation are not counted (they are a small share; ``estinet bench`` measures real time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from estinet.config import ModelConfig
from estinet.models import build_model


@dataclass(frozen=True)
class Complexity:
    """Cost of one model at one frame size.

    Attributes:
        params: trainable parameters.
        streaming_gflops: GFLOPs per output frame when each frame's SICM features are computed once and reused by
            the windows that contain it (for ``official``: equal to ``window_gflops``, no streaming path).
        window_gflops: GFLOPs per output frame when every window recomputes everything.
    """

    params: int
    streaming_gflops: float
    window_gflops: float


def _flops(fn: object, *args: object) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)  # type: ignore[operator]
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_complexity(config: ModelConfig, height: int = 480, width: int = 640) -> Complexity:
    """Count parameters and FLOPs of ``config`` at a frame size, without allocating real tensors.

    Args:
        config: the architecture.
        height: frame height in pixels.
        width: frame width in pixels.

    Returns:
        The :class:`Complexity`.
    """
    model = build_model(config)
    params = sum(p.numel() for p in model.parameters())
    model = model.to("meta").eval()
    t = config.num_frames
    frames = torch.zeros(1, t, 3, height, width, device="meta")
    if config.variant == "official":
        window = _flops(model.forward_normalized, frames.transpose(1, 2))
        return Complexity(params, window / 1e9, window / 1e9)
    from estinet.models.estinet import pad_to_multiple

    padded, _ = pad_to_multiple(frames)
    per_frame = _flops(model.frame_features, padded[:, 0])
    feats = model.frame_features(padded[:, 0])
    full = feats.full.unsqueeze(1).expand(1, t, *feats.full.shape[1:])
    low = feats.low.unsqueeze(1).expand(1, t, *feats.low.shape[1:]) if feats.low.numel() else feats.low
    per_window = _flops(model.window_forward, padded, full, low, None)
    return Complexity(params, (per_frame + per_window) / 1e9, (t * per_frame + per_window) / 1e9)
