"""The authors' released ESTINet architecture, so that their checkpoints load and compute the same function.

The public release (configured as in its NTURain test script) differs from the paper: the coarse net is a
ResNet-18 encoder/decoder with multi-scale feature fusion followed by two recurrent refiners (forward and
backward in time) and a fusion convolution; the fine net is a 3-D convolution block followed by 9 residual-in-residual
dense blocks. Both networks work in ImageNet-normalized space on "cube" tensors of shape (B, 3, D=5, H, W).

The module and parameter names reproduce the release exactly, including the batch-norm layers that the release
builds but never applies (``E.bn1``, every ``E.layer*.*.bn1/bn2``, ``D.bn``, every ``up*.bn1/bn1_2/bn2``, ``MFF.bn``
and ``R_fwd/R_bwd.Refine.bn0/bn1``): they sit in the state dict so that the released checkpoints load strictly, and
they take no part in the computation.

Batch-norm semantics: the only batch norm that is applied, the one in each encoder ``downsample`` branch, always uses
its running statistics (frozen batch norm), whether the module is in ``train()`` or ``eval()`` mode. This matches the
released test-time behaviour, makes the output independent of the batch composition, and means fine-tuning never
updates the running statistics of a loaded checkpoint.

Frame-size rules: any H, W >= 1 work. For odd W the decoder produces W + 1 columns and the last one is dropped before
the input residue, exactly as in the release. Odd H is not supported by the release; here the coarse net pads one
replicated bottom row, runs, and crops that row again (the fine net is fully convolutional and needs no padding).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.models.estinet import FrameFeatures

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OfficialCoarseNet",
    "OfficialESTINet",
    "OfficialFineNet",
    "official_state_dict_shapes",
    "official_windows",
    "random_official_state",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of the release's ``Normalize`` transform (RGB, [0, 1] space)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of the release's ``Normalize`` transform (RGB)."""

_NUM_FRAMES = 5
_CENTRE = 2
_SHAPES_FILE = "official_state_dict_shapes.json"
_PREFIX = "module."


