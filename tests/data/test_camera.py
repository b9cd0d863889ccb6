"""Tests for synthetic camera motion (estinet.data.camera)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from estinet.data.camera import (
    CAMERA_PRESETS,
    MIXED_WEIGHTS,
    CameraMotion,
    CameraPath,
    apply_camera_path,
    content_shifts,
    get_camera_preset,
)

PERIOD = 64  # output size of the phase-correlation tests; the texture repeats with this period


def _periodic_texture(h0: int, w0: int, seed: int = 0) -> np.ndarray:
    """A band-limited texture (H0, W0, 3) in [0.2, 0.8] that repeats every PERIOD pixels in x and y.

    An output window of PERIOD x PERIOD then shows one full period, so phase correlation between two
    frames has no wrap-around error and measures the true shift.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h0, 0:w0].astype(np.float64)
    tex = np.zeros((h0, w0))
    for _ in range(60):
        kx, ky = rng.integers(-7, 8, size=2)
        amp = rng.uniform(0.5, 1.0) / (1.0 + math.hypot(kx, ky))
        tex += amp * np.cos(2 * np.pi * (kx * xx + ky * yy) / PERIOD + rng.uniform(0, 2 * np.pi))
    tex = 0.2 + 0.6 * (tex - tex.min()) / (tex.max() - tex.min())
    return np.repeat(tex[:, :, None], 3, axis=2).astype(np.float32)


def _natural_still(h0: int = 200, w0: int = 240) -> np.ndarray:
    """A crop of scikit-image's astronaut, float32 (h0, w0, 3) in [0, 1]."""
    from skimage.data import astronaut

    return (astronaut()[:h0, 150 : 150 + w0] / 255.0).astype(np.float32)


# ---------------------------------------------------------------- motion parameters


def test_presets() -> None:
    assert set(CAMERA_PRESETS) == {"static", "pan", "handheld"}
    assert get_camera_preset("pan").pan_speed[1] == 6.0
    with pytest.raises(ValueError, match=r"'dolly'.*handheld.*pan.*static"):
        get_camera_preset("dolly")
    with pytest.raises(ValueError, match="CameraPath"):
        get_camera_preset("mixed")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pan_speed", (3.0, 1.0)),
        ("pan_speed", (-1.0, 1.0)),
        ("pan_direction_spread", 120.0),
        ("zoom_rate", -0.1),
        ("rotation_rate", -1.0),
        ("jitter", -0.5),
        ("jitter_smoothness", 0.0),
    ],
)
def test_motion_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        CameraMotion(**{field: value})  # type: ignore[arg-type]


