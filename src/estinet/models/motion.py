"""Global motion compensation: sub-pixel translation between frames by phase correlation (SPEC §2, §5).

Real rainy footage is shot by moving cameras. ESTINet's temporal part copies background pixels from the neighbour
frames, so every neighbour (or its per-frame features) is first translated onto the window's centre frame.

Convention. A *displacement* ``d = (dy, dx)`` in pixels of frame ``mov`` relative to frame ``ref`` means the content
moved by ``+d``: ``mov(p) ~ ref(p - d)``. :func:`translate` moves content by ``s``: ``out(p) = x(p - s)``, so
``translate(mov, -d) ~ ref``.

Estimator (:func:`phase_correlation`, run once per consecutive frame pair):

1. Luma (BT.601) averaged over ``factor x factor`` blocks, ``factor = ceil(long side / max_size)`` (default
   ``max_size = 256``: a 640x480 frame is estimated at 213x160). Block averaging keeps an exact relation between the
   two grids: a shift ``d`` at full resolution is a shift ``d / factor`` of the block-averaged images.
2. Weighted mean removal and a raised-cosine edge taper (flat in the middle, cosine roll-off over the outer 1/8 of
   each side) so that the image borders do not correlate, then ``rfft2``. This spectrum depends on one frame only, so
   :class:`StreamingMotion` and :func:`pair_displacements` compute it once per frame.
3. Normalised cross-power spectrum, inverse FFT, integer peak (optionally inside ``max_shift``) and a parabolic
   sub-pixel start.
4. Refinement by fitting the phase plane of the cross spectrum: after removing the current estimate the residual
   phase is ``-2 pi k . delta``; a weighted least-squares fit over frequencies ``|k| <= 0.35`` cycles/pixel (weights
   ``sqrt|F_ref F_mov|``, iteratively re-weighted with a Cauchy function of the phase residual so that rain streaks
   and noise, which do not move with the background, count less) gives ``delta``. The parabolic peak alone is off
   by up to half a pixel.
5. A second pass removes the window's pull towards zero shift (a fixed window weights the two frames' content
   differently): ``mov`` is windowed again with the window moved by the first estimate (evaluated analytically, no
   resampling), so both windowed images hold the same content under the same weights, and the phase-plane fit is
   repeated. This costs one more small FFT per pair. Measured accuracy on clean textured images (exact sub-pixel
   shifts of non-periodic crops): about 0.001 px at 96x128 to 224x224 (block size 1) and 0.01-0.03 px at 640x480
   (block size 3, where block averaging and aliasing dominate the error); a few hundredths to 0.1 px under heavy
   synthetic rain and noise. Components below 1e-3 px are reported as exactly zero (identical frames give an exact
   zero shift, so alignment copies them unchanged).
6. Confidence from the peak's height over the correlation surface's statistics: with ``z = (peak - mean) / std``
   and ``z0 = sqrt(2 ln n)`` (about the largest of ``n`` independent standard normal values, i.e. what pure noise
   reaches), ``confidence = clamp((z - z0 - 1) / (2 z0), 0, 1)``. Below ``min_confidence`` (flat or constant
   frames, independent noise, a scene cut) the displacement is exactly zero. Frames smaller than 8x8 after
   downscaling, or whose luma varies by less than 1e-4 RMS, get confidence 0.

All FFT work runs in float32 (float64 for float64 input) on the input's device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B."""

DEFAULT_MAX_SIZE = 256
"""Default longest side (pixels) of the downscaled luma the displacement is estimated on."""

DEFAULT_MIN_CONFIDENCE = 0.1
"""Default confidence below which the displacement is reported as exactly zero."""

MIN_SIZE = 8
"""Smallest downscaled height or width (pixels) phase correlation is attempted on."""

FLAT_RMS = 1e-4
"""Luma RMS (around the mean, in [0, 1] units) below which a frame counts as flat."""

TAPER_FRACTION = 0.125
"""Fraction of each side covered by the raised-cosine roll-off of the window."""

FIT_MAX_FREQUENCY = 0.35
"""Largest spatial frequency (cycles per downscaled pixel) used by the phase-plane fit."""

FIT_ITERATIONS = 5
"""Iteratively re-weighted least-squares steps of the phase-plane fit."""

FIT_ROBUST_SCALE = 0.3
"""Phase residual (radians) at which the Cauchy re-weighting halves a frequency's weight."""

