"""Tests for estinet.metrics: the metric protocol of SPEC §3 (docs/metric_protocol.md)."""

from __future__ import annotations

import io
import itertools
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from estinet.metrics import (
    METRIC_NAMES,
    PSNR_CAP_DB,
    SKIMAGE_MAP_BORDER,
    MetricAccumulator,
    frame_metrics,
    frame_metrics_batch,
    psnr,
    psnr_batch,
    rgb_to_y,
    scored_frame_indices,
    ssim,
    ssim_batch,
    ssim_map,
    to_uint8,
)

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2

# ----------------------------------------------------------------------------------------------------------------------
# Reference images and distortions
# ----------------------------------------------------------------------------------------------------------------------


def _real_image(name: str) -> np.ndarray:
    """A (120, 160, 3) uint8 crop of a scikit-image sample photograph."""
    data = pytest.importorskip("skimage.data")
    img = getattr(data, name)()
    return np.ascontiguousarray(img[40:160, 100:260])


def _noise(img: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1234)
    return np.clip(np.round(img + rng.normal(0.0, 12.0, img.shape)), 0, 255).astype(np.uint8)


def _blur(img: np.ndarray) -> np.ndarray:
    return np.array(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2.0)))


def _jpeg(img: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=20)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _quantise(img: np.ndarray) -> np.ndarray:
    return np.clip((img // 24) * 24 + 12, 0, 255).astype(np.uint8)


IMAGES = ("astronaut", "chelsea", "coffee")
DISTORTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "noise": _noise,
    "blur": _blur,
    "jpeg": _jpeg,
    "quantise": _quantise,
}


@pytest.fixture(scope="module", params=[(i, d) for i in IMAGES for d in DISTORTIONS], ids=lambda p: f"{p[0]}-{p[1]}")
def image_pair(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """(distorted, clean) uint8 (120, 160, 3) images."""
    name, distortion = request.param
    clean = _real_image(name)
    distorted = DISTORTIONS[distortion](clean)
    assert distorted.shape == clean.shape and distorted.dtype == np.uint8
    assert not np.array_equal(distorted, clean)
    return distorted, clean


def _skimage_ssim(a: np.ndarray, b: np.ndarray, **kwargs: object) -> tuple[float, np.ndarray]:
    """scikit-image's SSIM with the protocol's settings: (mean, full map)."""
    skm = pytest.importorskip("skimage.metrics")
    return skm.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, full=True, **kwargs
    )


def _matlab_ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Independent SSIM map with MATLAB ``ssim``'s definition: 11-tap Gaussian (sigma 1.5), replicate padding."""
    ndimage = pytest.importorskip("scipy.ndimage")

    def blur(z: np.ndarray) -> np.ndarray:
        # truncate 3.5 -> radius int(3.5 * 1.5 + 0.5) = 5 -> 11 taps; mode "nearest" is MATLAB's "replicate".
        return ndimage.gaussian_filter(z, sigma=1.5, truncate=3.5, mode="nearest")

    a = a.astype(np.float64)
    b = b.astype(np.float64)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))


# ----------------------------------------------------------------------------------------------------------------------
# to_uint8
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64])
def test_to_uint8_exact_levels(np_dtype: type) -> None:
    levels = np.arange(256)
    x = (levels / 255.0).astype(np_dtype)
    out = to_uint8(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, levels)
    out_t = to_uint8(torch.from_numpy(x))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.uint8
    np.testing.assert_array_equal(out_t.numpy(), levels)


def test_to_uint8_rounds_half_up_at_the_boundary() -> None:
    k = np.arange(255, dtype=np.float64)
    for convert in (np.asarray, torch.from_numpy):
        np.testing.assert_array_equal(to_uint8(convert((k + 0.5) / 255.0)), k + 1)  # exactly half a level rounds up
        np.testing.assert_array_equal(to_uint8(convert((k + 0.5 - 1e-6) / 255.0)), k)  # just below stays
        np.testing.assert_array_equal(to_uint8(convert((k + 0.5 + 1e-6) / 255.0)), k + 1)
    assert to_uint8(np.array([0.5 / 255.0]))[0] == 1
    assert to_uint8(torch.tensor([0.4999 / 255.0]))[0] == 0


