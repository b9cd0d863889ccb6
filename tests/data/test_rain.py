"""Tests for the synthetic rain renderer (estinet.data.rain)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from estinet.data.rain import (
    PRESETS,
    RainParams,
    RainRenderer,
    frames_to_float,
    frames_to_uint8,
    get_preset,
    preset_names,
    random_params,
    synthesize_rain,
)
from estinet.data.rain_stats import orientation

H, W = 48, 64


def _scene(t: int = 4, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A textured clean clip (T, h, w, 3) in [0.1, 0.7] (dark enough that rain shows)."""
    rng = np.random.default_rng(seed)
    return (0.1 + 0.6 * rng.random((t, h, w, 3))).astype(np.float32)


def _single_layer(**changes: object) -> RainParams:
    """A one-layer rain with no jitter: every drop moves by the same velocity each frame."""
    base = {
        "num_layers": 1,
        "density": 1500.0,
        "fall_speed": 9.0,
        "speed_jitter": 0.0,
        "angle_jitter": 0.0,
        "opacity_jitter": 0.0,
        "wind_angle": 0.0,
        "exposure": 0.5,
        "blur": 0.0,
        "streak_width": 0.6,
    }
    base.update(changes)
    return RainParams(**base)  # type: ignore[arg-type]


def _xcorr_peak(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, int], float]:
    """Integer shift (dy, dx) that best maps ``a`` onto ``b`` (circular) and the normalised peak value."""
    a = a - a.mean()
    b = b - b.mean()
    corr = np.fft.ifft2(np.conj(np.fft.fft2(a)) * np.fft.fft2(b)).real
    corr /= np.sqrt((a * a).sum() * (b * b).sum())
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = iy - a.shape[0] if iy > a.shape[0] // 2 else iy
    dx = ix - a.shape[1] if ix > a.shape[1] // 2 else ix
    return (int(dy), int(dx)), float(corr.max())


# ---------------------------------------------------------------- parameters and presets


def test_presets_exist_and_validate() -> None:
    assert set(PRESETS) == {"light", "heavy", "ntu", "realistic-light", "realistic-heavy", "downpour", "storm"}
    for name in PRESETS:
        assert get_preset(name) is PRESETS[name]


def test_get_preset_unknown_lists_names() -> None:
    with pytest.raises(ValueError, match=r"'drizzle'.*heavy.*light.*ntu"):
        get_preset("drizzle")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("density", -1.0),
        ("num_layers", 0),
        ("fall_speed", 0.0),
        ("streak_width", -0.5),
        ("exposure", 0.0),
        ("exposure", 1.5),
        ("opacity", 1.2),
        ("haze", -0.1),
        ("wind_angle", 95.0),
        ("depth_range", (3.0, 1.0)),
        ("color", (1.0, 1.0, 2.0)),
        ("sparkle_density", float("nan")),
    ],
)
def test_params_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RainParams(**{field: value})  # type: ignore[arg-type]


def test_replace_validates_and_rejects_unknown_fields() -> None:
    p = get_preset("light").replace(density=10.0)
    assert p.density == 10.0 and p.num_layers == get_preset("light").num_layers
    with pytest.raises(ValueError, match="densty"):
        get_preset("light").replace(densty=1.0)
    with pytest.raises(ValueError, match="density"):
        get_preset("light").replace(density=-5.0)


def test_renderer_argument_errors() -> None:
    with pytest.raises(TypeError, match="RainParams"):
        RainRenderer("light", H, W)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="height=0"):
        RainRenderer(get_preset("light"), 0, W)
    r = RainRenderer(get_preset("light"), H, W)
    with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
        r.render(np.zeros((H, W + 1, 3), np.float32))
    with pytest.raises(ValueError, match="frames_to_float"):
        r.render(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="camera_shifts"):
        r.render_clip(_scene(3), camera_shifts=np.zeros((2, 2)))


