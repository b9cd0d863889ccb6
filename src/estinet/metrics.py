"""PSNR and SSIM under the documented metric protocol (SPEC §3, docs/metric_protocol.md).

The protocol, in short:

* Model outputs in [0, 1] are turned into 8-bit frames first, exactly as a saved frame would be
  (:func:`to_uint8`: ``floor(clip(x, 0, 1) * 255 + 0.5)``).
* Headline numbers are on the ITU-R BT.601 luma ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` computed from
  the 8-bit R, G, B values and *not* rounded (:func:`rgb_to_y`); RGB numbers are reported beside them.
* PSNR uses ``data_range = 255`` and the mean squared error over all pixels (and channels). Identical images give
  ``inf``; :class:`MetricAccumulator` caps each frame at :data:`PSNR_CAP_DB` before averaging.
* SSIM (Wang et al. 2004) uses an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
  (co)variances, ``data_range = 255``, *replicate* padding and the mean over the **whole** SSIM map (no border crop)
  -- the definition of MATLAB's ``ssim``. For RGB the SSIM is the mean of the three per-channel SSIMs
  (scikit-image's ``channel_axis``). Inside the image (5 or more pixels from every edge) the SSIM map equals
  scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, full=True)`` map; scikit-image's *mean* leaves out a 5-pixel border, which ``map_border=5``
  reproduces.
* Sequence-level aggregation: the mean over the frames of each sequence, then the mean over sequences (headline),
  and the mean over all frames (beside it); ``skip_ends`` drops frames at both ends of each sequence.

All computations run in float64 on the device of the input tensors (NumPy arrays, and tensors on Apple MPS, which
has no float64, are processed on the CPU); results are returned on that device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "METRIC_NAMES",
    "PSNR_CAP_DB",
    "SKIMAGE_MAP_BORDER",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "MetricAccumulator",
    "frame_metrics",
    "frame_metrics_batch",
    "psnr",
    "psnr_batch",
    "rgb_to_y",
    "scored_frame_indices",
    "ssim",
    "ssim_batch",
    "ssim_map",
    "to_uint8",
]

SSIM_WINDOW: int = 11
"""Side of the Gaussian SSIM window (taps)."""
SSIM_SIGMA: float = 1.5
"""Standard deviation of the Gaussian SSIM window, in pixels."""
SSIM_K1: float = 0.01
"""SSIM luminance stabiliser: ``C1 = (K1 * data_range) ** 2``."""
SSIM_K2: float = 0.03
"""SSIM contrast stabiliser: ``C2 = (K2 * data_range) ** 2``."""
SKIMAGE_MAP_BORDER: int = (SSIM_WINDOW - 1) // 2
"""``map_border`` that reproduces scikit-image's (and Wang et al.'s ``'valid'``) SSIM mean: 5 pixels."""
PSNR_CAP_DB: float = 100.0
"""Per-frame PSNR cap (dB) used when averaging, so a perfectly restored frame (PSNR = inf) keeps means finite."""
METRIC_NAMES: tuple[str, ...] = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
"""Keys of the per-frame metric dictionaries, headline (Y) first."""

# BT.601 luma for 8-bit R, G, B: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, in [16, 235].
_Y_OFFSET = 16.0
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, Tensor)


# ----------------------------------------------------------------------------------------------------------------------
# Conversions
# ----------------------------------------------------------------------------------------------------------------------


def _check_array(name: str, x: object) -> None:
    """Raise ``TypeError`` unless ``x`` is a NumPy array or a torch tensor."""
    if not isinstance(x, (np.ndarray, Tensor)):
        raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")


def _is_floating(x: np.ndarray | Tensor) -> bool:
    """True for floating-point arrays and tensors."""
    if isinstance(x, Tensor):
        return x.is_floating_point()
    return bool(np.issubdtype(x.dtype, np.floating))


def _is_uint8(x: np.ndarray | Tensor) -> bool:
    """True for 8-bit unsigned arrays and tensors."""
    return x.dtype == (torch.uint8 if isinstance(x, Tensor) else np.uint8)


def to_uint8(x: ArrayOrTensor) -> ArrayOrTensor:
    """Convert a model output in [0, 1] to 8-bit values for scoring (the metric protocol's rule).

    Computes ``floor(clip(x, 0, 1) * 255 + 0.5)`` in float64 (round half up, the same as
    ``torchvision.utils.save_image``), so ``k / 255`` maps to ``k`` exactly and ``0.5 / 255`` maps to 1. Frames that
    estinet writes use :func:`estinet.runtime.frames_to_uint8` (float32, half to even); the two differ only where
    ``x * 255`` is exactly half-way between levels, and the published scores were computed with this one.

    Args:
        x: Floating-point array or tensor of any shape with values nominally in [0, 1]; values outside are clipped.
            A ``uint8`` input is already 8-bit and is returned unchanged (a copy).

    Returns:
        ``uint8`` array or tensor of the same shape (and device, for tensors), values in [0, 255].

    Raises:
        TypeError: If ``x`` is not an array/tensor, or has an integer dtype other than ``uint8``.
        ValueError: If ``x`` contains NaN.
    """
    _check_array("x", x)
    if _is_uint8(x):
        return x.clone() if isinstance(x, Tensor) else x.copy()
    if not _is_floating(x):
        raise TypeError(
            f"to_uint8 expects a floating-point image in [0, 1] (or uint8), got dtype {x.dtype}; "
            "convert integer images with x / 255 first"
        )
    if isinstance(x, Tensor):
        if bool(torch.isnan(x).any()):
            raise ValueError("to_uint8 got NaN values; the model output is invalid (check for diverged training)")
        scaled = _float64_capable(x).to(torch.float64).clamp(0.0, 1.0) * 255.0
        return torch.floor(scaled + 0.5).to(device=x.device, dtype=torch.uint8)
    if np.isnan(x).any():
        raise ValueError("to_uint8 got NaN values; the model output is invalid (check for diverged training)")
    return np.floor(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rgb_to_y(img: ArrayOrTensor, channel_axis: int = -1) -> ArrayOrTensor:
    """BT.601 luma of 8-bit RGB values, not rounded.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``: black -> 16, white -> 235.

    Args:
        img: RGB image(s) on the 8-bit scale: ``uint8`` or floating point with values in [0, 255] (floats are taken
            as they are, *not* rescaled from [0, 1]). Any shape with 3 entries along ``channel_axis``, e.g. (H, W, 3)
            with ``channel_axis=-1`` or (N, 3, H, W) with ``channel_axis=1``.
        channel_axis: Axis holding R, G, B (default -1: channels last, as frames are stored).

    Returns:
        float64 array/tensor of ``img``'s shape without the channel axis, values in [16, 235] for inputs in [0, 255].

    Raises:
        TypeError: If ``img`` is not an array/tensor or has a bool/complex dtype.
        ValueError: If ``channel_axis`` does not exist or does not have size 3.
    """
    _check_array("img", img)
    if not _is_real(img):
        raise TypeError(f"rgb_to_y expects real 8-bit RGB values (uint8 or float in [0, 255]), got dtype {img.dtype}")
    ndim = img.ndim
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"channel_axis {channel_axis} does not exist for an input of shape {tuple(img.shape)}")
    if img.shape[channel_axis] != 3:
        raise ValueError(
            f"rgb_to_y needs 3 channels (R, G, B) along channel_axis={channel_axis}, got shape {tuple(img.shape)}; "
            "pass channel_axis=1 for (N, 3, H, W) tensors or -1 for (H, W, 3) frames"
        )
    wr, wg, wb = _Y_WEIGHTS
    if isinstance(img, Tensor):
        r, g, b = _float64_capable(img).to(torch.float64).unbind(dim=channel_axis)
    else:
        r, g, b = np.moveaxis(img.astype(np.float64), channel_axis, 0)
    return _Y_OFFSET + (wr * r + wg * g + wb * b)


def _is_real(x: np.ndarray | Tensor) -> bool:
    """True for integer (not bool) and floating-point arrays and tensors."""
    if isinstance(x, Tensor):
        return x.dtype != torch.bool and not x.is_complex()
    return bool(np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating))


def _as_tensor(x: np.ndarray | Tensor, name: str) -> Tensor:
    """Tensor of a real array or tensor, dtype kept (tensors stay on their device, arrays go to the CPU)."""
    _check_array(name, x)
    if not _is_real(x):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if isinstance(x, Tensor):
        return x
    array = np.ascontiguousarray(x)
    if not array.flags.writeable:  # e.g. np.asarray(PIL image); torch.from_numpy warns on read-only memory
        array = array.copy()
    return torch.from_numpy(array)


def _float64_capable(t: Tensor) -> Tensor:
    """``t`` itself, or a CPU copy where its device has no float64 support (Apple MPS)."""
    return t.cpu() if t.device.type == "mps" else t


def _as_float64(x: np.ndarray | Tensor, name: str) -> Tensor:
    """Float64 tensor of a real array or tensor (tensors stay on their device except MPS, arrays go to the CPU)."""
    return _float64_capable(_as_tensor(x, name)).to(torch.float64)


def _pair(a: np.ndarray | Tensor, b: np.ndarray | Tensor, names: tuple[str, str] = ("a", "b")) -> tuple[Tensor, Tensor]:
    """Both inputs as float64 tensors of the same shape."""
    na, nb = names
    ta, tb = _as_float64(a, na), _as_float64(b, nb)
    if ta.shape != tb.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    if ta.numel() == 0:
        raise ValueError(f"{na} and {nb} are empty (shape {tuple(ta.shape)}); metrics need at least one pixel")
    return ta, tb.to(ta.device)


def _check_data_range(data_range: float) -> float:
    """Validate and return ``data_range`` as a float."""
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number (255 for 8-bit images), got {data_range!r}")
    return float(data_range)


# ----------------------------------------------------------------------------------------------------------------------
# PSNR
# ----------------------------------------------------------------------------------------------------------------------


def _psnr_from_mse(mse: Tensor, data_range: float) -> Tensor:
    """``10 log10(data_range^2 / mse)``, ``inf`` where ``mse == 0``."""
    inf = torch.full_like(mse, math.inf)
    safe = torch.where(mse > 0, mse, torch.ones_like(mse))
    return torch.where(mse > 0, 10.0 * torch.log10(data_range**2 / safe), inf)


def psnr(a: np.ndarray | Tensor, b: np.ndarray | Tensor, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio of two images.

    ``PSNR = 10 log10(data_range^2 / MSE)`` with the MSE over all elements (all pixels and channels), as
    ``skimage.metrics.peak_signal_noise_ratio``.

    Args:
        a: Image of any shape, e.g. (H, W) luma or (H, W, 3) RGB, on the scale given by ``data_range``.
        b: Image of the same shape (the reference; PSNR is symmetric).
        data_range: Peak value range, 255 for 8-bit images.

    Returns:
        PSNR in dB; ``float('inf')`` for identical images.

    Raises:
        TypeError: If an input is not a real array/tensor.
        ValueError: If the shapes differ, the inputs are empty, or ``data_range`` is not positive.
    """
    data_range = _check_data_range(data_range)
    ta, tb = _pair(a, b)
    mse = torch.mean((ta - tb) ** 2)
    return float(_psnr_from_mse(mse, data_range))


def psnr_batch(a: Tensor, b: Tensor, data_range: float = 255.0) -> Tensor:
    """Per-image PSNR of a batch.

    Args:
        a: (N, C, H, W) images (any real dtype), on the scale given by ``data_range``.
        b: (N, C, H, W) reference images.
        data_range: Peak value range, 255 for 8-bit images.

    Returns:
        (N,) float64 tensor of PSNRs in dB on ``a``'s device; ``inf`` for identical images.

    Raises:
        TypeError: If an input is not a real array/tensor.
        ValueError: If the shapes differ or are not 4-D, or ``data_range`` is not positive.
    """
    data_range = _check_data_range(data_range)
    ta, tb = _pair(a, b)
    _check_nchw(ta)
    mse = ((ta - tb) ** 2).mean(dim=(1, 2, 3))  # (N,)
    return _psnr_from_mse(mse, data_range)


# ----------------------------------------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------------------------------------


def _check_nchw(t: Tensor) -> None:
    """Raise ``ValueError`` unless ``t`` is a non-empty (N, C, H, W) tensor."""
    if t.ndim != 4:
        raise ValueError(
            f"expected (N, C, H, W) tensors, got shape {tuple(t.shape)}; add batch/channel axes with "
            "x[None, None] for (H, W) or x.permute(2, 0, 1)[None] for (H, W, C)"
        )
    if t.numel() == 0:
        raise ValueError(f"expected non-empty (N, C, H, W) tensors, got shape {tuple(t.shape)}")


def _gaussian_taps() -> list[float]:
    """The normalised 1-D Gaussian window (11 taps, sigma 1.5), as computed by MATLAB's ``fspecial`` and SciPy."""
    radius = SSIM_WINDOW // 2
    taps = [math.exp(-0.5 * (i / SSIM_SIGMA) ** 2) for i in range(-radius, radius + 1)]
    total = math.fsum(taps)
    return [t / total for t in taps]


def _gaussian_filter(planes: Tensor) -> Tensor:
    """Separable Gaussian filtering with replicate padding.

    Written as a sum of shifted slices accumulated in place: for float64 on the CPU this is several times faster than
    ``conv2d`` with an (11, 1) kernel, and it does the same arithmetic on any device.

    Args:
        planes: (B, H, W) float tensor.

    Returns:
        (B, H, W) filtered tensor of the same dtype and device.
    """
    taps = _gaussian_taps()
    radius = len(taps) // 2
    _, h, w = planes.shape
    padded = F.pad(planes[:, None], (radius, radius, radius, radius), mode="replicate")[:, 0]  # (B, H+10, W+10)
    rows = padded[:, 0:h, :] * taps[0]  # vertical pass -> (B, H, W+10)
    for k in range(1, len(taps)):
        rows.add_(padded[:, k : k + h, :], alpha=taps[k])
    out = rows[:, :, 0:w] * taps[0]  # horizontal pass -> (B, H, W)
    for k in range(1, len(taps)):
        out.add_(rows[:, :, k : k + w], alpha=taps[k])
    return out


def ssim_map(a: Tensor, b: Tensor, data_range: float = 255.0) -> Tensor:
    """The local SSIM of every pixel (MATLAB ``ssim``'s ``ssimmap``).

    Local statistics use the separable 11x11 Gaussian window (sigma 1.5) with *replicate* padding, population
    (co)variances, ``C1 = (0.01 * data_range)^2`` and ``C2 = (0.03 * data_range)^2``. Channels are independent.

    Args:
        a: (N, C, H, W) images (any real dtype), on the scale given by ``data_range``; any H, W >= 1.
        b: (N, C, H, W) reference images.
        data_range: Peak value range, 255 for 8-bit images.

    Returns:
        (N, C, H, W) float64 SSIM map on ``a``'s device, values in [-1, 1].

    Raises:
        TypeError: If an input is not a real array/tensor.
        ValueError: If the shapes differ or are not 4-D, or ``data_range`` is not positive.
    """
    data_range = _check_data_range(data_range)
    x, y = _pair(a, b)
    _check_nchw(x)
    n, c, h, w = x.shape
    # Filter the five moment images in one pass: (5, N, C, H, W) -> (5*N*C, H, W).
    moments = _gaussian_filter(torch.stack((x, y, x * x, y * y, x * y)).reshape(5 * n * c, h, w))
    mu_x, mu_y, m_xx, m_yy, m_xy = moments.reshape(5, n, c, h, w)
    var_x = m_xx - mu_x * mu_x
    var_y = m_yy - mu_y * mu_y
    cov_xy = m_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def _masked_mean(maps: Tensor, map_border: int) -> Tensor:
    """Mean of (N, C, H, W) maps over C, H, W after dropping ``map_border`` pixels at each side -> (N,)."""
    if isinstance(map_border, bool) or not isinstance(map_border, int) or map_border < 0:
        raise ValueError(f"map_border must be a non-negative int, got {map_border!r}")
    h, w = maps.shape[-2:]
    if 2 * map_border >= min(h, w):
        raise ValueError(
            f"map_border={map_border} leaves no pixels of a {h}x{w} image; use map_border < {(min(h, w) + 1) // 2}"
        )
    if map_border:
        maps = maps[..., map_border : h - map_border, map_border : w - map_border]
    return maps.mean(dim=(1, 2, 3))


def ssim_batch(a: Tensor, b: Tensor, data_range: float = 255.0, map_border: int = 0) -> Tensor:
    """Per-image mean SSIM of a batch; multi-channel images get the mean of their per-channel SSIMs.

    Args:
        a: (N, C, H, W) images (any real dtype), on the scale given by ``data_range``.
        b: (N, C, H, W) reference images.
        data_range: Peak value range, 255 for 8-bit images.
        map_border: Pixels left out at each side of the SSIM map before averaging. 0 (the protocol, as MATLAB's
            ``ssim``) averages the whole map; :data:`SKIMAGE_MAP_BORDER` (5) reproduces scikit-image's mean.

    Returns:
        (N,) float64 tensor of SSIMs on ``a``'s device, values in [-1, 1]; exactly 1 for identical images.

    Raises:
        TypeError: If an input is not a real array/tensor.
        ValueError: If the shapes differ or are not 4-D, ``data_range`` is not positive, or ``map_border`` is
            negative or too large for the image.
    """
    return _masked_mean(ssim_map(a, b, data_range), map_border)


def ssim(
    a: np.ndarray | Tensor,
    b: np.ndarray | Tensor,
    data_range: float = 255.0,
    channel_axis: int | None = None,
    map_border: int = 0,
) -> float:
    """Mean SSIM of two single- or multi-channel images.

    Args:
        a: (H, W) single-channel image, or a 3-D multi-channel image with its channels on ``channel_axis``
            (e.g. (H, W, 3) with ``channel_axis=-1``), on the scale given by ``data_range``.
        b: Reference image of the same shape.
        data_range: Peak value range, 255 for 8-bit images.
        channel_axis: Channel axis of 3-D inputs; must be None for 2-D inputs. Multi-channel SSIM is the mean of the
            per-channel SSIMs (like scikit-image's ``channel_axis``).
        map_border: Pixels left out at each side of the SSIM map before averaging; see :func:`ssim_batch`.

    Returns:
        Mean SSIM in [-1, 1]; exactly 1.0 for identical images.

    Raises:
        TypeError: If an input is not a real array/tensor.
        ValueError: If the shapes differ, a 3-D input has no ``channel_axis``, ``channel_axis`` is given for a 2-D
            input or does not exist, or ``data_range``/``map_border`` are invalid.
    """
    ta, tb = _pair(a, b)
    if ta.ndim == 2:
        if channel_axis is not None:
            raise ValueError(f"channel_axis={channel_axis} given for a 2-D (H, W) image; leave it as None")
        ta, tb = ta[None, None], tb[None, None]  # (1, 1, H, W)
    elif ta.ndim == 3:
        if channel_axis is None:
            raise ValueError(
                f"got a 3-D image of shape {tuple(ta.shape)}; pass channel_axis=-1 for (H, W, C) or 0 for (C, H, W)"
            )
        if not -3 <= channel_axis < 3:
            raise ValueError(f"channel_axis {channel_axis} does not exist for a 3-D image of shape {tuple(ta.shape)}")
        ta = torch.movedim(ta, channel_axis, 0)[None]  # (1, C, H, W)
        tb = torch.movedim(tb, channel_axis, 0)[None]
    else:
        raise ValueError(f"ssim expects a 2-D or 3-D image, got shape {tuple(ta.shape)}; use ssim_batch for batches")
    return float(ssim_batch(ta, tb, data_range, map_border)[0])


# ----------------------------------------------------------------------------------------------------------------------
# Per-frame protocol
# ----------------------------------------------------------------------------------------------------------------------


def _check_uint8_frames(name: str, x: object) -> None:
    """Raise ``TypeError`` unless ``x`` is a uint8 array/tensor."""
    _check_array(name, x)
    if not _is_uint8(x):  # type: ignore[arg-type]
        raise TypeError(
            f"{name} must be 8-bit (uint8) frames as saved, got dtype {x.dtype}; "  # type: ignore[attr-defined]
            "convert model outputs in [0, 1] with estinet.metrics.to_uint8 first"
        )


def frame_metrics_batch(pred: Tensor, gt: Tensor) -> dict[str, Tensor]:
    """Protocol metrics of a batch of 8-bit RGB frames.

    Args:
        pred: (N, 3, H, W) uint8 restored frames (see :func:`to_uint8`).
        gt: (N, 3, H, W) uint8 ground-truth frames.

    Returns:
        ``{"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}`` -> (N,) float64 tensors on ``pred``'s device. PSNR in dB
        (``inf`` for identical frames), SSIM in [-1, 1].

    Raises:
        TypeError: If the inputs are not uint8 arrays/tensors.
        ValueError: If the shapes differ or are not (N, 3, H, W).
    """
    _check_uint8_frames("pred", pred)
    _check_uint8_frames("gt", gt)
    p, g = _pair(pred, gt, ("pred", "gt"))  # float64 (N, 3, H, W)
    if p.ndim != 4 or p.shape[1] != 3:
        raise ValueError(
            f"expected (N, 3, H, W) RGB frames, got shape {tuple(p.shape)}; "
            "use frame_metrics for a single (H, W, 3) frame"
        )
    # Luma first, then R, G, B: one SSIM pass over 4 channels.
    p4 = torch.cat((rgb_to_y(p, channel_axis=1)[:, None], p), dim=1)  # (N, 4, H, W)
    g4 = torch.cat((rgb_to_y(g, channel_axis=1)[:, None], g), dim=1)
    maps = ssim_map(p4, g4, 255.0)  # (N, 4, H, W)
    return {
        "psnr_y": psnr_batch(p4[:, :1], g4[:, :1]),
        "ssim_y": maps[:, 0].mean(dim=(1, 2)),
        "psnr_rgb": psnr_batch(p, g),
        "ssim_rgb": maps[:, 1:].mean(dim=(1, 2, 3)),
    }


def frame_metrics(pred: np.ndarray | Tensor, gt: np.ndarray | Tensor) -> dict[str, float]:
    """Protocol metrics of one 8-bit RGB frame: PSNR and SSIM on BT.601 Y and on RGB.

    Args:
        pred: (H, W, 3) uint8 restored frame (see :func:`to_uint8`).
        gt: (H, W, 3) uint8 ground-truth frame.

    Returns:
        ``{"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}`` as Python floats; PSNR in dB (``inf`` for identical
        frames), SSIM in [-1, 1].

    Raises:
        TypeError: If the inputs are not uint8 arrays/tensors.
        ValueError: If the shapes differ or are not (H, W, 3).
    """
    _check_uint8_frames("pred", pred)
    _check_uint8_frames("gt", gt)
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(
            f"expected an (H, W, 3) RGB frame, got shape {tuple(pred.shape)}; "
            "use frame_metrics_batch for (N, 3, H, W) batches"
        )
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    p = _as_tensor(pred, "pred").permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
    g = _as_tensor(gt, "gt").permute(2, 0, 1)[None]
    values = frame_metrics_batch(p, g)
    return {name: float(values[name][0]) for name in METRIC_NAMES}


# ----------------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------------


def scored_frame_indices(num_frames: int, skip_ends: int = 0) -> range:
    """Indices of the frames of a sequence that are scored when ``skip_ends`` frames are dropped at each end.

    Args:
        num_frames: Length of the sequence, >= 1.
        skip_ends: Frames dropped at each end, >= 0 (2 reproduces the S2VD protocol).

    Returns:
        ``range(skip_ends, num_frames - skip_ends)``.

    Raises:
        ValueError: If an argument is negative or the sequence is too short to keep any frame.
    """
    if isinstance(skip_ends, bool) or not isinstance(skip_ends, int) or skip_ends < 0:
        raise ValueError(f"skip_ends must be a non-negative int, got {skip_ends!r}")
    if num_frames < 1:
        raise ValueError(f"a sequence needs at least one frame, got num_frames={num_frames}")
    if num_frames - 2 * skip_ends < 1:
        raise ValueError(
            f"skip_ends={skip_ends} drops all {num_frames} frames of the sequence; "
            f"use skip_ends <= {(num_frames - 1) // 2} or leave this sequence out"
        )
    return range(skip_ends, num_frames - skip_ends)


class MetricAccumulator:
    """Collects per-frame protocol metrics and averages them per sequence and over the dataset.

    Every ground-truth frame should be added exactly once; when frame indices are given, adding the same
    (sequence, index) twice raises. Averages cap each frame's PSNR at ``psnr_cap`` (identical frames have infinite
    PSNR); the per-frame values returned by :meth:`add` and :meth:`frames` are not capped.

    Args:
        psnr_cap: Cap in dB applied to every frame's PSNR before averaging; None keeps ``inf`` (so a single perfect
            frame makes the mean infinite).

    Example:
        >>> acc = MetricAccumulator()
        >>> for t in scored_frame_indices(len(preds), skip_ends=2):  # doctest: +SKIP
        ...     acc.add("a1", preds[t], gts[t], index=t)
        >>> acc.sequence_mean()["psnr_y"]  # doctest: +SKIP
    """

    def __init__(self, psnr_cap: float | None = PSNR_CAP_DB) -> None:
        if psnr_cap is not None and not (isinstance(psnr_cap, (int, float)) and psnr_cap > 0):
            raise ValueError(f"psnr_cap must be a positive number of dB or None, got {psnr_cap!r}")
        self.psnr_cap = None if psnr_cap is None else float(psnr_cap)
        self._frames: dict[str, list[tuple[int | None, dict[str, float]]]] = {}
        self._indices: dict[str, set[int]] = {}

    def __len__(self) -> int:
        """Number of frames added so far, over all sequences."""
        return sum(len(frames) for frames in self._frames.values())

    def _check_index(self, sequence: str, index: int | None) -> None:
        """Validate a frame index and make sure it was not added before."""
        if index is None:
            return
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"frame index must be a non-negative int or None, got {index!r}")
        if index in self._indices.get(sequence, set()):
            raise ValueError(
                f"frame {index} of sequence {sequence!r} was already scored; every ground-truth frame is scored "
                "exactly once"
            )

    def add_metrics(self, sequence: str, metrics: Mapping[str, float], index: int | None = None) -> None:
        """Record precomputed metrics of one frame (e.g. one row of :func:`frame_metrics_batch`).

        Args:
            sequence: Sequence name.
            metrics: Mapping with the keys of :data:`METRIC_NAMES` (extra keys are ignored).
            index: Frame index within the sequence, used to reject duplicates; None skips that check.

        Raises:
            TypeError: If ``sequence`` is not a string.
            ValueError: If a metric is missing or NaN, the index is invalid, or the frame was already added.
        """
        if not isinstance(sequence, str):
            raise TypeError(f"sequence must be a str name, got {type(sequence).__name__}")
        missing = [name for name in METRIC_NAMES if name not in metrics]
        if missing:
            raise ValueError(f"metrics lacks {missing}; expected the keys {list(METRIC_NAMES)} of frame_metrics")
        values = {name: float(metrics[name]) for name in METRIC_NAMES}
        bad = [name for name, value in values.items() if math.isnan(value)]
        if bad:
            raise ValueError(f"metrics {bad} of frame {index} of sequence {sequence!r} are NaN")
        self._check_index(sequence, index)
        self._frames.setdefault(sequence, []).append((index, values))
        if index is not None:
            self._indices.setdefault(sequence, set()).add(index)

    def add(
        self, sequence: str, pred: np.ndarray | Tensor, gt: np.ndarray | Tensor, index: int | None = None
    ) -> dict[str, float]:
        """Score one frame and record it.

        Args:
            sequence: Sequence name.
            pred: (H, W, 3) uint8 restored frame.
            gt: (H, W, 3) uint8 ground-truth frame.
            index: Frame index within the sequence, used to reject duplicates; None skips that check.

        Returns:
            The frame's metrics (uncapped), as :func:`frame_metrics`.

        Raises:
            TypeError: If the frames are not uint8 or ``sequence`` is not a string.
            ValueError: If the shapes are wrong, the index is invalid or the frame was already added.
        """
        self._check_index(sequence, index)  # fail before the (costly) metric computation
        metrics = frame_metrics(pred, gt)
        self.add_metrics(sequence, metrics, index)
        return metrics

    def add_sequence(
        self,
        sequence: str,
        preds: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
        gts: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
        skip_ends: int = 0,
    ) -> None:
        """Score a whole sequence, dropping ``skip_ends`` frames at each end.

        Frames are recorded with their index in the sequence, so adding the same sequence twice raises.

        Args:
            sequence: Sequence name.
            preds: T restored frames, each (H, W, 3) uint8 (a list or a (T, H, W, 3) array/tensor).
            gts: T ground-truth frames, same layout.
            skip_ends: Frames dropped at each end (2 reproduces the S2VD protocol).

        Raises:
            ValueError: If the lengths differ, ``skip_ends`` leaves no frame, or a frame was already added.
            TypeError: If the frames are not uint8.
        """
        if len(preds) != len(gts):
            raise ValueError(f"sequence {sequence!r} has {len(preds)} restored frames but {len(gts)} ground truths")
        kept = scored_frame_indices(len(preds), skip_ends)
        for t in kept:  # check every index before scoring anything, so a failure leaves no partial sequence
            self._check_index(sequence, t)
        for t in kept:
            self.add(sequence, preds[t], gts[t], index=t)

    def frames(self, sequence: str) -> list[tuple[int | None, dict[str, float]]]:
        """The recorded ``(index, metrics)`` of every frame of ``sequence``, in the order added (uncapped).

        Raises:
            KeyError: If no frame of ``sequence`` was added.
        """
        if sequence not in self._frames:
            raise KeyError(f"no frames of sequence {sequence!r}; known sequences: {list(self._frames)}")
        return [(index, dict(values)) for index, values in self._frames[sequence]]

    def _capped(self, values: dict[str, float]) -> dict[str, float]:
        """Apply the PSNR cap to one frame's metrics."""
        if self.psnr_cap is None:
            return values
        return {name: min(value, self.psnr_cap) if name.startswith("psnr") else value for name, value in values.items()}

    def _mean(self, rows: list[dict[str, float]]) -> dict[str, float]:
        """Mean of each metric over ``rows`` (float64 arithmetic)."""
        return {name: float(np.mean([row[name] for row in rows], dtype=np.float64)) for name in METRIC_NAMES}

    def _require_frames(self) -> None:
        if not self._frames:
            raise ValueError("no frames were added; call add, add_sequence or add_metrics first")

    def sequences(self) -> dict[str, dict[str, float]]:
        """Per-sequence means, in the order the sequences were first added.

        Returns:
            ``{name: {"frames": n, "psnr_y": ..., "ssim_y": ..., "psnr_rgb": ..., "ssim_rgb": ...}}`` with PSNRs
            capped at ``psnr_cap`` before averaging.
        """
        table: dict[str, dict[str, float]] = {}
        for name, frames in self._frames.items():
            table[name] = {"frames": len(frames), **self._mean([self._capped(values) for _, values in frames])}
        return table

    def sequence_mean(self) -> dict[str, float]:
        """Headline aggregate: mean over the frames of each sequence, then mean over sequences.

        Returns:
            ``{"sequences": S, "frames": F, "psnr_y": ..., "ssim_y": ..., "psnr_rgb": ..., "ssim_rgb": ...}``.

        Raises:
            ValueError: If nothing was added.
        """
        self._require_frames()
        table = self.sequences()
        return {"sequences": len(table), "frames": len(self), **self._mean(list(table.values()))}

    def frame_mean(self) -> dict[str, float]:
        """Mean over all frames of all sequences (long sequences weigh more).

        Returns:
            ``{"sequences": S, "frames": F, "psnr_y": ..., "ssim_y": ..., "psnr_rgb": ..., "ssim_rgb": ...}``.

        Raises:
            ValueError: If nothing was added.
        """
        self._require_frames()
        rows = [self._capped(values) for frames in self._frames.values() for _, values in frames]
        return {"sequences": len(self._frames), "frames": len(rows), **self._mean(rows)}