def test_to_uint8_matches_save_image_convention() -> None:
    # torchvision.utils.save_image: x.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    x = torch.rand(2, 3, 17, 19, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.4 - 0.2
    expected = x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    out = to_uint8(x)
    assert out.shape == x.shape and out.device == x.device
    assert torch.equal(out, expected)
    np.testing.assert_array_equal(to_uint8(x.numpy()), expected.numpy())


def test_to_uint8_clips_and_validates() -> None:
    x = np.array([-0.3, -np.inf, 1.0, 1.7, np.inf], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 255, 255, 255])
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.tensor([np.nan]))
    with pytest.raises(TypeError, match=r"dtype int32.*x / 255"):
        to_uint8(np.zeros(3, dtype=np.int32))
    with pytest.raises(TypeError, match=r"numpy\.ndarray or torch\.Tensor"):
        to_uint8([0.5])  # type: ignore[type-var]
    frame = np.arange(6, dtype=np.uint8)
    out = to_uint8(frame)
    np.testing.assert_array_equal(out, frame)
    assert out is not frame


# ----------------------------------------------------------------------------------------------------------------------
# rgb_to_y
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rgb", "expected"),
    [
        ((0, 0, 0), 16.0),
        ((255, 255, 255), 235.0),
        ((255, 0, 0), 16.0 + 65.481),
        ((0, 255, 0), 16.0 + 128.553),
        ((0, 0, 255), 16.0 + 24.966),
        ((1, 2, 3), 16.0 + (65.481 * 1 + 128.553 * 2 + 24.966 * 3) / 255.0),
    ],
)
def test_rgb_to_y_values(rgb: tuple[int, int, int], expected: float) -> None:
    pixel = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
    y = rgb_to_y(pixel)
    assert y.shape == (1, 1) and y.dtype == np.float64
    assert y[0, 0] == pytest.approx(expected, abs=1e-12)
    assert float(rgb_to_y(torch.tensor(rgb, dtype=torch.uint8))) == pytest.approx(expected, abs=1e-12)


def test_rgb_to_y_is_not_rounded_and_layouts_agree() -> None:
    img = _real_image("coffee")
    y = rgb_to_y(img)
    assert not np.allclose(y, np.round(y)), "Y must keep its fractional part"
    assert y.min() >= 16.0 and y.max() <= 235.0
    np.testing.assert_allclose(rgb_to_y(img.astype(np.float32)), y, atol=1e-4)  # floats are on the 0..255 scale
    batch = torch.from_numpy(np.stack([img, img[::-1].copy()])).permute(0, 3, 1, 2)  # (2, 3, H, W)
    y_batch = rgb_to_y(batch, channel_axis=1)
    assert y_batch.shape == (2, *img.shape[:2]) and y_batch.dtype == torch.float64
    np.testing.assert_array_equal(y_batch[0].numpy(), y)
    np.testing.assert_array_equal(y_batch[1].numpy(), rgb_to_y(img[::-1]))


def test_rgb_to_y_errors() -> None:
    with pytest.raises(ValueError, match=r"needs 3 channels .*channel_axis=-1.*\(2, 3, 8, 8\)"):
        rgb_to_y(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="channel_axis 3 does not exist"):
        rgb_to_y(np.zeros((4, 4, 3)), channel_axis=3)
    with pytest.raises(TypeError, match="real 8-bit RGB"):
        rgb_to_y(np.zeros((4, 4, 3), dtype=bool))


# ----------------------------------------------------------------------------------------------------------------------
# PSNR
# ----------------------------------------------------------------------------------------------------------------------