def test_uint8_helpers_round_trip() -> None:
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    f = frames_to_float(u8)
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    assert np.array_equal(frames_to_uint8(f), u8)
    assert frames_to_uint8(np.array([-0.2, 0.5, 1.7])).tolist() == [0, 128, 255]
    with pytest.raises(TypeError, match="uint8"):
        frames_to_float(f)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_same_seed_is_byte_identical_and_seeds_differ(name: str) -> None:
    clip = _scene(3)
    a_rainy, a_alpha = RainRenderer(get_preset(name), H, W, seed=7).render_clip(clip)
    b_rainy, b_alpha = RainRenderer(get_preset(name), H, W, seed=7).render_clip(clip)
    c_rainy, c_alpha = RainRenderer(get_preset(name), H, W, seed=8).render_clip(clip)
    assert a_rainy.tobytes() == b_rainy.tobytes()
    assert a_alpha.tobytes() == b_alpha.tobytes()
    assert not np.array_equal(a_alpha, c_alpha)
    assert not np.array_equal(a_rainy, c_rainy)


def test_deterministic_across_torch_thread_counts() -> None:
    clip = _scene(2, 120, 160)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = RainRenderer(get_preset("heavy"), 120, 160, seed=3).render_clip(clip)
        torch.set_num_threads(2)
        two = RainRenderer(get_preset("heavy"), 120, 160, seed=3).render_clip(clip)
    finally:
        torch.set_num_threads(threads)
    assert one[0].tobytes() == two[0].tobytes() and one[1].tobytes() == two[1].tobytes()


def test_clip_continues_the_time_line_and_matches_render() -> None:
    clip = _scene(6)
    whole = RainRenderer(get_preset("ntu"), H, W, seed=1).render_clip(clip)
    r = RainRenderer(get_preset("ntu"), H, W, seed=1)
    first = r.render_clip(clip[:2])
    rest = [r.render(clip[t]) for t in range(2, 6)]
    assert np.array_equal(whole[1][:2], first[1])
    assert np.array_equal(whole[0][2:], np.stack([x[0] for x in rest]))
    assert np.array_equal(whole[1][2:], np.stack([x[1] for x in rest]))
    assert r.frame_index == 6


def test_synthesize_rain_equals_renderer() -> None:
    clip = _scene(3)
    rainy, alpha = synthesize_rain(clip, "light", seed=5)
    ref = RainRenderer(get_preset("light"), H, W, seed=5).render_clip(clip)
    assert np.array_equal(rainy, ref[0]) and np.array_equal(alpha, ref[1])
    with pytest.raises(ValueError, match="unknown rain preset"):
        synthesize_rain(clip, "fog")


def test_rain_does_not_depend_on_content() -> None:
    a = RainRenderer(get_preset("heavy"), H, W, seed=2).render_clip(_scene(3, seed=0))[1]
    b = RainRenderer(get_preset("heavy"), H, W, seed=2).render_clip(_scene(3, seed=1))[1]
    assert np.array_equal(a, b)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("name", ["heavy", "light", "ntu"])
def test_ranges_dtypes_and_brightening(name: str) -> None:
    clip = _scene(4)
    rainy, alpha = RainRenderer(get_preset(name), H, W, seed=0).render_clip(clip)
    assert rainy.shape == clip.shape and alpha.shape == clip.shape[:3]
    assert rainy.dtype == np.float32 and alpha.dtype == np.float32
    assert rainy.min() >= 0.0 and rainy.max() <= 1.0
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert alpha.max() > 0.2  # there is visible rain
    diff = rainy - clip
    assert diff.mean() > 0  # rain brightens on average
    assert np.quantile(diff, 0.01) > -0.03  # and hardly darkens anything (only the haze over bright pixels)


def test_light_rain_never_darkens_and_leaves_rain_free_pixels_untouched() -> None:
    clip = np.full((3, H, W, 3), 0.4, np.float32)
    rainy, alpha = RainRenderer(get_preset("light"), H, W, seed=0).render_clip(clip)
    assert (rainy >= clip).all()
    free = alpha == 0
    assert free.mean() > 0.3  # the alpha layer marks rain-free pixels ...
    assert np.array_equal(rainy[free], clip[free])  # ... and those are exactly the clean ones
    assert (rainy[alpha > 0.05] > clip[alpha > 0.05]).all()


