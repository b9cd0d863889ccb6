"""Parallax layers and moving objects for clips made from stills and static-camera videos.

A single image filmed by a synthetic camera moves as one rigid plane: one global shift aligns any two frames. Real
footage does not: near things slide faster than far ones (parallax) and objects move on their own. With a
:class:`SceneMotion`, :func:`estinet.data.sources.make_clip` gives a seeded share of its clips both:

Parallax layers
    The frame is split into 2 or 3 depth layers by soft, seeded boundaries that run across the frame (a horizontal
    line bent by three random sines, with a logistic edge about 1.5 source pixels wide): a *near* layer below the
    lower boundary and, for 3 layers, a *far* layer above the upper one; the rest is the *base* layer. Every layer is
    the same source region resampled through the camera path with its translation scaled by the layer's gain (base
    1, near ``near_gain``, far ``far_gain``); rotation and zoom are shared. Each layer carries its own mask through
    its own path, and the layers are composited back to front (far, base, near), each over a full frame, so a layer
    edge that uncovers content shows the layer behind it: no holes, seams or black borders. Parallax needs a moving
    camera: it is only drawn when the camera moves at least ``0.3`` source pixels per frame on average.

Moving objects
    1 to 3 blobs (an ellipse whose radius is modulated by random 2nd-4th order harmonics, with a soft edge of about
    1.5 pixels) cut from a donor still (another training photograph, or the source itself) move across the frame
    with their own constant velocity of a few pixels per frame *on top of* the background motion at the frame centre,
    and are composited in front of every layer with premultiplied alpha and bilinear sub-pixel placement. Objects
    may enter or leave the frame; their middle-frame position is inside the central 60 % of the frame.

The content motion that :func:`~estinet.data.sources.make_clip` returns stays the *base* layer's (the background's)
motion, so rain drops that drift with the content still drift with the background.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from estinet.data.camera import _bicubic_sample, _required_size  # the camera's own sampler and size rule

if TYPE_CHECKING:
    from estinet.data.sources import CleanSource

__all__ = [
    "MIN_PARALLAX_SPEED",
    "ObjectPlan",
    "SceneMotion",
    "ScenePlan",
    "add_objects",
    "blob_mask",
    "boundary_mask",
    "draw_scene_plan",
    "layer_transforms",
    "render_layers",
]

MIN_PARALLAX_SPEED = 0.3
"""Mean camera translation (source pixels per frame) below which a clip gets no parallax (layers would not move)."""

_EDGE = 1.5  # width of soft edges in pixels


def _check_range(name: str, value: tuple[float, float], low: float, high: float = math.inf) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"SceneMotion.{name} must be (min, max) with {low} <= min <= max <= {high}, got {value!r}")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"SceneMotion.{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class SceneMotion:
    """Distribution of parallax layers and moving objects; a clip draws its own from it (module docstring).

    Attributes:
        fraction: Share of eligible clips (stills and static-camera videos) that get scene motion; the others are
            exactly the clips :func:`~estinet.data.sources.make_clip` makes without it.
        parallax: Probability that a chosen clip gets depth layers (when its camera moves enough).
        layers: (min, max) number of depth layers, 2 or 3.
        near_gain: (min, max) translation gain of the near layer relative to the base layer (> 1: nearer).
        far_gain: (min, max) translation gain of the far layer (< 1), used with 3 layers.
        objects: Probability that a chosen clip gets moving objects (always, when it gets no parallax).
        num_objects: (min, max) number of objects.
        object_speed: (min, max) speed of an object relative to the background, output pixels per frame.
        object_size: (min, max) longer axis of an object as a fraction of the shorter output side.
        donors: Stills the objects are cut from; empty uses the package training stills (or the source itself
            when there are none).
    """

    fraction: float = 0.3
    parallax: float = 0.7
    layers: tuple[int, int] = (2, 3)
    near_gain: tuple[float, float] = (1.3, 2.0)
    far_gain: tuple[float, float] = (0.3, 0.7)
    objects: float = 0.7
    num_objects: tuple[int, int] = (1, 3)
    object_speed: tuple[float, float] = (1.0, 4.0)
    object_size: tuple[float, float] = (0.15, 0.4)
    donors: tuple[CleanSource, ...] = ()

    def __post_init__(self) -> None:
        for name in ("fraction", "parallax", "objects"):
            _check_probability(name, getattr(self, name))
        if len(self.layers) != 2 or not 2 <= self.layers[0] <= self.layers[1] <= 3:
            raise ValueError(f"SceneMotion.layers must be (min, max) within 2..3, got {self.layers!r}")
        _check_range("near_gain", self.near_gain, 1.0, 4.0)
        _check_range("far_gain", self.far_gain, 0.0, 1.0)
        if len(self.num_objects) != 2 or not 1 <= self.num_objects[0] <= self.num_objects[1] <= 8:
            raise ValueError(f"SceneMotion.num_objects must be (min, max) within 1..8, got {self.num_objects!r}")
        _check_range("object_speed", self.object_speed, 0.0, 32.0)
        _check_range("object_size", self.object_size, 0.02, 1.0)


@dataclass(frozen=True)
class ObjectPlan:
    """One moving object of a clip.

    Attributes:
        donor: Index into the donor list.
        size: (height, width) of the object in output pixels.
        corner: (y, x) of the cut-out's top-left corner as fractions of the donor's free range, in [0, 1].
        harmonics: (3, 2) amplitude and phase of the 2nd-4th radius harmonics of the blob.
        velocity: (vx, vy) own motion in output pixels per frame.
        centre: (x, y) output position of the object's centre at the middle frame.
    """

    donor: int
    size: tuple[int, int]
    corner: tuple[float, float]
    harmonics: np.ndarray
    velocity: tuple[float, float]
    centre: tuple[float, float]


@dataclass(frozen=True)
class ScenePlan:
    """A clip's drawn scene motion.

    Attributes:
        gains: Translation gains of the layers, back to front (the base layer's is 1.0); ``(1.0,)`` for no parallax.
        boundaries: One row ``(level, a1, f1, p1, a2, f2, p2, a3, f3, p3)`` (see :func:`boundary_mask`) per masked
            layer, back to front: with 3 layers the base layer's (below the far layer's line), then the near
            layer's; with 2 layers only the near layer's; none without parallax.
        objects: The moving objects (front-most last).
    """

    gains: tuple[float, ...]
    boundaries: tuple[tuple[float, ...], ...]
    objects: tuple[ObjectPlan, ...]


def draw_scene_plan(
    motion: SceneMotion, seed: int, transforms: np.ndarray, out_size: tuple[int, int], num_donors: int
) -> ScenePlan | None:
    """Draw one clip's layers and objects, or ``None`` when the clip gets no scene motion.

    Uses its own random stream (``seed`` with a distinct tag), so the clip's other draws do not change.

    Args:
        motion: The distribution.
        seed: The clip's seed.
        transforms: float64 (T, 2, 3) centre-relative camera maps (output -> source pixels) of the base layer.
        out_size: Output (h, w).
        num_donors: Number of donor stills (>= 1) to cut objects from.

    Returns:
        The plan, or ``None`` (not chosen: a ``1 - motion.fraction`` share of seeds).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & (2**63 - 1), 0x9A7A]))
    if not rng.random() < motion.fraction:
        return None
    h, w = out_size
    steps = np.diff(transforms[:, :, 2], axis=0)  # (T - 1, 2) camera translation per frame
    speed = float(np.hypot(steps[:, 0], steps[:, 1]).mean()) if len(steps) else 0.0
    do_parallax = speed >= MIN_PARALLAX_SPEED and rng.random() < motion.parallax
    do_objects = rng.random() < motion.objects or not do_parallax
    gains: tuple[float, ...] = (1.0,)
    boundaries: list[tuple[float, ...]] = []
    if do_parallax:
        count = int(rng.integers(motion.layers[0], motion.layers[1] + 1))
        near = float(rng.uniform(*motion.near_gain))
        if count == 3:
            far = float(rng.uniform(*motion.far_gain))
            gains = (far, 1.0, near)
            boundaries.append(_draw_boundary(rng, -0.6, -0.25))  # base starts below the far layer (sky)
        else:
            gains = (1.0, near)
        boundaries.append(_draw_boundary(rng, 0.0, 0.5))  # near layer below this line
    objects: list[ObjectPlan] = []
    if do_objects:
        for _ in range(int(rng.integers(motion.num_objects[0], motion.num_objects[1] + 1))):
            major = float(rng.uniform(*motion.object_size)) * min(h, w)
            aspect = float(rng.uniform(0.5, 1.0))
            size = (max(4, round(major * aspect)), max(4, round(major)))
            if rng.random() < 0.5:
                size = size[::-1]
            harmonics = np.stack([rng.uniform(0.0, 0.12, 3), rng.uniform(0.0, 2 * math.pi, 3)], axis=1)  # (3, 2)
            speed_o = float(rng.uniform(*motion.object_speed))
            angle = float(rng.uniform(0.0, 2 * math.pi))
            objects.append(
                ObjectPlan(
                    donor=int(rng.integers(num_donors)),
                    size=(int(size[0]), int(size[1])),
                    corner=(float(rng.random()), float(rng.random())),
                    harmonics=harmonics,
                    velocity=(speed_o * math.cos(angle), speed_o * math.sin(angle)),
                    centre=(float(rng.uniform(0.2, 0.8)) * (w - 1), float(rng.uniform(0.2, 0.8)) * (h - 1)),
                )
            )
    return ScenePlan(gains=gains, boundaries=tuple(boundaries), objects=tuple(objects))