def test_psnr_matches_skimage(image_pair: tuple[np.ndarray, np.ndarray]) -> None:
    skm = pytest.importorskip("skimage.metrics")
    distorted, clean = image_pair
    expected_rgb = skm.peak_signal_noise_ratio(clean, distorted, data_range=255)
    assert psnr(distorted, clean) == pytest.approx(expected_rgb, rel=1e-12)
    y_d, y_c = rgb_to_y(distorted), rgb_to_y(clean)
    assert psnr(y_d, y_c) == pytest.approx(skm.peak_signal_noise_ratio(y_c, y_d, data_range=255), rel=1e-12)
    assert psnr(torch.from_numpy(distorted), torch.from_numpy(clean)) == pytest.approx(expected_rgb, rel=1e-12)


def test_psnr_identical_is_inf_without_warnings() -> None:
    img = _real_image("chelsea")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(img, img) == math.inf
        batch = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
        other = batch.clone()
        other[1, 0, 0, 0] ^= 1
        values = psnr_batch(other, batch)
    assert values[0] == math.inf and math.isfinite(values[1])


@pytest.mark.parametrize("k", [1, 2, 5, 10, 50, 128])
def test_psnr_constant_offset(k: int) -> None:
    clean = np.random.default_rng(k).integers(0, 256 - k, size=(37, 53, 3)).astype(np.uint8)
    assert psnr(clean + np.uint8(k), clean) == pytest.approx(20 * math.log10(255 / k), rel=1e-13, abs=1e-12)
    assert psnr(clean, clean + np.uint8(k), data_range=1.0) == pytest.approx(20 * math.log10(1 / k), abs=1e-12)


@pytest.mark.parametrize("sigma", [3.0, 8.0])
def test_psnr_known_gaussian_noise(sigma: float) -> None:
    # Rounded N(0, sigma^2) noise on mid-grey: MSE = sigma^2 + 1/12 (Sheppard's correction for the rounding).
    rng = np.random.default_rng(7)
    clean = np.full((512, 512), 128.0)
    noisy = np.round(clean + rng.normal(0.0, sigma, clean.shape)).astype(np.uint8)
    expected = 10 * math.log10(255**2 / (sigma**2 + 1 / 12))
    assert psnr(noisy, clean.astype(np.uint8)) == pytest.approx(expected, abs=0.05)


def test_psnr_batch_matches_per_image_and_validates() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(0, 256, (3, 2, 16, 24), generator=gen, dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 2, 16, 24), generator=gen, dtype=torch.uint8)
    values = psnr_batch(a, b)
    assert values.shape == (3,) and values.dtype == torch.float64
    for i in range(3):
        assert float(values[i]) == pytest.approx(psnr(a[i], b[i]), rel=1e-13)
    with pytest.raises(ValueError, match=r"same shape, got \(3, 2, 16, 24\) and \(3, 2, 16, 23\)"):
        psnr_batch(a, b[..., :23])
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\) tensors, got shape \(2, 16, 24\)"):
        psnr_batch(a[0], b[0])
    with pytest.raises(ValueError, match="data_range must be a positive finite number"):
        psnr(a, b, data_range=0)
    with pytest.raises(TypeError, match=r"numpy\.ndarray or torch\.Tensor"):
        psnr([1, 2], [1, 2])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------------------------------------


def test_ssim_matches_skimage_on_y(image_pair: tuple[np.ndarray, np.ndarray]) -> None:
    distorted, clean = image_pair
    y_d, y_c = rgb_to_y(distorted), rgb_to_y(clean)
    sk_mean, sk_map = _skimage_ssim(y_d, y_c)
    ours = ssim_map(torch.from_numpy(y_d)[None, None], torch.from_numpy(y_c)[None, None])[0, 0].numpy()
    b = SKIMAGE_MAP_BORDER
    # The map agrees wherever the window lies inside the image (padding does not matter there) ...
    np.testing.assert_allclose(ours[b:-b, b:-b], sk_map[b:-b, b:-b], rtol=0, atol=1e-10)
    # ... so scikit-image's mean, which leaves out that border, is reproduced by map_border=5.
    assert ssim(y_d, y_c, map_border=b) == pytest.approx(sk_mean, rel=1e-10)
    # The protocol mean covers the whole map with replicate padding (MATLAB ssim).
    full_map = _matlab_ssim_map(y_d, y_c)
    np.testing.assert_allclose(ours, full_map, rtol=0, atol=1e-10)
    assert ssim(y_d, y_c) == pytest.approx(full_map.mean(), rel=1e-10)


