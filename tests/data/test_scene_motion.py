"""Tests for scene motion in make_clip (estinet.data.parallax): parallax layers, moving objects, defaults kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estinet.data.camera import CameraMotion
from estinet.data.parallax import SceneMotion, blob_mask, boundary_mask, draw_scene_plan
from estinet.data.sources import CleanSource, clean_sources, make_clip
from tests.data.test_sources import _phase_corr, _texture

PAN = CameraMotion(pan_speed=(3.0, 3.0), pan_direction_spread=0.0)
PARALLAX = SceneMotion(fraction=1.0, parallax=1.0, objects=0.0, layers=(2, 2), near_gain=(2.0, 2.0))


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory) -> CleanSource:
    path = tmp_path_factory.mktemp("s") / "tex.png"
    Image.fromarray(_texture(240, 320, seed=3)[0]).save(path)
    return clean_sources([path])[0]


@pytest.fixture(scope="module")
def plain_and_donor(tmp_path_factory: pytest.TempPathFactory) -> tuple[CleanSource, CleanSource]:
    folder = tmp_path_factory.mktemp("p")
    Image.fromarray(np.full((200, 260, 3), 90, np.uint8)).save(folder / "grey.png")
    donor = np.zeros((120, 120, 3), np.uint8)
    donor[..., 0], donor[..., 1], donor[..., 2] = 250, 200, 150
    Image.fromarray(donor).save(folder / "donor.png")
    return tuple(clean_sources([folder / "grey.png", folder / "donor.png"]))  # type: ignore[return-value]


def test_default_and_zero_fraction_give_the_old_clip(still: CleanSource) -> None:
    for seed in range(3):
        clip, shifts = make_clip(still, 5, 64, seed)
        for value in (0.0, SceneMotion(fraction=0.0)):
            clip2, shifts2 = make_clip(still, 5, 64, seed, scene_motion=value)
            np.testing.assert_array_equal(clip, clip2)
            np.testing.assert_array_equal(shifts, shifts2)


def test_unchosen_seeds_give_the_old_clip(still: CleanSource) -> None:
    chosen = 0
    for seed in range(12):
        clip, shifts = make_clip(still, 4, 48, seed)
        clip2, shifts2 = make_clip(still, 4, 48, seed, scene_motion=0.3)
        np.testing.assert_array_equal(shifts, shifts2)  # base motion is the same camera path either way (scale 1)
        chosen += not np.array_equal(clip, clip2)
    assert 1 <= chosen <= 8  # about 30 % of the seeds


def test_scene_motion_is_deterministic(still: CleanSource) -> None:
    motion = SceneMotion(fraction=1.0, donors=(still,))
    for seed in (0, 5):
        a, sa = make_clip(still, 5, 72, seed, scene_motion=motion)
        b, sb = make_clip(still, 5, 72, seed, scene_motion=motion)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sa, sb)
    c, _ = make_clip(still, 5, 72, 1, scene_motion=motion)
    assert not np.array_equal(a, c)


def test_parallax_layers_move_by_different_amounts(still: CleanSource) -> None:
    for seed in range(3):
        clip, shifts = make_clip(still, 5, (96, 128), seed, camera=PAN, scene_motion=PARALLAX)
        assert clip.shape == (5, 96, 128, 3)
        np.testing.assert_allclose(np.hypot(*shifts[1:].T), 3.0, atol=1e-6)  # shifts stay the base layer's
        top_dx, _ = _phase_corr(clip[0, :28], clip[1, :28])  # top 30 %: base layer
        bottom_dx, _ = _phase_corr(clip[0, -11:], clip[1, -11:])  # bottom 12 %: near layer (gain 2)
        assert abs(abs(top_dx) - 3.0) < 0.3, top_dx
        assert abs(abs(bottom_dx) - 6.0) < 0.5, bottom_dx  # one global shift cannot align both


def test_moving_object_moves_on_a_static_background(plain_and_donor: tuple[CleanSource, CleanSource]) -> None:
    plain, donor = plain_and_donor
    motion = SceneMotion(
        fraction=1.0, parallax=0.0, objects=1.0, num_objects=(1, 1), object_speed=(4.0, 4.0), donors=(donor,)
    )
    clip, shifts = make_clip(plain, 5, 96, 11, camera="static", scene_motion=motion)
    np.testing.assert_array_equal(shifts, 0.0)
    centres = []
    for frame in clip.astype(np.float64):
        weight = np.clip((frame[..., 0] - 90.0) / 160.0, 0.0, 1.0)  # object coverage
        assert weight.sum() > 20
        ys, xs = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
        centres.append(((weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()))
    steps = np.hypot(*np.diff(np.asarray(centres), axis=0).T)
    np.testing.assert_allclose(steps, 4.0, atol=0.6)
    assert clip.min() >= 85  # no black borders or holes: only the grey background and the object


def test_scene_clip_has_no_dark_borders(still: CleanSource) -> None:
    lowest = int(_texture(240, 320, seed=3).min())
    motion = SceneMotion(fraction=1.0, donors=(still,))
    for seed in range(4):
        clip, _ = make_clip(still, 5, (80, 100), seed, camera="handheld", scene_motion=motion)
        assert clip.min() >= lowest - 8  # bicubic overshoot at most; nothing outside the source is sampled


def test_masks_are_soft_and_bounded() -> None:
    rng = np.random.default_rng(0)
    plan = draw_scene_plan(PARALLAX, 0, np.tile(np.eye(2, 3), (5, 1, 1)), (64, 64), 1)
    assert plan is not None and plan.gains == (1.0,)  # a static camera gets no parallax, objects instead
    assert len(plan.objects) >= 1
    mask = boundary_mask((0.2, 0.1, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0), (60, 80), (30.0, 40.0))
    assert mask.shape == (60, 80) and mask.min() >= 0 and mask.max() <= 1
    assert mask[0].max() < 0.01 and mask[-1].min() > 0.99
    blob = blob_mask((20, 30), np.stack([rng.uniform(0, 0.12, 3), rng.uniform(0, 6, 3)], axis=1))
    assert blob[10, 15] == 1.0 and blob[0].max() == 0 and blob[:, 0].max() == 0
    assert np.count_nonzero((blob > 0) & (blob < 1)) > 0


def test_scene_motion_validation(still: CleanSource) -> None:
    with pytest.raises(ValueError, match="scene_motion must be a fraction"):
        make_clip(still, 3, 32, 0, scene_motion=1.5)
    with pytest.raises(TypeError, match="scene_motion must be a float"):
        make_clip(still, 3, 32, 0, scene_motion="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SceneMotion\.layers"):
        SceneMotion(layers=(1, 2))
    with pytest.raises(ValueError, match=r"SceneMotion\.fraction"):
        SceneMotion(fraction=-0.1)


def test_moving_camera_video_is_unchanged(tmp_path: Path) -> None:
    folder = tmp_path / "moving"
    folder.mkdir()
    for t, frame in enumerate(_texture(80, 100, seed=1, t=6, shift=2.0)):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    source = clean_sources([folder])[0]
    assert source.camera == "moving"
    a, sa = make_clip(source, 4, 48, 2)
    b, sb = make_clip(source, 4, 48, 2, scene_motion=1.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