ZERO_SNAP = 1e-3
"""Displacement components (full-resolution pixels) smaller than this are reported as exactly zero."""


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 input, else float32 (half inputs are estimated in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Switch autocast off on ``device``: the estimation maths must not run in half precision."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _check_rgb(x: Tensor, name: str, ndim: int, layout: str) -> None:
    """Raise unless ``x`` has ``ndim`` dimensions, 3 channels at dim -3 and a floating dtype."""
    if x.dim() != ndim or x.shape[-3] != 3:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point in [0, 1], got {x.dtype}; convert uint8 with x.float() / 255")


def rgb_to_luma(x: Tensor) -> Tensor:
    """BT.601 luma of RGB images.

    Args:
        x: (..., 3, H, W) RGB in [0, 1], floating point.

    Returns:
        (..., H, W) luma in [0, 1], same dtype and device as ``x``.
    """
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"rgb_to_luma expects (..., 3, H, W) RGB, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"rgb_to_luma expects floating point in [0, 1], got {x.dtype}; convert with x.float() / 255")
    r, g, b = x.unbind(-3)
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


# --------------------------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------------------------
def _downscale_factor(height: int, width: int, max_size: int) -> int:
    """Integer block size that brings the long side to at most ``max_size`` (kept >= MIN_SIZE on the short side)."""
    if max_size < MIN_SIZE:
        raise ValueError(f"max_size must be at least {MIN_SIZE} pixels, got {max_size}")
    factor = max(1, math.ceil(max(height, width) / max_size))
    return max(1, min(factor, min(height, width) // MIN_SIZE))


def _taper(position: Tensor, n: int) -> Tensor:
    """Raised-cosine edge taper of an n-pixel axis, evaluated at (possibly fractional, shifted) pixel positions.

    1 in the middle, a half cosine over the outer ``TAPER_FRACTION`` of each side, 0 beyond the axis' outer pixel
    edges (-0.5 and n - 0.5). Evaluating it at ``arange(n) - s`` gives the window moved by ``s`` pixels.

    Args:
        position: positions in pixels, any shape, floating point.
        n: length of the axis.

    Returns:
        Window values in [0, 1], shape of ``position``.
    """
    width = max(1, round(n * TAPER_FRACTION))
    rise = ((position + 0.5) / width).clamp(0.0, 1.0)
    fall = ((n - 0.5 - position) / width).clamp(0.0, 1.0)
    return (0.5 - 0.5 * torch.cos(math.pi * rise)) * (0.5 - 0.5 * torch.cos(math.pi * fall))


def _window(h: int, w: int, shift: Tensor) -> Tensor:
    """(N, h, w) separable edge-taper windows moved by ``shift`` (N, 2) pixels (dy, dx)."""
    ys = torch.arange(h, dtype=shift.dtype, device=shift.device)
    xs = torch.arange(w, dtype=shift.dtype, device=shift.device)
    wy = _taper(ys[None, :] - shift[:, :1], h)  # (N, h)
    wx = _taper(xs[None, :] - shift[:, 1:], w)  # (N, w)
    return wy[:, :, None] * wx[:, None, :]  # (N, h, w)


def _windowed(x: Tensor, window: Tensor) -> Tensor:
    """Remove the window-weighted mean of x (N, h, w) and apply the window (N or 1, h, w)."""
    mean = (x * window).sum((-2, -1), keepdim=True) / window.sum((-2, -1), keepdim=True)  # (N, 1, 1)
    return (x - mean) * window  # (N, h, w)


@dataclass
class FrameSpectrum:
    """Everything phase correlation needs from one frame, computed once per frame.

    Attributes:
        spectrum: (N, h, w // 2 + 1) complex rfft2 of the windowed, mean-removed, downscaled luma.
        image: (N, h, w) the downscaled luma itself (for the shifted-window second pass).
        textured: (N,) bool, False for frames that are flat (or too small) to estimate motion on.
        factor: block size of the downscaling (full-resolution pixels per downscaled pixel).
        size: (h, w) of the downscaled luma.
        full_size: (H, W) of the input frames.
    """

    spectrum: Tensor
    image: Tensor
    textured: Tensor
    factor: int
    size: tuple[int, int]
    full_size: tuple[int, int]

    def rows(self, index: slice) -> FrameSpectrum:
        """The frames ``index`` (a slice of the first dimension)."""
        return dataclasses.replace(
            self, spectrum=self.spectrum[index], image=self.image[index], textured=self.textured[index]
        )

    def followed_by(self, other: FrameSpectrum) -> FrameSpectrum:
        """This spectrum's frames, then ``other``'s (same sizes)."""
        return dataclasses.replace(
            self,
            spectrum=torch.cat([self.spectrum, other.spectrum]),
            image=torch.cat([self.image, other.image]),
            textured=torch.cat([self.textured, other.textured]),
        )


def _windowed_spectrum(x: Tensor, factor: int, full_size: tuple[int, int]) -> FrameSpectrum:
    """Centre, window and Fourier-transform downscaled luma.

    Args:
        x: (N, h, w) downscaled luma in [0, 1], float32 or float64.
        factor: block size it was downscaled by.
        full_size: (H, W) of the original frames.

    Returns:
        The frames' :class:`FrameSpectrum`.
    """
    n, h, w = x.shape
    if h < MIN_SIZE or w < MIN_SIZE:  # too small to estimate anything: an all-zero spectrum, never textured
        untextured = torch.zeros(n, dtype=torch.bool, device=x.device)
        return FrameSpectrum(torch.fft.rfft2(torch.zeros_like(x)), x, untextured, factor, (h, w), full_size)
    window = _window(h, w, x.new_zeros(1, 2))  # (1, h, w)
    windowed = _windowed(x, window)  # (N, h, w)
    rms = windowed.square().mean((-2, -1)).sqrt() / window.square().mean().sqrt()  # (N,)
    return FrameSpectrum(torch.fft.rfft2(windowed), x, rms > FLAT_RMS, factor, (h, w), full_size)


def luma_spectrum(luma: Tensor, max_size: int = DEFAULT_MAX_SIZE) -> FrameSpectrum:
    """Downscale, centre, window and Fourier-transform luma frames (the per-frame half of phase correlation).

    Args:
        luma: (N, H, W) luma in [0, 1], any floating dtype.
        max_size: longest side of the downscaled luma; the block size is ``ceil(max(H, W) / max_size)``.

    Returns:
        The frames' :class:`FrameSpectrum` (float32 maths, float64 for float64 input).
    """
    if luma.dim() != 3:
        raise ValueError(f"luma must have shape (N, H, W), got {tuple(luma.shape)}")
    if not luma.is_floating_point():
        raise TypeError(f"luma must be floating point in [0, 1], got {luma.dtype}; convert with x.float() / 255")
    height, width = luma.shape[-2:]
    factor = _downscale_factor(height, width, max_size)
    with _full_precision(luma.device):
        x = luma.to(_working_dtype(luma.dtype))
        if factor > 1:
            x = F.avg_pool2d(x.unsqueeze(1), factor).squeeze(1)  # (N, H // factor, W // factor)
        return _windowed_spectrum(x, factor, (height, width))


def frames_spectrum(frames: Tensor, max_size: int = DEFAULT_MAX_SIZE) -> FrameSpectrum:
    """Spectra of RGB frames (luma and block averaging fused into one strided convolution).

    Args:
        frames: (N, 3, H, W) RGB in [0, 1].
        max_size: longest side of the downscaled luma.

    Returns:
        The frames' :class:`FrameSpectrum`.
    """
    _check_rgb(frames, "frames", 4, "(N, 3, H, W)")
    height, width = frames.shape[-2:]
    factor = _downscale_factor(height, width, max_size)
    with _full_precision(frames.device):
        x = frames.to(_working_dtype(frames.dtype))
        kernel = _luma_box_kernel(factor, x.dtype, x.device)  # (1, 3, factor, factor)
        small = F.conv2d(x, kernel, stride=factor).squeeze(1)  # (N, H // factor, W // factor) block-mean luma
        return _windowed_spectrum(small, factor, (height, width))


@functools.lru_cache(maxsize=16)
def _luma_box_kernel(factor: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(1, 3, factor, factor) conv kernel computing the block mean of BT.601 luma (one pass over the frame)."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=dtype, device=device) / factor**2
    return weights.view(1, 3, 1, 1).expand(1, 3, factor, factor).contiguous()


@functools.lru_cache(maxsize=16)
def _fit_band(h: int, w: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The frequencies the phase-plane fit uses, for an (h, w) image's rfft2 spectrum.

    Returns:
        index (M,) into the flattened (h * (w // 2 + 1)) spectrum of the frequencies with |k| <= FIT_MAX_FREQUENCY
        (DC excluded), k (M, 2) their (ky, kx) in cycles per pixel, and moments (M, 3) = (ky^2, kx^2, ky kx).
    """
    ky = torch.fft.fftfreq(h, dtype=dtype, device=device)[:, None].expand(h, w // 2 + 1)
    kx = torch.fft.rfftfreq(w, dtype=dtype, device=device)[None, :].expand(h, w // 2 + 1)
    radius2 = (ky.square() + kx.square()).flatten()  # (h * w2,)
    index = torch.nonzero((radius2 <= FIT_MAX_FREQUENCY**2) & (radius2 > 0)).squeeze(1)  # (M,)
    k = torch.stack([ky.flatten()[index], kx.flatten()[index]], -1)  # (M, 2)
    moments = torch.stack([k[:, 0].square(), k[:, 1].square(), k[:, 0] * k[:, 1]], -1)  # (M, 3)
    return index, k, moments


def _fit_phase_plane(cross: Tensor, start: Tensor, w: int) -> Tensor:
    """Refine displacements by a robust weighted least-squares fit of the cross spectrum's phase plane.

    Args:
        cross: (N, h, w // 2 + 1) cross spectrum ``F_mov * conj(F_ref)`` of (h, w) images (phase ``-2 pi k . d``).
        start: (N, 2) initial displacement (dy, dx) in pixels of the (h, w) images, within about half a pixel.
        w: width of the images.

    Returns:
        (N, 2) refined displacement in the same pixels.
    """
    two_pi = 2.0 * math.pi
    h = cross.shape[-2]
    index, k, moments = _fit_band(h, w, start.dtype, start.device)
    values = cross.flatten(1)[:, index]  # (N, M)
    phase0 = torch.angle(values)  # (N, M), = -2 pi k . d up to 2 pi wraps
    base = values.abs().sqrt()  # (N, M)
    weight = base
    d = start
    for _ in range(FIT_ITERATIONS):
        # residual phase after removing the current estimate, wrapped to [-pi, pi): -2 pi k . delta
        phase = torch.remainder(phase0 + two_pi * (d @ k.T) + math.pi, two_pi) - math.pi  # (N, M)
        normal = weight @ moments  # (N, 3): sums of w ky^2, w kx^2, w ky kx
        rhs = (weight * phase) @ k  # (N, 2): sums of w ky phase, w kx phase
        a11, a22, a12 = normal.unbind(-1)
        det = (a11 * a22 - a12 * a12).clamp_min(torch.finfo(d.dtype).tiny)
        b1, b2 = rhs.unbind(-1)
        delta = -torch.stack([a22 * b1 - a12 * b2, a11 * b2 - a12 * b1], -1) / (det[:, None] * two_pi)  # (N, 2)
        d = d + delta
        residual = phase + two_pi * (delta @ k.T)  # (N, M)
        weight = base / (1.0 + (residual / FIT_ROBUST_SCALE).square())
    return d


def _trusted(refined: Tensor, start: Tensor) -> Tensor:
    """``refined`` (N, 2) where it is finite and within a pixel of ``start`` (N, 2), else ``start``."""
    sane = torch.isfinite(refined).all(-1) & ((refined - start).abs() <= 1.0).all(-1)  # (N,)
    return torch.where(sane[:, None], refined, start)


def correlate_spectra(
    ref: FrameSpectrum,
    mov: FrameSpectrum,
    max_shift: float | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> tuple[Tensor, Tensor]:
    """Displacement of ``mov`` relative to ``ref`` from their precomputed spectra (the per-pair half).

    Args:
        ref: spectra of the reference frames (N of them).
        mov: spectra of the moved frames, same N, size and downscaling as ``ref``.
        max_shift: largest displacement searched per axis, in full-resolution pixels; None searches everything
            the correlation surface holds (up to half the frame).
        min_confidence: confidence in [0, 1] below which the displacement is set to exactly zero.

    Returns:
        displacement (N, 2) (dy, dx) in full-resolution pixels and confidence (N,) in [0, 1], on the spectra's
        device in float32 (float64 for float64 input).
    """
    if ref.spectrum.shape != mov.spectrum.shape or ref.factor != mov.factor or ref.full_size != mov.full_size:
        raise ValueError(
            f"ref and mov spectra differ: {tuple(ref.spectrum.shape)} from {ref.full_size} frames vs "
            f"{tuple(mov.spectrum.shape)} from {mov.full_size}; frames must have the same batch size and size"
        )
    if max_shift is not None and not max_shift >= 0:
        raise ValueError(f"max_shift must be >= 0 pixels or None, got {max_shift}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    with _full_precision(ref.spectrum.device):
        return _correlate(ref, mov, max_shift, min_confidence)


def _correlate(
    ref: FrameSpectrum, mov: FrameSpectrum, max_shift: float | None, min_confidence: float
) -> tuple[Tensor, Tensor]:
    """:func:`correlate_spectra` after argument checks."""
    n = ref.spectrum.shape[0]
    h, w = ref.size
    device = ref.spectrum.device
    dtype = ref.spectrum.real.dtype
    zeros = torch.zeros(n, 2, dtype=dtype, device=device)
    conf = torch.zeros(n, dtype=dtype, device=device)
    if n == 0 or h < MIN_SIZE or w < MIN_SIZE:
        return zeros, conf

    cross = mov.spectrum * ref.spectrum.conj()  # (N, h, w2)
    magnitude = cross.abs()
    normalised = cross / magnitude.clamp_min(torch.finfo(dtype).tiny)  # unit modulus (0 where cross is 0)
    surface = torch.fft.irfft2(normalised, s=(h, w))  # (N, h, w)
    flat = surface.flatten(1)  # (N, h * w)
    mean, std = flat.mean(1), flat.std(1)

    # integer peak (cyclic offsets in [-h/2, h/2) x [-w/2, w/2)), optionally restricted to |offset| <= max_shift
    search = flat
    if max_shift is not None:
        limit = max_shift / ref.factor
        oy = (torch.arange(h, device=device) + h // 2) % h - h // 2
        ox = (torch.arange(w, device=device) + w // 2) % w - w // 2
        allowed = (oy.abs()[:, None] <= limit + 0.5) & (ox.abs()[None, :] <= limit + 0.5)  # (h, w)
        search = flat.masked_fill(~allowed.flatten(), -math.inf)
    peak, index = search.max(1)  # (N,)
    py, px = index // w, index % w

    # confidence: peak height in units of the surface's spread, against what noise alone reaches
    z = (peak - mean) / std.clamp_min(torch.finfo(dtype).tiny)
    z0 = math.sqrt(2.0 * math.log(h * w))
    conf = ((z - z0 - 1.0) / (2.0 * z0)).clamp(0.0, 1.0)
    valid = ref.textured & mov.textured & (std > 0) & torch.isfinite(z)
    conf = torch.where(valid, conf, torch.zeros_like(conf))

    # parabolic sub-pixel start on the cyclic surface
    rows = torch.arange(n, device=device)

    def at(dy: int, dx: int) -> Tensor:
        return surface[rows, (py + dy) % h, (px + dx) % w]

    def vertex(minus: Tensor, centre: Tensor, plus: Tensor) -> Tensor:
        curvature = minus - 2.0 * centre + plus  # < 0 at a proper maximum
        peaked = curvature < 0
        offset = 0.5 * (minus - plus) / torch.where(peaked, curvature, -torch.ones_like(curvature))
        return torch.where(peaked, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)

    centre_value = at(0, 0)
    sub_y = vertex(at(-1, 0), centre_value, at(1, 0))
    sub_x = vertex(at(0, -1), centre_value, at(0, 1))
    iy = torch.where(py > h // 2, py - h, py).to(dtype)
    ix = torch.where(px > w // 2, px - w, px).to(dtype)
    start = torch.stack([iy + sub_y, ix + sub_x], -1)  # (N, 2) downscaled pixels

    first = _trusted(_fit_phase_plane(cross, start, w), start)
    # second pass: window ``mov`` with the window moved by the first estimate, so both windowed images hold the
    # same content under the same weights and the pull of the fixed window towards zero shift disappears
    moved = torch.fft.rfft2(_windowed(mov.image, _window(h, w, first)))  # (N, h, w2)
    second = _trusted(_fit_phase_plane(moved * ref.spectrum.conj(), first, w), first)
    estimate = second * ref.factor  # (N, 2) full-resolution pixels

    keep = conf >= min_confidence
    if min_confidence <= 0.0:
        keep = keep & valid
    keep = keep[:, None] & torch.isfinite(estimate) & (estimate.abs() >= ZERO_SNAP)  # (N, 2)
    displacement = torch.where(keep, estimate, zeros)
    return displacement, conf


def phase_correlation(
    ref: Tensor,
    mov: Tensor,
    max_shift: float | None = None,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> tuple[Tensor, Tensor]:
    """Global sub-pixel displacement of ``mov`` relative to ``ref`` (``mov(p) ~ ref(p - d)``).

    Args:
        ref: (N, H, W) reference luma in [0, 1].
        mov: (N, H, W) luma of the moved frames, same shape.
        max_shift: largest displacement searched per axis, in pixels (None: up to half the frame).
        max_size: longest side of the downscaled luma the estimate runs on (see the module docstring).
        min_confidence: confidence in [0, 1] below which the displacement is exactly zero.

    Returns:
        displacement (N, 2) (dy, dx) in pixels and confidence (N,) in [0, 1]; float32 (float64 for float64
        input) on the input's device. Never NaN: flat, constant, tiny (< 8 px) or unrelated frames give (0, 0)
        with confidence 0.
    """
    if ref.dim() != 3 or ref.shape != mov.shape:
        raise ValueError(
            f"ref and mov must both have shape (N, H, W), got {tuple(ref.shape)} and {tuple(mov.shape)}; "
            "convert RGB with rgb_to_luma"
        )
    return correlate_spectra(luma_spectrum(ref, max_size), luma_spectrum(mov, max_size), max_shift, min_confidence)


def pair_displacements(
    frames: Tensor,
    *,
    max_shift: float | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> tuple[Tensor, Tensor]:
    """Displacement of every frame relative to the previous one (each frame's spectrum computed once).

    Args:
        frames: (B, T, 3, H, W) RGB in [0, 1].
        max_shift: largest displacement searched per axis, in pixels (None: up to half the frame).
        max_size: longest side of the downscaled luma.
        min_confidence: confidence below which a pair's displacement is exactly zero.

    Returns:
        displacement (B, T-1, 2) (dy, dx) of frame t+1 relative to frame t, and confidence (B, T-1) in [0, 1].
    """
    _check_rgb(frames, "frames", 5, "(B, T, 3, H, W)")
    b, t = frames.shape[:2]
    dtype = _working_dtype(frames.dtype)
    if t < 2:
        return frames.new_zeros(b, 0, 2, dtype=dtype), frames.new_zeros(b, 0, dtype=dtype)
    spec = frames_spectrum(frames.flatten(0, 1), max_size)  # (B*T, h, w2)
    grid = spec.spectrum.unflatten(0, (b, t))  # (B, T, h, w2)
    image = spec.image.unflatten(0, (b, t))  # (B, T, h, w)
    ok = spec.textured.unflatten(0, (b, t))  # (B, T)

    def part(sl: slice) -> FrameSpectrum:
        return dataclasses.replace(
            spec, spectrum=grid[:, sl].flatten(0, 1), image=image[:, sl].flatten(0, 1), textured=ok[:, sl].flatten()
        )

    disp, conf = correlate_spectra(part(slice(0, t - 1)), part(slice(1, t)), max_shift, min_confidence)
    return disp.unflatten(0, (b, t - 1)), conf.unflatten(0, (b, t - 1))  # (B, T-1, 2), (B, T-1)


def displacements_to_centre(pair: Tensor, centre: int) -> Tensor:
    """Accumulate consecutive-pair displacements into displacements relative to the centre frame.

    Args:
        pair: (B, T-1, 2) displacement of frame t+1 relative to frame t.
        centre: index of the reference frame, 0 <= centre < T.

    Returns:
        (B, T, 2) displacement of every frame t relative to frame ``centre`` (exactly zero at the centre):
        ``sum(pair[centre:t])`` for t > centre and ``-sum(pair[t:centre])`` for t < centre.
    """
    if pair.dim() != 3 or pair.shape[-1] != 2:
        raise ValueError(f"pair must have shape (B, T-1, 2), got {tuple(pair.shape)}")
    t = pair.shape[1] + 1
    if not 0 <= centre < t:
        raise ValueError(f"centre must be in [0, {t - 1}] for {t} frames, got {centre}")
    from_first = torch.cat([pair.new_zeros(pair.shape[0], 1, 2), pair.cumsum(1)], 1)  # (B, T, 2) relative to frame 0
    return from_first - from_first[:, centre : centre + 1]


# --------------------------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------------------------
def _split(v: float, n: int) -> tuple[int, float]:
    """Shift ``v`` = k + a with integer k clamped to [-n, n] and 0 <= a < 1 (a = 0 beyond the clamp)."""
    k = math.floor(v)
    a = v - k
    if k >= n or k < -n:
        return max(-n, min(n, k)), 0.0
    return k, a


def _shift_axis_into(out: Tensor, x: Tensor, v: float, dim: int) -> None:
    """Write ``out(p) = x(p - v)`` along ``dim`` (linear interpolation, edge values replicated); no autograd."""
    n = x.shape[dim]
    k, a = _split(v, n)
    # interior outputs read x(p - k) and (if a > 0) x(p - k - 1), both inside [0, n - 1]
    lo = min(max(k + (1 if a else 0), 0), n)
    hi = min(max(n + k, 0), n)
    if hi > lo:
        src = x.narrow(dim, lo - k, hi - lo)
        if a:
            torch.lerp(src, x.narrow(dim, lo - k - 1, hi - lo), a, out=out.narrow(dim, lo, hi - lo))
        else:
            out.narrow(dim, lo, hi - lo).copy_(src)
    if lo > 0:  # before the interior every source index is clamped to 0
        head = out.narrow(dim, 0, lo)
        head.copy_(x.narrow(dim, 0, 1).expand_as(head))
    if hi < n:  # after it, to n - 1
        tail = out.narrow(dim, hi, n - hi)
        tail.copy_(x.narrow(dim, n - 1, 1).expand_as(tail))


def _shift_axis(x: Tensor, v: float, dim: int) -> Tensor:
    """Differentiable ``out(p) = x(p - v)`` along ``dim`` (the autograd twin of :func:`_shift_axis_into`)."""
    n = x.shape[dim]
    k, a = _split(v, n)
    if k == 0 and a == 0:
        return x
    lo = min(max(k + (1 if a else 0), 0), n)
    hi = min(max(n + k, 0), n)
    parts = []
    if lo > 0:
        first = x.narrow(dim, 0, 1)
        parts.append(first.expand(*[lo if d == dim % x.dim() else -1 for d in range(x.dim())]))
    if hi > lo:
        src = x.narrow(dim, lo - k, hi - lo)
        parts.append(torch.lerp(src, x.narrow(dim, lo - k - 1, hi - lo), a) if a else src)
    if hi < n:
        last = x.narrow(dim, n - 1, 1)
        parts.append(last.expand(*[n - hi if d == dim % x.dim() else -1 for d in range(x.dim())]))
    return torch.cat(parts, dim)


def translate(x: Tensor, shift: Tensor) -> Tensor:
    """Translate images by sub-pixel amounts: ``out(p) = x(p - shift)`` (content moves by ``+shift``).

    Separable linear interpolation (bilinear overall) with edge pixels replicated, so no black borders appear.
    Zero and integer shifts are exact copies. Differentiable with respect to ``x`` (not ``shift``).

    Args:
        x: (N, C, H, W) images or feature maps, any floating dtype and device.
        shift: (N, 2) (dy, dx) in pixels.

    Returns:
        (N, C, H, W) translated ``x``, same dtype and device.
    """
    if x.dim() != 4:
        raise ValueError(f"translate expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    if shift.shape != (x.shape[0], 2):
        raise ValueError(f"shift must have shape (N, 2) = ({x.shape[0]}, 2) (dy, dx), got {tuple(shift.shape)}")
    values = shift.detach().to("cpu", torch.float64).tolist()  # one device sync for all N
    if not all(math.isfinite(v) for row in values for v in row):
        raise ValueError(f"shift must be finite, got {values}")
    if torch.is_grad_enabled() and x.requires_grad:
        rows = [_shift_axis(_shift_axis(x[i], dy, -2), dx, -1) for i, (dy, dx) in enumerate(values)]
        return torch.stack(rows) if rows else x.clone()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    scratch = torch.empty_like(out[0]) if len(out) else out
    for i, (dy, dx) in enumerate(values):
        translate_into(out[i], x[i], dy, dx, scratch)
    return out


def translate_into(out: Tensor, x: Tensor, dy: float, dx: float, scratch: Tensor | None = None) -> None:
    """Write one image translated by (dy, dx) pixels into ``out``: ``out(p) = x(p - (dy, dx))`` (no autograd).

    The per-image step of :func:`translate` (separable linear interpolation, edge pixels replicated; a zero shift
    along an axis is an exact copy along it), for callers that assemble a batch themselves.

    Args:
        out: (C, H, W) destination, any memory layout; must not overlap ``x``.
        x: (C, H, W) source.
        dy: shift along H (finite).
        dx: shift along W (finite).
        scratch: optional (C, H, W) buffer for the intermediate of a shift along both axes.
    """
    if dy == 0 and dx == 0:
        out.copy_(x)
    elif dy == 0:
        _shift_axis_into(out, x, dx, -1)
    elif dx == 0:
        _shift_axis_into(out, x, dy, -2)
    else:
        tmp = scratch if scratch is not None else torch.empty_like(out, memory_format=torch.contiguous_format)
        _shift_axis_into(tmp, x, dy, -2)
        _shift_axis_into(out, tmp, dx, -1)


def _axis_sources(values: list[float], n: int, device: torch.device) -> tuple[Tensor, Tensor, list[float]]:
    """Per image: the source indices (M, n) of ``out(p) = lerp(x(start), x(end), a)`` along one axis, and ``a``.

    ``start = clamp(p - k)``, ``end = clamp(p - k - 1)`` with ``v = k + a`` split as :func:`_shift_axis_into` does, so
    interior, edge-replicated and zero-weight outputs are those of the per-image loop.
    """
    split = [_split(v, n) for v in values]
    k = torch.tensor([s[0] for s in split], dtype=torch.int64)[:, None]  # (M, 1)
    p = torch.arange(n, dtype=torch.int64)[None]  # (1, n)
    both = torch.stack([(p - k).clamp(0, n - 1), (p - k - 1).clamp(0, n - 1)])  # (2, M, n)
    both = both.pin_memory() if device.type == "cuda" else both
    both = both.to(device, non_blocking=True)
    return both[0], both[1], [s[1] for s in split]


def translate_batch_into(out: Tensor, x: Tensor, shifts: Sequence[Sequence[float]]) -> None:
    """:func:`translate_into` of M images at once, with a fixed number of kernels (no per-image calls).

    For GPUs, where one small call per image and axis is bound by launches, not arithmetic: per axis along which any
    image moves, two gathers and one ``lerp`` for the whole batch (one gather for whole-pixel shifts; a static batch
    is one copy). Equals the per-image loop exactly in float32 (a zero fraction selects the
    start exactly; edge indices are clamped as the loop replicates them); in half precision the fractions are
    rounded to the tensor's dtype. No autograd.

    Args:
        out: (M, C, H, W) destination; must not overlap ``x``.
        x: (M, C, H, W) source.
        shifts: M (dy, dx) pairs in pixels, finite.
    """
    m = x.shape[0]
    if m == 0:
        return
    if len(shifts) != m:
        raise ValueError(f"shifts must hold one (dy, dx) per image: {m} images, {len(shifts)} shifts")
    ys, xs = [s[0] for s in shifts], [s[1] for s in shifts]
    moved_y, moved_x = any(v != 0 for v in ys), any(v != 0 for v in xs)
    if not moved_y and not moved_x:  # a static camera: a copy, as the loop does
        out.copy_(x)
        return
    if moved_y and moved_x:
        tmp = torch.empty_like(x, memory_format=torch.contiguous_format)
        _shift_batch_axis(tmp, x, ys, 2)
        _shift_batch_axis(out, tmp, xs, 3)
    else:
        _shift_batch_axis(out, x, ys if moved_y else xs, 2 if moved_y else 3)


def _shift_batch_axis(out: Tensor, x: Tensor, values: list[float], dim: int) -> None:
    """``out(p) = x(p - v)`` along ``dim`` (2 or 3) with one ``v`` per image (see :func:`translate_batch_into`)."""
    m, c, h, w = x.shape
    size = x.shape[dim]
    start, end, fractions = _axis_sources(values, size, x.device)
    shape = (m, 1, size, 1) if dim == 2 else (m, 1, 1, size)
    full = (m, c, size, w) if dim == 2 else (m, c, h, size)
    first = x.gather(dim, start.view(shape).expand(full))
    if not any(fractions):  # whole-pixel shifts: the gathered start is the result
        out.copy_(first)
        return
    a = torch.tensor(fractions, dtype=torch.float32).to(x.dtype)
    a = (a.pin_memory() if x.device.type == "cuda" else a).to(x.device, non_blocking=True).view(m, 1, 1, 1)
    torch.lerp(first, x.gather(dim, end.view(shape).expand(full)), a, out=out)


def centre_shifts(disp: Tensor, scale: float = 1.0) -> Tensor:
    """The :func:`translate` shifts that :func:`align_to_centre` applies: ``-disp * scale``, flattened to (B*T, 2).

    Args:
        disp: (B, T, 2) displacement of each frame relative to the centre frame, in frame pixels.
        scale: resolution of the translated maps relative to the frames.
    """
    return -disp.flatten(0, 1) * scale


def align_to_centre(x: Tensor, disp: Tensor, scale: float = 1.0) -> Tensor:
    """Translate every frame (or per-frame feature map) of a window onto the centre frame.

    Args:
        x: (B, T, C, h, w) frames or features; may be at a lower resolution than the frames the displacements
            were measured on.
        disp: (B, T, 2) displacement of each frame relative to the centre frame, in frame pixels
            (:func:`displacements_to_centre`); zero at the centre.
        scale: h / H, the resolution of ``x`` relative to the frames (displacements are multiplied by it).

    Returns:
        (B, T, C, h, w): frame t translated by ``-disp[:, t] * scale`` (frames with zero displacement, the centre
        among them, are exact copies). Differentiable with respect to ``x``.
    """
    if x.dim() != 5:
        raise ValueError(f"align_to_centre expects x of shape (B, T, C, h, w), got {tuple(x.shape)}")
    if disp.shape != (*x.shape[:2], 2):
        raise ValueError(f"disp must have shape (B, T, 2) = {(*x.shape[:2], 2)}, got {tuple(disp.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0 (feature height / frame height), got {scale}")
    return translate(x.flatten(0, 1), centre_shifts(disp, scale)).unflatten(0, x.shape[:2])  # (B, T, C, h, w)


# --------------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------------
class GlobalMotion(nn.Module):
    """Displacements of a window's frames relative to its centre frame (no parameters, no gradients).

    Args:
        enabled: when False, :meth:`forward` returns zeros (motion compensation switched off).
        max_shift: largest per-pair displacement searched, in pixels (None: up to half the frame).
        max_size: longest side of the downscaled luma the estimate runs on.
        min_confidence: confidence below which a pair's displacement is zero.
    """

    def __init__(
        self,
        enabled: bool = True,
        max_shift: float | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        super().__init__()
        self.enabled = enabled
        self.max_shift = max_shift
        self.max_size = max_size
        self.min_confidence = min_confidence

    def forward(self, frames: Tensor) -> Tensor:
        """Estimate centre displacements.

        Args:
            frames: (B, T, 3, H, W) RGB in [0, 1].

        Returns:
            (B, T, 2) (dy, dx) of every frame relative to frame T // 2, in pixels (float32, float64 for float64
            input), zeros when disabled.
        """
        _check_rgb(frames, "frames", 5, "(B, T, 3, H, W)")
        b, t = frames.shape[:2]
        if not self.enabled or t < 2:
            return frames.new_zeros(b, t, 2, dtype=_working_dtype(frames.dtype))
        with torch.no_grad():
            pair, _ = pair_displacements(
                frames,
                max_shift=self.max_shift,
                max_size=self.max_size,
                min_confidence=self.min_confidence,
            )
            return displacements_to_centre(pair, t // 2)

    def extra_repr(self) -> str:
        """Settings shown by ``print(module)``."""
        return f"enabled={self.enabled}, max_shift={self.max_shift}, max_size={self.max_size}"


class StreamingMotion:
    """Frame-by-frame displacement estimation for streaming inference.

    Each pushed frame's downscaled spectrum is computed once and kept for the next pair, so the per-frame cost is one
    spectrum plus one correlation.

    Args:
        max_shift: largest displacement searched per axis, in pixels (None: up to half the frame).
        max_size: longest side of the downscaled luma.
        min_confidence: confidence below which a displacement is zero.
    """

    def __init__(
        self,
        max_shift: float | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.max_shift = max_shift
        self.max_size = max_size
        self.min_confidence = min_confidence
        self._previous: FrameSpectrum | None = None
        self.last_confidence: Tensor | None = None
        """(B,) confidence of the latest push (zeros for the first frame)."""

    def reset(self) -> None:
        """Forget the previous frame (start of a new video or shot)."""
        self._previous = None
        self.last_confidence = None

    def push(self, frame: Tensor) -> Tensor:
        """Add the next frame.

        Args:
            frame: (B, 3, H, W) RGB in [0, 1]; the same B, H, W for every push until :meth:`reset`.

        Returns:
            (B, 2) (dy, dx) displacement of this frame relative to the previous one (zeros for the first frame).
        """
        _check_rgb(frame, "frame", 4, "(B, 3, H, W)")
        current = frames_spectrum(frame, self.max_size)
        previous, self._previous = self._previous, current
        if previous is None:
            dtype = _working_dtype(frame.dtype)
            self.last_confidence = frame.new_zeros(frame.shape[0], dtype=dtype)
            return frame.new_zeros(frame.shape[0], 2, dtype=dtype)
        if previous.spectrum.shape != current.spectrum.shape or previous.full_size != current.full_size:
            self._previous = previous
            raise ValueError(
                f"frame of shape {tuple(frame.shape)} does not match the previous frames "
                f"(batch {previous.spectrum.shape[0]}, size {previous.full_size}); call reset() between videos"
            )
        disp, self.last_confidence = correlate_spectra(previous, current, self.max_shift, self.min_confidence)
        return disp

    def push_sequence(self, frames: Tensor) -> Tensor:
        """Add consecutive frames of one stream at once (one spectrum batch, one correlation batch).

        Equals :meth:`push` of each frame in turn (up to the float rounding of batched FFTs) for a stream of one
        video (batch 1 per push); on a GPU it replaces 2N small calls, and N host synchronisations of a caller that
        reads every displacement, by two batched calls.

        Args:
            frames: (N, 3, H, W) consecutive RGB frames in [0, 1] of one stream.

        Returns:
            (N, 2) (dy, dx) displacement of each frame relative to the one before it (the previous push for the
            first; zeros for the very first frame of the stream).
        """
        _check_rgb(frames, "frames", 4, "(N, 3, H, W)")
        current = frames_spectrum(frames, self.max_size)
        previous, n = self._previous, frames.shape[0]
        if previous is not None and (previous.spectrum.shape[0] != 1 or previous.full_size != current.full_size):
            raise ValueError(
                f"frames of shape {tuple(frames.shape)} do not continue the previous frames "
                f"(batch {previous.spectrum.shape[0]}, size {previous.full_size}); call reset() between videos"
            )
        dtype = _working_dtype(frames.dtype)
        disp = frames.new_zeros(n, 2, dtype=dtype)
        conf = frames.new_zeros(n, dtype=dtype)
        first = 0 if previous is not None else 1  # the first frame of the stream has nothing to pair with
        if first < n:
            ref = current.rows(slice(0, n - 1))  # each frame's predecessor: the previous push's last, then these
            if previous is not None:
                ref = previous.followed_by(ref)
            mov = current.rows(slice(first, n))
            disp[first:], conf[first:] = correlate_spectra(ref, mov, self.max_shift, self.min_confidence)
        self._previous = current.rows(slice(n - 1, n))
        self.last_confidence = conf[n - 1 :]
        return disp
