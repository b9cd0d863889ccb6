"""Seeded synthetic camera motion for turning stills and static-camera videos into moving-camera clips.

A :class:`CameraPath` draws one clip's motion from a :class:`CameraMotion` (pan velocity, zoom and
rotation rates, hand-held jitter) and turns it into per-frame affine maps from output pixels to source
pixels. :func:`apply_camera_path` resamples a larger source (a still or a clip) through those maps with
Keys bicubic interpolation (a = -0.5, third-order accurate), after checking that the source is large
enough that no output pixel ever reads outside it (no black or smeared borders).

Conventions: pixel ``(x, y)`` is column ``x``, row ``y``, pixel centres at integers. The camera *moves*
by ``+d`` source pixels, so scene content moves by about ``-d`` in the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CAMERA_PRESETS",
    "MIXED_WEIGHTS",
    "CameraMotion",
    "CameraPath",
    "apply_camera_path",
    "content_shifts",
    "get_camera_preset",
]


@dataclass(frozen=True)
class CameraMotion:
    """Distribution of one clip's camera motion; each :class:`CameraPath` draws its own values from it.

    Attributes:
        pan_speed: (min, max) camera translation speed in source pixels per frame (sub-pixel values are
            fine); the clip's speed is drawn uniformly from this range and held constant.
        pan_direction_spread: Largest angle (degrees) of the pan direction away from horizontal; the
            direction is uniform within +-spread around left or right (90 allows any direction).
        zoom_rate: Largest zoom rate in percent per frame; the clip's rate is uniform in +-zoom_rate
            (positive zooms in).
        rotation_rate: Largest rotation rate in degrees per frame; the clip's rate is uniform in
            +-rotation_rate.
        jitter: Hand-held jitter: standard deviation (source pixels) of a smooth random offset added to
            the translation, per axis.
        jitter_smoothness: Correlation time of the jitter in frames (> 0); larger is smoother.
    """

    pan_speed: tuple[float, float] = (0.0, 0.0)
    pan_direction_spread: float = 20.0
    zoom_rate: float = 0.0
    rotation_rate: float = 0.0
    jitter: float = 0.0
    jitter_smoothness: float = 3.0

    def __post_init__(self) -> None:
        if len(self.pan_speed) != 2 or not 0 <= self.pan_speed[0] <= self.pan_speed[1] < math.inf:
            raise ValueError(f"CameraMotion.pan_speed must be (min, max) with 0 <= min <= max, got {self.pan_speed!r}")
        if not 0 <= self.pan_direction_spread <= 90:
            raise ValueError(
                f"CameraMotion.pan_direction_spread must be in [0, 90] degrees, got {self.pan_direction_spread!r}"
            )
        if not 0 <= self.zoom_rate < 10:
            raise ValueError(f"CameraMotion.zoom_rate must be in [0, 10) percent per frame, got {self.zoom_rate!r}")
        if not 0 <= self.rotation_rate < 10:
            raise ValueError(
                f"CameraMotion.rotation_rate must be in [0, 10) degrees per frame, got {self.rotation_rate!r}"
            )
        if not 0 <= self.jitter < math.inf:
            raise ValueError(f"CameraMotion.jitter must be a finite number >= 0 pixels, got {self.jitter!r}")
        if not self.jitter_smoothness > 0:
            raise ValueError(f"CameraMotion.jitter_smoothness must be > 0 frames, got {self.jitter_smoothness!r}")


CAMERA_PRESETS: dict[str, CameraMotion] = {
    "static": CameraMotion(),
    # A deliberate pan as filmed on a tripod or a steady hand: 0.5-6 px/frame, mostly horizontal.
    "pan": CameraMotion(pan_speed=(0.5, 6.0), pan_direction_spread=25.0, zoom_rate=0.1, rotation_rate=0.03),
    # Hand-held: slow drift, slow zoom and roll, smooth shake.
    "handheld": CameraMotion(
        pan_speed=(0.0, 2.0),
        pan_direction_spread=90.0,
        zoom_rate=0.3,
        rotation_rate=0.1,
        jitter=1.5,
        jitter_smoothness=3.0,
    ),
}

#: Probabilities with which the ``mixed`` preset picks a preset per clip (mostly moving).
MIXED_WEIGHTS: dict[str, float] = {"static": 0.15, "pan": 0.45, "handheld": 0.4}


def get_camera_preset(name: str) -> CameraMotion:
    """Return the camera motion preset called ``name`` (``static``, ``pan`` or ``handheld``).

    ``mixed`` is not a single motion; pass the name ``"mixed"`` to :class:`CameraPath` instead.

    Args:
        name: Preset name.

    Returns:
        The preset.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the valid names.
    """
    if name not in CAMERA_PRESETS:
        hint = " ('mixed' is drawn per clip: pass it to CameraPath)" if name == "mixed" else ""
        raise ValueError(f"unknown camera preset {name!r}; choose one of {sorted(CAMERA_PRESETS)}{hint}")
    return CAMERA_PRESETS[name]


class CameraPath:
    """One clip's seeded camera trajectory.

    Args:
        motion: A :class:`CameraMotion`, or a preset name: ``static``, ``pan``, ``handheld``, or ``mixed``
            (one of the others drawn with the seed, see ``MIXED_WEIGHTS``).
        seed: Seed of all draws (preset choice, speed, direction, rates, jitter).

    Attributes:
        motion: The motion distribution used (the drawn one for ``mixed``).
        preset: The preset name used, or ``None`` for a custom motion.
        velocity: (vx, vy) camera pan in source pixels per frame.
        zoom: Zoom factor per frame (1.0 = none; 1.003 zooms in by 0.3 % per frame).
        rotation: Rotation in degrees per frame.

    Raises:
        ValueError: If ``motion`` is an unknown preset name.
        TypeError: If ``motion`` is neither a CameraMotion nor a string.
    """

    def __init__(self, motion: CameraMotion | str = "mixed", seed: int = 0) -> None:
        self.seed = int(seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xCA3]))
        if isinstance(motion, str):
            if motion == "mixed":
                names = list(MIXED_WEIGHTS)
                probs = np.array([MIXED_WEIGHTS[n] for n in names])
                motion = names[int(rng.choice(len(names), p=probs / probs.sum()))]
            self.preset: str | None = motion
            motion = get_camera_preset(motion)
        elif isinstance(motion, CameraMotion):
            self.preset = None
        else:
            raise TypeError(f"motion must be a CameraMotion or a preset name, got {type(motion).__name__}")
        self.motion = motion
        speed = rng.uniform(*motion.pan_speed)
        spread = math.radians(motion.pan_direction_spread)
        direction = rng.uniform(-spread, spread) + (math.pi if rng.random() < 0.5 else 0.0)
        self.velocity = (speed * math.cos(direction), speed * math.sin(direction))
        self.zoom = 1.0 + rng.uniform(-1.0, 1.0) * motion.zoom_rate / 100.0
        self.rotation = rng.uniform(-1.0, 1.0) * motion.rotation_rate
        self._jitter_seed = int(rng.integers(0, 2**63 - 1))

    def _jitter(self, num_frames: int) -> np.ndarray:
        """Smooth stationary jitter (an Ornstein-Uhlenbeck process), (T, 2) source pixels."""
        out = np.zeros((num_frames, 2))
        amp = self.motion.jitter
        if amp == 0 or num_frames == 0:
            return out
        rng = np.random.default_rng(self._jitter_seed)
        rho = math.exp(-1.0 / self.motion.jitter_smoothness)
        noise = rng.standard_normal((num_frames, 2))
        out[0] = amp * noise[0]
        for t in range(1, num_frames):
            out[t] = rho * out[t - 1] + amp * math.sqrt(1.0 - rho * rho) * noise[t]
        return out

    def transforms(self, num_frames: int) -> np.ndarray:
        """Per-frame affine maps from output pixel coordinates to source pixel coordinates.

        Both sides are relative to the image centres (pixel ``(x, y)`` of a ``w`` wide, ``h`` high image is
        ``(x - (w - 1) / 2, y - (h - 1) / 2)``), so the maps do not depend on either size: the camera
        rotates and zooms about the frame centre, and frame ``t`` looks at the source around its centre
        plus ``offset_t`` (pan plus jitter), with the offsets centred over the clip so the trajectory uses
        the source's margin symmetrically. Zoom and rotation are 0 at the clip's middle frame.

        Args:
            num_frames: Number of frames T (>= 1).

        Returns:
            float64 (T, 2, 3) matrices ``A_t`` with ``[x_s, y_s] = A_t @ [x_o, y_o, 1]`` (centre-relative).

        Raises:
            ValueError: If ``num_frames`` < 1.
        """
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        t = np.arange(num_frames, dtype=np.float64)
        offset = t[:, None] * np.asarray(self.velocity)[None, :] + self._jitter(num_frames)  # (T, 2)
        offset -= (offset.min(axis=0) + offset.max(axis=0)) / 2.0
        mid = (num_frames - 1) / 2.0
        scale = self.zoom ** (t - mid)  # magnification relative to the middle frame
        theta = np.radians(self.rotation * (t - mid))
        cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
        mats = np.empty((num_frames, 2, 3))
        mats[:, 0, 0], mats[:, 0, 1], mats[:, 0, 2] = cos, -sin, offset[:, 0]
        mats[:, 1, 0], mats[:, 1, 1], mats[:, 1, 2] = sin, cos, offset[:, 1]
        return mats

    def required_source_size(self, num_frames: int, out_size: tuple[int, int]) -> tuple[int, int]:
        """Smallest source (height, width) this path can resample ``out_size`` frames from, with no border.

        Args:
            num_frames: Number of frames T.
            out_size: Output (height, width).

        Returns:
            (height, width) of the smallest valid source.
        """
        return _required_size(self.transforms(num_frames), out_size)


def _required_size(mats: np.ndarray, out_size: tuple[int, int]) -> tuple[int, int]:
    """Smallest source size for centre-relative maps ``mats`` (T, 2, 3) with bicubic support."""
    hx, hy = (out_size[1] - 1) / 2.0, (out_size[0] - 1) / 2.0
    corners = np.array([[-hx, -hy, 1], [hx, -hy, 1], [-hx, hy, 1], [hx, hy, 1]], dtype=np.float64)  # (4, 3)
    pts = np.einsum("tij,kj->tki", mats, corners)  # (T, 4, 2) centre-relative source positions
    half = np.abs(pts).max(axis=(0, 1)) - 1e-6  # (2,) x, y
    # Bicubic reads pixels floor(p) - 1 .. floor(p) + 2, so every position p must satisfy 1 <= p <= n - 2;
    # with the source centre at (n - 1) / 2 that means n >= 2 * half + 3.
    need = np.maximum(np.ceil(2.0 * half + 3.0 + 1e-9).astype(int), 4)
    return int(need[1]), int(need[0])


def content_shifts(transforms: np.ndarray) -> np.ndarray:
    """Content motion between consecutive output frames, measured at the frame centre.

    Args:
        transforms: (T, 2, 3) centre-relative maps from :meth:`CameraPath.transforms`.

    Returns:
        float64 (T, 2): ``(dx, dy)`` output pixels that the content at the frame centre moved from frame
        ``t - 1`` to frame ``t``; row 0 is zero. For a pure pan this is minus the camera velocity. (Suitable
        as ``camera_shifts`` for :meth:`estinet.data.rain.RainRenderer.render_clip`.)
    """
    shifts = np.zeros((transforms.shape[0], 2))
    for t in range(1, transforms.shape[0]):
        seen = transforms[t - 1, :, 2]  # source point at the centre of frame t - 1
        shifts[t] = np.linalg.solve(transforms[t, :, :2], seen - transforms[t, :, 2])  # where frame t shows it
    return shifts


def _keys_weights(frac: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Keys cubic-convolution weights (a = -0.5) of the taps at offsets -1, 0, 1, 2 for fractions in [0, 1).

    a = -0.5 is the only Keys kernel that is third-order accurate (it reproduces quadratics), so a
    sub-pixel shift moves content by the intended amount; torch's ``grid_sample`` bicubic uses a = -0.75,
    which measurably mis-shifts fine texture.

    Args:
        frac: Fractional positions, any shape, values in [0, 1).

    Returns:
        Four tensors of the same shape whose sum is 1.
    """
    t = frac
    t2 = t * t
    return (
        (-0.5 * t + 1.0) * t2 - 0.5 * t,
        (1.5 * t - 2.5) * t2 + 1.0,
        (-1.5 * t + 2.0) * t2 + 0.5 * t,
        (0.5 * t - 0.5) * t2,
    )


