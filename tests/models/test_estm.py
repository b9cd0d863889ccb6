"""ESTM: the per-tap TemporalConv3d is nn.Conv3d's function, in both layouts, and the refiner's shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from estinet.inference.derainer import channels_last_taps as _channels_last_taps
from estinet.models import estm as estm_module
from estinet.models.estm import ESTM, TemporalConv3d, single_output_conv


@pytest.mark.parametrize(("batch", "frames"), [(1, 3), (2, 5), (3, 4)])
def test_temporal_conv_equals_conv3d(batch: int, frames: int) -> None:
    torch.manual_seed(0)
    conv = TemporalConv3d(6, 4).double()
    x = torch.randn(batch, 6, frames, 9, 13, dtype=torch.float64)
    want = F.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-12)
    frame_major = conv.frames(x.transpose(1, 2).contiguous())
    torch.testing.assert_close(frame_major, want.transpose(1, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("batch", "frames"), [(1, 5), (2, 5), (2, 4), (1, 3)])
def test_temporal_conv_without_gradients_equals_conv3d(batch: int, frames: int) -> None:
    """The inference path (no autograd: tap sums written into a channels_last output) is the same function."""
    torch.manual_seed(4)
    conv = TemporalConv3d(6, 4).double()
    x = torch.randn(batch, frames, 6, 9, 13, dtype=torch.float64)
    want = F.conv3d(x.transpose(1, 2), conv.weight, conv.bias, padding=(0, 1, 1)).transpose(1, 2)
    with torch.no_grad():
        plain = conv.frames(x)
        frames_cl = conv.frames(x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3))
    for got in (plain, frames_cl):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        assert all(
            got[i : i + 1, j].is_contiguous(memory_format=torch.channels_last)
            for i in range(batch)
            for j in range(frames - 2)
        )


@pytest.mark.parametrize("batch", [1, 2])
def test_gpu_form_equals_conv3d(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-tap form that GPUs use, run here on the CPU, for NCHW and channels_last frames."""
    monkeypatch.setattr(estm_module, "_per_input_frames", lambda device: False)
    torch.manual_seed(6)
    conv = TemporalConv3d(6, 4).double()
    x = torch.randn(batch, 5, 6, 9, 13, dtype=torch.float64, requires_grad=True)
    want = F.conv3d(x.transpose(1, 2), conv.weight, conv.bias, padding=(0, 1, 1)).transpose(1, 2)
    frames_cl = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    for got in (conv.frames(x), conv.frames(frames_cl)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    grad = torch.autograd.grad(conv.frames(x).square().sum(), x)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(want.square().sum(), x)[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("batch", "frames", "c_in"), [(1, 5, 6), (2, 3, 4), (2, 4, 6)])
def test_export_form_equals_conv3d(batch: int, frames: int, c_in: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ONNX export: one 2-D conv over the frames stacked on channels with a block-banded weight."""
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    torch.manual_seed(7)
    conv = TemporalConv3d(c_in, 4).double()
    x = torch.randn(batch, frames, c_in, 9, 13, dtype=torch.float64)
    want = F.conv3d(x.transpose(1, 2), conv.weight, conv.bias, padding=(0, 1, 1)).transpose(1, 2)
    torch.testing.assert_close(conv.frames(x), want, rtol=0, atol=1e-12)


def test_temporal_conv_gradients_equal_conv3d() -> None:
    torch.manual_seed(1)
    conv = TemporalConv3d(3, 2).double()
    x = torch.randn(2, 3, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    conv(x).square().sum().backward()
    grads = (x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone())
    x.grad, conv.weight.grad, conv.bias.grad = None, None, None
    F.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1)).square().sum().backward()
    for got, want in zip(grads, (x.grad, conv.weight.grad, conv.bias.grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_channels_last_tap_weights_same_output() -> None:
    torch.manual_seed(2)
    conv = TemporalConv3d(6, 4)
    x = torch.rand(1, 5, 6, 16, 20)
    want = conv.frames(x)
    conv.weight.data = _channels_last_taps(conv.weight.data)
    assert all(conv.weight[:, :, k].is_contiguous(memory_format=torch.channels_last) for k in range(3))
    torch.testing.assert_close(conv.frames(x), want, rtol=1e-5, atol=1e-5)


def test_temporal_conv_refuses_short_or_wrong_input() -> None:
    conv = TemporalConv3d(6, 4)
    with pytest.raises(ValueError, match="at least 3 frames"):
        conv.frames(torch.rand(1, 2, 6, 8, 8))
    with pytest.raises(ValueError, match="expects 6 channels"):
        conv.frames(torch.rand(1, 5, 3, 8, 8))


def test_estm_refines_the_centre_frame() -> None:
    torch.manual_seed(3)
    estm = ESTM(channels=4, blocks=1, layers=1, growth=4)
    coarse, rainy = torch.rand(2, 5, 3, 12, 10), torch.rand(2, 5, 3, 12, 10)
    out = estm(coarse, rainy)
    assert out.shape == (2, 3, 12, 10)
    torch.nn.init.zeros_(estm.out.weight)
    torch.nn.init.zeros_(estm.out.bias)
    torch.testing.assert_close(estm(coarse, rainy), coarse[:, 2])
    with pytest.raises(ValueError, match="exactly 5 frames"):
        estm(coarse[:, :4], rainy[:, :4])


def test_estm_same_with_and_without_autograd() -> None:
    torch.manual_seed(5)
    estm = ESTM(channels=4, blocks=1, layers=1, growth=4).double()
    coarse, rainy = torch.rand(2, 5, 3, 12, 10, dtype=torch.float64), torch.rand(2, 5, 3, 12, 10, dtype=torch.float64)
    with_grad = estm(coarse, rainy)
    assert with_grad.requires_grad
    with torch.inference_mode():
        torch.testing.assert_close(estm(coarse, rainy), with_grad.detach(), rtol=0, atol=1e-12)


def test_rain_gate_starts_open_and_closed_returns_the_input_exactly() -> None:
    torch.manual_seed(1)
    coarse, rainy = torch.rand(2, 5, 3, 16, 20), torch.rand(2, 5, 3, 16, 20)
    plain = ESTM(4, 1, 1, 4)
    gated = ESTM(4, 1, 1, 4, gate=True)
    assert plain.gate is None and gated.gate is not None
    gated.load_state_dict(plain.state_dict(), strict=False)
    gated.reset_gate()
    with torch.no_grad():
        want = plain(coarse, rainy)
        m = torch.sigmoid(torch.tensor(4.0))
        torch.testing.assert_close(gated(coarse, rainy), rainy[:, 2] + m * (want - rainy[:, 2]))
        gated.reset_gate(open_logit=-40.0)  # closed everywhere: the rainy centre frame comes back unchanged
        torch.testing.assert_close(gated(coarse, rainy), rainy[:, 2], rtol=0, atol=1e-6)


def test_rain_gate_receives_gradients() -> None:
    torch.manual_seed(2)
    gated = ESTM(4, 1, 1, 4, gate=True)
    torch.nn.init.normal_(gated.gate[-1].weight, 0.0, 0.1)
    out = gated(torch.rand(1, 5, 3, 12, 12), torch.rand(1, 5, 3, 12, 12))
    out.square().mean().backward()
    for name, p in gated.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_rain_gate_inputs_are_detached() -> None:
    """The gate judges the proposed residual; its own terms do not reach the rest of the network."""
    torch.manual_seed(3)
    gated = ESTM(4, 1, 1, 4, gate=True)
    torch.nn.init.normal_(gated.gate[-1].weight, 0.0, 0.1)
    logits: list[torch.Tensor] = []
    gated.gate.register_forward_hook(lambda _m, _i, out: logits.append(out))
    gated(torch.rand(1, 5, 3, 12, 12), torch.rand(1, 5, 3, 12, 12))
    logits[-1].sum().backward()
    for name, p in gated.named_parameters():
        assert (p.grad is not None) == name.startswith("gate."), name


def test_temporal_evidence_is_the_centre_against_the_window_median() -> None:
    """rain_gate_evidence="temporal": the gate also sees centre - median of the 5 aligned rainy frames."""
    torch.manual_seed(4)
    gated = ESTM(4, 1, 1, 4, gate=True, temporal_evidence=True)
    assert gated.gate[0].in_channels == 4 + 9
    seen: list[torch.Tensor] = []
    gated.gate.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    coarse, rainy = torch.rand(2, 5, 3, 10, 12), torch.rand(2, 5, 3, 10, 12)
    gated(coarse, rainy)
    torch.testing.assert_close(seen[-1][:, -3:], rainy[:, 2] - rainy.median(dim=1).values, rtol=0, atol=0)
    gated.reset_gate(open_logit=-40.0)
    torch.testing.assert_close(gated(coarse, rainy), rainy[:, 2], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="gate=True"):
        ESTM(4, 1, 1, 4, temporal_evidence=True)


def test_temporal_evidence_config() -> None:
    from estinet.config import ConfigError, preset_config
    from estinet.models import build_model

    config = preset_config("estinet", "tiny", rain_gate=True, rain_gate_evidence="temporal")
    assert build_model(config).estm.temporal_evidence
    assert not build_model(preset_config("estinet", "tiny", rain_gate=True)).estm.temporal_evidence
    with pytest.raises(ConfigError, match=r"needs model\.rain_gate=true"):
        preset_config("estinet", "tiny", rain_gate_evidence="temporal")
    with pytest.raises(ConfigError, match="rain_gate_evidence must be one of"):
        preset_config("estinet", "tiny", rain_gate=True, rain_gate_evidence="colour")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_single_output_conv_equals_the_conv(channels_last: bool, bias: bool) -> None:
    torch.manual_seed(int(bias))
    conv = torch.nn.Conv2d(8, 1, 3, padding=1, bias=bias)
    x = torch.randn(2, 8, 9, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = conv(x)
    with torch.no_grad():
        got = single_output_conv(conv, x)
    assert got.shape == (2, 1, 9, 13)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_gated_estm_inference_form_equals_its_autograd_form() -> None:
    """The CPU inference form of the gate (a matrix product, then a depthwise conv and a channel sum) keeps ESTM's
    output, and the gate's plain convs do not run."""
    torch.manual_seed(3)
    estm = ESTM(4, 1, 1, 4, gate=True)
    estm.gate.to(memory_format=torch.channels_last)
    torch.nn.init.normal_(estm.gate[-1].weight, std=0.5)  # a gate that is not uniformly open
    coarse, rainy = torch.rand(2, 5, 3, 16, 24), torch.rand(2, 5, 3, 16, 24)
    want = estm(coarse, rainy)
    plain_calls = []
    for conv in (estm.gate[0], estm.gate[2]):
        conv.register_forward_hook(lambda *_: plain_calls.append(1))
    with torch.no_grad():
        got = estm(coarse, rainy)
    assert plain_calls == []
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
