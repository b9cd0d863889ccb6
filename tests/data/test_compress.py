"""Lossy compression of training clips (estinet.data.compress)."""

from __future__ import annotations

import numpy as np
import pytest

from estinet.data.compress import Compression, compress_clip, random_compression
from tests.helpers import textured_clip


def _clip(t: int = 4, h: int = 48, w: int = 64) -> np.ndarray:
    frames = textured_clip(t, h, w, seed=2, shift=1.0)[0].permute(0, 2, 3, 1).numpy()
    return np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.mark.parametrize("setting", [Compression("jpeg", 50), Compression("h264", 30)])
def test_compression_changes_the_frames_and_keeps_their_shape(setting: Compression) -> None:
    clip = _clip()
    out = compress_clip(clip, setting)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert 0.5 < _rmse(out, clip) < 30  # lossy, but still the same picture
    np.testing.assert_array_equal(out, compress_clip(clip, setting))  # deterministic


@pytest.mark.parametrize("codec", ["jpeg", "h264"])
def test_better_quality_means_smaller_error(codec: str) -> None:
    clip = _clip()
    low, high = (30, 90) if codec == "jpeg" else (40, 15)
    assert _rmse(compress_clip(clip, Compression(codec, high)), clip) < _rmse(
        compress_clip(clip, Compression(codec, low)), clip
    )


def test_odd_sizes_and_single_frames() -> None:
    clip = _clip(2, 33, 45)
    for setting in (Compression("jpeg", 70), Compression("h264", 25)):
        assert compress_clip(clip, setting).shape == clip.shape
        assert compress_clip(clip[:1], setting).shape == (1, 33, 45, 3)


def test_settings_and_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown codec 'webp'"):
        Compression("webp", 50)
    with pytest.raises(ValueError, match=r"h264 quality must be in 0\.\.51"):
        Compression("h264", 60)
    with pytest.raises(ValueError, match="uint8"):
        compress_clip(np.zeros((2, 8, 8, 3), np.float32), Compression("jpeg", 50))


def test_random_compression_draws_both_codecs_in_range() -> None:
    rng = np.random.default_rng(0)
    draws = [random_compression(rng) for _ in range(200)]
    assert {d.codec for d in draws} == {"jpeg", "h264"}
    assert all(40 <= d.quality <= 95 for d in draws if d.codec == "jpeg")
    assert all(18 <= d.quality <= 36 for d in draws if d.codec == "h264")