# ----------------------------------------------------------------------------------------------------------------
# Shape facts, windows, random states
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _load_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    text = resources.files("estinet.models").joinpath(_SHAPES_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    return {net: {key: tuple(int(s) for s in shape) for key, shape in raw[net].items()} for net in ("coarse", "fine")}


def official_state_dict_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Return the key names and shapes of the released ``net_C`` and ``net_F`` state dicts.

    Returns:
        ``{"coarse": {key: shape}, "fine": {key: shape}}`` with keys as produced by ``state_dict()`` on the bare
        (not ``DataParallel``-wrapped) modules, in the release's order; scalar buffers have shape ``()``.
    """
    shapes = _load_shapes()
    return {net: dict(table) for net, table in shapes.items()}


def official_windows(num_frames: int) -> list[list[int]]:
    """Frame windows of the release's test loader, as 0-based frame indices.

    The sequence ``f0..f(N-1)`` is padded as ``[f0, f1] + [f0..f(N-1)] + [f(N-2), f(N-1)]`` (the first two and last
    two entries repeated in order, not mirrored) and every run of 5 consecutive entries is a window, so there are N
    windows and window k has frame k at its centre (position 2). For example window 0 is ``[0, 1, 0, 1, 2]``.

    A one-frame sequence has no second frame to repeat; it gets the single window ``[0, 0, 0, 0, 0]``.

    Args:
        num_frames: Number of frames N in the sequence, N >= 1.

    Returns:
        N lists of 5 frame indices in ``[0, N)``.

    Raises:
        ValueError: If ``num_frames`` < 1.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 to form a window, got {num_frames}; pass a non-empty sequence")
    if num_frames == 1:
        return [[0] * _NUM_FRAMES]
    padded = [0, 1, *range(num_frames), num_frames - 2, num_frames - 1]
    return [padded[k : k + _NUM_FRAMES] for k in range(num_frames)]


def random_official_state(seed: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Build random ``(coarse_state, fine_state)`` dicts with exactly the released keys and shapes.

    Meant for tests and benchmarks (the released checkpoints are not shipped). Conv weights are drawn from
    N(0, 1/fan_in), which keeps activations O(1) through the residual stacks; biases from N(0, 0.02^2); batch-norm
    weights from 1 + N(0, 0.1^2), biases and running means from N(0, 0.1^2), running variances from U(0.5, 1.5);
    ``num_batches_tracked`` is an int64 scalar.

    Args:
        seed: Seed of the CPU generator; the same seed gives the same tensors.

    Returns:
        Two dicts of CPU tensors (float32, except int64 ``num_batches_tracked``) keyed like the release.
    """
    gen = torch.Generator().manual_seed(seed)
    states: list[dict[str, Tensor]] = []
    for table in _load_shapes().values():
        state: dict[str, Tensor] = {}
        bn_prefixes = {key.rsplit(".", 1)[0] for key in table if key.endswith(".running_var")}
        for key, shape in table.items():
            module, name = key.rsplit(".", 1)
            if name == "num_batches_tracked":
                state[key] = torch.randint(0, 1000, (), generator=gen, dtype=torch.int64)
            elif name == "running_var":
                state[key] = 0.5 + torch.rand(shape, generator=gen)
            elif name == "running_mean":
                state[key] = 0.1 * torch.randn(shape, generator=gen)
            elif module in bn_prefixes and name == "weight":
                state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
            elif module in bn_prefixes and name == "bias":
                state[key] = 0.1 * torch.randn(shape, generator=gen)
            elif name == "weight":
                fan_in = 1
                for size in shape[1:]:
                    fan_in *= size
                state[key] = torch.randn(shape, generator=gen) / fan_in**0.5
            elif name == "bias":
                state[key] = 0.02 * torch.randn(shape, generator=gen)
            else:  # pragma: no cover - the shape table only holds the names above
                raise ValueError(f"unexpected key {key!r} in {_SHAPES_FILE}; the shape table is corrupt")
        states.append(state)
    return states[0], states[1]


# ----------------------------------------------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------------------------------------------


def _cube_to_maps(x: Tensor) -> Tensor:
    """(B, C, D, H, W) -> (B*D, C, H, W), image b*D + d is frame d of clip b."""
    B, C, D, H, W = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(B * D, C, H, W)  # (B*D, C, H, W)


def _maps_to_cube(x: Tensor, batch: int) -> Tensor:
    """(B*D, C, H, W) -> (B, C, D, H, W), the exact inverse of :func:`_cube_to_maps`."""
    BD, C, H, W = x.shape
    return x.reshape(batch, BD // batch, C, H, W).permute(0, 2, 1, 3, 4)  # (B, C, D, H, W)


def _frozen_bn(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Apply ``bn`` with its running statistics, regardless of the module's training flag."""
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)


def _check_cube(x: Tensor, name: str, frames: int | None) -> None:
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"{name} must be a (B, 3, D, H, W) normalized clip, got shape {tuple(x.shape)}")
    if frames is not None and x.shape[2] != frames:
        raise ValueError(f"{name} must hold D={frames} frames on dim 2, got shape {tuple(x.shape)}")


# ----------------------------------------------------------------------------------------------------------------
# Coarse net
# ----------------------------------------------------------------------------------------------------------------


class _BasicBlock(nn.Module):
    """ResNet BasicBlock as built with ``use_bn=False``: ``bn1``/``bn2`` exist but are skipped."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)  # unused
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)  # unused
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
        out = self.conv2(F.relu(self.conv1(x)))
        res = x if self.downsample is None else _frozen_bn(self.downsample[1], self.downsample[0](x))
        return F.relu(out + res)


class _Encoder(nn.Module):
    """ResNet-18 trunk (no avgpool/fc); ``bn1`` exists but is skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)  # unused
        widths = (64, 128, 256, 512)
        in_ch = 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(_BasicBlock(in_ch, width, stride), _BasicBlock(width, width, 1))
            self.add_module(f"layer{i + 1}", layer)
            in_ch = width

    def forward(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) -> [block0 (N, 64, H/2), block1 (64, H/4), block2 (128, H/8), block3 (256, H/16),
        block4 (512, H/32)] (sizes rounded up)."""
        block0 = F.relu(self.conv1(x))
        out = F.max_pool2d(block0, 3, 2, 1)
        blocks = [block0]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            blocks.append(out)
        return blocks


class _UpProjection(nn.Module):
    """Resize then two-branch projection; its ``bn1``, ``bn1_2`` and ``bn2`` exist but are skipped."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 5, 1, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)  # unused
        self.conv1_2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn1_2 = nn.BatchNorm2d(out_channels)  # unused
        self.conv2 = nn.Conv2d(in_channels, out_channels, 5, 1, 2, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)  # unused

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """(N, C_in, h, w) -> (N, C_out, *size); bilinear resize with ``align_corners=True``."""
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return F.relu(self.conv1_2(F.relu(self.conv1(x))) + self.conv2(x))