def _bicubic_sample(src: torch.Tensor, xs: np.ndarray, ys: np.ndarray) -> torch.Tensor:
    """Sample images at given positions with Keys bicubic interpolation (a = -0.5).

    Every position must satisfy ``1 <= x <= W0 - 2`` and ``1 <= y <= H0 - 2`` (checked by the caller), so
    all 16 taps lie inside the image and each tap is a constant offset from the anchor pixel.

    Args:
        src: (N, C, H0, W0) float32 images, one per frame, or (1, C, H0, W0) shared by all frames; H0, W0 >= 4.
        xs: (N, h, w) float64 source columns (pixel centres at integers).
        ys: (N, h, w) float64 source rows.

    Returns:
        (N, C, h, w) float32 samples.
    """
    n, (h, w) = xs.shape[0], xs.shape[1:]
    c, h0, w0 = src.shape[1:]
    fx = np.clip(np.floor(xs), 1, w0 - 3)  # anchor; x == W0 - 2 gets anchor W0 - 3 with fraction 1
    fy = np.clip(np.floor(ys), 1, h0 - 3)
    wx = _keys_weights(torch.from_numpy((xs - fx).astype(np.float32).ravel()))  # 4 x (N * h * w,)
    wy = _keys_weights(torch.from_numpy((ys - fy).astype(np.float32).ravel()))
    base = fy.astype(np.int64) * w0 + fx.astype(np.int64)  # (N, h, w) flat anchor index within a frame
    if src.shape[0] > 1:
        base += (np.arange(n, dtype=np.int64) * (h0 * w0))[:, None, None]  # frame k's pixels follow frame k - 1's
    base_t = torch.from_numpy(base.ravel())
    flat = src.permute(1, 0, 2, 3).reshape(c, -1)  # (C, frames * H0 * W0)
    out = torch.zeros((c, base_t.numel()), dtype=torch.float32)
    acc = torch.empty_like(out)
    for j, row_w in zip((-1, 0, 1, 2), wy, strict=True):
        acc.zero_()
        for i, col_w in zip((-1, 0, 1, 2), wx, strict=True):
            acc.addcmul_(flat.index_select(1, base_t + (j * w0 + i)), col_w)
        out.addcmul_(acc, row_w)
    return out.reshape(c, n, h, w).permute(1, 0, 2, 3)  # (N, C, h, w)


