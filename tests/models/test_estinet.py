"""Behaviour of the ESTINet family: shapes, gradients, padding, streaming decomposition, training, golden values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from estinet.config import VARIANTS, ModelConfig, preset_config
from estinet.models import build_model
from estinet.models.estinet import ESTINet, pad_to_multiple
from estinet.models.motion import align_to_centre
from tests.helpers import textured_clip

DATA = Path(__file__).resolve().parents[1] / "data"
LEARNED = [v for v in VARIANTS if v != "official"]


def tiny(variant: str = "estinet", **kw: object) -> ModelConfig:
    return preset_config(variant, "tiny", **kw)


@pytest.mark.parametrize("variant", LEARNED)
@pytest.mark.parametrize("size", [(1, 1), (37, 53)])
def test_output_shapes_odd_sizes(variant: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(variant)).eval()
    t = model.num_frames
    x = torch.rand(2, t, 3, *size)
    with torch.no_grad():
        coarse, refined = model(x)
    assert coarse.shape == (2, t, 3, *size)
    assert refined.shape == (2, 3, *size)
    assert torch.isfinite(coarse).all() and torch.isfinite(refined).all()


def test_output_shape_480x640() -> None:
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    with torch.no_grad():
        coarse, refined = model(torch.rand(1, 5, 3, 480, 640))
    assert coarse.shape == (1, 5, 3, 480, 640) and refined.shape == (1, 3, 480, 640)
    assert torch.isfinite(refined).all()


@pytest.mark.parametrize("variant", LEARNED)
def test_every_parameter_receives_gradient(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(variant))
    x = textured_clip(model.num_frames, 32, 48, shift=1.3)
    coarse, refined = model(x)
    loss = coarse.square().mean() + refined.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reached {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_refined_is_coarse_centre_without_estm() -> None:
    model = build_model(tiny("sicm-stim-3")).eval()
    coarse, refined = model(torch.rand(1, 3, 3, 16, 16))
    assert torch.equal(refined, coarse[:, 1])


def test_padding_is_edge_replication_and_cropped_back() -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded, size = pad_to_multiple(x)
    assert size == (5, 7) and padded.shape == (2, 3, 16, 16)
    assert torch.equal(padded[..., :5, :7], x)
    assert torch.equal(padded[..., 15, :7], x[..., 4, :])
    assert torch.equal(padded[..., :5, 15], x[..., :, 6])
    # the model pads internally: a frame of 37x53 gives the crop of the output on its 48x64 replicated padding
    torch.manual_seed(0)
    model = build_model(tiny(motion_compensation=False)).eval()
    clip = torch.rand(1, 5, 3, 37, 53)
    big, _ = pad_to_multiple(clip)
    with torch.no_grad():
        c1, r1 = model(clip)
        c2, r2 = model(big)
    assert torch.allclose(c1, c2[..., :37, :53], atol=1e-6)
    assert torch.allclose(r1, r2[..., :37, :53], atol=1e-6)


@pytest.mark.parametrize("motion", [False, True])
def test_streaming_decomposition_equals_forward(motion: bool) -> None:
    """Per-frame features computed once (as streaming does) and fed to the window part equal the plain forward."""
    torch.manual_seed(0)
    model = build_model(tiny(motion_compensation=motion)).eval()
    clip = textured_clip(7, 40, 56, shift=1.7)  # a 7-frame video; the window centred on frame 3 is frames 1..5
    with torch.no_grad():
        want_coarse, want_refined = model(clip[:, 1:6])
        padded, (h, w) = pad_to_multiple(clip)
        per_frame = [model.frame_features(padded[:, k]) for k in range(7)]  # each frame once
        window = per_frame[1:6]
        full = torch.stack([f.full for f in window], 1)
        low = torch.stack([f.low for f in window], 1)
        disp = model.estimate_motion(clip[:, 1:6])
        coarse, refined = model.window_forward(padded[:, 1:6], full, low, disp)
    if motion:
        assert disp is not None and disp.abs().max() > 1.0  # the clip pans, so alignment is active
    assert torch.allclose(coarse[..., :h, :w], want_coarse, atol=1e-5)
    assert torch.allclose(refined[..., :h, :w], want_refined, atol=1e-5)


def test_motion_compensation_switch() -> None:
    on = build_model(tiny())
    off = build_model(tiny(motion_compensation=False))
    clip = textured_clip(5, 32, 48, shift=2.0)
    assert on.estimate_motion(clip) is not None
    assert off.estimate_motion(clip) is None
    assert not build_model(tiny("sicm-2dcnn")).motion.enabled


def test_input_validation_messages() -> None:
    model = build_model(tiny())
    with pytest.raises(ValueError, match=r"shape \(B, 5, 3, H, W\), got rank 4"):
        model(torch.rand(5, 3, 16, 16))
    with pytest.raises(ValueError, match="3 colour channels"):
        model(torch.rand(1, 5, 1, 16, 16))
    with pytest.raises(ValueError, match="windows of 5 frames in dim 1, got 3"):
        model(torch.rand(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="floating point"):
        model(torch.zeros(1, 5, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="windows of 1 frames"):
        build_model(tiny("sicm-2dcnn"))(torch.rand(1, 5, 3, 16, 16))


def test_seeded_determinism() -> None:
    def run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(123)
        model = build_model(tiny())
        with torch.no_grad():
            return model(textured_clip(5, 24, 40, seed=5, shift=0.8))

    a, b = run(), run()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_float64_and_device_follow_input() -> None:
    torch.manual_seed(0)
    model = build_model(tiny()).double().eval()
    with torch.no_grad():
        coarse, refined = model(textured_clip(5, 24, 40, shift=1.0).double())
    assert coarse.dtype == torch.float64 and refined.dtype == torch.float64


def test_two_clip_overfit_loss_falls_tenfold() -> None:
    """A real training loop: two rainy clips, L_STI + L_EST, Adam; the loss falls by at least 10x."""
    torch.manual_seed(0)
    model = build_model(tiny(motion_compensation=False))
    clean = torch.cat([textured_clip(5, 32, 32, seed=1), textured_clip(5, 32, 32, seed=2)])
    g = torch.Generator().manual_seed(3)
    streaks = (torch.rand(2, 5, 1, 32, 32, generator=g) > 0.93).float()
    streaks = F.max_pool2d(streaks.flatten(0, 1), (5, 1), stride=1, padding=(2, 0)).unflatten(0, (2, 5))
    rainy = (clean + 0.6 * streaks).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        coarse, refined = model(rainy)
        loss = F.mse_loss(coarse, clean) + F.mse_loss(refined, clean[:, 2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10, f"loss went from {losses[0]:.4g} to {min(losses[-10:]):.4g}"


def test_aligned_targets_use_same_displacement() -> None:
    """Coarse frames come out in the centre frame's coordinates; align_to_centre maps ground truth there too."""
    clip = textured_clip(5, 32, 48, shift=2.0)
    model = build_model(tiny())
    disp = model.estimate_motion(clip)
    assert disp is not None
    aligned = align_to_centre(clip, disp)
    inner = (slice(None), slice(None), slice(None), slice(4, -4), slice(8, -8))
    err_aligned = (aligned - clip[:, 2:3])[inner].abs().mean()
    err_raw = (clip - clip[:, 2:3])[inner].abs().mean()
    assert err_aligned < 0.25 * err_raw


def test_golden_values() -> None:
    """A seeded tiny model on a seeded clip reproduces stored outputs (regenerate: python -m tests.data.make_golden)."""
    golden = np.load(DATA / "golden_tiny.npz", allow_pickle=False)
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    with torch.no_grad():
        coarse, refined = model(textured_clip(5, 24, 40, seed=7, shift=1.5))
    np.testing.assert_allclose(coarse.numpy(), golden["coarse"], atol=1e-5)
    np.testing.assert_allclose(refined.numpy(), golden["refined"], atol=1e-5)


def test_official_not_built_by_estinet_class() -> None:
    with pytest.raises(ValueError, match="official"):
        ESTINet(preset_config("official", "tiny"))
