"""ESTINet and its ablation variants, assembled from one :class:`~estinet.config.ModelConfig`.

Data flow for a window of T frames (B, T, 3, H, W) in [0, 1]:

1. pad H, W to multiples of 16 (edge replication; cropped back at the end);
2. SICM per frame -> features f_t (B, T, Cf, H, W); average-pooled by ``temporal_stride``, projected to the
   temporal width (x_t) and turned into STIM's frame-dependent gate pre-activations (see :mod:`.stim`). Steps 1-2
   depend on the frame only, so streaming inference computes them once per frame (:meth:`ESTINet.frame_features`);
3. global motion compensation: each frame's features (and the rainy frame) are translated onto the centre frame
   by the estimated sub-pixel displacement (:mod:`estinet.models.motion`);
4. STIM (bidirectional Interaction-CBLSTM) over x_t, eq. 13's fusion, upsampling to full resolution and a head
   conv -> residual; when ``temporal_stride > 1`` the head also sees f_t through a conv of its own, computed per frame
   (``W_s * f_t``, 3 channels); coarse_t = aligned rainy_t + residual;
5. ESTM (``estinet`` only) refines the centre frame from concat(coarse, aligned rainy).

Steps 3-5 are :meth:`ESTINet.window_forward`. Coarse frames are returned in the centre frame's coordinates when
motion compensation is on; :func:`estinet.models.motion.align_to_centre` aligns ground truth the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.config import ModelConfig
from estinet.models.estm import ESTM
from estinet.models.motion import GlobalMotion, align_to_centre
from estinet.models.sicm import SICM, conv3x3, conv_concat
from estinet.models.stim import STIM
from estinet.models.upsample import upsample_bilinear
from estinet.models.veil import VeilHead

PAD_MULTIPLE = 16


class FrameFeatures(NamedTuple):
    """Per-frame work, computed once per frame in streaming inference.

    Attributes:
        full: the per-frame full-resolution term of the coarse residual (N, 3, Hp, Wp): the head's conv of the SICM
            features when ``temporal_stride > 1`` (zeros otherwise), or the 2D-CNN output for ``sicm-2dcnn``.
        low: STIM's per-frame gate pre-activations (N, 16*hidden, Hp/s, Wp/s) of the pooled, projected ``full``;
            empty for ``sicm-2dcnn``.
    """

    full: Tensor
    low: Tensor


def pad_to_multiple(x: Tensor, multiple: int = PAD_MULTIPLE) -> tuple[Tensor, tuple[int, int]]:
    """Pad the last two dims of (..., H, W) up to multiples of ``multiple`` by edge replication.

    Returns:
        The padded tensor (..., Hp, Wp) and the original (H, W).
    """
    height, width = x.shape[-2:]
    ph, pw = (-height) % multiple, (-width) % multiple
    if ph == 0 and pw == 0:
        return x, (height, width)
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])  # (N, C, H, W)
    padded = F.pad(flat, (0, pw, 0, ph), mode="replicate")
    return padded.reshape(*lead, *padded.shape[-3:]), (height, width)


class ESTINet(nn.Module):
    """SICM -> STIM -> coarse frames (-> ESTM -> refined centre frame), or the ``sicm-2dcnn`` baseline.

    Args:
        config: the architecture; ``config.variant`` must not be ``official`` (see
            :class:`estinet.models.official.OfficialESTINet`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.variant == "official":
            raise ValueError("ESTINet does not build the 'official' variant; use build_model(config)")
        self.config = config
        self.num_frames = config.num_frames
        self.centre = config.centre
        cf = config.feature_channels
        self.sicm = SICM(config.base_channels, config.blocks_per_stage, config.fusion_channels, config.fusion_out)
        self.motion = GlobalMotion(enabled=config.motion_compensation and self.num_frames > 1)
        self.cnn: nn.Module | None = None
        self.stim: STIM | None = None
        self.estm: ESTM | None = None
        if config.variant == "sicm-2dcnn":
            hid = config.hidden_channels
            self.cnn = nn.Sequential(conv3x3(cf, hid), nn.ReLU(), conv3x3(hid, hid), nn.ReLU(), conv3x3(hid, 3))
            self.project: nn.Module = nn.Identity()
            self.head: nn.Module = nn.Identity()
            self.head_spatial: nn.Module | None = None
        else:
            ct = config.temporal_channels or cf
            self.project = nn.Conv2d(cf, ct, 1) if config.temporal_channels else nn.Identity()
            self.stim = STIM(ct, config.hidden_channels, config.head_channels)
            k = config.head_kernel
            # eq. 13's second conv; below full resolution it also sees f_t: Conv(concat(up(g), f)) is split into
            # Conv_g(up(g)) + Conv_f(f), whose second term depends on the frame only (computed in frame_features)
            self.head = nn.Conv2d(config.head_channels, 3, k, padding=k // 2)
            self.head_spatial = nn.Conv2d(cf, 3, k, padding=k // 2, bias=False) if config.temporal_stride > 1 else None
        if config.has_estm:
            self.estm = ESTM(
                config.estm_channels,
                config.estm_blocks,
                config.estm_layers,
                config.estm_growth,
                config.rain_gate,
                temporal_evidence=config.rain_gate_evidence == "temporal",
            )
        init_weights(self, config.init)
        # after init_weights: the veil head keeps its own initialisation (no haze at the start)
        self.veil: VeilHead | None = VeilHead() if config.veil_head else None

    # ------------------------------------------------------------------------------------------------------
    def check_input(self, frames: Tensor) -> None:
        """Raise ValueError unless ``frames`` is (B, num_frames, 3, H, W) floating point."""
        t = self.num_frames
        if frames.dim() != 5:
            raise ValueError(
                f"{self.config.variant} expects frames of shape (B, {t}, 3, H, W), got rank {frames.dim()} "
                f"{tuple(frames.shape)}"
            )
        if frames.shape[2] != 3:
            raise ValueError(f"{self.config.variant} expects 3 colour channels (RGB) in dim 2, got {frames.shape[2]}")
        if frames.shape[1] != t:
            raise ValueError(f"{self.config.variant} expects windows of {t} frames in dim 1, got {frames.shape[1]}")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be floating point in [0, 1], got {frames.dtype}; divide uint8 by 255")

    def estimate_motion(self, frames: Tensor) -> Tensor | None:
        """Displacement of every frame relative to the centre frame, or None when motion compensation is off.

        Args:
            frames: (B, T, 3, H, W) in [0, 1].

        Returns:
            (B, T, 2) (dy, dx) in pixels, or None.
        """
        if not self.motion.enabled:
            return None
        return self.motion(frames)

    def frame_features(self, frames: Tensor) -> FrameFeatures:
        """Per-frame SICM work (computed once per frame when streaming).

        Args:
            frames: (N, 3, Hp, Wp) in [0, 1], Hp and Wp multiples of 16.

        Returns:
            :class:`FrameFeatures` with ``full`` (N, 3, Hp, Wp) and ``low`` (N, 16*hidden, Hp/s, Wp/s).
        """
        if self.cnn is not None:
            f = self.sicm(frames)  # (N, Cf, Hp, Wp)
            return FrameFeatures(self.cnn(f), f.new_zeros(0))
        assert self.stim is not None
        s = self.config.temporal_stride
        if s == 1:
            f = self.sicm(frames)
            pooled = f
            spatial = f.new_zeros(f.shape[0], 3, *f.shape[2:])
        else:  # the two halves of SICM's output pooled and convolved apart: no full-resolution concatenation
            parts = self.sicm.parts(frames)  # (N, C, Hp, Wp), (N, fusion_out, Hp, Wp)
            pooled = torch.cat([F.avg_pool2d(p, s) for p in parts], dim=1)
            assert self.head_spatial is not None
            spatial = conv_concat(self.head_spatial, parts)
        return FrameFeatures(spatial, self.stim.frame_gates(self.project(pooled)))

    def window_forward(
        self, rainy: Tensor, full: Tensor, low: Tensor, displacement: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Per-window work: alignment, STIM, coarse head, ESTM.

        Args:
            rainy: (B, T, 3, Hp, Wp) padded rainy frames in [0, 1].
            full: (B, T, 3, Hp, Wp) per-frame residual terms of those frames (:class:`FrameFeatures`).
            low: (B, T, 16*hidden, Hp/s, Wp/s) STIM gate pre-activations of those frames.
            displacement: (B, T, 2) displacement of each frame relative to the centre frame, or None (no alignment).

        Returns:
            coarse (B, T, 3, Hp, Wp) and refined centre frame (B, 3, Hp, Wp), unclamped.
        """
        if self.cnn is not None:  # sicm-2dcnn: one frame, no temporal information
            coarse = rainy[:, 0] + full[:, 0]
            return coarse.unsqueeze(1), coarse
        assert self.stim is not None
        if displacement is not None:
            s = self.config.temporal_stride
            rainy = align_to_centre(rainy, displacement)
            full = align_to_centre(full, displacement)
            low = align_to_centre(low, displacement, scale=1.0 / s)
        b, t = rainy.shape[:2]
        g = self.stim(low).flatten(0, 1)  # (B*T, head_channels, h, w)
        r = self.coarse_head(g, tuple(rainy.shape[-2:]))
        coarse = torch.add(rainy, full).add_(r.unflatten(0, (b, t)))  # (B, T, 3, Hp, Wp); one buffer, not two
        if self.estm is None:
            return coarse, coarse[:, self.centre]
        return coarse, self.estm(coarse, rainy)

    def coarse_head(self, g: Tensor, size: tuple[int, int]) -> Tensor:
        """Eq. 13's second conv on STIM's fused output, at full resolution: the per-window coarse residual term.

        Args:
            g: (N, head_channels, h, w) STIM output, (h, w) = size / temporal_stride.
            size: (Hp, Wp) of the padded frames.

        Returns:
            (N, 3, Hp, Wp).
        """
        s = self.config.temporal_stride
        if tuple(size) != (s * g.shape[-2], s * g.shape[-1]):
            raise ValueError(f"frames of {tuple(size)} are not {s} x the STIM size {tuple(g.shape[-2:])}")
        if s == 1:
            return self.head(g)
        if self.config.head_kernel == 1:
            # a 1x1 conv commutes exactly with bilinear upsampling: convolve at the low resolution, upsample 3 channels
            return upsample_bilinear(self.head(g), s, channels_last=False)  # added to NCHW frames
        return self.head(upsample_bilinear(g, s))

    def forward(self, frames: Tensor, displacement: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Derain one window.

        Args:
            frames: (B, T, 3, H, W) rainy frames in [0, 1], T = ``config.num_frames``; any H, W >= 1.
            displacement: optional (B, T, 2) displacements relative to the centre frame (estimated when None and
                motion compensation is on; pass the same tensor to align training targets).

        Returns:
            coarse frames (B, T, 3, H, W) and the refined centre frame (B, 3, H, W), unclamped. For variants without
            ESTM the refined frame is the coarse centre frame.
        """
        self.check_input(frames)
        if displacement is None:
            displacement = self.estimate_motion(frames)
        b, t = frames.shape[:2]
        padded, (height, width) = pad_to_multiple(frames)
        feats = self.frame_features(padded.flatten(0, 1))  # per frame, (B*T, ...)
        full = feats.full.unflatten(0, (b, t))
        low = feats.low.unflatten(0, (b, t)) if feats.low.numel() else feats.low
        coarse, refined = self.window_forward(padded, full, low, displacement)
        return coarse[..., :height, :width], refined[..., :height, :width]


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise conv weights.

    Args:
        module: the network.
        scheme: ``kaiming`` (He-normal for ReLU convs, zero biases, the residual output convs scaled by 0.1 so the
            network starts close to the identity on the rainy input) or ``paper`` (N(0, 0.01), zero biases).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            if scheme == "paper":
                nn.init.normal_(m.weight, 0.0, 0.01)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if scheme == "kaiming" and isinstance(module, ESTINet):
        outputs: list[nn.Module | None] = [module.head, module.head_spatial]
        if module.cnn is not None:
            outputs.append(module.cnn[-1])
        if module.estm is not None:
            outputs.append(module.estm.out)
        for m in outputs:
            if isinstance(m, nn.Conv2d):
                m.weight.data.mul_(0.1)
    if isinstance(module, ESTINet) and module.estm is not None:
        module.estm.reset_gate()
