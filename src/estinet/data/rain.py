"""Seeded, temporally coherent synthetic rain.

The renderer composites rain over a clean frame ``B`` with the screen-space model

    O = (B * (1 - a) + a * R) * (1 - h) + h * V   (+ sparkle inside ``a``)

where ``a`` (H, W) is the rain opacity built by splatting motion-blurred streaks, ``R`` is the streak
colour, ``h`` a uniform veiling haze and ``V`` the veiling luminance. Frames are float32 (H, W, 3) RGB
in [0, 1].

Rain lives in a few depth layers. Every layer holds a persistent Poisson field of drops that fall by a
fixed per-drop velocity each frame (drops that leave the frame are respawned at the opposite edge), so
consecutive frames are coherent like real rain, not re-sampled noise. Near layers fall faster, so their
streaks (length = fall speed x exposure) are longer; they are also wider, more opaque and blurrier.

Speed: each layer pre-renders a seeded bank of anti-aliased streak sprites (several lengths and angles,
four horizontal sub-pixel phases), stored sparsely; a frame gathers the sprite pixels of all drops into
preallocated buffers and sums them into a persistent canvas with one ``index_add_``. See
``benchmarks/bench_rain.py`` for measured timings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PRESETS",
    "RANDOM_PRESET",
    "RainParams",
    "RainRenderer",
    "frames_to_float",
    "frames_to_uint8",
    "get_preset",
    "preset_names",
    "random_params",
    "synthesize_rain",
]

_PHASES = 4  # horizontal sub-pixel phases per sprite
_SPRITE_CUTOFF = 2e-3  # sprite pixels below this fraction of the sprite peak are dropped


@dataclass(frozen=True)
class RainParams:
    """Physical parameters of a synthetic rain.

    Layer ``i`` of ``num_layers`` sits at relative depth ``z_i``, spaced geometrically over
    ``depth_range`` (nearest first). With ``s_i = depth_range[0] / z_i`` (1 for the nearest layer, smaller
    further away) the layer's quantities are the near-layer values below scaled as follows: fall speed and
    streak length ``* s_i``, streak width ``* s_i`` (at least ``min_width``), opacity ``* s_i **
    opacity_depth_exponent``, blur ``* s_i ** 2`` (the focus is far away), density ``/ s_i **
    density_depth_exponent`` (a far layer sees a larger volume of rain).

    Attributes:
        num_layers: Number of depth layers (>= 1).
        density: Drops per megapixel (of screen area) in the nearest layer; a Poisson mean.
        density_depth_exponent: How density grows with depth (see above); 0 keeps it equal per layer.
        depth_range: Relative depths (near, far) of the nearest and farthest layers, 0 < near <= far.
        fall_speed: Fall speed of the nearest layer in pixels per frame (along the streak direction).
        speed_jitter: Relative standard deviation of a drop's speed (and so its streak length).
        exposure: Exposure time as a fraction of the frame interval in (0, 1]; a streak is the distance a
            drop falls during the exposure, ``fall_speed * exposure`` pixels, plus the drop itself.
        streak_width: Gaussian cross-section standard deviation (pixels) of a near-layer streak.
        min_width: Smallest cross-section standard deviation (pixels) of any layer.
        opacity: Peak opacity (alpha, 0..1) of an in-focus near-layer streak.
        opacity_depth_exponent: Far-layer opacity falls as ``s_i ** opacity_depth_exponent``.
        opacity_jitter: Relative standard deviation of a drop's opacity (brightness variation).
        blur: Defocus blur (Gaussian standard deviation, pixels) of the nearest layer; it spreads a streak
            without adding light, so blurry streaks are wider and fainter.
        taper: Fading of the streak towards its ends, 0 (flat, soft ends only) .. 1 (spindle shaped).
        wind_angle: Angle of the fall direction from vertical in degrees; positive falls to the right.
        angle_jitter: Standard deviation (degrees) of a drop's angle around its layer's angle.
        layer_angle_spread: Each layer's angle is offset by a seeded uniform draw in +-this many degrees
            (several rain directions, as in heavy synthetic sets).
        color: Streak colour R, RGB in [0, 1] (slightly bluish white).
        haze: Veiling haze amount h in [0, 1] (rain accumulation / fog).
        haze_color: Veiling luminance V, RGB in [0, 1].
        sparkle_density: Sparkle specks per megapixel per frame (re-drawn every frame, like sensor-visible
            splashes of light); 0 disables sparkle.
        sparkle_opacity: Peak opacity of a sparkle speck, 0..1.
        size_jitter: Relative spread of drop sizes: each streak variant's width is multiplied by a seeded
            log-normal factor ``exp(size_jitter * N(0, 1))`` (big and small drops in one rain); 0 disables.
        env_gain: Streak radiance from the environment (0 = a constant ``color``). A falling drop refracts light
            from a wide field of view, so its radiance follows the scene's light around it rather than the pixel it
            covers: with ``env_gain > 0`` the streak colour is ``color * clip(env_bias + env_gain * L)`` where ``L``
            is the frame's local mean luminance (a low-pass over about an eighth of the frame). Over a dark
            background a streak then adds much more than over a bright one, as in real footage.
        env_bias: Offset of the environment radiance above (in units of full scale).
        haze_gradient: Depth dependence of the veiling haze, 0..1: the haze of a pixel is ``haze * (1 -
            haze_gradient + haze_gradient * d)`` with ``d`` a seeded, smooth pseudo-depth in [0, 1] that grows
            towards the top of the frame (the far scene); 0 keeps it uniform.
        splash_density: Splashes per megapixel per frame in the lower half of the frame (drops bursting on the
            ground: small crowns of specks that last one frame); 0 disables.
        splash_opacity: Peak opacity of a splash speck, 0..1.
        lens_drops: Mean number (Poisson) of water drops sitting on the lens for a whole clip (each a small,
            sliding, refracting disc that shows a blurred, inverted view of the scene behind it); 0 disables.
        lens_drop_radius: Mean radius of a lens drop in pixels (each drop draws 0.5-1.5x this).
    """

    num_layers: int = 3
    density: float = 300.0
    density_depth_exponent: float = 1.0
    depth_range: tuple[float, float] = (1.0, 4.0)
    fall_speed: float = 24.0
    speed_jitter: float = 0.1
    exposure: float = 1.0
    streak_width: float = 0.8
    min_width: float = 0.3
    opacity: float = 0.35
    opacity_depth_exponent: float = 0.7
    opacity_jitter: float = 0.25
    blur: float = 0.5
    taper: float = 0.5
    wind_angle: float = 8.0
    angle_jitter: float = 2.0
    layer_angle_spread: float = 0.0
    color: tuple[float, float, float] = (0.92, 0.96, 1.0)
    haze: float = 0.0
    haze_color: tuple[float, float, float] = (0.82, 0.85, 0.9)
    sparkle_density: float = 0.0
    sparkle_opacity: float = 0.0
    size_jitter: float = 0.0
    env_gain: float = 0.0
    env_bias: float = 0.0
    haze_gradient: float = 0.0
    splash_density: float = 0.0
    splash_opacity: float = 0.0
    lens_drops: float = 0.0
    lens_drop_radius: float = 12.0

    def __post_init__(self) -> None:
        if not isinstance(self.num_layers, (int, np.integer)) or self.num_layers < 1:
            raise ValueError(f"RainParams.num_layers must be an integer >= 1, got {self.num_layers!r}")
        non_negative = (
            "density",
            "density_depth_exponent",
            "speed_jitter",
            "opacity_depth_exponent",
            "opacity_jitter",
            "blur",
            "angle_jitter",
            "layer_angle_spread",
            "sparkle_density",
            "size_jitter",
            "env_gain",
            "splash_density",
            "lens_drops",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"RainParams.{name} must be a finite number >= 0, got {value!r}")
        for name in ("fall_speed", "streak_width", "min_width", "lens_drop_radius"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"RainParams.{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.exposure <= 1:
            raise ValueError(f"RainParams.exposure must be in (0, 1] (frame-time fraction), got {self.exposure!r}")
        for name in ("opacity", "taper", "haze", "sparkle_opacity", "haze_gradient", "splash_opacity"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"RainParams.{name} must be in [0, 1], got {value!r}")
        if not -1 <= self.env_bias <= 1:
            raise ValueError(f"RainParams.env_bias must be in [-1, 1], got {self.env_bias!r}")
        if not -80 <= self.wind_angle <= 80:
            raise ValueError(f"RainParams.wind_angle must be in [-80, 80] degrees, got {self.wind_angle!r}")
        if len(self.depth_range) != 2 or not 0 < self.depth_range[0] <= self.depth_range[1] < math.inf:
            raise ValueError(f"RainParams.depth_range must be (near, far), 0 < near <= far, got {self.depth_range!r}")
        for name in ("color", "haze_color"):
            value = getattr(self, name)
            if len(value) != 3 or not all(0 <= c <= 1 for c in value):
                raise ValueError(f"RainParams.{name} must be three RGB values in [0, 1], got {value!r}")

    def replace(self, **changes: object) -> RainParams:
        """Return a copy with some fields changed (validated again).

        Args:
            **changes: Field names and their new values.

        Returns:
            The new parameters.

        Raises:
            ValueError: If a name is not a field of RainParams.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown RainParams field(s) {unknown}; valid fields are {sorted(names)}")
        values = {name: getattr(self, name) for name in names}
        values.update(changes)
        return RainParams(**values)  # type: ignore[arg-type]