def test_ssim_matches_skimage_on_rgb(image_pair: tuple[np.ndarray, np.ndarray]) -> None:
    distorted, clean = image_pair
    sk_mean, _ = _skimage_ssim(distorted, clean, channel_axis=-1)
    assert ssim(distorted, clean, channel_axis=-1, map_border=SKIMAGE_MAP_BORDER) == pytest.approx(sk_mean, rel=1e-10)
    chw = (np.moveaxis(distorted, -1, 0), np.moveaxis(clean, -1, 0))
    assert ssim(*chw, channel_axis=0, map_border=SKIMAGE_MAP_BORDER) == pytest.approx(sk_mean, rel=1e-10)
    per_channel = [_matlab_ssim_map(distorted[..., c], clean[..., c]).mean() for c in range(3)]
    assert ssim(distorted, clean, channel_axis=-1) == pytest.approx(np.mean(per_channel), rel=1e-10)


def test_ssim_border_is_not_cropped() -> None:
    # A noisy image whose distortion is strongest at the border: the whole-map mean must see it.
    clean = _real_image("astronaut")[..., 1]
    distorted = clean.copy()
    distorted[:3] = 255 - distorted[:3]
    sk_mean, _ = _skimage_ssim(distorted, clean)
    full = ssim(distorted, clean)
    assert ssim(distorted, clean, map_border=SKIMAGE_MAP_BORDER) == pytest.approx(sk_mean, rel=1e-10)
    assert full < sk_mean - 1e-3


def test_ssim_identical_and_symmetric() -> None:
    img = _real_image("chelsea")
    assert ssim(img, img, channel_axis=-1) == 1.0
    assert ssim(rgb_to_y(img), rgb_to_y(img)) == 1.0
    noisy = _noise(img)
    assert ssim(noisy, img, channel_axis=-1) == pytest.approx(ssim(img, noisy, channel_axis=-1), rel=1e-12)
    assert ssim(noisy, img, channel_axis=-1) < 0.95


@pytest.mark.parametrize(("level_a", "level_b"), [(100, 110), (0, 255), (16, 235)])
def test_ssim_of_flat_images_is_the_luminance_term(level_a: int, level_b: int) -> None:
    a = np.full((20, 30), level_a, dtype=np.uint8)
    b = np.full((20, 30), level_b, dtype=np.uint8)
    expected = (2 * level_a * level_b + C1) / (level_a**2 + level_b**2 + C1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)
    full_map = ssim_map(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])
    torch.testing.assert_close(full_map, torch.full_like(full_map, expected), rtol=1e-12, atol=0)


def test_ssim_decreases_with_noise() -> None:
    clean = _real_image("coffee")
    rng = np.random.default_rng(0)
    values = []
    for sigma in (2.0, 6.0, 15.0, 40.0):
        noisy = np.clip(np.round(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8)
        values.append(ssim(noisy, clean, channel_axis=-1))
    assert all(a > b for a, b in itertools.pairwise(values))


def test_ssim_small_images_use_the_whole_map() -> None:
    # Smaller than the 11x11 window (scikit-image refuses these); replicate padding still defines the map.
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(5, 7)).astype(np.uint8)
    b = rng.integers(0, 256, size=(5, 7)).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(_matlab_ssim_map(a, b).mean(), rel=1e-10)
    single = np.array([[10]], dtype=np.uint8)
    assert ssim(single, single) == 1.0


