"""The shipped weights: what their model cards promise, checked on clips made here (no external data)."""

from __future__ import annotations

import numpy as np
import pytest

from estinet import Derainer
from estinet.checkpoint import load_model
from estinet.data.rain import RainRenderer, frames_to_float, frames_to_uint8, get_preset
from estinet.data.sources import heldout_sources, make_clip

# Share of pixels of a rain-free held-out clip that the shipped tiny returns within 1 level. Measured: 0.9862 (v3,
# which keeps the veil; v2: 0.8875; the first-generation tiny, without a rain gate: 0.8616).
WITHIN_ONE_LEVEL_SHARE = 0.98


def _heldout_clip(frames: int = 7, size: int = 160, seed: int = 4) -> np.ndarray:
    """A clean, still-camera clip (T, H, W, 3) uint8 of a held-out package source (never seen in training)."""
    sources = [s for s in heldout_sources() if s.name == "coffee"] or heldout_sources()
    if not sources:
        pytest.skip("no held-out package source (scikit-image) installed")
    clip, _ = make_clip(sources[0], frames, size, seed, "static")
    return clip


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_shipped_tiny_has_a_rain_gate_and_a_veil_head() -> None:
    _, config = load_model("tiny")
    assert config.rain_gate and config.veil_head and config.preset == "tiny"


def test_shipped_tiny_gives_a_frame_without_rain_back_within_one_level() -> None:
    clip = _heldout_clip()
    out = np.stack(list(Derainer(weights="tiny", device="cpu").derain_frames(iter(clip))))
    diff = np.abs(out.astype(np.int16) - clip.astype(np.int16))
    assert float((diff <= 1).mean()) >= WITHIN_ONE_LEVEL_SHARE


def test_shipped_tiny_removes_realistic_heavy_rain() -> None:
    clip = _heldout_clip()
    renderer = RainRenderer(get_preset("realistic-heavy"), clip.shape[1], clip.shape[2], seed=2)
    rainy = frames_to_uint8(renderer.render_clip(frames_to_float(clip))[0])
    out = np.stack(list(Derainer(weights="tiny", device="cpu").derain_frames(iter(rainy))))
    assert _mse(out, clip) < _mse(rainy, clip) / 4  # at least 6 dB better than the rainy input


def test_shipped_tiny_lifts_a_veil_on_request_and_keeps_it_by_default() -> None:
    clip = _heldout_clip()
    renderer = RainRenderer(get_preset("heavy"), clip.shape[1], clip.shape[2], seed=2)  # a uniform haze of 0.12
    rainy = frames_to_uint8(renderer.render_clip(frames_to_float(clip))[0])
    veiled = frames_to_uint8(renderer.veil_clip(frames_to_float(clip)))  # the clean clip under the veil alone

    kept = np.stack(list(Derainer(weights="tiny", device="cpu").derain_frames(iter(rainy))))
    lifted = np.stack(list(Derainer(weights="tiny", device="cpu", lift_veil=True).derain_frames(iter(rainy))))
    # the default keeps the veil: its output is nearer the veiled clip than the clean one (measured 0.63 of it; v2,
    # which lifts some veil wherever it sees rain: 2.79)
    assert _mse(kept, veiled) < 0.8 * _mse(kept, clip)
    # lifted, closer to the veil-free clip; measured 0.79 of the kept error: the head lifts part of `heavy`'s veil
    assert _mse(lifted, clip) < 0.85 * _mse(kept, clip)