def test_haze_veils_everything_in_heavy() -> None:
    clip = np.full((2, H, W, 3), 0.2, np.float32)
    p = get_preset("heavy")
    rainy, alpha = RainRenderer(p, H, W, seed=0).render_clip(clip)
    free = alpha == 0
    expected = 0.2 * (1 - p.haze) + p.haze * np.asarray(p.haze_color, np.float32)
    np.testing.assert_allclose(rainy[free], np.broadcast_to(expected, rainy[free].shape), atol=1e-6)


def test_heavy_has_more_rain_than_light() -> None:
    clip = _scene(3, 120, 160)
    cover = {}
    for name in PRESETS:
        alpha = RainRenderer(get_preset(name), 120, 160, seed=0).render_clip(clip)[1]
        cover[name] = (alpha > 0.05).mean()
    assert cover["heavy"] > 1.5 * cover["light"]
    assert cover["heavy"] > cover["ntu"]


def test_downpour_is_a_field_of_fainter_shorter_streaks_than_realistic_heavy() -> None:
    clip = np.full((2, 120, 160, 3), 0.3, np.float32)
    layers = {}
    for name in ("realistic-heavy", "downpour"):
        params = replace(get_preset(name), haze=0.0, splash_density=0.0)  # the streaks alone
        layers[name] = RainRenderer(params, 120, 160, seed=0).render_clip(clip)[1]
    heavy, downpour = layers["realistic-heavy"], layers["downpour"]
    assert (downpour > 0.02).mean() >= 0.9  # streaks over the whole frame
    assert np.percentile(downpour, 90) < 0.85 * np.percentile(heavy, 90)  # each fainter
    p_heavy, p_down = get_preset("realistic-heavy"), get_preset("downpour")
    assert p_down.fall_speed * p_down.exposure < 0.5 * p_heavy.fall_speed * p_heavy.exposure  # shorter
    assert p_down.density > 3 * p_heavy.density  # many more


def test_density_scales_coverage() -> None:
    clip = _scene(3, 120, 160)
    means = []
    for density in (200.0, 400.0):
        alpha = RainRenderer(_single_layer(density=density, opacity=0.3), 120, 160, seed=4).render_clip(clip)[1]
        means.append(alpha.mean())
    assert 1.6 < means[1] / means[0] < 2.4
    zero = RainRenderer(_single_layer(density=0.0), 120, 160, seed=4).render_clip(clip)
    assert zero[1].max() == 0.0 and np.array_equal(zero[0], clip)


def test_near_layers_are_longer_wider_and_stronger() -> None:
    r = RainRenderer(get_preset("ntu"), 32, 32, seed=0)
    near, far = r._layers[0], r._layers[-1]
    # Sprite footprint (pixels per drop) and peak opacity shrink with depth; near drops fall faster.
    assert (near.weights > 0).sum(axis=1).mean() > 2 * (far.weights > 0).sum(axis=1).mean()
    assert near.opacity * near.weights.max() > far.opacity * far.weights.max()
    assert np.hypot(near.vx, near.vy).mean() > 2 * np.hypot(far.vx, far.vy).mean()


# ---------------------------------------------------------------- temporal coherence


@pytest.mark.parametrize("wind", [0.0, 20.0])
def test_drops_fall_coherently(wind: float) -> None:
    params = _single_layer(wind_angle=wind)
    alpha = RainRenderer(params, 96, 128, seed=0).render_clip(np.zeros((4, 96, 128, 3), np.float32))[1]
    vy = params.fall_speed * np.cos(np.radians(wind))
    vx = params.fall_speed * np.sin(np.radians(wind))
    for t in range(3):
        (dy, dx), peak = _xcorr_peak(alpha[t], alpha[t + 1])
        assert abs(dy - vy) <= 1 and abs(dx - vx) <= 1
        assert peak > 0.6  # the same drops, moved: a re-sampled field would correlate near 0
    (dy, dx), peak = _xcorr_peak(alpha[0], alpha[0])
    assert (dy, dx) == (0, 0)