PRESETS: dict[str, RainParams] = {
    # RainSynLight25-like: fairly sparse, thin, semi-transparent streaks in nearly one direction, no haze.
    "light": RainParams(
        num_layers=3,
        density=500.0,
        density_depth_exponent=1.0,
        depth_range=(1.0, 3.0),
        fall_speed=28.0,
        speed_jitter=0.15,
        exposure=0.9,
        streak_width=0.5,
        min_width=0.3,
        opacity=0.5,
        opacity_depth_exponent=0.8,
        opacity_jitter=0.3,
        blur=0.2,
        taper=0.6,
        wind_angle=6.0,
        angle_jitter=1.5,
    ),
    # RainSynComplex25-like: dense, sharp line streaks at several depths and directions, sparkle, haze.
    "heavy": RainParams(
        num_layers=4,
        density=650.0,
        density_depth_exponent=1.0,
        depth_range=(1.0, 5.0),
        fall_speed=42.0,
        speed_jitter=0.15,
        exposure=1.0,
        streak_width=1.1,
        min_width=0.3,
        opacity=0.6,
        opacity_depth_exponent=0.6,
        opacity_jitter=0.3,
        blur=0.6,
        taper=0.3,
        wind_angle=12.0,
        angle_jitter=3.0,
        layer_angle_spread=12.0,
        haze=0.12,
        sparkle_density=1500.0,
        sparkle_opacity=0.5,
    ),
    # NTURain-like: moderate density of long, semi-transparent, slightly soft streaks over real footage.
    "ntu": RainParams(
        num_layers=4,
        density=450.0,
        density_depth_exponent=1.0,
        depth_range=(1.0, 4.0),
        fall_speed=50.0,
        speed_jitter=0.12,
        exposure=1.0,
        streak_width=0.7,
        min_width=0.35,
        opacity=0.35,
        opacity_depth_exponent=0.6,
        opacity_jitter=0.3,
        blur=0.7,
        taper=0.5,
        wind_angle=-5.0,
        angle_jitter=2.0,
        haze=0.03,
    ),
    # Second generation, matched to real footage (benchmarks/rain_realism.py measures both sides): faint,
    # semi-transparent streaks lit by the environment, sizes and directions mixed, a depth-dependent veil.
    # Real light rain: sparse, faint, long, nearly vertical streaks (NTURain's real sequences).
    "realistic-light": RainParams(
        num_layers=3,
        density=1800.0,
        density_depth_exponent=1.0,
        depth_range=(1.0, 4.0),
        fall_speed=24.0,
        speed_jitter=0.2,
        exposure=0.8,
        streak_width=0.6,
        min_width=0.35,
        opacity=0.4,
        opacity_depth_exponent=0.8,
        opacity_jitter=0.4,
        blur=0.5,
        taper=0.5,
        wind_angle=2.0,
        angle_jitter=3.0,
        layer_angle_spread=4.0,
        size_jitter=0.3,
        env_gain=0.9,
        env_bias=0.3,
        haze=0.03,
        haze_gradient=0.8,
    ),
    # Real heavy rain: about a fifth of the frame covered by thin, faint, wind-slanted streaks, and a veil.
    "realistic-heavy": RainParams(
        num_layers=4,
        density=6000.0,
        density_depth_exponent=1.0,
        depth_range=(1.0, 6.0),
        fall_speed=60.0,
        speed_jitter=0.2,
        exposure=1.0,
        streak_width=0.7,
        min_width=0.3,
        opacity=0.32,
        opacity_depth_exponent=0.6,
        opacity_jitter=0.4,
        blur=0.6,
        taper=0.4,
        wind_angle=25.0,
        angle_jitter=4.0,
        layer_angle_spread=6.0,
        size_jitter=0.35,
        env_gain=0.9,
        env_bias=0.3,
        haze=0.12,
        haze_gradient=0.8,
        splash_density=300.0,
        splash_opacity=0.35,
    ),
    # A downpour as a fast camera sees it (`heavy-still.jpg`): a dense field of short, thin, faint streaks, slanted
    # by wind, over the whole frame, with a veil; each streak is barely visible, together they are a texture.
    "downpour": RainParams(
        num_layers=4,
        density=25000.0,
        density_depth_exponent=0.8,
        depth_range=(1.0, 5.0),
        fall_speed=22.0,
        speed_jitter=0.2,
        exposure=1.0,
        streak_width=0.5,
        min_width=0.3,
        opacity=0.22,
        opacity_depth_exponent=0.5,
        opacity_jitter=0.4,
        blur=0.4,
        taper=0.4,
        wind_angle=28.0,
        angle_jitter=3.0,
        layer_angle_spread=4.0,
        size_jitter=0.3,
        env_gain=0.9,
        env_bias=0.3,
        haze=0.1,
        haze_gradient=0.8,
    ),
    # A storm: denser, longer and more slanted rain, a thick veil, splashes and drops on the lens.
    "storm": RainParams(
        num_layers=5,
        density=10000.0,
        density_depth_exponent=1.0,
        depth_range=(1.0, 8.0),
        fall_speed=75.0,
        speed_jitter=0.25,
        exposure=1.0,
        streak_width=0.8,
        min_width=0.3,
        opacity=0.3,
        opacity_depth_exponent=0.6,
        opacity_jitter=0.4,
        blur=0.8,
        taper=0.4,
        wind_angle=35.0,
        angle_jitter=5.0,
        layer_angle_spread=8.0,
        size_jitter=0.4,
        env_gain=0.9,
        env_bias=0.3,
        haze=0.22,
        haze_gradient=0.7,
        splash_density=800.0,
        splash_opacity=0.4,
        lens_drops=3.0,
        lens_drop_radius=14.0,
    ),
}