def test_ssim_batch_matches_per_image() -> None:
    gen = torch.Generator().manual_seed(11)
    clean = torch.randint(0, 256, (3, 3, 32, 40), generator=gen, dtype=torch.uint8)
    noise = torch.randint(-20, 21, clean.shape, generator=gen)
    noisy = (clean.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8)
    values = ssim_batch(noisy, clean)
    cropped = ssim_batch(noisy, clean, map_border=SKIMAGE_MAP_BORDER)
    assert values.shape == (3,) and values.dtype == torch.float64
    for i in range(3):
        assert float(values[i]) == pytest.approx(ssim(noisy[i], clean[i], channel_axis=0), rel=1e-13)
        expected = ssim(noisy[i], clean[i], channel_axis=0, map_border=SKIMAGE_MAP_BORDER)
        assert float(cropped[i]) == pytest.approx(expected, rel=1e-13)
    maps = ssim_map(noisy, clean)
    assert maps.shape == clean.shape and maps.dtype == torch.float64
    assert float(maps.min()) >= -1.0 and float(maps.max()) <= 1.0


def test_ssim_errors() -> None:
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"3-D image of shape \(16, 16, 3\); pass channel_axis=-1"):
        ssim(img, img)
    with pytest.raises(ValueError, match="channel_axis=0 given for a 2-D"):
        ssim(img[..., 0], img[..., 0], channel_axis=0)
    with pytest.raises(ValueError, match="channel_axis 5 does not exist"):
        ssim(img, img, channel_axis=5)
    with pytest.raises(ValueError, match=r"2-D or 3-D image.*ssim_batch"):
        ssim(img[None], img[None])
    with pytest.raises(ValueError, match="map_border=8 leaves no pixels of a 16x16 image"):
        ssim(img, img, channel_axis=-1, map_border=8)
    with pytest.raises(ValueError, match="map_border must be a non-negative int"):
        ssim(img, img, channel_axis=-1, map_border=-1)
    with pytest.raises(ValueError, match=r"same shape, got \(16, 16, 3\) and \(16, 15, 3\)"):
        ssim(img, img[:, :15], channel_axis=-1)
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\)"):
        ssim_batch(torch.zeros(16, 16), torch.zeros(16, 16))
    with pytest.raises(ValueError, match="data_range must be a positive finite number"):
        ssim(img, img, data_range=-1.0, channel_axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# Per-frame protocol
# ----------------------------------------------------------------------------------------------------------------------


def test_frame_metrics_follow_the_protocol() -> None:
    clean = _real_image("astronaut")
    restored = _jpeg(clean)
    values = frame_metrics(restored, clean)
    assert tuple(values) == METRIC_NAMES
    assert all(isinstance(v, float) for v in values.values())
    y_r, y_c = rgb_to_y(restored), rgb_to_y(clean)
    assert values["psnr_y"] == pytest.approx(psnr(y_r, y_c), rel=1e-13)
    assert values["ssim_y"] == pytest.approx(_matlab_ssim_map(y_r, y_c).mean(), rel=1e-10)
    assert values["psnr_rgb"] == pytest.approx(psnr(restored, clean), rel=1e-13)
    assert values["ssim_rgb"] == pytest.approx(ssim(restored, clean, channel_axis=-1), rel=1e-12)
    as_tensors = frame_metrics(torch.from_numpy(restored), torch.from_numpy(clean))
    assert as_tensors == pytest.approx(values, rel=1e-13)
    assert values["psnr_y"] > values["psnr_rgb"], "JPEG keeps luma better than chroma"
    assert frame_metrics(clean, clean) == {"psnr_y": math.inf, "ssim_y": 1.0, "psnr_rgb": math.inf, "ssim_rgb": 1.0}


def test_frame_metrics_batch_matches_single_frames() -> None:
    clean = np.stack([_real_image(n) for n in IMAGES])  # (3, H, W, 3)
    restored = np.stack([_noise(c) for c in clean])
    restored[1] = clean[1]
    batch = frame_metrics_batch(
        torch.from_numpy(restored).permute(0, 3, 1, 2), torch.from_numpy(clean).permute(0, 3, 1, 2)
    )
    assert set(batch) == set(METRIC_NAMES)
    for i in range(3):
        single = frame_metrics(restored[i], clean[i])
        for name in METRIC_NAMES:
            assert batch[name].shape == (3,) and batch[name].dtype == torch.float64
            assert float(batch[name][i]) == pytest.approx(single[name], rel=1e-13)
    assert float(batch["psnr_y"][1]) == math.inf


def test_frame_metrics_errors() -> None:
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match=r"pred must be 8-bit \(uint8\).*to_uint8"):
        frame_metrics(frame.astype(np.float32) / 255, frame)
    with pytest.raises(TypeError, match="gt must be 8-bit"):
        frame_metrics(frame, torch.zeros(8, 8, 3))
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) RGB frame, got shape \(3, 8, 8\)"):
        frame_metrics(np.moveaxis(frame, -1, 0), np.moveaxis(frame, -1, 0))
    with pytest.raises(ValueError, match="same shape"):
        frame_metrics(frame, frame[:4])
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) RGB frames"):
        frame_metrics_batch(torch.zeros(1, 8, 8, 3, dtype=torch.uint8), torch.zeros(1, 8, 8, 3, dtype=torch.uint8))