def test_independent_frames_do_not_correlate() -> None:
    params = _single_layer()
    a = RainRenderer(params, 96, 128, seed=0).render(np.zeros((96, 128, 3), np.float32))[1]
    b = RainRenderer(params, 96, 128, seed=1).render(np.zeros((96, 128, 3), np.float32))[1]
    assert _xcorr_peak(a, b)[1] < 0.3  # so the coherence test above can fail


def test_camera_shift_moves_the_drops_with_the_scene() -> None:
    params = _single_layer()
    shifts = np.tile(np.array([[4.0, -2.0]]), (4, 1))
    alpha = RainRenderer(params, 96, 128, seed=0).render_clip(np.zeros((4, 96, 128, 3), np.float32), shifts)[1]
    (dy, dx), peak = _xcorr_peak(alpha[1], alpha[2])
    assert abs(dy - (params.fall_speed - 2.0)) <= 1 and abs(dx - 4.0) <= 1 and peak > 0.6


def test_field_persists_over_long_clips() -> None:
    """Drops respawn when they leave, so the amount of rain stays steady and never runs out."""
    r = RainRenderer(get_preset("light"), 96, 128, seed=0)
    frame = np.zeros((96, 128, 3), np.float32)
    means = np.array([r.render(frame)[1].mean() for _ in range(60)])
    assert means.min() > 0.4 * means.mean()
    assert means[40:].mean() == pytest.approx(means[:20].mean(), rel=0.25)


# ---------------------------------------------------------------- sizes and speed


@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 5), (2, 3), (5, 131)])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_tiny_and_odd_sizes(name: str, h: int, w: int) -> None:
    clip = _scene(5, h, w)
    rainy, alpha = RainRenderer(get_preset(name), h, w, seed=0).render_clip(clip)
    assert rainy.shape == (5, h, w, 3) and alpha.shape == (5, h, w)
    assert np.isfinite(rainy).all() and rainy.min() >= 0 and rainy.max() <= 1
    assert alpha.min() >= 0 and alpha.max() <= 1


def test_render_out_buffers() -> None:
    frame = _scene(1)[0]
    a = RainRenderer(get_preset("heavy"), H, W, seed=0).render(frame)
    out = (np.empty((H, W, 3), np.float32), np.empty((H, W), np.float32))
    b = RainRenderer(get_preset("heavy"), H, W, seed=0).render(frame, out=out)
    assert b[0] is out[0] and b[1] is out[1]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_speed_640x480(name: str) -> None:
    """Loose regression guard (the budget is 20 ms on one core; see benchmarks/bench_rain.py)."""
    frame = _scene(1, 480, 640)[0]
    r = RainRenderer(get_preset(name), 480, 640, seed=0)
    r.render(frame)
    start = time.perf_counter()
    for _ in range(10):
        r.render(frame)
    assert (time.perf_counter() - start) / 10 < 0.1


# ---------------------------------------------------------------- second generation


