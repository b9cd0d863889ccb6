"""Global motion compensation: accuracy, sign convention, degenerate inputs, resampling, streaming, dtype/device."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from estinet.models.motion import (
    GlobalMotion,
    StreamingMotion,
    align_to_centre,
    displacements_to_centre,
    pair_displacements,
    phase_correlation,
    rgb_to_luma,
    translate,
    translate_into,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ------------------------------------------------------------------------------------------------------------------
# Test content
# ------------------------------------------------------------------------------------------------------------------
def smooth_field(h: int, w: int, seed: int, slope: float = 1.0) -> torch.Tensor:
    """(h, w) float64 seeded random texture with a 1/f^slope amplitude spectrum (periodic), scaled to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(h, w, generator=g, dtype=torch.float64)
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    radius = (ky.square() + kx.square()).sqrt()
    spectrum = torch.fft.rfft2(noise) / radius.clamp_min(1.0 / max(h, w)) ** slope
    spectrum[0, 0] = 0
    field = torch.fft.irfft2(spectrum, s=(h, w))
    return (field - field.min()) / (field.max() - field.min())


def shifted_crops(
    image: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sub-pixel translations of a natural (non-periodic) crop.

    The image is mirrored into a smooth periodic tile, translated exactly in the Fourier domain, and the same window
    is cropped from the middle of the original and of every translated tile, so the crops share no wrap-around.

    Args:
        image: (H, W) float64 in [0, 1].
        shifts: (N, 2) content displacements (dy, dx) in pixels.
        size: (h, w) of the crops.

    Returns:
        ref (N, h, w) and mov (N, h, w) float32 with ``mov(p) = ref(p - shift)``.
    """
    tile = torch.cat([image, image.flip(0)], 0)
    tile = torch.cat([tile, tile.flip(1)], 1)  # (2H, 2W), periodic and continuous
    th, tw = tile.shape
    ky = torch.fft.fftfreq(th, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(tw, dtype=torch.float64)[None, :]
    spectrum = torch.fft.rfft2(tile)
    phase = -2 * math.pi * (ky * shifts[:, 0, None, None] + kx * shifts[:, 1, None, None])  # (N, th, tw2)
    moved = torch.fft.irfft2(spectrum * torch.polar(torch.ones_like(phase), phase), s=(th, tw))  # (N, th, tw)
    h, w = size
    y0, x0 = (th - h) // 2, (tw - w) // 2
    ref = tile[y0 : y0 + h, x0 : x0 + w].expand(len(shifts), h, w)
    return ref.float().contiguous(), moved[:, y0 : y0 + h, x0 : x0 + w].float().contiguous()


def natural_image() -> torch.Tensor:
    """(512, 512) float64 grey astronaut from scikit-image (skips when scikit-image is missing)."""
    data = pytest.importorskip("skimage.data")
    rgb = torch.from_numpy(data.astronaut()).double().permute(2, 0, 1) / 255.0
    return rgb_to_luma(rgb)


def clip_of_shifts(image: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, T, 3, h, w) grey RGB clip whose frame t is ``image`` moved by ``shifts[t]``."""
    _, mov = shifted_crops(image, shifts, size)
    return mov.clamp(0, 1)[None, :, None].expand(1, len(shifts), 3, *size).contiguous()


# ------------------------------------------------------------------------------------------------------------------
# Luma
# ------------------------------------------------------------------------------------------------------------------
def test_rgb_to_luma_bt601() -> None:
    x = torch.zeros(2, 5, 3, 4, 6)
    x[:, :, 0] = 1.0
    assert rgb_to_luma(x).shape == (2, 5, 4, 6)
    assert torch.allclose(rgb_to_luma(x), torch.full((2, 5, 4, 6), 0.299))
    assert torch.allclose(rgb_to_luma(torch.ones(3, 2, 2)), torch.ones(2, 2))
    with pytest.raises(ValueError, match="3, H, W"):
        rgb_to_luma(torch.zeros(4, 2, 2))
    with pytest.raises(TypeError, match="floating point"):
        rgb_to_luma(torch.zeros(3, 2, 2, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------------------------
# Estimation accuracy
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(480, 640), (96, 128)])
def test_known_subpixel_shift_recovered(size: tuple[int, int]) -> None:
    """(2.3, -1.7) and seeded random shifts in [-6, 6] are recovered within 0.1 px, at full and block-averaged size."""
    g = torch.Generator().manual_seed(1)
    shifts = torch.cat([torch.tensor([[2.3, -1.7]]), torch.rand(5, 2, generator=g) * 12 - 6]).double()
    ref, mov = shifted_crops(smooth_field(1024, 1024, seed=3), shifts, size)
    disp, conf = phase_correlation(ref, mov)
    assert disp.shape == (6, 2) and conf.shape == (6,)
    assert (disp.double() - shifts).abs().max() < 0.1, (disp, shifts)
    assert (conf > 0.5).all()


def test_natural_image_subpixel_accuracy() -> None:
    g = torch.Generator().manual_seed(2)
    shifts = (torch.rand(6, 2, generator=g) * 12 - 6).double()
    ref, mov = shifted_crops(natural_image(), shifts, (480, 640))
    disp, _ = phase_correlation(ref, mov)
    assert (disp.double() - shifts).abs().max() < 0.1, (disp, shifts)


def test_beats_integer_peak() -> None:
    """Half-pixel shifts are resolved (an integer or badly biased sub-pixel estimate would be off by ~0.5)."""
    shifts = torch.tensor([[0.5, -0.5], [1.5, 0.25], [-3.75, 2.5]], dtype=torch.float64)
    ref, mov = shifted_crops(smooth_field(512, 512, seed=4), shifts, (128, 160))
    disp, _ = phase_correlation(ref, mov)
    assert (disp.double() - shifts).abs().max() < 0.05


def test_robust_to_independent_noise() -> None:
    """Noise that differs between frames (like rain) costs accuracy but not the estimate."""
    shifts = torch.tensor([[2.3, -1.7], [-4.2, 5.1]], dtype=torch.float64)
    ref, mov = shifted_crops(smooth_field(1024, 1024, seed=5), shifts, (240, 320))
    g = torch.Generator().manual_seed(6)
    ref = ref + 0.05 * torch.randn(ref.shape, generator=g)
    mov = mov + 0.05 * torch.randn(mov.shape, generator=g)
    disp, conf = phase_correlation(ref, mov)
    assert (disp.double() - shifts).abs().max() < 0.15
    assert (conf > 0.1).all()


def test_sign_convention_integer_roll() -> None:
    """mov = roll(ref, d) on the interior gives displacement +d, and translate(mov, -d) restores ref."""
    big = smooth_field(160, 200, seed=7).float()
    d = (3, -2)
    ref = big[16:-16, 16:-16]
    mov = torch.roll(big, shifts=d, dims=(0, 1))[16:-16, 16:-16]  # mov(p) = big(p - d)
    disp, conf = phase_correlation(ref[None], mov[None])
    assert conf.item() > 0.5
    assert torch.allclose(disp[0], torch.tensor(d, dtype=disp.dtype), atol=0.02), disp
    back = translate(mov[None, None], -disp.round())[0, 0]
    assert torch.equal(back[4:-4, 4:-4], ref[4:-4, 4:-4])
    reverse, _ = phase_correlation(mov[None], ref[None])
    assert torch.allclose(reverse, -disp, atol=0.02)


def test_max_shift_limits_search() -> None:
    shifts = torch.tensor([[5.0, -5.0]], dtype=torch.float64)
    ref, mov = shifted_crops(smooth_field(512, 512, seed=8), shifts, (128, 128))
    free, _ = phase_correlation(ref, mov)
    limited, _ = phase_correlation(ref, mov, max_shift=2.0)
    assert torch.allclose(free.double(), shifts, atol=0.1)
    assert limited.abs().max() <= 3.0
    with pytest.raises(ValueError, match="max_shift"):
        phase_correlation(ref, mov, max_shift=-1.0)


# ------------------------------------------------------------------------------------------------------------------
# Degenerate inputs: exactly zero, confidence 0, never NaN
# ------------------------------------------------------------------------------------------------------------------
def degenerate_pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(9)
    texture = smooth_field(64, 80, seed=10).float()
    other = smooth_field(64, 80, seed=11).float()
    ramp = torch.linspace(0, 1, 80).expand(64, 80)
    return {
        "zeros": (torch.zeros(64, 80), torch.zeros(64, 80)),
        "constant": (torch.full((64, 80), 0.4), torch.full((64, 80), 0.7)),
        "flat vs texture": (torch.full((64, 80), 0.5), texture),
        "almost flat": (0.5 + 1e-6 * texture, 0.5 + 1e-6 * other),
        "noise": (torch.rand(64, 80, generator=g), torch.rand(64, 80, generator=g)),
        "big noise": (torch.rand(480, 640, generator=g), torch.rand(480, 640, generator=g)),
        "unrelated content": (texture, other),
        "ramp vs noise": (ramp, torch.rand(64, 80, generator=g)),
    }


@pytest.mark.parametrize("name", list(degenerate_pairs()))
def test_degenerate_inputs_give_exact_zero(name: str) -> None:
    ref, mov = degenerate_pairs()[name]
    disp, conf = phase_correlation(ref[None], mov[None])
    assert torch.equal(disp, torch.zeros(1, 2)), disp
    assert conf.item() < 0.1
    assert torch.isfinite(conf).all()


@pytest.mark.parametrize("size", [(64, 80), (480, 640)])
def test_identical_frames_exact_zero_full_confidence(size: tuple[int, int]) -> None:
    """A still camera gives an exact zero shift, so alignment copies the frames unchanged."""
    x = smooth_field(*size, seed=0).float()[None]
    disp, conf = phase_correlation(x, x)
    assert torch.equal(disp, torch.zeros(1, 2))
    assert conf.item() == 1.0


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4, 4), (7, 7), (5, 300), (300, 5)])
def test_tiny_frames(size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(13)
    ref, mov = torch.rand(2, *size, generator=g), torch.rand(2, *size, generator=g)
    disp, conf = phase_correlation(ref, mov)
    assert torch.equal(disp, torch.zeros(2, 2)) and torch.equal(conf, torch.zeros(2))
    clip = torch.rand(1, 5, 3, *size, generator=g)
    centre = GlobalMotion()(clip)
    assert torch.equal(centre, torch.zeros(1, 5, 2))
    assert torch.equal(align_to_centre(clip, centre), clip)
    assert translate(clip[0], torch.full((5, 2), 0.5)).shape == clip[0].shape


def test_nan_input_gives_zero() -> None:
    ref = smooth_field(64, 64, seed=14).float()[None]
    mov = ref.clone()
    mov[0, 5, 5] = float("nan")
    disp, conf = phase_correlation(ref, mov)
    assert torch.equal(disp, torch.zeros(1, 2)) and torch.equal(conf, torch.zeros(1))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="N, H, W"):
        phase_correlation(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="N, H, W"):
        phase_correlation(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        pair_displacements(torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        pair_displacements(torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------------------------
# Pairs, accumulation, alignment
# ------------------------------------------------------------------------------------------------------------------
def test_displacements_to_centre_accumulates() -> None:
    pair = torch.tensor([[[1.0, 0.5], [2.0, -1.0], [0.25, 0.25], [-1.0, 3.0]]])  # (1, 4, 2): 5 frames
    out = displacements_to_centre(pair, 2)
    want = torch.tensor([[[-3.0, 0.5], [-2.0, 1.0], [0.0, 0.0], [0.25, 0.25], [-0.75, 3.25]]])
    assert torch.allclose(out, want)
    assert torch.equal(out[:, 2], torch.zeros(1, 2))
    assert torch.allclose(displacements_to_centre(pair, 0)[:, -1], pair.sum(1))
    assert displacements_to_centre(torch.zeros(3, 0, 2), 0).shape == (3, 1, 2)
    with pytest.raises(ValueError, match="centre"):
        displacements_to_centre(pair, 5)


def test_pair_displacements_of_panning_clip() -> None:
    """Frame t+1 relative to frame t equals the per-frame motion; confidence is high."""
    step = torch.tensor([1.3, -2.1], dtype=torch.float64)
    shifts = torch.arange(5, dtype=torch.float64)[:, None] * step  # content position of each frame
    clip = clip_of_shifts(smooth_field(512, 512, seed=15), shifts, (120, 160))
    pair, conf = pair_displacements(clip)
    assert pair.shape == (1, 4, 2) and conf.shape == (1, 4)
    assert (pair[0].double() - step).abs().max() < 0.1
    assert (conf > 0.5).all()
    centre = GlobalMotion()(clip)
    assert (centre[0].double() - (shifts - shifts[2])).abs().max() < 0.2
    assert torch.equal(centre[0, 2], torch.zeros(2))


def test_align_restores_centre_frame() -> None:
    """Neighbours that are shifted copies of the centre frame line up with it after alignment."""
    shifts = torch.tensor([[-4.4, 2.6], [-2.1, 1.2], [0.0, 0.0], [1.7, -2.5], [3.9, -4.8]], dtype=torch.float64)
    clip = clip_of_shifts(smooth_field(512, 512, seed=16, slope=2.0), shifts, (96, 128))
    disp = GlobalMotion()(clip)
    assert (disp[0].double() - (shifts - shifts[2])).abs().max() < 0.05
    aligned = align_to_centre(clip, disp)
    assert torch.equal(aligned[:, 2], clip[:, 2])
    inner = (slice(None), slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from replicated borders
    err_aligned = (aligned - clip[:, 2:3])[inner].abs().mean((0, 2, 3, 4))  # (T,)
    err_raw = (clip - clip[:, 2:3])[inner].abs().mean((0, 2, 3, 4))
    neighbours = [0, 1, 3, 4]
    assert err_aligned.max() < 2e-3, err_aligned
    assert (err_aligned[neighbours] < 0.1 * err_raw[neighbours]).all(), (err_aligned, err_raw)


def test_align_features_at_lower_resolution() -> None:
    """Displacements in frame pixels are scaled by h / H for feature maps."""
    x = smooth_field(64, 64, seed=17).float().expand(1, 3, 1, 64, 64).contiguous()  # (B, T, C, h, w)
    disp = torch.tensor([[[4.0, -2.0], [0.0, 0.0], [-8.0, 6.0]]])
    out = align_to_centre(x, disp, scale=0.5)
    assert torch.equal(out[0, 0], translate(x[0, 0:1], torch.tensor([[-2.0, 1.0]]))[0])
    assert torch.equal(out[0, 2], translate(x[0, 2:3], torch.tensor([[4.0, -3.0]]))[0])
    assert torch.equal(out[0, 1], x[0, 1])
    with pytest.raises(ValueError, match="scale"):
        align_to_centre(x, disp, scale=0.0)
    with pytest.raises(ValueError, match="disp"):
        align_to_centre(x, disp[:, :2])


def test_global_motion_module() -> None:
    clip = clip_of_shifts(smooth_field(256, 256, seed=18), torch.tensor([[0.0, 0.0], [1.5, 1.0], [3.0, 2.0]]), (64, 64))
    on, off = GlobalMotion(), GlobalMotion(enabled=False)
    assert list(on.parameters()) == [] and "enabled=True" in repr(on)
    assert torch.equal(off(clip), torch.zeros(1, 3, 2))
    pair, _ = pair_displacements(clip)
    assert torch.equal(on(clip), displacements_to_centre(pair, 1))
    assert torch.equal(on(clip[:, :1]), torch.zeros(1, 1, 2))


# ------------------------------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------------------------------
def test_streaming_matches_batch() -> None:
    shifts = torch.tensor([[0.0, 0.0], [0.7, -1.2], [2.0, -0.4], [2.5, 1.0]], dtype=torch.float64)
    clip = clip_of_shifts(smooth_field(512, 512, seed=19), shifts, (90, 120)).expand(2, -1, -1, -1, -1)
    pair, conf = pair_displacements(clip)
    stream = StreamingMotion()
    first = stream.push(clip[:, 0])
    assert torch.equal(first, torch.zeros(2, 2)) and torch.equal(stream.last_confidence, torch.zeros(2))
    pushed = torch.stack([stream.push(clip[:, t]) for t in range(1, 4)], 1)  # (B, T-1, 2)
    assert torch.allclose(pushed, pair, atol=1e-6)
    assert torch.allclose(stream.last_confidence, conf[:, -1])
    with pytest.raises(ValueError, match="reset"):
        stream.push(clip[:, 0, :, :80])
    stream.reset()
    assert torch.equal(stream.push(clip[:, 0, :, :80]), torch.zeros(2, 2))


# ------------------------------------------------------------------------------------------------------------------
# translate
# ------------------------------------------------------------------------------------------------------------------
def reference_translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Independent bilinear replicate-border translation with grid_sample (float64)."""
    n, _, h, w = x.shape
    ys = torch.arange(h, dtype=torch.float64)[None, :, None] - shift[:, 0, None, None].double()
    xs = torch.arange(w, dtype=torch.float64)[None, None, :] - shift[:, 1, None, None].double()
    gy = ys.expand(n, h, w) * 2 / max(h - 1, 1) - 1
    gx = xs.expand(n, h, w) * 2 / max(w - 1, 1) - 1
    grid = torch.stack([gx, gy], -1)  # (N, h, w, 2)
    return F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def test_translate_identity_and_integer_exact() -> None:
    g = torch.Generator().manual_seed(20)
    x = torch.rand(3, 2, 9, 11, generator=g)
    assert torch.equal(translate(x, torch.zeros(3, 2)), x)
    out = translate(x, torch.tensor([[2.0, -3.0], [0.0, 0.0], [-1.0, 4.0]]))
    rows = (torch.arange(9) - 2).clamp(0, 8)
    cols = (torch.arange(11) + 3).clamp(0, 10)
    assert torch.equal(out[0], x[0][:, rows][:, :, cols])
    assert torch.equal(out[1], x[1])
    assert torch.equal(out[2], x[2][:, (torch.arange(9) + 1).clamp(0, 8)][:, :, (torch.arange(11) - 4).clamp(0, 10)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shift", [(0.3, -0.6), (2.75, 1.5), (-3.2, -7.9), (100.5, -0.25), (-0.5, 40.0)])
def test_translate_matches_bilinear_reference(shift: tuple[float, float], device: str) -> None:
    g = torch.Generator().manual_seed(21)
    x = torch.rand(2, 3, 13, 17, generator=g, dtype=torch.float64)
    s = torch.tensor([shift, (shift[1], shift[0])], dtype=torch.float64)
    out = translate(x.to(device), s.to(device))
    assert out.device.type == device
    out = out.cpu()
    assert torch.allclose(out, reference_translate(x, s), atol=1e-12)
    assert out.min() >= x.min() and out.max() <= x.max()  # border replicated, no black edges


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.0, -2.5), (1.25, 0.0), (-3.5, 2.75), (7.0, -1.0)])
def test_translate_into_is_translate_per_image(shift: tuple[float, float]) -> None:
    torch.manual_seed(11)
    x = torch.rand(3, 10, 12)
    want = translate(x[None], torch.tensor([shift]))[0]
    out = torch.empty(10, 12, 3).permute(2, 0, 1)  # a channels-last destination
    translate_into(out, x, *shift)
    assert torch.equal(out, want)


def test_translate_gradient() -> None:
    g = torch.Generator().manual_seed(22)
    x = torch.rand(2, 2, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[1.3, -0.4], [-2.6, 0.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: translate(t, s), (x,))
    with torch.no_grad():
        fast = translate(x, s)
    assert torch.equal(translate(x, s).detach(), fast)  # autograd path computes the same values
    translate(x, s).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad.sum(), torch.tensor(2 * 2 * 6 * 7.0, dtype=torch.float64))


def test_translate_errors() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        translate(torch.zeros(3, 4, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="shift"):
        translate(torch.zeros(2, 1, 4, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="finite"):
        translate(torch.zeros(1, 1, 4, 4), torch.tensor([[float("nan"), 0.0]]))


# ------------------------------------------------------------------------------------------------------------------
# dtype and device
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device_follow_input(device: str) -> None:
    shifts = torch.tensor([[0.0, 0.0], [1.25, -0.75], [2.5, -1.5]], dtype=torch.float64)
    clip = clip_of_shifts(smooth_field(256, 256, seed=23), shifts, (64, 80)).to(device)
    want = torch.tensor([[-1.25, 0.75], [0.0, 0.0], [1.25, -0.75]], dtype=torch.float64)

    d64 = GlobalMotion()(clip.double())
    assert d64.dtype == torch.float64 and d64.device.type == device
    assert (d64.cpu() - want).abs().max() < 0.05
    a64 = align_to_centre(clip.double(), d64)
    assert a64.dtype == torch.float64 and a64.device.type == device

    d32 = GlobalMotion()(clip)
    assert d32.dtype == torch.float32 and (d32.double().cpu() - want).abs().max() < 0.05

    half = clip.half()
    d16 = GlobalMotion()(half)  # estimated in float32
    assert d16.dtype == torch.float32 and d16.device.type == device
    assert (d16.double().cpu() - want).abs().max() < 0.1
    a16 = align_to_centre(half, d16)
    assert a16.dtype == torch.float16 and torch.isfinite(a16).all()


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_does_not_lower_estimation_precision(device: str) -> None:
    """Under mixed precision the estimate is unchanged (the FFT maths runs with autocast off)."""
    shifts = torch.tensor([[0.0, 0.0], [1.25, -0.75], [2.5, -1.5]], dtype=torch.float64)
    clip = clip_of_shifts(smooth_field(256, 256, seed=24), shifts, (64, 80)).to(device)
    plain = GlobalMotion()(clip)
    low = torch.bfloat16 if device == "cpu" else torch.float16
    with torch.autocast(device, dtype=low):
        mixed = GlobalMotion()(clip)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, plain, atol=1e-6)