# ----------------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------------


def _m(p: float, s: float) -> dict[str, float]:
    """Metrics of one synthetic frame: Y and RGB values differ so mixing them up is caught."""
    return {"psnr_y": p, "ssim_y": s, "psnr_rgb": p - 2.0, "ssim_rgb": s - 0.1}


def test_sequence_mean_vs_frame_mean_with_unequal_lengths() -> None:
    acc = MetricAccumulator()
    acc.add_metrics("short", _m(30.0, 0.9), index=0)
    for t, (p, s) in enumerate([(20.0, 0.6), (22.0, 0.7), (24.0, 0.8)]):
        acc.add_metrics("long", _m(p, s), index=t)
    assert len(acc) == 4
    table = acc.sequences()
    assert list(table) == ["short", "long"]
    assert table["short"] == pytest.approx({"frames": 1, **_m(30.0, 0.9)})
    assert table["long"] == pytest.approx({"frames": 3, **_m(22.0, 0.7)})
    seq_mean = acc.sequence_mean()
    assert seq_mean == pytest.approx({"sequences": 2, "frames": 4, **_m(26.0, 0.8)})
    frame_mean = acc.frame_mean()
    assert frame_mean == pytest.approx({"sequences": 2, "frames": 4, **_m(24.0, 0.75)})


def test_duplicate_frames_are_rejected() -> None:
    acc = MetricAccumulator()
    acc.add_metrics("a", _m(30.0, 0.9), index=3)
    acc.add_metrics("b", _m(30.0, 0.9), index=3)  # same index, other sequence: fine
    acc.add_metrics("a", _m(30.0, 0.9))  # no index: not checked
    acc.add_metrics("a", _m(30.0, 0.9))
    with pytest.raises(ValueError, match="frame 3 of sequence 'a' was already scored"):
        acc.add_metrics("a", _m(31.0, 0.9), index=3)
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="frame 3 of sequence 'b' was already scored"):
        acc.add("b", frame, frame, index=3)
    assert len(acc) == 4
    with pytest.raises(ValueError, match="non-negative int or None, got -1"):
        acc.add_metrics("a", _m(30.0, 0.9), index=-1)