class _Decoder(nn.Module):
    """D_resnet decoder (num_features 512) with skip additions; ``bn`` exists but is skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(512, 512, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(512)  # unused
        self.up1 = _UpProjection(512, 256)
        self.up2 = _UpProjection(256, 128)
        self.up3 = _UpProjection(128, 64)
        self.up4 = _UpProjection(64, 64)
        self.up5 = _UpProjection(64, 16)

    def forward(self, blocks: list[Tensor]) -> Tensor:
        """Encoder blocks -> (N, 16, 2*h0, 2*w0) where (h0, w0) is the size of block0."""
        block0, block1, block2, block3, block4 = blocks
        d = F.relu(self.conv(block4)) + block4
        d = self.up1(d, block3.shape[-2:]) + block3
        d = self.up2(d, block2.shape[-2:]) + block2
        d = self.up3(d, block1.shape[-2:]) + block1
        d = self.up4(d, block0.shape[-2:]) + block0
        h0, w0 = block0.shape[-2:]
        return self.up5(d, (2 * h0, 2 * w0))


class _MFF(nn.Module):
    """Multi-scale feature fusion of encoder blocks 1-4; ``bn`` exists but is skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = _UpProjection(64, 16)
        self.up2 = _UpProjection(128, 16)
        self.up3 = _UpProjection(256, 16)
        self.up4 = _UpProjection(512, 16)
        self.conv = nn.Conv2d(64, 64, 5, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(64)  # unused

    def forward(self, blocks: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Encoder blocks, target size -> (N, 64, *size)."""
        ups = [up(block, size) for up, block in zip((self.up1, self.up2, self.up3, self.up4), blocks[1:], strict=True)]
        return F.relu(self.conv(torch.cat(ups, dim=1)))  # (N, 64, *size)


class _Refine(nn.Module):
    """R_3 refinement head of the recurrent cell; ``bn0``/``bn1`` exist but are skipped."""

    def __init__(self, channels: int, state_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 5, 1, 2, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)  # unused
        self.conv1 = nn.Conv2d(channels, channels, 5, 1, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)  # unused
        self.conv2 = nn.Conv2d(channels, out_channels, 5, 1, 2, bias=True)
        self.convh = nn.Conv2d(channels, state_channels, 3, 1, 1, bias=True)

    def forward(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 88, H, W) -> (h (N, 8, H, W), y (N, 3, H, W)), both without activation."""
        x1 = F.relu(self.conv1(F.relu(self.conv0(r))))
        return self.convh(x1), self.conv2(x1)


class _RecurrentRefiner(nn.Module):
    """R_CLSTM_5: a convolutional recurrent cell whose hidden state is produced by :class:`_Refine`."""

    def __init__(self, feat_channels: int = 80, state_channels: int = 8, out_channels: int = 3) -> None:
        super().__init__()
        in_ch = feat_channels + state_channels
        self.state_channels = state_channels
        self.Refine = _Refine(state_channels + feat_channels, state_channels, out_channels)
        self.F_t = nn.Sequential(nn.Conv2d(in_ch, state_channels, 3, 1, 1))
        self.I_t = nn.Sequential(nn.Conv2d(in_ch, state_channels, 3, 1, 1))
        self.C_t = nn.Sequential(nn.Conv2d(in_ch, state_channels, 3, 1, 1))
        self.Q_t = nn.Sequential(nn.Conv2d(in_ch, feat_channels, 3, 1, 1))

    def forward(self, feat: Tensor) -> Tensor:
        """(B, 80, D, H, W) features -> (B, 3, D, H, W), processed from t = 0 to D - 1."""
        B, _, D, H, W = feat.shape
        h = feat.new_zeros(B, self.state_channels, H, W)
        c = feat.new_zeros(B, self.state_channels, H, W)
        outs = []
        for t in range(D):
            z = torch.cat([feat[:, :, t], h], dim=1)  # (B, 88, H, W)
            f = torch.sigmoid(self.F_t(z))
            i = torch.sigmoid(self.I_t(z))
            g = torch.tanh(self.C_t(z))
            q = torch.sigmoid(self.Q_t(z))  # (B, 80, H, W)
            c = f * c + i * g
            h, y = self.Refine(torch.cat([c, q], dim=1))  # input (B, 88, H, W)
            outs.append(y)
        return torch.stack(outs, dim=2)  # (B, 3, D, H, W)


class OfficialCoarseNet(nn.Module):
    """The release's ``CoarseNet`` (resnet18 backbone, R_CLSTM_5, bidirectional, input residue, no BN).

    ``state_dict()`` keys and shapes equal the ``"coarse"`` table of :func:`official_state_dict_shapes`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.E = _Encoder()
        self.D = _Decoder()
        self.MFF = _MFF()
        self.R_fwd = _RecurrentRefiner()
        self.R_bwd = _RecurrentRefiner()
        self.bidirection_fusion = nn.Conv2d(6, 3, 5, 1, 2, bias=True)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-frame decoder and fusion features.

        Args:
            x: (B*D, 3, H, W) normalized frames, H even.

        Returns:
            ``(x_decoder (B*D, 16, H, W'), x_mff (B*D, 64, H, W'))`` with W' = W rounded up to even.
        """
        blocks = self.E(x)
        x_decoder = self.D(blocks)
        x_mff = self.MFF(blocks, x_decoder.shape[-2:])
        return x_decoder, x_mff

    def forward(self, x: Tensor) -> Tensor:
        """Coarse derained clip.

        Args:
            x: (B, 3, D, H, W) rainy clip in ImageNet-normalized space (D = 5 in the release; any D >= 1 runs).

        Returns:
            out_C: (B, 3, D, H, W), normalized and not clamped.

        Raises:
            ValueError: If ``x`` is not (B, 3, D, H, W).
        """
        _check_cube(x, "coarse input", None)
        B, _, _, H, W = x.shape
        x_cube = x
        if H % 2 or torch.onnx.is_in_onnx_export():  # unsupported by the release: pad one replicated bottom row,
            # cropped again below (an ONNX trace pads H % 2 rows, computed in the graph, so one graph serves both)
            x = torch.cat([x, x[..., H - H % 2 : H, :]], dim=3)  # (B, 3, D, H + H % 2, W)
        x_decoder, x_mff = self.features(_cube_to_maps(x))
        feat = _maps_to_cube(torch.cat([x_decoder, x_mff], dim=1), B)  # (B, 80, D, H', W')
        fwd = self.R_fwd(feat)  # (B, 3, D, H', W')
        bwd = self.R_bwd(feat.flip(2)).flip(2)  # back in forward time order
        fused = self.bidirection_fusion(_cube_to_maps(torch.cat([fwd, bwd], dim=1)))  # (B*D, 3, H', W')
        out = _maps_to_cube(fused, B)[..., :H, :W]  # drop the odd-W column and the odd-H padding row
        return out + x_cube


# ----------------------------------------------------------------------------------------------------------------
# Fine net
# ----------------------------------------------------------------------------------------------------------------


class _C3D(nn.Module):
    """C_C3D_1 temporal fusion: (B, 6, 5, H, W) -> (B, 64, H, W); every conv is bias-free and followed by ReLU."""

    def __init__(self, in_channels: int = 6, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(in_channels, channels, 5, 1, (1, 2, 2), bias=False), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(channels, channels, 3, 1, 1, bias=False), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv3d(channels, channels, 3, 1, (0, 1, 1), bias=False), nn.ReLU())
        self.conv4 = nn.Sequential(nn.Conv3d(channels, channels, 3, 1, 1, bias=False), nn.ReLU())

    def forward(self, z: Tensor) -> Tensor:
        """(B, 6, 5, H, W) -> (B, 64, H, W)."""
        x = self.conv1(z)  # (B, 64, 3, H, W)
        x = self.conv2(x) + x
        x = self.conv3(x)  # (B, 64, 1, H, W)
        x = self.conv4(x) + x
        return x.squeeze(2)  # (B, 64, H, W)


class _DenseBlock(nn.Module):
    """ResidualDenseBlock_5C (nc 64, gc 32, plain ReLU): ``conv5([x, x1..x4]) * 0.2 + x``."""

    def __init__(self, channels: int = 64, growth: int = 32) -> None:
        super().__init__()
        for m in range(1, 5):
            conv = nn.Conv2d(channels + (m - 1) * growth, growth, 3, 1, 1)
            self.add_module(f"conv{m}", nn.Sequential(conv, nn.ReLU()))
        self.conv5 = nn.Sequential(nn.Conv2d(channels + 4 * growth, channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 64, H, W) -> (N, 64, H, W)."""
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(conv(torch.cat(feats, dim=1)))
        return self.conv5(torch.cat(feats, dim=1)) * 0.2 + x


class _RRDB(nn.Module):
    """Residual-in-residual dense block: ``RDB3(RDB2(RDB1(x))) * 0.2 + x``."""

    def __init__(self, channels: int = 64, growth: int = 32) -> None:
        super().__init__()
        self.RDB1 = _DenseBlock(channels, growth)
        self.RDB2 = _DenseBlock(channels, growth)
        self.RDB3 = _DenseBlock(channels, growth)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 64, H, W) -> (N, 64, H, W)."""
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class _ShortcutBlock(nn.Module):
    """ShortcutBlock_ZKH: ``x + LR_conv(RRDB_1..9(x))``."""

    def __init__(self, channels: int = 64, num_blocks: int = 9) -> None:
        super().__init__()
        self.sub1 = nn.Sequential(*[_RRDB(channels) for _ in range(num_blocks)])
        self.sub2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 64, H, W) -> (N, 64, H, W)."""
        return x + self.sub2(self.sub1(x))


class OfficialFineNet(nn.Module):
    """The release's ``FineNet_npic``: refines the coarse clip with a residual on the coarse output.

    ``state_dict()`` keys and shapes equal the ``"fine"`` table of :func:`official_state_dict_shapes`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _C3D(),
            _ShortcutBlock(),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(64, 3 * _NUM_FRAMES, 3, 1, 1),
        )

    def forward(self, c_out: Tensor, c_in: Tensor) -> Tensor:
        """Refined clip.

        Args:
            c_out: (B, 3, 5, H, W) coarse output, normalized and unclamped.
            c_in: (B, 3, 5, H, W) rainy input clip, normalized.

        Returns:
            out_F: (B, 3, 5, H, W), normalized and not clamped.

        Raises:
            ValueError: If either input is not (B, 3, 5, H, W) or their shapes differ.
        """
        _check_cube(c_out, "fine-net coarse input c_out", _NUM_FRAMES)
        _check_cube(c_in, "fine-net rainy input c_in", _NUM_FRAMES)
        if c_out.shape != c_in.shape:
            raise ValueError(
                f"c_out and c_in must have the same shape, got {tuple(c_out.shape)} and {tuple(c_in.shape)}"
            )
        B, _, D, H, W = c_out.shape
        z = torch.cat([c_out, c_in], dim=1)  # (B, 6, 5, H, W)
        res = self.net(z)  # (B, 15, H, W), channel k = colour * 5 + frame
        return res.view(B, 3, D, H, W) + c_out


# ----------------------------------------------------------------------------------------------------------------
# Wrapper
# ----------------------------------------------------------------------------------------------------------------


def _strip_prefix(state: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{what} entry {key!r} is a {type(value).__name__}, expected a torch.Tensor; pass a state dict "
                "(if you loaded a checkpoint file, pass its 'state_dict' entry)"
            )
        out[key.removeprefix(_PREFIX)] = value
    return out


def _check_state(net: nn.Module, state: dict[str, Tensor], what: str, release_name: str) -> None:
    expected = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [
        f"{key}: got {tuple(state[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{len(items)} {label} key(s): {', '.join(items[:5])}{more}")
    raise ValueError(
        f"{what} does not match the released architecture: {'; '.join(parts)}. It must be the authors' "
        f"{release_name} checkpoint state dict (keys with or without 'module.'); if you loaded a checkpoint file, "
        f"pass its 'state_dict' entry"
    )


class OfficialESTINet(nn.Module):
    """Coarse + fine networks of the authors' release, with our project's [0, 1] frame layout.

    Attributes:
        coarse: :class:`OfficialCoarseNet` (the release's ``net_C``).
        fine: :class:`OfficialFineNet` (the release's ``net_F``).
        num_frames: Window length, 5.
        centre: Index of the frame a window restores, 2.
    """

    num_frames: int = _NUM_FRAMES
    centre: int = _CENTRE

    def __init__(self) -> None:
        super().__init__()
        self.coarse = OfficialCoarseNet()
        self.fine = OfficialFineNet()

    def forward_normalized(self, x_cube: Tensor) -> tuple[Tensor, Tensor]:
        """The release's computation in normalized space.

        Args:
            x_cube: (B, 3, 5, H, W) rainy clip, ImageNet-normalized.

        Returns:
            ``(out_C, out_F)``, each (B, 3, 5, H, W), normalized and unclamped.
        """
        _check_cube(x_cube, "x_cube", _NUM_FRAMES)
        out_c = self.coarse(x_cube)
        return out_c, self.fine(out_c, x_cube)

    def frame_features(self, frames: Tensor) -> FrameFeatures:
        """The streaming seam of :class:`~estinet.models.estinet.ESTINet`: the release has no per-frame work.

        Args:
            frames: (N, 3, H, W) in [0, 1].

        Returns:
            :class:`~estinet.models.estinet.FrameFeatures` with both terms empty, so streaming stores only frames.
        """
        empty = frames.new_zeros(0)
        return FrameFeatures(empty, empty)

    def window_forward(
        self, rainy: Tensor, full: Tensor, low: Tensor, displacement: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The streaming seam: the whole release runs on every window.

        Args:
            rainy: (B, 5, 3, H, W) rainy frames in [0, 1].
            full: unused (empty, see :meth:`frame_features`).
            low: unused (empty).
            displacement: unused; the release has no motion compensation.

        Returns:
            As :meth:`forward`.
        """
        return self(rainy)

    def forward(self, frames: Tensor, displacement: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Derain one 5-frame window per batch element.

        The clamp to [0, 1] after un-normalizing equals the release's per-channel clamp to the normalized images of 0
        and 1 (up to the 4-decimal rounding of the release's constants, below 1e-4).

        Args:
            frames: (B, 5, 3, H, W) RGB frames in [0, 1].
            displacement: unused (the release has no motion compensation); accepted so that callers pass the same
                arguments as to :meth:`ESTINet.forward`.

        Returns:
            ``(coarse, refined)``: the coarse clip (B, 5, 3, H, W) and the refined centre frame (B, 3, H, W), both in
            [0, 1].

        Raises:
            ValueError: If ``frames`` is not a floating-point (B, 5, 3, H, W) tensor.
        """
        if frames.dim() != 5 or frames.shape[1] != _NUM_FRAMES or frames.shape[2] != 3:
            raise ValueError(
                f"frames must be (B, T={_NUM_FRAMES}, 3, H, W) RGB in [0, 1], got shape {tuple(frames.shape)}; "
                f"build 5-frame windows with official_windows()"
            )
        if not frames.is_floating_point():
            raise ValueError(f"frames must be a float tensor in [0, 1], got dtype {frames.dtype}; divide uint8 by 255")
        mean = frames.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
        std = frames.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
        x_cube = (frames.permute(0, 2, 1, 3, 4) - mean) / std  # (B, 3, 5, H, W)
        out_c, out_f = self.forward_normalized(x_cube)
        coarse = (out_c * std + mean).clamp(0.0, 1.0).permute(0, 2, 1, 3, 4)  # (B, 5, 3, H, W)
        refined = (out_f[:, :, _CENTRE] * std[:, :, 0] + mean[:, :, 0]).clamp(0.0, 1.0)  # (B, 3, H, W)
        return coarse, refined

    def load_official(self, coarse_state: Mapping[str, Tensor], fine_state: Mapping[str, Tensor]) -> None:
        """Load the authors' ``net_C`` and ``net_F`` state dicts strictly.

        Args:
            coarse_state: The coarse net's state dict; keys with or without the ``module.`` prefix that
                ``nn.DataParallel`` adds.
            fine_state: The fine net's state dict, same rules.

        Raises:
            ValueError: If keys are missing or unexpected or a shape differs (up to 5 of each are listed).
            TypeError: If a value is not a tensor.
        """
        coarse = _strip_prefix(coarse_state, "coarse_state")
        fine = _strip_prefix(fine_state, "fine_state")
        _check_state(self.coarse, coarse, "coarse_state", "net_C (CoarseNet)")
        _check_state(self.fine, fine, "fine_state", "net_F (FineNet_npic)")
        self.coarse.load_state_dict(coarse, strict=True)
        self.fine.load_state_dict(fine, strict=True)
