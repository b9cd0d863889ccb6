"""The phase-wise bilinear upsampling is F.interpolate's function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from estinet.models.upsample import upsample_bilinear


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_interpolate(factor: int, channels_last: bool) -> None:
    torch.manual_seed(factor)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    with torch.no_grad():
        got = upsample_bilinear(x, factor)
    assert got.shape == (2, 3, 5 * factor, 7 * factor)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for layout in (False, True):  # an explicit output format
        with torch.no_grad():
            forced = upsample_bilinear(x, factor, channels_last=layout)
        torch.testing.assert_close(forced, want, rtol=0, atol=1e-12)
        assert forced.is_contiguous(memory_format=torch.channels_last if layout else torch.contiguous_format)


def test_single_pixel_and_factor_one() -> None:
    x = torch.rand(1, 2, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(upsample_bilinear(x, 4), x.expand(1, 2, 4, 4))
    assert upsample_bilinear(x, 1) is x


def test_gradients_flow() -> None:
    x = torch.randn(1, 2, 3, 4, requires_grad=True)
    upsample_bilinear(x, 4).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.full_like(x, 16.0))  # every input spreads weight 16 in total


@pytest.mark.parametrize("factor", [0, -2, 2.0, True])
def test_refuses_bad_factor(factor: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        upsample_bilinear(torch.rand(1, 1, 2, 2), factor)  # type: ignore[arg-type]