def apply_camera_path(
    source: np.ndarray,
    path: CameraPath | np.ndarray,
    out_size: tuple[int, int],
    num_frames: int | None = None,
) -> np.ndarray:
    """Film a still image or a clip with a moving camera: bicubic resampling through per-frame affine maps.

    Args:
        source: A still (H0, W0, 3) or a clip (T, H0, W0, 3); float in [0, 1] or uint8. It must be larger
            than ``out_size`` by the path's reach (see :meth:`CameraPath.required_source_size`).
        path: A :class:`CameraPath`, or (T, 2, 3) centre-relative maps from :meth:`CameraPath.transforms`.
        out_size: Output (h, w).
        num_frames: Number of frames T for a still (required then); for a clip it defaults to the clip's
            length and must equal it if given.

    Returns:
        (T, h, w, 3) clip, float32 in [0, 1] for float input (bicubic overshoot clipped), uint8 for uint8
        input.

    Raises:
        ValueError: If shapes disagree, ``num_frames`` is missing for a still, or the source is too small
            for ``out_size`` along this path (the message names both sizes and the size needed).
    """
    src = np.asarray(source)
    if src.ndim == 3:
        if src.shape[-1] != 3:
            raise ValueError(f"a still source must be (H0, W0, 3), got shape {src.shape}")
        if num_frames is None and not isinstance(path, np.ndarray):
            raise ValueError("num_frames is required when the source is a still image (H0, W0, 3)")
        still = True
    elif src.ndim == 4 and src.shape[-1] == 3:
        if num_frames is not None and num_frames != src.shape[0]:
            raise ValueError(f"num_frames={num_frames} disagrees with the clip's {src.shape[0]} frames; leave it None")
        num_frames = src.shape[0]
        still = False
    else:
        raise ValueError(f"source must be (H0, W0, 3) or (T, H0, W0, 3), got shape {src.shape}")
    h, w = int(out_size[0]), int(out_size[1])
    if h < 1 or w < 1:
        raise ValueError(f"out_size must be positive (h, w), got {out_size}")
    if isinstance(path, CameraPath):
        mats = path.transforms(int(num_frames))  # type: ignore[arg-type]
    else:
        mats = np.asarray(path, dtype=np.float64)
        if mats.ndim != 3 or mats.shape[1:] != (2, 3) or (num_frames is not None and mats.shape[0] != num_frames):
            raise ValueError(f"transforms must have shape ({num_frames or 'T'}, 2, 3), got {mats.shape}")
        num_frames = mats.shape[0]
    h0, w0 = src.shape[-3], src.shape[-2]
    need_h, need_w = _required_size(mats, (h, w))
    if h0 < need_h or w0 < need_w:
        raise ValueError(
            f"source of {h0}x{w0} (HxW) is too small for out_size {h}x{w} along this camera path over "
            f"{num_frames} frames: it needs at least {need_h}x{need_w}; use a larger source, a smaller out_size, "
            "fewer frames or a slower camera motion"
        )
    is_uint8 = src.dtype == np.uint8
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs -= (w - 1) / 2.0
    ys -= (h - 1) / 2.0
    grid_out = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # (h, w, 3) centre-relative output pixels
    centre = np.array([(w0 - 1) / 2.0, (h0 - 1) / 2.0])
    out = np.empty((num_frames, h, w, 3), dtype=np.uint8 if is_uint8 else np.float32)

    def to_tensor(frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32)  # (t, H0, W0, 3)
        if is_uint8:
            x = x / 255.0
        return x.permute(0, 3, 1, 2).contiguous()  # (t, 3, H0, W0)

    still_tensor = to_tensor(src[None]) if still else None
    chunk = 8
    for t0 in range(0, num_frames, chunk):
        t1 = min(t0 + chunk, num_frames)
        pos = np.einsum("tij,hwj->thwi", mats[t0:t1], grid_out) + centre  # (t, h, w, 2) source x, y
        inp = still_tensor if still_tensor is not None else to_tensor(src[t0:t1])  # (1 or t, 3, H0, W0)
        res = _bicubic_sample(inp, pos[..., 0], pos[..., 1])  # (t, 3, h, w)
        res = res.clamp_(0.0, 1.0).permute(0, 2, 3, 1)  # (t, h, w, 3)
        out[t0:t1] = torch.round(res * 255.0).to(torch.uint8).numpy() if is_uint8 else res.numpy()
    return out