def _draw_boundary(rng: np.random.Generator, low: float, high: float) -> tuple[float, ...]:
    """(level, then amplitude, frequency, phase of three sines) of a soft layer boundary."""
    row = [float(rng.uniform(low, high))]
    for k in range(1, 4):
        row += [float(rng.uniform(0.0, 0.12 / k)), float(rng.uniform(0.5, 1.5) * k), float(rng.uniform(0, 2 * math.pi))]
    return tuple(row)


def layer_transforms(transforms: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    """Per-layer camera maps: the base maps with their translation scaled by each layer's gain.

    Args:
        transforms: float64 (T, 2, 3) centre-relative maps of the base layer (translations centred over the clip).
        gains: L translation gains.

    Returns:
        float64 (L, T, 2, 3).
    """
    out = np.repeat(np.asarray(transforms, dtype=np.float64)[None], len(gains), axis=0)  # (L, T, 2, 3)
    out[:, :, :, 2] *= np.asarray(gains, dtype=np.float64)[:, None, None]
    return out


def boundary_mask(row: Sequence[float], region: tuple[int, int], half_size: tuple[float, float]) -> np.ndarray:
    """Soft mask of the part of a source region below a wavy boundary.

    The boundary is ``y = level * hy + hy * sum_k a_k sin(2 pi f_k x / (2 hx) + p_k)`` in centre-relative source
    pixels, where ``(hy, hx)`` is half the output frame measured in source pixels; the mask rises from 0 above it to
    1 below it over about 1.5 pixels (logistic).

    Args:
        row: ``(level, a1, f1, p1, a2, f2, p2, a3, f3, p3)`` as drawn by :func:`draw_scene_plan`.
        region: (H0, W0) of the source region.
        half_size: (hy, hx), half the output frame in source pixels.

    Returns:
        float32 (H0, W0) in [0, 1].
    """
    h0, w0 = region
    hy, hx = half_size
    ys = np.arange(h0, dtype=np.float64)[:, None] - (h0 - 1) / 2.0
    xs = np.arange(w0, dtype=np.float64)[None, :] - (w0 - 1) / 2.0
    line = np.full_like(xs, row[0])
    for k in range(3):
        a, f, p = row[1 + 3 * k : 4 + 3 * k]
        line = line + a * np.sin(2 * math.pi * f * xs / (2 * hx) + p)
    z = (ys - hy * line) / (_EDGE / 4.0)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # logistic, (H0, W0)


def render_layers(
    region: np.ndarray, layer_maps: np.ndarray, masks: Sequence[np.ndarray | None], out_size: tuple[int, int]
) -> np.ndarray:
    """Film a region as depth layers, each through its own camera maps, composited back to front.

    Each layer's colour and mask are resampled together (Keys bicubic, as :func:`~estinet.data.camera.
    apply_camera_path`); the region must be large enough for every layer's path.

    Args:
        region: Source region, a still (H0, W0, 3) or a clip (T, H0, W0, 3), uint8.
        layer_maps: float64 (L, T, 2, 3) per-layer centre-relative maps (output -> region pixels).
        masks: L float32 (H0, W0) masks in region pixels, where each layer is present; ``None`` for a full layer
            (the first layer must be full).
        out_size: Output (h, w).

    Returns:
        float32 (T, h, w, 3) in [0, 1].
    """
    num_frames = layer_maps.shape[1]
    h, w = out_size
    frames = torch.from_numpy(np.ascontiguousarray(region)).to(torch.float32) / 255.0  # ([T,] H0, W0, 3)
    frames = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2)  # (T or 1, 3, H0, W0)
    h0, w0 = frames.shape[-2:]
    for maps in layer_maps:
        need_h, need_w = _required_size(maps, out_size)
        if h0 < need_h or w0 < need_w:
            raise ValueError(f"region of {h0}x{w0} is too small for a layer's path: it needs {need_h}x{need_w}")
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([xs - (w - 1) / 2.0, ys - (h - 1) / 2.0, np.ones_like(xs)], axis=-1)  # (h, w, 3)
    centre = np.array([(w0 - 1) / 2.0, (h0 - 1) / 2.0])
    out = torch.zeros((num_frames, 3, h, w))
    for maps, mask in zip(layer_maps, masks, strict=True):
        src = frames
        if mask is not None:
            alpha = torch.from_numpy(mask)[None, None].expand(frames.shape[0], 1, h0, w0)
            src = torch.cat([frames, alpha], dim=1)  # (T or 1, 4, H0, W0)
        pos = np.einsum("tij,hwj->thwi", maps, grid) + centre  # (T, h, w, 2) region x, y
        res = _bicubic_sample(src.contiguous(), pos[..., 0], pos[..., 1]).clamp_(0.0, 1.0)  # (T, 3 or 4, h, w)
        if mask is None:
            out = res
        else:
            a = res[:, 3:]
            out = a * res[:, :3] + (1.0 - a) * out
    return out.permute(0, 2, 3, 1).contiguous().numpy()  # (T, h, w, 3)