def test_path_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown camera preset"):
        CameraPath("dolly")
    with pytest.raises(TypeError, match="CameraMotion"):
        CameraPath(3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_frames"):
        CameraPath("pan").transforms(0)


def test_seeded_and_deterministic() -> None:
    a = CameraPath("handheld", seed=3).transforms(8)
    b = CameraPath("handheld", seed=3).transforms(8)
    c = CameraPath("handheld", seed=4).transforms(8)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    still = _natural_still()
    x = apply_camera_path(still, CameraPath("handheld", seed=3), (64, 80), num_frames=4)
    y = apply_camera_path(still, CameraPath("handheld", seed=3), (64, 80), num_frames=4)
    assert x.tobytes() == y.tobytes()


def test_mixed_is_mostly_moving_and_uses_every_preset() -> None:
    picks = [CameraPath("mixed", seed=s).preset for s in range(300)]
    counts = {name: picks.count(name) for name in MIXED_WEIGHTS}
    assert set(picks) == set(CAMERA_PRESETS)
    assert counts["static"] < 0.3 * len(picks)
    assert CameraPath("mixed", seed=0).preset == CameraPath("mixed", seed=0).preset


@pytest.mark.parametrize("seed", range(20))
def test_drawn_rates_stay_in_range(seed: int) -> None:
    path = CameraPath("handheld", seed=seed)
    motion = path.motion
    assert math.hypot(*path.velocity) <= motion.pan_speed[1] + 1e-9
    assert abs(path.zoom - 1.0) <= motion.zoom_rate / 100.0
    assert abs(path.rotation) <= motion.rotation_rate
    mats = path.transforms(5)
    # Consecutive frames differ by exactly one step of zoom and rotation.
    scale = np.sqrt(np.abs(np.linalg.det(mats[:, :, :2])))  # 1 / magnification
    np.testing.assert_allclose(scale[:-1] / scale[1:], path.zoom, rtol=1e-9)
    angle = np.degrees(np.arctan2(mats[:, 1, 0], mats[:, 0, 0]))
    np.testing.assert_allclose(np.diff(angle), path.rotation, atol=1e-9)


def test_pan_speeds_are_sub_pixel_and_up_to_six() -> None:
    speeds = np.array([math.hypot(*CameraPath("pan", seed=s).velocity) for s in range(200)])
    assert speeds.min() >= 0.5 and speeds.max() <= 6.0
    assert speeds.max() > 5.0 and (np.abs(speeds - np.round(speeds)) > 0.1).mean() > 0.5


def test_jitter_is_smooth_with_the_configured_amplitude() -> None:
    motion = CameraMotion(jitter=1.5, jitter_smoothness=4.0)
    offsets = CameraPath(motion, seed=0).transforms(4000)[:, :, 2]  # (T, 2): jitter only
    assert offsets.std(axis=0) == pytest.approx([1.5, 1.5], rel=0.15)
    lag1 = np.mean([np.corrcoef(offsets[:-1, i], offsets[1:, i])[0, 1] for i in range(2)])
    assert lag1 == pytest.approx(math.exp(-1 / 4.0), abs=0.05)


# ---------------------------------------------------------------- resampling


@pytest.mark.parametrize("seed", range(6))
def test_pure_pan_moves_content_by_the_velocity(seed: int) -> None:
    motion = CameraMotion(pan_speed=(0.3, 6.0), pan_direction_spread=90.0)
    path = CameraPath(motion, seed=seed)
    source = _periodic_texture(120, 140)
    clip = apply_camera_path(source, path, (PERIOD, PERIOD), num_frames=4)
    gray = clip.mean(axis=-1)
    vx, vy = path.velocity
    expected_content = content_shifts(path.transforms(4))
    for t in range(3):
        shift, _, _ = phase_cross_correlation(gray[t], gray[t + 1], upsample_factor=20, normalization=None)
        # The shift that registers frame t+1 onto frame t is the camera velocity (content moves by -v).
        assert abs(shift[0] - vy) < 0.1 and abs(shift[1] - vx) < 0.1, (shift, (vy, vx))
        np.testing.assert_allclose(expected_content[t + 1], [-vx, -vy], atol=1e-9)


def test_resampling_matches_the_analytic_image() -> None:
    """Keys bicubic (a = -0.5) reproduces a smooth image at arbitrary affine positions."""
    h0, w0 = 120, 150

    def f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 + 0.2 * np.sin(0.11 * x + 0.3) * np.cos(0.07 * y) + 0.1 * np.sin(0.05 * x + 0.06 * y)

    yy, xx = np.mgrid[0:h0, 0:w0].astype(np.float64)
    source = np.repeat(f(xx, yy)[:, :, None], 3, axis=2).astype(np.float32)
    path = CameraPath("handheld", seed=1)
    mats = path.transforms(3)
    h, w = 60, 80
    out = apply_camera_path(source, mats, (h, w))
    oy, ox = np.mgrid[0:h, 0:w].astype(np.float64)
    ox -= (w - 1) / 2
    oy -= (h - 1) / 2
    for t in range(3):
        xs = mats[t, 0, 0] * ox + mats[t, 0, 1] * oy + mats[t, 0, 2] + (w0 - 1) / 2
        ys = mats[t, 1, 0] * ox + mats[t, 1, 1] * oy + mats[t, 1, 2] + (h0 - 1) / 2
        np.testing.assert_allclose(out[t, :, :, 1], f(xs, ys), atol=1e-4)  # a = -0.75 would be off by 1e-3


def test_static_still_gives_identical_centre_crops() -> None:
    still = _natural_still(100, 120)
    out = apply_camera_path(still, CameraPath("static"), (60, 80), num_frames=3)
    assert out.shape == (3, 60, 80, 3) and out.dtype == np.float32
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    np.testing.assert_allclose(out[0], still[20:80, 20:100], atol=1e-5)


def test_static_clip_gives_the_centre_crop_of_each_frame() -> None:
    rng = np.random.default_rng(0)
    clip = rng.random((3, 50, 70, 3), dtype=np.float32)
    out = apply_camera_path(clip, CameraPath("static"), (30, 40))
    np.testing.assert_allclose(out, clip[:, 10:40, 15:55], atol=1e-5)


def test_uint8_in_uint8_out() -> None:
    still = (_natural_still(100, 120) * 255).round().astype(np.uint8)
    out = apply_camera_path(still, CameraPath("static"), (60, 80), num_frames=2)
    assert out.dtype == np.uint8
    assert np.abs(out[0].astype(int) - still[20:80, 20:100]).max() <= 1


@pytest.mark.parametrize("preset", ["pan", "handheld"])
def test_no_dark_borders(preset: str) -> None:
    still = 0.3 + 0.5 * _natural_still(240, 240)  # nothing darker than 0.3 in the source
    for seed in range(4):
        path = CameraPath(preset, seed=seed)
        out_size = (96, 128)
        need_h, need_w = path.required_source_size(6, out_size)
        assert need_h <= 240 and need_w <= 240
        out = apply_camera_path(still, path, out_size, num_frames=6)
        borders = np.concatenate([out[:, 0].ravel(), out[:, -1].ravel(), out[:, :, 0].ravel(), out[:, :, -1].ravel()])
        assert borders.min() > 0.3 - 0.03  # bicubic may overshoot slightly, but never reads black


def test_source_too_small_names_both_sizes() -> None:
    path = CameraPath(CameraMotion(pan_speed=(5.0, 5.0), pan_direction_spread=0.0), seed=0)
    need_h, need_w = path.required_source_size(9, (64, 64))
    assert need_w >= 64 + 40 and need_h >= 64  # 8 steps of 5 px horizontally
    ok = np.full((need_h, need_w, 3), 0.5, np.float32)
    assert apply_camera_path(ok, path, (64, 64), num_frames=9).shape == (9, 64, 64, 3)
    small = ok[:, : need_w - 1]
    with pytest.raises(ValueError, match=rf"source of {need_h}x{need_w - 1}.*out_size 64x64.*{need_h}x{need_w}"):
        apply_camera_path(small, path, (64, 64), num_frames=9)


def test_apply_argument_errors() -> None:
    still = np.zeros((50, 50, 3), np.float32)
    with pytest.raises(ValueError, match="num_frames is required"):
        apply_camera_path(still, CameraPath("static"), (20, 20))
    with pytest.raises(ValueError, match="disagrees"):
        apply_camera_path(np.zeros((3, 50, 50, 3), np.float32), CameraPath("static"), (20, 20), num_frames=4)
    with pytest.raises(ValueError, match=r"\(H0, W0, 3\)"):
        apply_camera_path(np.zeros((50, 50)), CameraPath("static"), (20, 20), num_frames=2)
    with pytest.raises(ValueError, match="transforms must have shape"):
        apply_camera_path(still, np.zeros((2, 3, 3)), (20, 20))
    with pytest.raises(ValueError, match="out_size"):
        apply_camera_path(still, CameraPath("static"), (0, 20), num_frames=2)


def test_clip_source_and_transform_array_agree() -> None:
    still = _natural_still(120, 150)
    path = CameraPath("pan", seed=5)
    clip = np.repeat(still[None], 4, axis=0)
    a = apply_camera_path(still, path, (48, 64), num_frames=4)
    b = apply_camera_path(clip, path.transforms(4), (48, 64))
    np.testing.assert_allclose(a, b, atol=1e-6)
