"""Tests for the veil estimate (estinet.models.veil) and its place in ESTINet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estinet.config import ConfigError, ModelConfig, preset_config
from estinet.data.rain import RainRenderer, get_preset
from estinet.losses import veil_loss
from estinet.models import build_model
from estinet.models.veil import MAX_HAZE, VEIL_SCALE, Veil, VeilHead, lift_veil, veil_maps


@pytest.mark.parametrize("size", [(64, 96), (37, 50), (1, 1)])
def test_head_estimates_haze_and_light_in_range_on_a_grid_of_blocks(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    head = VeilHead()
    with torch.no_grad():  # random outputs instead of the near-zero start
        head.out.weight.normal_(0, 1.0)
    veil = head(torch.rand(2, 3, *size), torch.rand(2, 3, *size))
    grid = (-(-size[0] // VEIL_SCALE), -(-size[1] // VEIL_SCALE))
    assert veil.haze.shape == (2, 1, *grid) and veil.light.shape == (2, 3, *grid)
    assert veil.haze.min() >= 0 and veil.haze.max() <= MAX_HAZE and veil.haze.std() > 0
    assert veil.light.min() >= 0 and veil.light.max() <= 1
    haze, light = veil_maps(veil, size)
    assert haze.shape == (2, 1, *size) and light.shape == (2, 3, *size)


def test_a_new_head_estimates_almost_no_veil() -> None:
    frame = torch.rand(1, 3, 48, 64)
    lifted = lift_veil(frame, VeilHead()(frame, (frame + 0.3).clamp(0, 1)))
    assert (lifted - frame).abs().max() < 1 / 255  # added to trained weights, it starts as the identity


def test_lift_inverts_the_renderers_veil() -> None:
    rng = np.random.default_rng(1)
    clean = rng.random((2, 40, 56, 3)).astype(np.float32) * 0.8
    p = get_preset("storm")  # a depth-graded veil of up to 0.22
    renderer = RainRenderer(p, 40, 56, seed=3)
    veiled = torch.from_numpy(renderer.veil_clip(clean)).permute(0, 3, 1, 2)
    assert renderer._haze_map is not None
    # the renderer's veil on the block grid: haze sampled at block centres, its light colour everywhere
    haze = torch.from_numpy(renderer._haze_map)[None, None]
    grid = torch.nn.functional.interpolate(haze, size=(5, 7), mode="area").expand(2, 1, 5, 7)
    light = torch.tensor(p.haze_color).view(1, 3, 1, 1).expand(2, 3, 5, 7)
    truth = torch.from_numpy(clean).permute(0, 3, 1, 2)
    lifted = lift_veil(veiled, Veil(grid, light))
    # the smooth haze map is bilinear from its block means to within a few thousandths (more at the borders)
    error = (lifted - truth).abs()
    assert error.mean() < 0.004 and error.max() < 0.03 and (veiled - truth).abs().mean() > 0.05
    # with the exact full-resolution map the inverse is exact
    exact = (veiled - haze * light[:, :, :1, :1]) / (1 - haze)
    torch.testing.assert_close(exact, truth, rtol=0, atol=1e-5)


def test_veil_loss_trains_the_head_and_is_zero_for_the_true_veil() -> None:
    torch.manual_seed(2)
    clean = torch.rand(2, 3, 32, 32) * 0.8
    h, light = 0.15, torch.tensor([0.8, 0.85, 0.9]).view(1, 3, 1, 1)
    veiled = clean * (1 - h) + h * light
    truth = Veil(torch.full((2, 1, 4, 4), h), light.expand(2, 3, 4, 4))
    assert veil_loss(truth, veiled, clean) < 1e-12
    head = VeilHead()
    loss = veil_loss(head(veiled, veiled), veiled, clean)
    loss.backward()
    assert loss > 1e-3 and head.out.weight.grad is not None and head.out.weight.grad.abs().sum() > 0
    assert veil_loss(head(clean, clean), clean, clean) < 1e-6  # no veil: the new head's estimate costs (almost) nothing


def test_estinet_carries_a_veil_head_only_when_configured() -> None:
    torch.manual_seed(3)
    plain = build_model(preset_config("estinet", "tiny"))
    torch.manual_seed(3)
    veiled = build_model(ModelConfig(variant="estinet", preset="tiny", veil_head=True))
    assert getattr(plain, "veil", None) is None and isinstance(veiled.veil, VeilHead)
    # the head is built after the rest, so the derainer's own initialisation is that of the plain model
    for key, value in plain.state_dict().items():
        assert torch.equal(value, veiled.state_dict()[key]), key
    x = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(veiled(x)[1], plain(x)[1], rtol=0, atol=0)  # forward: the derainer alone
    with pytest.raises(ConfigError, match="veil_head must be true or false"):
        ModelConfig(veil_head="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not part of the authors"):
        ModelConfig(variant="official", preset="paper", veil_head=True)
