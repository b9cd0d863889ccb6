"""ESTM: the enhanced spatio-temporal module (paper §3.4, SPEC §1).

Input concat(coarse frames, rainy frames) as a (N, 6, T=5, H, W) volume. Two 3x3x3 3D convs without temporal
padding reduce T = 5 -> 3 -> 1; densely connected 2D blocks follow ("3D DenseNet-like"); the output is a residual
added to the coarse centre frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.models.cpu import cpu_inference
from estinet.models.sicm import conv3x3, pointwise_conv


def _per_input_frames(device: torch.device) -> bool:
    """Whether :class:`TemporalConv3d` uses its per-input-frame form (CPUs, not under ``torch.compile``, whose
    compiler cannot follow its writes into preallocated outputs) rather than the per-tap one (GPUs)."""
    return device.type == "cpu" and not torch.compiler.is_compiling()


class TemporalConv3d(nn.Conv3d):
    """A 3x3x3 conv without temporal padding (spatial padding 1), computed as 2D convs.

    The weights and their state-dict names are those of :class:`torch.nn.Conv3d`. Output step ``j`` is
    ``bias + sum_k conv2d(frame[j + k], weight[:, :, k])``, the same function as ``nn.Conv3d``, computed in one of
    two exact ways:

    - on GPUs, one 2D conv per tap ``k`` over all output steps at once, and two additions;
    - on CPUs, one 2D conv per *input frame* whose output channels are the taps that frame feeds, stacked
      (``C_out`` to ``3 * C_out`` channels), then the tap sums. With these few channels oneDNN's cost hardly depends
      on the output width, so 5 input frames cost 5 calls instead of 9, and channels_last frames avoid its layout
      conversions (``benchmarks/bench_streaming.py --no-speed --conv-batch`` and ``--stages``).

    Input (N, C_in, T, H, W) -> output (N, C_out, T - 2, H, W); :meth:`frames` takes and returns frame-major
    (N, T, C, H, W) tensors and avoids the transposes. Under ONNX export it is a third exact form, one 2-D conv over
    the frames stacked on channels (:meth:`_frames_stacked`): the first two write into preallocated outputs, which
    the exporter cannot follow, and ONNX Runtime ran ``tiny``'s window graph at 640x480 in 133 ms with it, against
    142 ms with the per-tap form or one 3-D Conv node (one thread).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, H, W) -> (N, C_out, T - 2, H, W)."""
        return self.frames(x.transpose(1, 2)).transpose(1, 2)

    def frames(self, x: Tensor) -> Tensor:
        """Frame-major form: (N, T, C_in, H, W) -> (N, T - 2, C_out, H, W).

        On CPUs the output's frames are channels_last (its memory is (N, T - 2, H, W, C_out)), ready for the next
        channels_last conv; pass frames that are channels_last themselves for the fastest path.
        """
        n, t, c, height, width = x.shape
        if t < 3:
            raise ValueError(f"TemporalConv3d needs at least 3 frames, got {t}")
        if c != self.in_channels:
            raise ValueError(f"TemporalConv3d expects {self.in_channels} channels, got {c}")
        if torch.onnx.is_in_onnx_export():
            return self._frames_stacked(x)
        if _per_input_frames(x.device):
            return self._frames_per_input(x)
        steps = t - 2
        y: Tensor | None = None
        for k in range(3):  # conv2d follows the memory format of the taps and weights
            taps = x[:, k : k + steps].reshape(n * steps, c, height, width)
            term = F.conv2d(taps, self.weight[:, :, k], self.bias if k == 0 else None, padding=1)
            y = term if y is None else y.add_(term)
        assert y is not None
        return y.reshape(n, steps, self.out_channels, height, width)

    def _frames_stacked(self, x: Tensor) -> Tensor:
        """Export form of :meth:`frames`: one 2-D conv over the frames stacked on channels.

        Output step ``j`` reads input frames ``j .. j + 2``, so the weight is block-banded: (steps * C_out,
        T * C_in, 3, 3) with tap ``k`` of step ``j`` in the columns of frame ``j + k`` and zeros elsewhere. The reshapes
        are free on frame-major tensors; the zero blocks add exact zeros.
        """
        n, _, _, height, width = x.shape
        t, c, c_out = int(x.shape[1]), self.in_channels, self.out_channels  # static: the weight must be a constant
        steps = t - 2
        taps = torch.cat(self.weight.unbind(2), dim=1)  # (C_out, 3 * C_in, 3, 3): frames j, j+1, j+2
        rows = [
            torch.cat([taps.new_zeros(c_out, j * c, 3, 3), taps, taps.new_zeros(c_out, (steps - 1 - j) * c, 3, 3)], 1)
            for j in range(steps)
        ]  # step j: (C_out, T * C_in, 3, 3)
        bias = None if self.bias is None else self.bias.repeat(steps)
        y = F.conv2d(x.reshape(n, t * c, height, width), torch.cat(rows), bias, padding=1)  # (N, steps * C_out, H, W)
        return y.reshape(n, steps, c_out, height, width)

    def _frames_per_input(self, x: Tensor) -> Tensor:
        """CPU form of :meth:`frames`: per sample and input frame, one conv over the stacked taps it feeds.

        oneDNN's NCHW convolutions with these few channels are slower on a batch than on its images one by one
        (``benchmarks/bench_streaming.py --conv-batch``), so each sample is its own call.
        """
        n, t, _, height, width = x.shape
        steps, c_out = t - 2, self.out_channels
        grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        # input frame f feeds output steps j = f - k for taps k in [first(f), last(f)]
        spans = [(max(0, f - steps + 1), min(2, f)) for f in range(t)]
        stacked = [
            self.weight[:, :, a : b + 1].permute(2, 0, 1, 3, 4).flatten(0, 1) for a, b in spans
        ]  # (L*C_out, C_in, 3, 3)
        # the bias rides on each output step's tap-0 term (frames 0 .. steps-1 feed tap 0 first)
        biases = [None if self.bias is None or a > 0 else F.pad(self.bias, (0, (b - a) * c_out)) for a, b in spans]
        out = None if grad else x.new_empty(n, steps, height, width, c_out).permute(0, 1, 4, 2, 3)
        samples = []
        for i in range(n):
            per_frame = [
                F.conv2d(x[i : i + 1, f], w, bias, padding=1)
                for f, (w, bias) in enumerate(zip(stacked, biases, strict=True))
            ]
            steps_out = []
            for j in range(steps):
                p0, p1, p2 = (
                    per_frame[j + k][:, (k - spans[j + k][0]) * c_out : (k - spans[j + k][0] + 1) * c_out]
                    for k in range(3)
                )
                if out is not None:
                    torch.add(p0, p1, out=out[i : i + 1, j]).add_(p2)
                else:
                    steps_out.append((p0 + p1 + p2).permute(0, 2, 3, 1))  # (1, H, W, C_out)
            if out is None:
                samples.append(torch.stack(steps_out, dim=1))  # (1, steps, H, W, C_out)
        if out is not None:
            return out
        return torch.cat(samples).permute(0, 1, 4, 2, 3)


def single_output_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A conv with one output channel on CPU maps (channels_last or NCHW), as a depthwise conv and a channel sum.

    oneDNN computes a 3x3 conv from 8 channels to 1 at a fraction of the speed of the depthwise conv with the same
    weights (``benchmarks/bench_cpu_stages.py``); the sum over the channels is the rest of the conv (equal to float
    rounding). Other inputs (and autocast) take the plain call.

    Args:
        conv: a 2-D conv with ``out_channels == 1`` and ``groups == 1``.
        x: (N, C, H, W).

    Returns:
        (N, 1, H', W').
    """
    fast = (
        conv.out_channels == 1 and conv.groups == 1 and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
    )
    if not fast or not (x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous()):
        return conv(x)
    c = conv.in_channels
    # channels_last weights for either input layout: measured faster than contiguous ones with NCHW inputs too
    depthwise = conv.weight.reshape(c, 1, *conv.kernel_size).contiguous(memory_format=torch.channels_last)
    per_channel = F.conv2d(x, depthwise, None, conv.stride, conv.padding, conv.dilation, groups=c)  # (N, C, H', W')
    out = per_channel.sum(dim=1, keepdim=True)
    return out if conv.bias is None else out.add_(conv.bias.view(1, 1, 1, 1))