RANDOM_PRESET = "random"
"""Name of the preset that draws a fresh :class:`RainParams` per clip from :func:`random_params`."""


def random_params(seed: int) -> RainParams:
    """Draw rain parameters from the whole range the renderer models (the ``random`` preset, for training).

    Every draw is independent per clip: density log-uniform over 100-8000 drops per megapixel (coverage from a few
    percent to about a quarter of the frame and more), wind angle uniform in +-40 degrees, near-layer opacity
    0.08-0.6, fall speed 15-80 px/frame, exposure 0.4-1, widths 0.35-1.6 px, defocus 0-1.2 px, environment light on
    for four clips in five, a depth-dependent veil (up to 0.15) for half of the clips, sparkle, splashes and lens
    drops now and then.

    Args:
        seed: Seed of the draw (the same seed gives the same parameters).

    Returns:
        The drawn parameters.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x8A4D]))
    u = rng.uniform
    env = rng.random() < 0.8
    hazy = rng.random() < 0.5
    sparkle = rng.random() < 0.2
    splash = rng.random() < 0.3
    lens = rng.random() < 0.1
    width = float(u(0.35, 1.6))
    return RainParams(
        num_layers=int(rng.integers(2, 6)),
        density=float(np.exp(u(np.log(100.0), np.log(8000.0)))),
        density_depth_exponent=float(u(0.5, 1.2)),
        depth_range=(1.0, float(u(2.0, 8.0))),
        fall_speed=float(u(15.0, 80.0)),
        speed_jitter=float(u(0.05, 0.3)),
        exposure=float(u(0.4, 1.0)),
        streak_width=width,
        min_width=float(min(width, u(0.25, 0.45))),
        opacity=float(u(0.08, 0.6)),
        opacity_depth_exponent=float(u(0.4, 1.0)),
        opacity_jitter=float(u(0.1, 0.5)),
        blur=float(u(0.0, 1.2)),
        taper=float(u(0.2, 0.7)),
        wind_angle=float(u(-40.0, 40.0)),
        angle_jitter=float(u(0.5, 5.0)),
        layer_angle_spread=float(u(0.0, 10.0)),
        color=(float(u(0.85, 0.95)), float(u(0.9, 0.98)), 1.0),
        size_jitter=float(u(0.0, 0.45)),
        env_gain=float(u(0.6, 1.2)) if env else 0.0,
        env_bias=float(u(0.1, 0.45)),
        haze=float(u(0.0, 0.15)) if hazy else 0.0,
        haze_gradient=float(u(0.0, 1.0)),
        sparkle_density=float(u(200.0, 2000.0)) if sparkle else 0.0,
        sparkle_opacity=float(u(0.2, 0.6)) if sparkle else 0.0,
        splash_density=float(u(100.0, 1000.0)) if splash else 0.0,
        splash_opacity=float(u(0.2, 0.5)),
        lens_drops=float(u(1.0, 4.0)) if lens else 0.0,
        lens_drop_radius=float(u(6.0, 18.0)),
    )


def get_preset(name: str, seed: int | None = None) -> RainParams:
    """Return the rain preset called ``name``.

    Args:
        name: One of ``PRESETS`` (``light``, ``heavy``, ``ntu``, ``realistic-light``, ``realistic-heavy``,
            ``storm``) or ``random`` (:func:`random_params`, which needs ``seed``).
        seed: The draw of the ``random`` preset; ignored by the fixed presets.

    Returns:
        The preset's parameters.

    Raises:
        ValueError: If ``name`` is not a preset (the message lists the valid names), or ``random`` without a seed.
    """
    if name == RANDOM_PRESET:
        if seed is None:
            raise ValueError("the 'random' rain preset draws new parameters per clip: pass seed=")
        return random_params(seed)
    if name not in PRESETS:
        raise ValueError(f"unknown rain preset {name!r}; choose one of {preset_names()}")
    return PRESETS[name]


def preset_names() -> list[str]:
    """Every name :func:`get_preset` accepts, sorted (the fixed presets and ``random``)."""
    return sorted([*PRESETS, RANDOM_PRESET])


def frames_to_float(frames: np.ndarray) -> np.ndarray:
    """Convert uint8 frames to float32 in [0, 1].

    Args:
        frames: uint8 array of any shape, e.g. (H, W, 3) or (T, H, W, 3), values 0..255.

    Returns:
        float32 array of the same shape, values in [0, 1].

    Raises:
        TypeError: If ``frames`` is not uint8.
    """
    if frames.dtype != np.uint8:
        raise TypeError(f"frames_to_float expects uint8 frames, got {frames.dtype}; float frames need no conversion")
    return frames.astype(np.float32) * np.float32(1.0 / 255.0)


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Convert float frames in [0, 1] to uint8 by clipping and rounding (as a saved frame would be).

    Args:
        frames: float array of any shape, values nominally in [0, 1].

    Returns:
        uint8 array of the same shape, values 0..255.
    """
    from estinet.runtime import frames_to_uint8 as rule

    return rule(np.asarray(frames))


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7), elementwise.

    Args:
        x: float64 array of any shape.

    Returns:
        erf(x), same shape, in [-1, 1].
    """
    sign = np.sign(x)
    ax = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * ax)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-ax * ax))


def _streak_sprite(
    length: float, width: float, blur: float, angle_deg: float, taper: float, phase_x: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one anti-aliased, motion-blurred streak (peak opacity about 1 for a wide, sharp streak).

    The streak is a segment of ``length`` pixels along the fall direction, with a Gaussian cross-section
    of standard deviation ``width`` convolved with a Gaussian defocus ``blur`` (energy preserving), soft
    ends from the same Gaussian, a quadratic ``taper`` towards the ends, integrated over each pixel's
    width across the streak.

    Args:
        length: Segment length in pixels (> 0).
        width: Cross-section standard deviation in pixels (> 0).
        blur: Defocus standard deviation in pixels (>= 0).
        angle_deg: Fall direction in degrees from vertical, positive to the right.
        taper: End fading in [0, 1].
        phase_x: Horizontal sub-pixel offset of the streak centre from the anchor pixel's centre, in [0, 1).

    Returns:
        ``(dy, dx, weight)``: int64 pixel offsets from the anchor pixel and float32 weights (all 1-D,
        same length), weights below the cutoff removed.
    """
    sigma = math.hypot(width, blur)
    a = math.radians(angle_deg)
    sa, ca = math.sin(a), math.cos(a)
    reach = 3.0 * sigma + 1.5
    hx = math.ceil(abs(sa) * length / 2 + reach)
    hy = math.ceil(abs(ca) * length / 2 + reach)
    dy, dx = np.mgrid[-hy : hy + 1, -hx : hx + 1]
    x = dx - phase_x  # pixel centre relative to the streak centre (pixel centres at integers)
    y = dy.astype(np.float64)
    u = x * sa + y * ca  # along the fall direction
    v = x * ca - y * sa  # across it
    s2 = math.sqrt(2.0) * sigma
    across = 0.5 * (_erf((v + 0.5) / s2) - _erf((v - 0.5) / s2))  # pixel-integrated normalised Gaussian
    energy = width * math.sqrt(2.0 * math.pi)  # so that a wide sharp streak peaks at 1
    half = length / 2.0
    along = 0.5 * (_erf((u + half) / s2) - _erf((u - half) / s2))
    along *= np.clip(1.0 - taper * (u / max(half, 0.5)) ** 2, 0.0, 1.0)
    weight = energy * across * along
    peak = float(weight.max())
    keep = weight > _SPRITE_CUTOFF * peak
    return dy[keep].astype(np.int64), dx[keep].astype(np.int64), weight[keep].astype(np.float32)


