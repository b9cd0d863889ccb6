"""STIM: the bidirectional Interaction-CBLSTM (paper §3.3, eq. 7-13; SPEC §1).

The cell is a ConvLSTM whose gates see ``[x_t, x_{t-1}, h_{t-1}]`` (the previous frame's features are the
"interaction"; at the first step the frame's own features stand in), and whose hidden state is computed by two
convs from ``concat(o_t, tanh(C_t))`` instead of ``o_t * tanh(C_t)`` (eq. 12). A second, independently weighted
cell runs over the reversed sequence; eq. 13's first conv fuses both directions per frame.

A conv over a concatenation is the sum of convs over its parts, so the gate pre-activations split into
``W_x * x_t + W_p * x_{t-1} + W_h * h_{t-1}``. The first two terms depend on one frame only: :meth:`STIM.frame_gates`
computes them once per frame (for both directions, in one conv), and only ``W_h * h`` runs inside the recurrence.
Streaming inference thereby reuses each frame's gate inputs across the five windows that contain it. With motion
compensation the per-frame terms are translated onto the centre frame (translation and convolution commute away
from the border, and training uses the same order, so the decomposed and plain paths are the same function).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.models.sicm import conv3x3


class InteractionCell(nn.Module):
    """The recurrent part of one Interaction-CBLSTM direction.

    Args:
        hidden_channels: channels of the hidden state h and the cell state C.
    """

    def __init__(self, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates_h = conv3x3(hidden_channels, 4 * hidden_channels)  # W_h and the gate biases of eq. 7-9, 11
        # eq. 12: h_t = Conv(Conv(concat(o_t, tanh C_t)))
        self.h1 = conv3x3(2 * hidden_channels, hidden_channels)
        self.h2 = conv3x3(hidden_channels, hidden_channels)

    def step(self, pre: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step given the frame-dependent gate pre-activations.

        Args:
            pre: W_x * x_t + W_p * x_{t-1}, (N, 4*hidden, H, W), gate order f, i, o, C~.
            h: h_{t-1}, (N, hidden, H, W).
            c: C_{t-1}, (N, hidden, H, W).

        Returns:
            (h_t, C_t), each (N, hidden, H, W).
        """
        f, i, o, g = torch.chunk(pre + self.gates_h(h), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # eq. 10
        h = self.h2(F.relu(self.h1(torch.cat([torch.sigmoid(o), torch.tanh(c)], dim=1))))
        return h, c

    def run(self, own: list[Tensor], prev: list[Tensor]) -> list[Tensor]:
        """Run over a sequence in the given order.

        Args:
            own: T tensors W_x * x_t, (N, 4*hidden, H, W).
            prev: T tensors W_p * x_t, (N, 4*hidden, H, W); step t uses ``prev[t - 1]`` (``prev[0]`` at t = 0).

        Returns:
            T hidden states (N, hidden, H, W).
        """
        n, _, height, width = own[0].shape
        h = own[0].new_zeros(n, self.hidden_channels, height, width)
        c = torch.zeros_like(h)
        out: list[Tensor] = []
        for t in range(len(own)):
            h, c = self.step(own[t] + prev[max(t - 1, 0)], h, c)
            out.append(h)
        return out


class STIM(nn.Module):
    """Bidirectional Interaction-CBLSTM with eq. 13's first fusion conv.

    Args:
        in_channels: channels of the per-frame input features x_t.
        hidden_channels: hidden/cell channels of each direction.
        out_channels: channels of the fused per-frame output (eq. 13, first conv, followed by ReLU).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        # W_x and W_p of both directions in one conv: [fwd W_x | fwd W_p | bwd W_x | bwd W_p], 4*hidden each
        self.frame_gates_conv = conv3x3(in_channels, 16 * hidden_channels, bias=False)
        self.forward_cell = InteractionCell(hidden_channels)
        self.backward_cell = InteractionCell(hidden_channels)
        self.fuse = conv3x3(2 * hidden_channels, out_channels)

    def frame_gates(self, x: Tensor) -> Tensor:
        """Per-frame gate pre-activations of both directions.

        Args:
            x: (N, in_channels, H, W).

        Returns:
            (N, 16*hidden, H, W): forward W_x x, forward W_p x, backward W_x x, backward W_p x.
        """
        return self.frame_gates_conv(x)

    def forward(self, gates: Tensor) -> Tensor:
        """Run both directions over a window.

        Args:
            gates: (N, T, 16*hidden, H, W) from :meth:`frame_gates` (aligned to the centre frame if needed).

        Returns:
            (N, T, out_channels, H, W).
        """
        k = 4 * self.hidden_channels
        fx, fp, bx, bp = (list(g.unbind(dim=1)) for g in torch.split(gates, k, dim=2))
        fwd = self.forward_cell.run(fx, fp)
        bwd = self.backward_cell.run(bx[::-1], bp[::-1])[::-1]
        n, t = gates.shape[:2]
        both = torch.cat([torch.stack(fwd, 1), torch.stack(bwd, 1)], dim=2)  # (N, T, 2*hidden, H, W)
        y = F.relu(self.fuse(both.flatten(0, 1)))  # (N*T, out, H, W)
        return y.unflatten(0, (n, t))