def _concat(feats: list[Tensor]) -> Tensor:
    """``torch.cat(feats, dim=1)``, without a copy for a single tensor."""
    return feats[0] if len(feats) == 1 else torch.cat(feats, dim=1)


class DenseBlock(nn.Module):
    """A densely connected block: each 3x3 conv sees all previous outputs; a 1x1 transition and a residual.

    Args:
        channels: input and output channels.
        layers: number of 3x3 convs.
        growth: channels each conv adds.
    """

    def __init__(self, channels: int, layers: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([conv3x3(channels + k * growth, growth) for k in range(layers)])
        self.transition = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, channels, H, W) -> (N, channels, H, W)."""
        feats = [x]
        for conv in self.convs:
            feats.append(conv(_concat(feats)).relu_())
        return self.transition(_concat(feats)).add_(x)


class ESTM(nn.Module):
    """3D-conv refiner.

    Args:
        channels: width of the 3D convs and dense blocks.
        blocks: number of dense blocks.
        layers: convs per dense block.
        growth: dense growth rate.
        gate: also predict a rain mask ``m`` (N, 1, H, W) in [0, 1] and return ``rainy + m * (refined - rainy)`` for
            the centre frame: where ``m`` is 0 the pixel comes back exactly as it went in, so the network can leave
            pixels without rain alone instead of having to predict an exact zero residual. The gate (a 1x1 conv to 8
            channels, ReLU, a 3x3 conv to 1) sees ESTM's features and the two residuals the network proposes for
            the centre frame (coarse - rainy, refined - rainy), detached: it judges the proposal and only its own
            weights learn from its terms (``train.gate_weight``, ``train.background_weight``;
            :func:`estinet.losses.derain_loss`).
        temporal_evidence: the gate also sees the centre rainy frame minus the median of the 5 aligned rainy frames
            (rain is transient, texture is not): ``model.rain_gate_evidence="temporal"``.

    Input: coarse (N, 5, 3, H, W) and rainy (N, 5, 3, H, W), both in [0, 1] and aligned to the centre frame.
    Output: refined centre frame (N, 3, H, W).
    """

    def __init__(
        self, channels: int, blocks: int, layers: int, growth: int, gate: bool = False, temporal_evidence: bool = False
    ) -> None:
        super().__init__()
        if temporal_evidence and not gate:
            raise ValueError("temporal_evidence is evidence for the rain gate: pass gate=True too")
        self.temporal_evidence = temporal_evidence
        self.conv3d_1 = TemporalConv3d(6, channels)
        self.conv3d_2 = TemporalConv3d(channels, channels)
        self.blocks = nn.Sequential(*[DenseBlock(channels, layers, growth) for _ in range(blocks)])
        self.out = conv3x3(channels, 3)
        evidence = channels + 6 + (3 if temporal_evidence else 0)  # features, two proposed residuals, [transience]
        self.gate = nn.Sequential(nn.Conv2d(evidence, 8, 1), nn.ReLU(), conv3x3(8, 1)) if gate else None

    def reset_gate(self, open_logit: float = 4.0) -> None:
        """Start the gate open everywhere (``m = sigmoid(open_logit)``, 0.98 by default): zero weights, constant bias.

        A gate added to trained weights then starts from (almost) their function.
        """
        if self.gate is not None:
            last = self.gate[-1]
            nn.init.zeros_(last.weight)
            nn.init.constant_(last.bias, open_logit)

    def _gate_logits(self, evidence: Tensor) -> Tensor:
        """The gate's logits (N, 1, H, W) from its evidence (N, E, H, W)."""
        assert self.gate is not None
        if not cpu_inference(evidence):
            return self.gate(evidence)
        return single_output_conv(self.gate[2], pointwise_conv(self.gate[0], evidence).relu_())

    def forward(self, coarse: Tensor, rainy: Tensor) -> Tensor:
        """coarse, rainy (N, 5, 3, H, W) -> refined centre frame (N, 3, H, W)."""
        if coarse.shape[1] != 5:
            raise ValueError(f"ESTM needs windows of exactly 5 frames, got {coarse.shape[1]}")
        # (N, 5, 6, H, W), frame-major, each frame channels_last (memory (N, 5, H, W, 6))
        n, t, c, height, width = coarse.shape
        cl = (0, 1, 3, 4, 2)
        if not cpu_inference(coarse):
            vol = torch.cat([coarse.permute(cl), rainy.permute(cl)], dim=-1).sub_(0.5).permute(0, 1, 4, 2, 3)
        else:  # the shift written with the interleaving: one pass instead of a concatenation and a subtraction
            vol = coarse.new_empty(n, t, height, width, 2 * c)
            torch.sub(coarse.permute(cl), 0.5, out=vol[..., :c])
            torch.sub(rainy.permute(cl), 0.5, out=vol[..., c:])
            vol = vol.permute(0, 1, 4, 2, 3)
        y = self.conv3d_1.frames(vol).relu_()  # (N, 3, C, H, W)
        y = self.conv3d_2.frames(y).relu_().squeeze(1)  # (N, C, H, W)
        y = self.blocks(y)
        refined = coarse[:, 2] + self.out(y)
        if self.gate is None:
            return refined
        centre = rainy[:, 2]
        terms = [y, coarse[:, 2] - centre, refined - centre]
        if self.temporal_evidence:  # rain is transient: the centre frame against the median of the aligned window
            terms.append(centre - rainy.sort(dim=1).values[:, 2])
        evidence = torch.cat(terms, dim=1).detach()  # (N, C + 6 [+ 3], H, W)
        mask = torch.sigmoid(self._gate_logits(evidence)).to(refined.dtype)  # half precision under autocast
        return torch.lerp(centre.to(refined.dtype), refined, mask)  # rainy + m * (refined - rainy)