def blob_mask(size: tuple[int, int], harmonics: np.ndarray) -> np.ndarray:
    """Soft blob filling a (h, w) box: an ellipse with a harmonically modulated radius and a 1.5-pixel soft edge.

    Args:
        size: (h, w) of the box, >= 4 each.
        harmonics: (3, 2) amplitude and phase of the radius's 2nd, 3rd and 4th harmonics (amplitudes <= 0.12).

    Returns:
        float32 (h, w) in [0, 1], 0 on the box's border.
    """
    h, w = size
    ry, rx = (h - 3) / 2.0, (w - 3) / 2.0  # keep a pixel of zero alpha round the blob
    ys = np.arange(h, dtype=np.float64)[:, None] - (h - 1) / 2.0
    xs = np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2.0
    theta = np.arctan2(ys / ry, xs / rx)
    radius = np.ones_like(theta)
    for k, (amp, phase) in enumerate(harmonics, start=2):
        radius = radius + amp * np.cos(k * theta + phase)
    radius /= 1.0 + float(np.sum(harmonics[:, 0]))  # the blob stays inside its box
    dist = np.hypot(xs / rx, ys / ry)  # 1 on the unmodulated ellipse
    edge = (radius - dist) * min(rx, ry) / _EDGE  # signed distance in edge widths (approximately)
    return np.clip(edge + 0.5, 0.0, 1.0).astype(np.float32)