def test_first_generation_presets_render_as_before() -> None:
    """light / heavy / ntu give the frames of the renderer before its second generation (numbers stay comparable)."""
    from tests.data.make_golden_rain import FRAMES, SEED, SHIFT, SIZE, scene

    golden = np.load(Path(__file__).with_name("golden_rain.npz"))
    for name in ("light", "heavy", "ntu"):
        renderer = RainRenderer(get_preset(name), *SIZE, seed=SEED)
        rainy, alpha = renderer.render_clip(scene(), np.tile(np.array([SHIFT]), (FRAMES, 1)))
        np.testing.assert_allclose(rainy, golden[f"{name}_rainy"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(alpha, golden[f"{name}_alpha"], atol=1e-6, rtol=0)


def test_random_preset_is_seeded_and_spans_the_space() -> None:
    assert get_preset("random", seed=3) == random_params(3)
    assert random_params(3) != random_params(4)
    with pytest.raises(ValueError, match="seed"):
        get_preset("random")
    assert "random" in preset_names() and set(PRESETS) < set(preset_names())
    draws = [random_params(s) for s in range(300)]
    angles = np.array([d.wind_angle for d in draws])
    assert angles.min() < -35 and angles.max() > 35  # the issue asks for at least +-35 degrees
    density = np.array([d.density for d in draws])
    assert density.min() < 200 and density.max() > 5000
    assert any(d.lens_drops > 0 for d in draws) and any(d.lens_drops == 0 for d in draws)
    assert any(d.haze > 0 for d in draws) and any(d.haze == 0 for d in draws)


@pytest.mark.parametrize("angle", [-35.0, 0.0, 20.0, 35.0])
def test_wind_angle_is_honoured(angle: float) -> None:
    params = _single_layer(wind_angle=angle, fall_speed=40.0, exposure=1.0, density=400.0, env_gain=0.9)
    _, alpha = RainRenderer(params, 160, 160, seed=2).render(np.full((160, 160, 3), 0.3, np.float32))
    assert abs(orientation(alpha) - angle) < 3.0


def test_coverage_follows_density_up_to_a_quarter_of_the_frame() -> None:
    frame = np.full((128, 128, 3), 0.3, np.float32)
    coverage = []
    for density in (300.0, 1500.0, 6000.0):
        params = get_preset("realistic-heavy").replace(density=density, haze=0.0, splash_density=0.0)
        rainy, _ = RainRenderer(params, 128, 128, seed=1).render(frame)
        coverage.append(float((np.abs(rainy - frame).max(axis=-1) > 6 / 255).mean()))
    assert coverage[0] < coverage[1] < coverage[2]
    assert coverage[0] < 0.1 and coverage[2] > 0.2


def test_environment_lit_streaks_add_more_over_dark_backgrounds() -> None:
    """A streak's radiance is the scene's light around it, so it adds more over a dark pixel than a bright one."""
    h, w = 96, 128
    frame = np.full((h, w, 3), 0.15, np.float32)
    frame[:, w // 2 :] = 0.85  # dark left half, bright right half
    params = get_preset("realistic-heavy").replace(haze=0.0, splash_density=0.0)
    rainy, alpha = RainRenderer(params, h, w, seed=4).render(frame)
    gain = (rainy - frame).mean(axis=-1)
    rainy_px = alpha > 0.05
    left, right = rainy_px.copy(), rainy_px.copy()
    left[:, w // 2 - 8 :] = False
    right[:, : w // 2 + 8] = False
    assert gain[left].mean() > 2 * max(gain[right].mean(), 1e-4)
    assert gain[left].mean() > 0


def test_environment_light_makes_rain_depend_on_content_only_when_on() -> None:
    a, b = _scene(2, seed=1), _scene(2, seed=2) * 0.5
    for name, depends in (("light", False), ("realistic-light", True)):
        ra = RainRenderer(get_preset(name), H, W, seed=0).render_clip(a)[0] - a
        rb = RainRenderer(get_preset(name), H, W, seed=0).render_clip(b)[0] - b
        _, alpha_a = RainRenderer(get_preset(name), H, W, seed=0).render_clip(a)
        _, alpha_b = RainRenderer(get_preset(name), H, W, seed=0).render_clip(b)
        np.testing.assert_array_equal(alpha_a, alpha_b)  # the drops never depend on the content
        assert (not np.allclose(ra, rb, atol=1e-3)) if depends else True


def test_haze_grows_with_depth() -> None:
    params = RainParams(density=0.0, haze=0.3, haze_gradient=1.0)
    frame = np.zeros((64, 48, 3), np.float32)
    rainy, alpha = RainRenderer(params, 64, 48, seed=0).render(frame)
    assert float(alpha.max()) == 0.0  # haze is not rain: alpha stays 0
    rows = rainy.mean(axis=(1, 2))
    assert rows[:8].mean() > 3 * rows[-8:].mean()  # the far (top) scene is veiled more than the near (bottom)
    uniform, _ = RainRenderer(params.replace(haze_gradient=0.0), 64, 48, seed=0).render(frame)
    assert np.ptp(uniform.mean(axis=(1, 2))) < 1e-6


def test_splashes_only_on_the_ground() -> None:
    params = RainParams(density=0.0, splash_density=20000.0, splash_opacity=0.6)
    frame = np.full((64, 64, 3), 0.2, np.float32)
    r = RainRenderer(params, 64, 64, seed=0)
    _, alpha1 = r.render(frame)
    _, alpha2 = r.render(frame)
    assert alpha1[:28].max() == 0 and alpha1[32:].max() > 0.3
    assert not np.array_equal(alpha1, alpha2)  # a splash lasts one frame


def test_lens_drops_persist_and_refract() -> None:
    params = RainParams(density=0.0, lens_drops=3.0, lens_drop_radius=8.0)
    clip = _scene(4, 64, 64)
    r = RainRenderer(params, 64, 64, seed=3)
    assert len(r._lens) > 0
    rainy, alpha = r.render_clip(clip)
    covered = alpha > 0.5
    assert covered.any(axis=(1, 2)).all()  # on every frame
    assert (covered[0] & covered[-1]).sum() > 0.5 * covered[0].sum()  # they stay put (slide slowly)
    assert np.abs(rainy - clip)[covered].mean() > 0.05  # and show something else than the pixels behind them


def test_new_presets_are_deterministic_and_in_range() -> None:
    clip = _scene(3)
    for name in ("realistic-light", "realistic-heavy", "storm"):
        a = RainRenderer(get_preset(name), H, W, seed=9).render_clip(clip)
        b = RainRenderer(get_preset(name), H, W, seed=9).render_clip(clip)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[0].min() >= 0 and a[0].max() <= 1 and a[1].min() >= 0 and a[1].max() <= 1


def test_second_generation_fields_validate() -> None:
    for field_name, value in (("haze_gradient", 1.5), ("env_gain", -1.0), ("lens_drop_radius", 0.0), ("env_bias", 2)):
        with pytest.raises(ValueError, match=field_name):
            RainParams(**{field_name: value})


@pytest.mark.parametrize("name", ["heavy", "realistic-heavy", "light"])
def test_veil_clip_is_the_rainy_frame_without_its_streaks(name: str) -> None:
    clip = _scene(3, 72, 96, seed=3)
    p = get_preset(name)
    p = replace(p, density=p.density / 20, splash_density=0.0)  # sparse enough to leave pixels free of streaks
    renderer = RainRenderer(p, 72, 96, seed=2)
    veiled = renderer.veil_clip(clip)  # the haze map is fixed per clip, before or after rendering
    rainy, alpha = renderer.render_clip(clip)
    assert veiled.shape == clip.shape and veiled.dtype == np.float32
    free = alpha < 1e-4  # (nearly) rain-free pixels: the veil alone
    assert free.mean() > 0.1
    np.testing.assert_allclose(rainy[free], veiled[free], atol=1e-4)
    if p.haze == 0:
        np.testing.assert_array_equal(veiled, clip)
    else:  # a veil everywhere, deeper (stronger) at the top of the frame where the preset grades it by depth
        assert (np.abs(veiled - clip).max(axis=-1) > 1 / 255).mean() > 0.9
        top, bottom = (np.abs(veiled - clip)[:, rows].mean() for rows in (slice(0, 12), slice(-12, None)))
        assert top > bottom if p.haze_gradient > 0 else top == pytest.approx(bottom, rel=0.2)
    np.testing.assert_array_equal(renderer.veil_clip(clip[0]), veiled[0])  # one frame works as well


def test_veil_clip_rejects_frames_of_another_size_or_type() -> None:
    renderer = RainRenderer(get_preset("heavy"), H, W, seed=0)
    with pytest.raises(ValueError, match="expected"):
        renderer.veil_clip(np.zeros((2, H + 1, W, 3), np.float32))
    with pytest.raises(ValueError, match="frames_to_float"):
        renderer.veil_clip(np.zeros((2, H, W, 3), np.uint8))
