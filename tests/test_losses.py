"""Training losses: the border mask matches what translation fills, masked MSE values, L_STI / L_EST."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from estinet.losses import DerainLoss, border_mask, derain_loss, high_pass, masked_mse
from estinet.models.motion import align_to_centre


@pytest.mark.parametrize(
    "disp",
    [(0.0, 0.0), (1.0, -2.0), (-1.5, 0.25), (2.75, 3.0), (-0.4, -3.6), (0.001, 0.0)],
)
def test_border_mask_marks_exactly_the_filled_pixels(disp: tuple[float, float]) -> None:
    # translate a crop of a larger image and the larger image itself by the same shift: the pixels that hold real
    # content agree exactly, the pixels that translation filled from the crop's border do not
    g = torch.Generator().manual_seed(0)
    margin, h, w = 6, 12, 14
    big = torch.rand(1, 1, 3, h + 2 * margin, w + 2 * margin, generator=g)
    crop = big[..., margin : margin + h, margin : margin + w]
    d = torch.tensor([[list(disp)]])  # (1, 1, 2)
    moved_crop = align_to_centre(crop, d)
    moved_big = align_to_centre(big, d)[..., margin : margin + h, margin : margin + w]
    real = (moved_crop == moved_big).all(dim=2, keepdim=True)  # (1, 1, 1, h, w)
    mask = border_mask(d, h, w)
    assert mask.shape == (1, 1, 1, h, w) and mask.dtype == torch.float32
    assert torch.equal(mask.bool(), real)


def test_border_mask_counts_and_sides() -> None:
    d = torch.tensor([[[0.0, 0.0], [1.2, -0.5], [-2.0, 3.0]]])  # (1, 3, 2)
    m = border_mask(d, 10, 10)[0, :, 0]  # (3, 10, 10)
    assert m[0].all()
    # dy = 1.2 > 0: the 2 bottom rows are filled; dx = -0.5 < 0: the left column is
    assert not m[1, 8:].any() and m[1, :8, 1:].all() and not m[1, :, 0].any()
    # dy = -2: the 2 top rows; dx = 3: the 3 right columns
    assert not m[2, :2].any() and not m[2, :, 7:].any() and m[2, 2:, :7].all()
    # a displacement larger than the frame leaves nothing
    assert border_mask(torch.tensor([[[50.0, 0.0]]]), 10, 10).sum() == 0


def test_border_mask_errors() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, 2\)"):
        border_mask(torch.zeros(2, 2), 4, 4)
    with pytest.raises(ValueError, match="finite"):
        border_mask(torch.tensor([[[float("nan"), 0.0]]]), 4, 4)
    with pytest.raises(ValueError, match="positive"):
        border_mask(torch.zeros(1, 1, 2), 0, 4)


def test_masked_mse_values() -> None:
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(3, 5, 3, 8, 8, generator=g), torch.rand(3, 5, 3, 8, 8, generator=g)
    assert torch.allclose(masked_mse(pred, target), F.mse_loss(pred, target), rtol=1e-6)
    assert torch.allclose(masked_mse(pred, target, torch.ones(3, 5, 1, 8, 8)), F.mse_loss(pred, target), rtol=1e-6)
    # hand-computed: sample 0 keeps one pixel (error 1 in every channel), sample 1 keeps nothing (contributes 0)
    p = torch.zeros(2, 1, 3, 2, 2)
    t = torch.zeros(2, 1, 3, 2, 2)
    p[0, 0, :, 0, 0] = 1.0
    p[0, 0, :, 1, 1] = 5.0  # masked out
    mask = torch.zeros(2, 1, 1, 2, 2)
    mask[0, 0, 0, 0, 0] = 1.0
    assert masked_mse(p, t, mask).item() == pytest.approx((1.0 + 0.0) / 2)
    # every clip weighs the same: the mean of per-sample means, not the mean over all valid pixels
    mask2 = torch.ones(2, 1, 1, 2, 2)
    mask2[0, 0, 0, 1, 1] = 0.0
    p2 = torch.zeros(2, 1, 3, 2, 2)
    p2[0] = 1.0
    assert masked_mse(p2, t, mask2).item() == pytest.approx(0.5)


def test_masked_mse_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        masked_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="dims"):
        masked_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        masked_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 2, 4, 4))


def test_derain_loss_terms_and_gradients() -> None:
    g = torch.Generator().manual_seed(2)
    coarse = torch.rand(2, 5, 3, 6, 6, generator=g, requires_grad=True)
    refined = torch.rand(2, 3, 6, 6, generator=g, requires_grad=True)
    target = torch.rand(2, 5, 3, 6, 6, generator=g)
    stage1 = derain_loss(coarse, refined, target, centre=2, refine=False)
    assert stage1.est is None and torch.equal(stage1.total, stage1.sti)
    assert torch.allclose(stage1.sti, F.mse_loss(coarse, target))
    stage2 = derain_loss(coarse, refined, target, centre=2, alpha=0.5)
    assert stage2.est is not None
    assert torch.allclose(stage2.est, F.mse_loss(refined, target[:, 2]))
    assert torch.allclose(stage2.total, stage2.sti + 0.5 * stage2.est)
    stage2.total.backward()
    assert coarse.grad is not None and refined.grad is not None and refined.grad.abs().sum() > 0
    module = DerainLoss(centre=2, alpha=0.5)
    assert torch.allclose(module(coarse, refined, target).total, stage2.total)
    with pytest.raises(ValueError, match="centre"):
        derain_loss(coarse, refined, target, centre=5)


def test_background_term_counts_only_pixels_the_rain_left_alone() -> None:
    torch.manual_seed(0)
    clean = torch.rand(2, 5, 3, 8, 8)
    rainy = clean.clone()
    rainy[:, :, :, :4] += 0.3  # rain on the top half of every frame
    coarse = clean.clone()
    refined = clean[:, 2].clone()
    base = derain_loss(coarse, refined, clean, centre=2)
    same = derain_loss(coarse, refined, clean, centre=2, rainy=rainy, background_weight=5.0)
    torch.testing.assert_close(same.total, base.total)  # a perfect background adds nothing
    wrong_rain = refined.clone()
    wrong_rain[:, :, :4] += 0.1  # an error under the rain only
    a = derain_loss(coarse, wrong_rain, clean, centre=2, rainy=rainy, background_weight=5.0)
    b = derain_loss(coarse, wrong_rain, clean, centre=2)
    torch.testing.assert_close(a.total, b.total)
    wrong_bg = refined.clone()
    wrong_bg[:, :, 4:] += 0.1  # an error on the background: mean over the background pixels only
    c = derain_loss(coarse, wrong_bg, clean, centre=2, rainy=rainy, background_weight=5.0)
    d = derain_loss(coarse, wrong_bg, clean, centre=2)
    torch.testing.assert_close(c.total - d.total, torch.tensor(5.0 * 0.01))
    with pytest.raises(ValueError, match="needs the rainy frames"):
        derain_loss(coarse, refined, clean, centre=2, background_weight=1.0)


def test_high_pass_is_the_image_minus_its_local_mean() -> None:
    flat = torch.full((1, 3, 9, 11), 0.4)
    torch.testing.assert_close(high_pass(flat), torch.zeros_like(flat))  # borders too: the mean is over the image
    x = torch.rand(2, 3, 9, 11)
    y = high_pass(x)
    assert y.shape == x.shape
    # an interior pixel: itself minus the mean of its 5x5 window
    torch.testing.assert_close(y[1, 2, 4, 5], x[1, 2, 4, 5] - x[1, 2, 2:7, 3:8].mean())
    # a corner: the window is cut by the image (3x3 of it inside)
    torch.testing.assert_close(y[0, 0, 0, 0], x[0, 0, 0, 0] - x[0, 0, :3, :3].mean())


def test_detail_term_weighs_a_thin_streak_more_than_a_veil_of_the_same_energy() -> None:
    clean = torch.full((1, 5, 3, 16, 16), 0.3)
    coarse = clean.clone()
    streak = clean[:, 2].clone()
    streak[..., :, 7] += 0.2  # a one-pixel line left in the output
    veil = clean[:, 2] + 0.2 / 4  # a uniform veil with the same plain MSE
    plain = [derain_loss(coarse, r, clean, centre=2).total for r in (streak, veil)]
    torch.testing.assert_close(plain[0], plain[1])
    detail = [derain_loss(coarse, r, clean, centre=2, detail_weight=1.0).total for r in (streak, veil)]
    torch.testing.assert_close(detail[1], plain[1])  # a veil has no fine detail
    assert detail[0] > plain[0] * 1.5  # most of a thin line is fine detail
    want = masked_mse(high_pass(streak), high_pass(clean[:, 2]))
    torch.testing.assert_close(detail[0] - plain[0], want)


def test_gate_term_is_the_cross_entropy_against_the_pixels_the_rain_changed() -> None:
    clean = torch.rand(1, 5, 3, 4, 4)
    rainy = clean.clone()
    rainy[:, :, :, :2] += 0.3  # rain on the top two rows
    coarse, refined = clean.clone(), clean[:, 2].clone()
    wet = torch.zeros(1, 1, 4, 4)
    wet[..., :2, :] = 1.0
    perfect = (wet * 2 - 1) * 30.0  # confident and right
    wrong = -perfect
    base = derain_loss(coarse, refined, clean, centre=2).total
    good = derain_loss(coarse, refined, clean, centre=2, rainy=rainy, gate_logits=perfect, gate_weight=1.0).total
    bad = derain_loss(coarse, refined, clean, centre=2, rainy=rainy, gate_logits=wrong, gate_weight=1.0).total
    assert float(good - base) < 1e-6 and float(bad - base) > 10
    with pytest.raises(ValueError, match="gate's logits"):
        derain_loss(coarse, refined, clean, centre=2, rainy=rainy, gate_weight=1.0)


def test_a_given_rain_mask_replaces_the_pairs_background() -> None:
    clean = torch.rand(1, 5, 3, 4, 4)
    rainy = clean + 0.02  # every pixel differs a little (as after compression)
    coarse, refined = clean.clone(), clean[:, 2] + 0.1
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1.0  # the rain was only on the top half
    base = derain_loss(coarse, refined, clean, centre=2).total
    from_pair = derain_loss(coarse, refined, clean, centre=2, rainy=rainy, background_weight=1.0).total
    from_mask = derain_loss(coarse, refined, clean, centre=2, rainy=rainy, background_weight=1.0, rain_mask=mask).total
    torch.testing.assert_close(from_pair, base)  # the pair says: no background at all
    torch.testing.assert_close(from_mask - base, torch.tensor(0.01))  # the mask says: the bottom half is background
