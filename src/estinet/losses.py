"""Training losses of ESTINet (paper eq. 14-16) with the border mask that motion compensation needs.

* ``L_STI = MSE(coarse, clean)`` over all T frames of the window (eq. 14);
* ``L_EST = MSE(refined centre, clean centre)`` (eq. 15);
* ``L_final = L_STI + alpha * L_EST`` with ``alpha = 1`` (eq. 16).

Motion compensation. With global motion compensation on, the network returns every coarse frame in the centre
frame's coordinates (:func:`estinet.models.motion.align_to_centre` translates frame t by ``-disp[t]``), so the clean
targets are aligned with the *same* displacement before the loss. Translation fills the pixels it uncovers by
replicating the edge row or column; a filled target pixel is not ground truth, so it is left out of ``L_STI``.
:func:`border_mask` marks exactly the pixels :func:`~estinet.models.motion.translate` fills: for a displacement
``(dy, dx)`` of frame t, ``ceil(dy)`` rows at the bottom when ``dy > 0``, ``ceil(-dy)`` rows at the top when
``dy < 0``, and the same for columns with ``dx`` (so every pixel within ``ceil(|d|)`` px of the edge the content
moved away from). The centre frame (zero displacement) and frames of a static camera keep every pixel; ``L_EST``
compares the centre frame, which is never translated, and needs no mask.

Reduction. Each sample's loss is the mean squared error over its valid pixels (and channels); the batch loss is the
mean over samples. Without a mask this is the plain MSE; with one, every clip weighs the same whatever its motion,
and the loss of a batch split over DDP processes (the mean of the per-process means) equals the loss of the whole
batch in one process.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.models.veil import Veil, lift_veil

__all__ = [
    "BACKGROUND_TOLERANCE",
    "DerainLoss",
    "LossTerms",
    "background_mask",
    "border_mask",
    "derain_loss",
    "masked_mse",
]

BACKGROUND_TOLERANCE = 2.0 / 255.0  # rainy and clean within 2 levels in every channel: a pixel the rain left alone


def border_mask(displacement: Tensor, height: int, width: int) -> Tensor:
    """Pixels of aligned frames that hold real content (1) rather than replicated border (0).

    Args:
        displacement: (B, T, 2) (dy, dx) of every frame relative to the centre frame, in pixels, as passed to
            :func:`estinet.models.motion.align_to_centre`.
        height: frame height H.
        width: frame width W.

    Returns:
        (B, T, 1, H, W) float32 mask on ``displacement``'s device: 0 for the ``ceil(max(dy, 0))`` bottom rows,
        ``ceil(max(-dy, 0))`` top rows, ``ceil(max(dx, 0))`` right columns and ``ceil(max(-dx, 0))`` left
        columns of each frame, 1 elsewhere.

    Raises:
        ValueError: a displacement that is not (B, T, 2) or not finite, or a non-positive size.
    """
    if displacement.dim() != 3 or displacement.shape[-1] != 2:
        raise ValueError(f"displacement must have shape (B, T, 2) (dy, dx), got {tuple(displacement.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    d = displacement.detach().to(torch.float64)
    if not bool(torch.isfinite(d).all()):
        raise ValueError("displacement must be finite; check the motion estimate")
    lead = torch.ceil(d.neg().clamp(min=0)).long()  # (B, T, 2) filled rows/cols at the top/left
    trail = torch.ceil(d.clamp(min=0)).long()  # (B, T, 2) filled rows/cols at the bottom/right
    device = displacement.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    ok_y = (rows >= lead[..., 0, None]) & (rows < height - trail[..., 0, None])  # (B, T, H)
    ok_x = (cols >= lead[..., 1, None]) & (cols < width - trail[..., 1, None])  # (B, T, W)
    mask = ok_y[..., :, None] & ok_x[..., None, :]  # (B, T, H, W)
    return mask.unsqueeze(2).to(torch.float32)  # (B, T, 1, H, W)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error per sample over the valid pixels, then the mean over the batch.

    Args:
        pred: (B, ...) prediction, e.g. (B, T, 3, H, W) or (B, 3, H, W).
        target: same shape as ``pred``.
        mask: None (every pixel counts) or a 0/1 tensor broadcastable to ``pred`` with the same number of dims,
            e.g. (B, T, 1, H, W) from :func:`border_mask`.

    Returns:
        Scalar float32 loss (float64 for float64 input). A sample whose mask is all zero contributes 0.

    Raises:
        ValueError: mismatched shapes.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() < 2:
        raise ValueError(f"pred must be batched (B, ...), got shape {tuple(pred.shape)}")
    err = (pred - target).square()  # (B, ...)
    dims = tuple(range(1, pred.dim()))
    if mask is None:
        return err.mean(dim=dims).mean()
    if mask.dim() != pred.dim():
        raise ValueError(f"mask must have {pred.dim()} dims like pred, got shape {tuple(mask.shape)}")
    mask = mask.to(err.dtype)
    try:
        full = torch.broadcast_shapes(mask.shape, err.shape)
    except RuntimeError:
        full = None
    if full != err.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(err.shape)}")
    count = mask.expand(full).sum(dim=dims)  # (B,) valid values
    total = (err * mask).sum(dim=dims)  # (B,)
    return (total / count.clamp(min=1)).mean()


class LossTerms(NamedTuple):
    """The training loss and its parts.

    Attributes:
        total: the loss to minimise (scalar).
        sti: L_STI over all frames (scalar).
        est: L_EST of the refined centre frame (scalar), or None when it is not part of the loss.
        veil: the veil head's loss (scalar, :func:`veil_loss`; included in ``total``), or None without a veil head.
    """

    total: Tensor
    sti: Tensor
    est: Tensor | None
    veil: Tensor | None = None


def derain_loss(
    coarse: Tensor,
    refined: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    centre: int,
    alpha: float = 1.0,
    refine: bool = True,
    rainy: Tensor | None = None,
    background_weight: float = 0.0,
    gate_logits: Tensor | None = None,
    gate_weight: float = 0.0,
    rain_mask: Tensor | None = None,
    detail_weight: float = 0.0,
) -> LossTerms:
    """ESTINet's loss: ``L_STI`` (stage 1) or ``L_STI + alpha * (L_EST + background_weight * L_BG + gate_weight *
    L_GATE + detail_weight * L_DETAIL)`` (stage 2).

    ``L_BG`` is the refined frame's MSE over the *background*: the pixels of the centre frame that the rain left
    alone, found as those where the rainy and the clean frame differ by at most :data:`BACKGROUND_TOLERANCE` in every
    channel (2 levels of 8 bits). It needs no rain mask from a renderer, so it works on any paired data. Its mean is
    taken over the background pixels only, so it weighs the same however much of the frame the rain covers; it is
    what asks a gated ESTM (``model.rain_gate``) to close the gate where there is no rain. ``L_GATE`` supervises the
    gate itself: the binary cross-entropy of its logits against "not background" (1 where the rain changed the pixel).
    The background term alone teaches the gate slowly, because its gradient scales with the small residual a
    rain-free pixel has; the cross-entropy does not. ``L_DETAIL`` is the MSE of the refined and the clean frame's
    fine detail (:func:`high_pass`: each minus its 5x5 local mean): thin, faint streaks carry little of the plain MSE
    next to a veil of haze, which a model then learns to lift first, but most of the error in the fine detail.

    Args:
        coarse: (B, T, 3, H, W) coarse frames.
        refined: (B, 3, H, W) refined centre frame.
        target: (B, T, 3, H, W) clean frames, aligned to the centre frame like the network's frames.
        mask: (B, T, 1, H, W) from :func:`border_mask`, or None.
        centre: index of the centre frame in T.
        alpha: weight of ``L_EST``.
        refine: include ``L_EST`` (stage 2 of a model with ESTM).
        rainy: (B, T, 3, H, W) rainy frames (only the centre frame is used, which is never translated); needed
            when ``background_weight > 0``.
        background_weight: weight of ``L_BG`` (0 leaves the paper's loss).
        gate_logits: (B, 1, H, W) logits of the rain gate (:class:`estinet.models.estm.ESTM`), needed when
            ``gate_weight > 0``.
        gate_weight: weight of ``L_GATE``.
        rain_mask: (B, 1, H, W) 0/1, the pixels of the centre frame the rain changed, when the data knows them (rendered
            rain, decided before compression); None derives the background from the pair as described above.
        detail_weight: weight of ``L_DETAIL`` (0 leaves it out).

    Returns:
        :class:`LossTerms`.
    """
    if not 0 <= centre < target.shape[1]:
        raise ValueError(f"centre must index one of the {target.shape[1]} frames, got {centre}")
    sti = masked_mse(coarse, target, mask)
    if not refine:
        return LossTerms(sti, sti, None)
    clean_c = target[:, centre]
    est = masked_mse(refined, clean_c)
    if background_weight > 0 or gate_weight > 0:
        if rainy is None:
            raise ValueError("background_weight or gate_weight > 0 needs the rainy frames (rainy=...)")
        dry = background_mask(rainy[:, centre], clean_c) if rain_mask is None else 1.0 - rain_mask.float()
        if background_weight > 0:
            est = est + background_weight * masked_mse(refined, clean_c, dry)
        if gate_weight > 0:
            if gate_logits is None:
                raise ValueError("gate_weight > 0 needs the gate's logits (gate_logits=...); is model.rain_gate on?")
            wet = 1.0 - dry
            est = est + gate_weight * F.binary_cross_entropy_with_logits(gate_logits.float(), wet)
    if detail_weight > 0:
        est = est + detail_weight * masked_mse(high_pass(refined), high_pass(clean_c))
    return LossTerms(sti + alpha * est, sti, est)


def veil_loss(veil: Veil, veiled: Tensor, clean: Tensor) -> Tensor:
    """The veil head's loss: the MSE of the true veiled frame lifted by the estimated veil and the clean frame.

    The head learns from the renderer's veil alone (the veiled frame is the target, not the derainer's output),
    so its loss does not reach the derainer; on rain without a veil it teaches the head to estimate none.

    Args:
        veil: the head's estimate (:class:`estinet.models.veil.VeilHead`) for the centre frames.
        veiled: (B, 3, H, W) the clean centre frames under the rain's veil (``SyntheticRain(veiled=True)``).
        clean: (B, 3, H, W) the clean centre frames.

    Returns:
        Scalar.
    """
    return F.mse_loss(lift_veil(veiled, Veil(veil.haze.float(), veil.light.float())), clean)


def high_pass(x: Tensor, size: int = 5) -> Tensor:
    """Fine detail of images: each pixel minus the mean of its ``size`` x ``size`` neighbourhood (inside the image).

    Args:
        x: (B, C, H, W) images.
        size: odd window size.

    Returns:
        (B, C, H, W); zero on constant images, the whole signal on detail finer than the window.
    """
    return x - F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def background_mask(rainy: Tensor, clean: Tensor) -> Tensor:
    """Pixels the rain left alone: rainy and clean within :data:`BACKGROUND_TOLERANCE` in every channel.

    Args:
        rainy: (B, 3, H, W) rainy frame in [0, 1].
        clean: (B, 3, H, W) clean frame in [0, 1].

    Returns:
        (B, 1, H, W) float 0/1 mask, 1 on the background.
    """
    return ((rainy - clean).abs().amax(dim=1, keepdim=True) <= BACKGROUND_TOLERANCE).float()


class DerainLoss(nn.Module):
    """Module form of :func:`derain_loss`.

    Args:
        centre: index of the centre frame.
        alpha: weight of ``L_EST``.
    """

    def __init__(self, centre: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.centre = centre
        self.alpha = alpha

    def forward(
        self, coarse: Tensor, refined: Tensor, target: Tensor, mask: Tensor | None = None, refine: bool = True
    ) -> LossTerms:
        """See :func:`derain_loss`."""
        return derain_loss(coarse, refined, target, mask, centre=self.centre, alpha=self.alpha, refine=refine)

    def extra_repr(self) -> str:
        """Settings shown by ``print(module)``."""
        return f"centre={self.centre}, alpha={self.alpha}"
