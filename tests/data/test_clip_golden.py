"""make_clip's default output is pinned: the held-out benchmark's clips must not change (golden_clips.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from estinet.data.sources import make_clip
from tests.data.make_golden_clips import CASES, write_sources

GOLDEN = Path(__file__).with_name("golden_clips.npz")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    with np.load(GOLDEN) as stored:
        data = {k: stored[k] for k in stored.files}
    found = write_sources({k: data[k] for k in ("still", "static_video", "moving_video")}, tmp_path_factory.mktemp("g"))
    return data, found


@pytest.mark.parametrize("case", range(len(CASES)))
def test_default_clip_matches_golden(golden: tuple[dict[str, np.ndarray], dict[str, object]], case: int) -> None:
    data, found = golden
    name, seed, camera, frames, size = CASES[case]
    clip, shifts = make_clip(found[name], frames, size, seed, camera)  # type: ignore[arg-type]
    expected = data[f"clip{case}"]
    assert clip.shape == expected.shape and clip.dtype == np.uint8
    diff = np.abs(clip.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1 and diff.mean() < 0.01  # bit-exact here; 1 LSB of float32 rounding allowed elsewhere
    np.testing.assert_allclose(shifts, data[f"shifts{case}"], atol=1e-4)
