"""SICM: the in-place inference forms keep the function and its gradients; conv_concat is a conv of a concatenation,
pointwise_conv a 1x1 conv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from estinet.models.sicm import SICM, UpProjection, conv_concat, pointwise_conv


def _reference_sicm(m: SICM, x: Tensor) -> Tensor:
    """SICM's function written out of place with F.interpolate and torch.cat (the module before its fast forms)."""

    def block(b: torch.nn.Module, y: Tensor) -> Tensor:
        return F.relu(b.conv2(F.relu(b.conv1(y))) + b.shortcut(y))

    def up(u: UpProjection, y: Tensor, skip: Tensor) -> Tensor:
        z = F.interpolate(u.project(y), size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
        return F.relu(z + u.conv2(F.relu(u.conv1(z))))

    stem = F.relu(m.stem(x - 0.5))
    feats, y = [], stem
    for stage in m.stages:
        for b in stage:
            y = block(b, y)
        feats.append(y)
    d = feats[3]
    for u, skip in zip(m.ups, [feats[2], feats[1], feats[0], stem], strict=True):
        d = up(u, d, skip)
    fused = [
        F.interpolate(p(f), size=x.shape[-2:], mode="bilinear", align_corners=False)
        for p, f in zip(m.fusion_proj, feats, strict=True)
    ]
    return torch.cat([d, F.relu(m.fusion(torch.cat(fused, 1)))], 1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_and_parts_equal_the_reference(channels_last: bool) -> None:
    torch.manual_seed(0)
    m = SICM(8, 1, 2, 8).eval()
    x = torch.rand(2, 3, 32, 48)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = _reference_sicm(m, x)
        got = m(x)
        d, fused = m.parts(x)
    assert got.shape == (2, 16, 32, 48)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat([d, fused], 1), want, rtol=0, atol=1e-5)


def test_gradients_equal_the_reference() -> None:
    """The in-place ReLUs and additions leave autograd's gradients those of the out-of-place function."""
    torch.manual_seed(1)
    m = SICM(4, 1, 2, 4).double()
    x = torch.rand(1, 3, 16, 32, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(1, 8, 16, 32, dtype=torch.float64)
    grads = []
    for fn in (m, lambda y: _reference_sicm(m, y)):
        m.zero_grad()
        x.grad = None
        (fn(x) * weights).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_concat_equals_the_conv_of_the_concatenation(kernel: int, channels_last: bool, bias: bool) -> None:
    torch.manual_seed(kernel)
    conv = torch.nn.Conv2d(13, 3, kernel, padding=kernel // 2, bias=bias)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    parts = [torch.randn(2, c, 9, 11).contiguous(memory_format=layout) for c in (8, 5)]
    want = conv(torch.cat(parts, 1))
    with torch.no_grad():
        got = conv_concat(conv, parts)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    if kernel == 1 and channels_last:  # the matrix-product form writes the frames' (NCHW) layout
        assert got.is_contiguous()


def test_conv_concat_with_autograd_and_wrong_channels() -> None:
    conv = torch.nn.Conv2d(6, 2, 1)
    parts = [torch.randn(1, 3, 4, 4, requires_grad=True) for _ in range(2)]
    conv_concat(conv, parts).sum().backward()
    assert all(p.grad is not None for p in parts)
    with torch.no_grad(), pytest.raises(ValueError, match="7 channels in all"):
        conv_concat(conv, [torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4)])


@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_conv_equals_the_conv(bias: bool) -> None:
    torch.manual_seed(int(bias))
    conv = torch.nn.Conv2d(10, 8, 1, bias=bias).to(memory_format=torch.channels_last)
    x = torch.randn(2, 10, 9, 13)
    with torch.no_grad():
        got = pointwise_conv(conv, x)
        strided = pointwise_conv(conv, x[:, :, :, :7])  # not contiguous: the plain call
    assert got.shape == (2, 8, 9, 13) and got.is_contiguous()
    torch.testing.assert_close(got, conv(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(strided, conv(x[:, :, :, :7]), rtol=0, atol=1e-5)