@dataclass
class _Layer:
    """State of one depth layer: the sprite bank and the persistent drop field (all 1-D per drop)."""

    offsets: np.ndarray  # (K * P, M) int64 flat canvas offsets of sprite pixels
    weights: np.ndarray  # (K * P, M) float32 sprite weights (0 for padding)
    vx: np.ndarray  # (K,) float64 per-variant velocity, px/frame
    vy: np.ndarray  # (K,)
    x_range: tuple[float, float]  # drop centre domain [lo, hi) in frame pixels
    y_range: tuple[float, float]
    opacity: float
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) float64 drop centres
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variant: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) sprite variant
    amp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) opacity per drop


class RainRenderer:
    """Stateful, seeded renderer of temporally coherent rain over frames of a fixed size.

    Every call to :meth:`render` advances time by one frame. The same ``params``, size, ``seed`` and
    sequence of calls give byte-identical results; the rain does not depend on the frame content.
    Per-frame work reuses buffers allocated once here (the splat runs through ``torch.index_add_`` into a
    persistent canvas), which keeps a frame well inside the 20 ms budget on one core.

    Args:
        params: Rain parameters (e.g. ``PRESETS["heavy"]``).
        height: Frame height in pixels (>= 1).
        width: Frame width in pixels (>= 1).
        seed: Seed of the drop field, the sprite banks and the sparkle.
        variants: Number of streak variants (length/angle draws) pre-rendered per layer.

    Raises:
        ValueError: If the size or ``variants`` is not positive.
        TypeError: If ``params`` is not a RainParams.
    """

    def __init__(self, params: RainParams, height: int, width: int, seed: int = 0, variants: int = 24) -> None:
        if not isinstance(params, RainParams):
            raise TypeError(f"params must be a RainParams (e.g. get_preset('light')), got {type(params).__name__}")
        if height < 1 or width < 1:
            raise ValueError(f"frame size must be at least 1x1, got height={height}, width={width}")
        if variants < 1:
            raise ValueError(f"variants must be >= 1, got {variants}")
        self.params = params
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)
        self.frame_index = 0
        self._variants = int(variants)
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x7A1]))
        # The second-generation effects draw from their own stream, so the first-generation presets (which leave
        # them off) render exactly as before.
        self._aux = np.random.default_rng(np.random.SeedSequence([self.seed, 0xA11]))
        self._build()
        self._build_extras()

    def _build(self) -> None:
        p, rng, variants = self.params, self._rng, self._variants
        near, far = p.depth_range
        depths = np.geomspace(near, far, p.num_layers)
        banks = []
        margin_x = margin_y = 0
        for z in depths:
            s = near / z
            layer_angle = p.wind_angle + rng.uniform(-1.0, 1.0) * p.layer_angle_spread
            speed = p.fall_speed * s * np.maximum(1.0 + p.speed_jitter * rng.standard_normal(variants), 0.3)
            angle = layer_angle + p.angle_jitter * rng.standard_normal(variants)
            sizes = np.ones(variants)
            if p.size_jitter > 0:
                sizes = np.exp(p.size_jitter * self._aux.standard_normal(variants))
            blur = p.blur * s * s
            bank = []
            for k in range(variants):
                width = max(p.streak_width * s * sizes[k], p.min_width)
                length = speed[k] * p.exposure + 2.0 * width  # path during the exposure plus the drop itself
                for ph in range(_PHASES):
                    bank.append(_streak_sprite(length, width, blur, angle[k], p.taper, ph / _PHASES))
            rad = np.radians(angle)
            ext_x = max(int(np.abs(dx).max()) for _, dx, _ in bank) + 1
            ext_y = max(int(np.abs(dy).max()) for dy, _, _ in bank) + 1
            margin_x, margin_y = max(margin_x, ext_x), max(margin_y, ext_y)
            opacity = p.opacity * s**p.opacity_depth_exponent
            density = p.density / s**p.density_depth_exponent
            banks.append((bank, speed * np.sin(rad), speed * np.cos(rad), opacity, density, ext_x, ext_y))
        # Canvas: the frame plus a margin wide enough for any sprite anchored anywhere in a layer's domain.
        self._ox, self._oy = 2 * margin_x + 1, 2 * margin_y + 1
        self._cw = self.width + 2 * self._ox
        self._ch = self.height + 2 * self._oy
        self._layers: list[_Layer] = []
        for bank, vx, vy, opacity, density, ext_x, ext_y in banks:
            m = max(len(w) for _, _, w in bank)
            offsets = np.zeros((len(bank), m), np.int64)
            weights = np.zeros((len(bank), m), np.float32)
            for i, (dy, dx, w) in enumerate(bank):
                offsets[i, : len(w)] = dy * self._cw + dx
                weights[i, : len(w)] = w
            layer = _Layer(
                offsets=offsets,
                weights=weights,
                vx=vx,
                vy=vy,
                x_range=(-float(ext_x), float(self.width + ext_x)),
                y_range=(-float(ext_y), float(self.height + ext_y)),
                opacity=opacity,
            )
            area = (layer.x_range[1] - layer.x_range[0]) * (layer.y_range[1] - layer.y_range[0])
            n = int(rng.poisson(density * area / 1e6))  # the Poisson field: its size stays fixed from now on
            layer.x = rng.uniform(*layer.x_range, size=n)
            layer.y = rng.uniform(*layer.y_range, size=n)
            layer.variant = rng.integers(0, variants, size=n)
            layer.amp = self._draw_amp(n, opacity)
            self._layers.append(layer)
        dy, dx, w = _streak_sprite(1.0, 0.45, 0.0, 0.0, 0.0, 0.0)
        self._sparkle = ((dy * self._cw + dx), w / w.max())
        # Buffers reused every frame: splat indices/weights of all drops, the canvas, composite temporaries.
        total = sum(layer.x.size * layer.offsets.shape[1] for layer in self._layers)
        self._idx = np.zeros(total, np.int64)
        self._wts = np.zeros(total, np.float32)
        self._idx_t = torch.from_numpy(self._idx)
        self._wts_t = torch.from_numpy(self._wts)
        self._canvas_t = torch.zeros(self._ch * self._cw, dtype=torch.float32)
        canvas = self._canvas_t.numpy().reshape(self._ch, self._cw)
        self._canvas_view = canvas[self._oy : self._oy + self.height, self._ox : self._ox + self.width]
        self._keep = np.empty((self.height, self.width), np.float32)  # (1 - alpha) * (1 - haze)
        self._add = np.empty((self.height, self.width), np.float32)  # alpha * (1 - haze)
        self._tmp = np.empty((self.height, self.width), np.float32)

    def _build_extras(self) -> None:
        """Set up the second-generation effects: depth-dependent haze, lens drops, environment light."""
        p, h, w = self.params, self.height, self.width
        self._extended = p.env_gain > 0 or (p.haze > 0 and p.haze_gradient > 0) or p.lens_drops > 0
        self._haze_map: np.ndarray | None = None
        if p.haze > 0 and p.haze_gradient > 0:
            # pseudo-depth: far at the top, near at the bottom, bent by a smooth seeded field
            rows = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]
            coarse = self._aux.random((4, 4)).astype(np.float32)
            noise = F.interpolate(torch.from_numpy(coarse)[None, None], size=(h, w), mode="bicubic", align_corners=True)
            depth = np.clip(0.75 * rows + 0.25 * noise[0, 0].numpy(), 0.0, 1.0)
            self._haze_map = (p.haze * (1.0 - p.haze_gradient + p.haze_gradient * depth)).astype(np.float32)
        n = int(self._aux.poisson(p.lens_drops)) if p.lens_drops > 0 else 0
        radius = p.lens_drop_radius * self._aux.uniform(0.5, 1.5, size=n)
        self._lens = np.stack(
            [
                self._aux.uniform(0, w, size=n),  # x
                self._aux.uniform(0, h, size=n),  # y
                radius,
                self._aux.uniform(0.0, 0.3, size=n),  # slide down, px/frame
            ],
            axis=1,
        )  # (n, 4)

    def _splashes(self) -> None:
        """Add this frame's splashes (crowns of specks in the lower half of the frame) to the canvas."""
        p = self.params
        n = int(self._aux.poisson(p.splash_density * self.height * self.width / 2e6))
        if n == 0:
            return
        specks = 5
        cy = self._aux.integers(self.height // 2, self.height, size=(n, 1))
        cx = self._aux.integers(0, self.width, size=(n, 1))
        sy = np.clip(cy - np.abs(self._aux.normal(0.0, 1.5, size=(n, specks))).round().astype(np.int64), 0, None)
        sx = np.clip(cx + self._aux.normal(0.0, 2.0, size=(n, specks)).round().astype(np.int64), 0, self.width - 1)
        amp = (p.splash_opacity * self._aux.uniform(0.3, 1.0, size=(n, specks))).astype(np.float32).ravel()
        offs, wt = self._sparkle  # a splash speck is a sparkle speck
        base = (sy.ravel() + self._oy) * self._cw + sx.ravel() + self._ox
        idx = torch.from_numpy((base[:, None] + offs[None, :]).ravel())
        self._canvas_t.index_add_(0, idx, torch.from_numpy((amp[:, None] * wt[None, :]).ravel()))

    def _environment(self, frame: np.ndarray) -> np.ndarray:
        """Streak radiance scale (H, W) float32: ``clip(env_bias + env_gain * local mean luminance, 0, 1)``."""
        p = self.params
        y = torch.from_numpy(np.ascontiguousarray(frame @ np.array([0.299, 0.587, 0.114], np.float32)))
        k = max(2, round(min(self.height, self.width) / 8))
        low = F.avg_pool2d(y[None, None], k, stride=k, ceil_mode=True)
        light = F.interpolate(low, size=(self.height, self.width), mode="bilinear", align_corners=False)[0, 0]
        return np.clip(p.env_bias + p.env_gain * light.numpy(), 0.0, 1.0).astype(np.float32)

    def _lens_drops(self, rainy: np.ndarray, alpha: np.ndarray) -> None:
        """Overlay the drops sitting on the lens (in place): blurred, inverted views of the scene, soft-edged discs."""
        if self.frame_index > 0:
            self._lens[:, 1] += self._lens[:, 3]
        visible = [d for d in self._lens if d[1] - d[2] < self.height]
        if not visible:
            return
        img = torch.from_numpy(np.ascontiguousarray(rainy.transpose(2, 0, 1)))[None]
        blurred = F.avg_pool2d(F.pad(img, (4, 4, 4, 4), mode="replicate"), 9, stride=1)[0].numpy()  # (3, H, W)
        for x, y, r, _ in visible:
            y0, y1 = max(0, int(y - r - 2)), min(self.height, int(y + r + 3))
            x0, x1 = max(0, int(x - r - 2)), min(self.width, int(x + r + 3))
            if y0 >= y1 or x0 >= x1:
                continue
            gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            dist = np.hypot(gx - x, gy - y)
            m = np.clip((r - dist) / 1.5 + 0.5, 0.0, 1.0) * np.float32(0.9)
            # a drop is a small lens: it shows the scene behind it inverted and minified
            sx = np.clip(x - (gx - x) * 0.5, 0, self.width - 1).round().astype(np.int64)
            sy = np.clip(y - (gy - y) * 0.5, 0, self.height - 1).round().astype(np.int64)
            view = np.clip(blurred[:, sy, sx].transpose(1, 2, 0) * 1.08 + 0.02, 0.0, 1.0)
            patch = rainy[y0:y1, x0:x1]
            patch += m[..., None] * (view - patch)
            np.maximum(alpha[y0:y1, x0:x1], m, out=alpha[y0:y1, x0:x1])

    def _draw_amp(self, n: int, opacity: float) -> np.ndarray:
        jitter = np.clip(1.0 + self.params.opacity_jitter * self._rng.standard_normal(n), 0.2, 2.0)
        return (opacity * jitter).astype(np.float32)

    def _advance(self, layer: _Layer, shift_x: float, shift_y: float) -> None:
        """Move one layer's drops by their velocity (plus a camera shift); respawn those that left."""
        layer.x += layer.vx[layer.variant] + shift_x
        layer.y += layer.vy[layer.variant] + shift_y
        x0, x1 = layer.x_range
        y0, y1 = layer.y_range
        out = (layer.y >= y1) | (layer.y < y0)
        if out.any():
            # Re-enter at the opposite edge (keeping the sub-frame phase) as a new, independent drop.
            n = int(out.sum())
            layer.y[out] = y0 + np.mod(layer.y[out] - y0, y1 - y0)
            layer.x[out] = self._rng.uniform(x0, x1, size=n)
            layer.variant[out] = self._rng.integers(0, self._variants, size=n)
            layer.amp[out] = self._draw_amp(n, layer.opacity)
        layer.x = x0 + np.mod(layer.x - x0, x1 - x0)  # sideways (wind) motion wraps around

    def _splat(self, shift: tuple[float, float], alpha: np.ndarray) -> None:
        """Advance one frame and write the rain opacity into ``alpha`` (H, W) float32, values in [0, 1]."""
        start = 0
        for layer in self._layers:
            if self.frame_index > 0:  # the first frame shows the field as initialised
                self._advance(layer, *shift)
            n, m = layer.x.size, layer.offsets.shape[1]
            if n == 0:
                continue
            xq = np.floor(layer.x * _PHASES + 0.5).astype(np.int64)  # x rounded to 1 / _PHASES pixel
            xi, phase = np.divmod(xq, _PHASES)
            base = (np.floor(layer.y + 0.5).astype(np.int64) + self._oy) * self._cw + xi + self._ox  # (N,)
            sid = layer.variant * _PHASES + phase  # (N,) sprite of each drop
            idx = self._idx[start : start + n * m].reshape(n, m)
            wts = self._wts[start : start + n * m].reshape(n, m)
            np.take(layer.offsets, sid, axis=0, out=idx)
            idx += base[:, None]
            np.take(layer.weights, sid, axis=0, out=wts)
            wts *= layer.amp[:, None]
            start += n * m
        self._canvas_t.zero_()
        self._canvas_t.index_add_(0, self._idx_t, self._wts_t)
        p = self.params
        if p.sparkle_density > 0 and p.sparkle_opacity > 0:
            n = int(self._rng.poisson(p.sparkle_density * self.height * self.width / 1e6))
            if n:
                sy = self._rng.integers(0, self.height, size=n)
                sx = self._rng.integers(0, self.width, size=n)
                amp = (p.sparkle_opacity * self._rng.uniform(0.3, 1.0, size=n)).astype(np.float32)
                offs, w = self._sparkle
                base = (sy + self._oy) * self._cw + sx + self._ox
                idx = torch.from_numpy((base[:, None] + offs[None, :]).ravel())
                self._canvas_t.index_add_(0, idx, torch.from_numpy((amp[:, None] * w[None, :]).ravel()))
        if p.splash_density > 0 and p.splash_opacity > 0:
            self._splashes()
        np.minimum(self._canvas_view, 1.0, out=alpha)  # weights are >= 0, so alpha is in [0, 1]

    def render(
        self,
        frame: np.ndarray,
        camera_shift: tuple[float, float] | None = None,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the next frame of rain to ``frame`` and advance time by one frame.

        Args:
            frame: Clean frame, float (H, W, 3) RGB in [0, 1], H and W as given to the constructor.
            camera_shift: Optional ``(dx, dy)`` pixels the scene content moved since the previous frame
                (camera motion, e.g. from :func:`estinet.data.camera.content_shifts`); the drops move with it
                in addition to falling, as they do in footage from a panning camera. Ignored on the first
                frame. Default: no shift.
            out: Optional preallocated ``(rainy, alpha)`` float32 arrays of shapes (H, W, 3) and (H, W) to
                write into (saves an allocation per frame).

        Returns:
            ``(rainy, alpha)``: rainy frame float32 (H, W, 3) in [0, 1], and the rain opacity float32
            (H, W) in [0, 1] of the streaks and sparkle (the uniform haze is not included; pixels with
            alpha 0 are rain-free up to the haze).

        Raises:
            ValueError: If ``frame`` does not have shape (height, width, 3), is uint8, or ``out`` is badly
                shaped.
        """
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(
                f"frame has shape {frame.shape}, expected ({self.height}, {self.width}, 3) for this renderer; "
                "create a RainRenderer for this frame size"
            )
        if not np.issubdtype(frame.dtype, np.floating):
            raise ValueError(
                f"frame has dtype {frame.dtype}; convert it with frames_to_float(frame) to float32 in [0, 1] first"
            )
        if out is None:
            rainy = np.empty((self.height, self.width, 3), np.float32)
            alpha = np.empty((self.height, self.width), np.float32)
        else:
            rainy, alpha = out
            if rainy.shape != frame.shape or alpha.shape != frame.shape[:2]:
                raise ValueError(
                    f"out arrays have shapes {rainy.shape}, {alpha.shape}; expected {frame.shape}, {frame.shape[:2]}"
                )
        shift = (0.0, 0.0) if camera_shift is None else (float(camera_shift[0]), float(camera_shift[1]))
        self._splat(shift, alpha)
        if self._extended:
            self._composite_extended(frame, rainy, alpha)
            self.frame_index += 1
            return rainy, alpha
        self.frame_index += 1
        # O = (B * (1 - a) + a * R) * (1 - h) + h * V, one colour plane at a time (much faster in numpy than
        # broadcasting over a trailing axis of 3).
        p = self.params
        np.subtract(1.0, alpha, out=self._keep)
        self._keep *= np.float32(1.0 - p.haze)
        np.multiply(alpha, np.float32(1.0 - p.haze), out=self._add)
        for c in range(3):
            np.multiply(self._add, np.float32(p.color[c]), out=self._tmp)
            if p.haze > 0:
                self._tmp += np.float32(p.haze * p.haze_color[c])
            plane = rainy[:, :, c]
            np.multiply(frame[:, :, c], self._keep, out=plane)
            plane += self._tmp
        np.clip(rainy, 0.0, 1.0, out=rainy)
        return rainy, alpha

    def _composite_extended(self, frame: np.ndarray, rainy: np.ndarray, alpha: np.ndarray) -> None:
        """Second-generation composite: environment-lit streaks, depth-dependent haze, then lens drops.

        ``O = (B * (1 - a) + a * R * E) * (1 - h) + h * V`` with ``E`` from :meth:`_environment` (1 when
        ``env_gain`` is 0) and ``h`` the haze map (or the uniform haze).
        """
        p = self.params
        haze = self._haze_map if self._haze_map is not None else np.float32(p.haze)
        np.subtract(1.0, alpha, out=self._keep)
        self._keep *= 1.0 - haze
        np.multiply(alpha, 1.0 - haze, out=self._add)
        if p.env_gain > 0:
            self._add *= self._environment(frame)
        for c in range(3):
            np.multiply(self._add, np.float32(p.color[c]), out=self._tmp)
            if p.haze > 0:
                self._tmp += haze * np.float32(p.haze_color[c])
            plane = rainy[:, :, c]
            np.multiply(frame[:, :, c], self._keep, out=plane)
            plane += self._tmp
        np.clip(rainy, 0.0, 1.0, out=rainy)
        if len(self._lens):
            self._lens_drops(rainy, alpha)

    def render_clip(self, frames: np.ndarray, camera_shifts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Render rain over consecutive frames (continuing this renderer's time line).

        Args:
            frames: Clean clip, float (T, H, W, 3) RGB in [0, 1] (already camera-moved; rain is added in
                screen space).
            camera_shifts: Optional (T, 2) per-frame ``(dx, dy)`` content motion, see :meth:`render`.

        Returns:
            ``(rainy, alpha)``: float32 (T, H, W, 3) in [0, 1] and the rain opacity float32 (T, H, W) in
            [0, 1].

        Raises:
            ValueError: If ``frames`` is not (T, height, width, 3) or ``camera_shifts`` is not (T, 2).
        """
        frames = np.asarray(frames)
        if frames.ndim != 4:
            raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}; use render() for one frame")
        if camera_shifts is not None and np.shape(camera_shifts) != (frames.shape[0], 2):
            raise ValueError(f"camera_shifts must have shape ({frames.shape[0]}, 2), got {np.shape(camera_shifts)}")
        rainy = np.empty(frames.shape, np.float32)
        alpha = np.empty(frames.shape[:3], np.float32)
        for t in range(frames.shape[0]):
            shift = None if camera_shifts is None else (camera_shifts[t][0], camera_shifts[t][1])
            self.render(frames[t], shift, out=(rainy[t], alpha[t]))
        return rainy, alpha

    def veil_clip(self, frames: np.ndarray) -> np.ndarray:
        """The clean frames under this renderer's veiling haze alone: ``B * (1 - h) + h * V``, no streaks.

        The veil-kept target of a rain model that leaves the veil to a separate step (``model.veil_head``): the
        rainy frames of :meth:`render_clip` minus their streaks, sparkle, splashes and lens drops. Frames come back
        unchanged (as float32) when the preset has no haze.

        Args:
            frames: Clean frames, float (T, H, W, 3) or (H, W, 3) RGB in [0, 1], H and W as given to the
                constructor.

        Returns:
            float32 array of the same shape, in [0, 1].

        Raises:
            ValueError: If the frames are not (..., height, width, 3) floats.
        """
        frames = np.asarray(frames)
        if frames.shape[-3:] != (self.height, self.width, 3) or frames.ndim not in (3, 4):
            raise ValueError(
                f"frames have shape {frames.shape}, expected (T, {self.height}, {self.width}, 3) for this renderer"
            )
        if not np.issubdtype(frames.dtype, np.floating):
            raise ValueError(f"frames have dtype {frames.dtype}; convert them with frames_to_float first")
        p = self.params
        out = frames.astype(np.float32, copy=True)
        if p.haze <= 0:
            return out
        haze = self._haze_map[..., None] if self._haze_map is not None else np.float32(p.haze)  # (H, W, 1) or ()
        out *= 1.0 - haze
        out += haze * np.asarray(p.haze_color, np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        return out


def synthesize_rain(
    frames: np.ndarray, params: RainParams | str = "light", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Add fresh, seeded rain to a clean clip (one-call form of :class:`RainRenderer`).

    Args:
        frames: Clean clip float (T, H, W, 3) RGB in [0, 1].
        params: A RainParams or a preset name (``light``, ``heavy``, ``ntu``).
        seed: Seed of the rain.

    Returns:
        ``(rainy, alpha)``: float32 (T, H, W, 3) in [0, 1] and float32 (T, H, W) in [0, 1].

    Raises:
        ValueError: For an unknown preset or a badly shaped clip.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    rp = get_preset(params) if isinstance(params, str) else params
    renderer = RainRenderer(rp, frames.shape[1], frames.shape[2], seed=seed)
    return renderer.render_clip(frames)
