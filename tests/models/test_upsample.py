"""The phase-wise bilinear upsampling is F.interpolate's function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from estinet.models.upsample import upsample_bilinear, upsample_to


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


@pytest.mark.parametrize("factor", [2, 16])
def test_into_a_channel_slice_of_a_channels_last_map(factor: int) -> None:
    """``out=``: written straight into channels 2..3 of a channels_last map (SICM's fusion), the rest untouched."""
    torch.manual_seed(factor)
    x = torch.randn(2, 2, 3, 5).contiguous(memory_format=torch.channels_last)
    canvas = torch.full((2, 3 * factor, 5 * factor, 6), 7.0).permute(0, 3, 1, 2)  # channels_last memory
    with torch.no_grad():
        got = upsample_bilinear(x, factor, out=canvas[:, 2:4])
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    torch.testing.assert_close(canvas[:, 2:4], want, rtol=0, atol=1e-6)
    assert got.data_ptr() == canvas[:, 2:4].data_ptr()
    assert bool((canvas[:, :2] == 7).all()) and bool((canvas[:, 4:] == 7).all())
    with pytest.raises(ValueError, match="out has shape"):
        upsample_bilinear(x, factor, out=canvas[:, :3])


@pytest.mark.parametrize("size", [(48, 80), (30, 37)])
def test_upsample_to_is_interpolate_to_a_size(size: tuple[int, int]) -> None:
    """An integer multiple takes the phase-wise form on the CPU, any other size ``F.interpolate``: the same values,
    with and without ``out=`` and with autograd on."""
    x = torch.randn(1, 3, 6, 10, dtype=torch.float64)
    want = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(upsample_to(x, size), want, rtol=0, atol=1e-12)
        out = torch.empty(1, 3, *size, dtype=torch.float64)
        assert upsample_to(x, size, out=out) is out
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    grad_x = x.clone().requires_grad_(True)
    upsample_to(grad_x, size).sum().backward()
    assert grad_x.grad is not None and bool(torch.isfinite(grad_x.grad).all())
