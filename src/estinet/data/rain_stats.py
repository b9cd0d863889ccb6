"""Rain statistics measured from rainy frames alone, so that rendered and real rain are measured the same way.

Everything is measured on the BT.601 luma of 8-bit frames (levels 0..255):

* **rain layer** ``R``: the frame minus a rain-free estimate of it. For a sequence (a folder of frames), the estimate is
  the per-pixel median of the five frames around it after global motion compensation (``estinet``'s phase
  correlation, the same alignment the model uses); streaks move between frames and drop out of the median. For a
  single still, it is the frame's grey opening with a 7x7 square (a white top-hat: thin bright structures vanish, wide
  ones stay). Only the positive part counts (rain brightens).
* **coverage**: the fraction of pixels with ``R > 6`` levels.
* **amplitude**: the median and 90th percentile of ``R`` over the covered pixels.
* **angle**: the direction along which ``R``'s autocorrelation peak is elongated (its second moments), in degrees
  from vertical, positive when the streaks fall to the right.
* **width / length**: from the autocorrelation of ``R`` rotated to that angle: width is the full width at half maximum
  across the streaks divided by sqrt(2) (the autocorrelation of a profile is sqrt(2) wider), length twice the half-
  maximum distance along them (the autocorrelation of a segment of length L halves at L/2).

The estimators also pick up scene texture (a still's top-hat more than a sequence's median); compare like with like
(``benchmarks/rain_realism.py`` does, and prints the floor they measure on rain-free frames).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from estinet.data.rain import frames_to_float
from estinet.metrics import rgb_to_y
from estinet.models.motion import GlobalMotion, align_to_centre

__all__ = [
    "THRESHOLD",
    "autocorrelation",
    "orientation",
    "rain_layer_temporal",
    "rain_layer_tophat",
    "statistics",
    "width_length",
]

THRESHOLD = 6.0  # levels of luma above the rain-free estimate that count as rain


def rain_layer_temporal(frames: np.ndarray) -> np.ndarray:
    """Rain layers (T-4, H, W) of uint8 frames (T, H, W, 3): each middle frame minus its aligned 5-frame median."""
    x = torch.from_numpy(frames_to_float(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    motion = GlobalMotion(enabled=True)
    y = torch.from_numpy(rgb_to_y(frames).astype(np.float32))[:, None]  # (T, 1, H, W)
    out = []
    for t in range(2, len(frames) - 2):
        window = x[t - 2 : t + 3][None]  # (1, 5, 3, H, W)
        disp = motion(window)
        aligned = align_to_centre(y[t - 2 : t + 3][None], disp)[0, :, 0]  # (5, H, W)
        out.append((y[t, 0] - aligned.median(dim=0).values).clamp(min=0).numpy())
    return np.stack(out)


def rain_layer_tophat(frame: np.ndarray, size: int = 7) -> np.ndarray:
    """Rain layer (H, W) of one uint8 frame (H, W, 3): the white top-hat of its luma with a ``size`` square."""
    y = torch.from_numpy(rgb_to_y(frame).astype(np.float32))[None, None]
    pad = size // 2
    eroded = -F.max_pool2d(F.pad(-y, (pad,) * 4, mode="replicate"), size, stride=1)
    opened = F.max_pool2d(F.pad(eroded, (pad,) * 4, mode="replicate"), size, stride=1)
    return (y - opened)[0, 0].clamp(min=0).numpy()


def autocorrelation(r: np.ndarray) -> np.ndarray:
    """Circular autocorrelation of a map (H, W) minus its mean, peak 1 at the centre ``(H // 2, W // 2)``."""
    z = r - r.mean()
    spec = np.fft.rfft2(z)
    ac = np.fft.fftshift(np.fft.irfft2(spec * np.conj(spec), s=z.shape))
    return ac / ac.max()


def orientation(r: np.ndarray) -> float:
    """Dominant streak direction of a map (H, W), degrees from vertical, positive when streaks fall to the right.

    The second moments of the map's autocorrelation above 0.3 of its peak: the peak is elongated along the streaks.
    """
    return _orientation(autocorrelation(r))


def _orientation(ac: np.ndarray) -> float:
    h, w = ac.shape
    yy, xx = np.mgrid[-(h // 2) : h - h // 2, -(w // 2) : w - w // 2]
    wt = np.where(ac > 0.3, ac, 0.0)
    theta = 0.5 * math.atan2(2 * (wt * xx * yy).sum(), (wt * xx * xx).sum() - (wt * yy * yy).sum())
    dx, dy = math.cos(theta), math.sin(theta)
    if dy < 0:
        dx, dy = -dx, -dy  # point downwards
    return math.degrees(math.atan2(dx, dy))


def width_length(r: np.ndarray, angle_deg: float) -> tuple[float, float]:
    """(width, length) in pixels of the streaks in a rain layer (H, W) running at ``angle_deg`` from vertical."""
    return _width_length(autocorrelation(r), angle_deg)


def _width_length(ac: np.ndarray, angle_deg: float) -> tuple[float, float]:
    z = ac
    cy, cx = z.shape[0] // 2, z.shape[1] // 2
    a = math.radians(angle_deg)
    along = (math.sin(a), math.cos(a))  # (dx, dy) per step
    across = (math.cos(a), -math.sin(a))

    def half_distance(direction: tuple[float, float], limit: int) -> float:
        prev = 1.0
        for step in np.arange(0.25, limit, 0.25):
            x, y = cx + direction[0] * step, cy + direction[1] * step
            x0, y0 = math.floor(x), math.floor(y)
            if not (0 <= x0 < z.shape[1] - 1 and 0 <= y0 < z.shape[0] - 1):
                return float(step)
            fx, fy = x - x0, y - y0
            v = (
                ac[y0, x0] * (1 - fx) * (1 - fy)
                + ac[y0, x0 + 1] * fx * (1 - fy)
                + ac[y0 + 1, x0] * (1 - fx) * fy
                + ac[y0 + 1, x0 + 1] * fx * fy
            )
            if v <= 0.5:
                return float(step - 0.25 * (0.5 - v) / max(prev - v, 1e-9))
            prev = v
        return float(limit)

    width = 2 * half_distance(across, 20) / math.sqrt(2)
    length = 2 * half_distance(along, 200)
    return width, length


def statistics(layers: np.ndarray) -> dict[str, float]:
    """Coverage, amplitude percentiles, angle, width and length of rain layers (N, H, W) in levels."""
    covered = layers > THRESHOLD
    values = layers[covered]
    angles, widths, lengths = [], [], []
    for r in layers:
        ac = autocorrelation(r)
        ang = _orientation(ac)
        w, length = _width_length(ac, ang)
        angles.append(ang)
        widths.append(w)
        lengths.append(length)
    return {
        "coverage": float(covered.mean()),
        "amp_median": float(np.median(values)) if values.size else 0.0,
        "amp_p90": float(np.percentile(values, 90)) if values.size else 0.0,
        "angle": float(np.median(angles)),
        "width": float(np.median(widths)),
        "length": float(np.median(lengths)),
    }