def test_add_scores_real_frames_and_caps_psnr() -> None:
    clean = _real_image("coffee")[:48, :64]
    noisy = _noise(clean)
    acc = MetricAccumulator()
    returned = acc.add("seq", noisy, clean, index=0)
    assert returned == pytest.approx(frame_metrics(noisy, clean), rel=1e-13)
    acc.add("seq", clean, clean, index=1)
    assert acc.frames("seq")[1] == (1, {"psnr_y": math.inf, "ssim_y": 1.0, "psnr_rgb": math.inf, "ssim_rgb": 1.0})
    mean = acc.sequence_mean()
    assert mean["psnr_y"] == pytest.approx((returned["psnr_y"] + PSNR_CAP_DB) / 2, rel=1e-13)
    assert mean["ssim_y"] == pytest.approx((returned["ssim_y"] + 1.0) / 2, rel=1e-13)

    uncapped = MetricAccumulator(psnr_cap=None)
    uncapped.add("seq", noisy, clean)
    uncapped.add("seq", clean, clean)
    assert uncapped.frame_mean()["psnr_rgb"] == math.inf
    capped_at_40 = MetricAccumulator(psnr_cap=40.0)
    capped_at_40.add_metrics("seq", returned)
    capped_at_40.add_metrics("seq", acc.frames("seq")[1][1])
    assert capped_at_40.frame_mean()["psnr_rgb"] == pytest.approx((returned["psnr_rgb"] + 40.0) / 2, rel=1e-13)
    with pytest.raises(ValueError, match="psnr_cap must be a positive number"):
        MetricAccumulator(psnr_cap=0.0)


def test_add_sequence_skip_ends() -> None:
    clean = _real_image("chelsea")[:32, :40]
    gts = np.stack([np.roll(clean, t, axis=1) for t in range(7)])  # (7, 32, 40, 3)
    preds = np.stack([_noise(g) for g in gts])
    acc = MetricAccumulator()
    acc.add_sequence("s2vd", preds, gts, skip_ends=2)
    frames = acc.frames("s2vd")
    assert [index for index, _ in frames] == [2, 3, 4]
    assert frames[0][1] == pytest.approx(frame_metrics(preds[2], gts[2]), rel=1e-13)
    # Adding the same frames again fails before anything is recorded.
    with pytest.raises(ValueError, match="frame 2 of sequence 's2vd' was already scored"):
        acc.add_sequence("s2vd", preds, gts)
    assert len(acc) == 3
    acc.add_sequence("all", list(preds[:3]), list(gts[:3]))
    assert acc.sequences()["all"]["frames"] == 3
    with pytest.raises(ValueError, match="has 7 restored frames but 6 ground truths"):
        acc.add_sequence("bad", preds, gts[:6])
    with pytest.raises(ValueError, match=r"skip_ends=4 drops all 7 frames.*skip_ends <= 3"):
        acc.add_sequence("short", preds, gts, skip_ends=4)


def test_scored_frame_indices() -> None:
    assert scored_frame_indices(10) == range(10)
    assert scored_frame_indices(10, 2) == range(2, 8)
    assert scored_frame_indices(5, 2) == range(2, 3)
    with pytest.raises(ValueError, match="skip_ends=3 drops all 5 frames"):
        scored_frame_indices(5, 3)
    with pytest.raises(ValueError, match="skip_ends must be a non-negative int"):
        scored_frame_indices(5, -1)


def test_accumulator_errors() -> None:
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="no frames were added"):
        acc.sequence_mean()
    with pytest.raises(ValueError, match="no frames were added"):
        acc.frame_mean()
    with pytest.raises(KeyError, match="no frames of sequence 'x'"):
        acc.frames("x")
    with pytest.raises(ValueError, match=r"lacks \['ssim_rgb'\]"):
        acc.add_metrics("a", {"psnr_y": 1.0, "ssim_y": 1.0, "psnr_rgb": 1.0})
    with pytest.raises(ValueError, match="are NaN"):
        acc.add_metrics("a", _m(math.nan, 0.5))
    with pytest.raises(TypeError, match="sequence must be a str"):
        acc.add_metrics(3, _m(30.0, 0.5))  # type: ignore[arg-type]
    assert len(acc) == 0