def _shift_bilinear(sprite: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Move a zero-bordered (h, w, c) sprite by (fx, fy) in [0, 1) pixels with bilinear weights: (h + 1, w + 1, c)."""
    h, w, c = sprite.shape
    pad = np.zeros((h + 1, w + 1, c), dtype=np.float32)
    out = np.zeros_like(pad)
    pad[:h, :w] = sprite
    out += (1 - fx) * (1 - fy) * pad
    out[:, 1:] += fx * (1 - fy) * pad[:, :-1]
    out[1:, :] += (1 - fx) * fy * pad[:-1, :]
    out[1:, 1:] += fx * fy * pad[:-1, :-1]
    return out


def add_objects(
    frames: np.ndarray, objects: Sequence[ObjectPlan], donors: Sequence[np.ndarray], background: np.ndarray
) -> None:
    """Composite moving objects onto frames, in place.

    Object ``k`` is centred at ``centre + velocity * (t - mid) + (background motion since the middle frame)``.

    Args:
        frames: float32 (T, h, w, 3) in [0, 1], modified in place.
        objects: The objects, back to front.
        donors: uint8 (Hd, Wd, 3) images indexed by :attr:`ObjectPlan.donor`.
        background: float64 (T, 2) background content motion ``(dx, dy)`` from frame ``t - 1`` to ``t``.
    """
    num_frames, h, w = frames.shape[:3]
    mid = (num_frames - 1) // 2
    drift = np.cumsum(background, axis=0)
    drift -= drift[mid]  # (T, 2) background displacement relative to the middle frame
    for obj in objects:
        donor = donors[obj.donor]
        sh, sw = min(obj.size[0], donor.shape[0]), min(obj.size[1], donor.shape[1])
        y0 = round(obj.corner[0] * (donor.shape[0] - sh))
        x0 = round(obj.corner[1] * (donor.shape[1] - sw))
        alpha = blob_mask((sh, sw), obj.harmonics)[:, :, None]  # (sh, sw, 1)
        sprite = np.concatenate([donor[y0 : y0 + sh, x0 : x0 + sw].astype(np.float32) / 255.0 * alpha, alpha], axis=2)
        for t in range(num_frames):
            cx = obj.centre[0] + obj.velocity[0] * (t - mid) + drift[t, 0]
            cy = obj.centre[1] + obj.velocity[1] * (t - mid) + drift[t, 1]
            left, top = cx - (sw - 1) / 2.0, cy - (sh - 1) / 2.0
            ix, iy = math.floor(left), math.floor(top)
            moved = _shift_bilinear(sprite, left - ix, top - iy)  # (sh + 1, sw + 1, 4) premultiplied
            ya, yb = max(iy, 0), min(iy + sh + 1, h)
            xa, xb = max(ix, 0), min(ix + sw + 1, w)
            if ya >= yb or xa >= xb:
                continue  # outside the frame at this time
            part = moved[ya - iy : yb - iy, xa - ix : xb - ix]
            frames[t, ya:yb, xa:xb] = part[..., :3] + (1.0 - part[..., 3:]) * frames[t, ya:yb, xa:xb]
