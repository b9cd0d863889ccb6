"""The two-stage schedule (SPEC §1, paper §4.2): which parameters each stage trains, and its learning rates.

Stage 1 trains the coarse part (SICM + STIM and the coarse head) with ``L_STI``; the refiner (ESTM, or the
``official`` variant's fine net) is frozen and has no optimizer state. Stage 2 trains every parameter with
``L_STI + alpha * L_EST``. Each stage has its own Adam optimizer and learning-rate decay from ``train.lr`` to
``train.min_lr`` (cosine or exponential, :class:`StageSchedule`). Variants without a refiner train one stage of
``stage1_steps + stage2_steps`` steps with ``L_STI``, so an ablation sees the same budget as the full model.

The learning rate of a stage's step ``k`` is ``train.lr * StageSchedule(k)``, always computed from the config being
run: a resumed run may lengthen or shorten a stage or change the rates, and its schedule then follows the new values
from the step it resumes at (with an unchanged config that is exactly the uninterrupted run's schedule).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from estinet.config import ConfigError, ExperimentConfig, TrainConfig

__all__ = ["Stage", "StageSchedule", "refiner", "stage_end", "stage_index", "stage_optimizer", "stage_plan"]

ADDED_HEADS = ("estm.gate.", "veil.")
"""Parameter name prefixes of the heads that can be added to trained weights (the rain gate, the veil head)."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage.

    Attributes:
        number: 1 or 2.
        steps: optimisation steps of the stage.
        refine: whether the refiner (ESTM) is trained and ``L_EST`` is part of the loss.
    """

    number: int
    steps: int
    refine: bool


def stage_plan(config: ExperimentConfig) -> list[Stage]:
    """The stages a config trains, skipping stages of zero steps.

    Variants with a refiner (``estinet``, ``official``): stage 1 (coarse part, ``L_STI``) then stage 2 (everything,
    ``L_STI + alpha * L_EST``). Other variants: one stage of ``stage1_steps + stage2_steps`` steps.
    """
    t = config.train
    if config.model.has_estm:
        stages = [Stage(1, t.stage1_steps, False), Stage(2, t.stage2_steps, True)]
        return [s for s in stages if s.steps > 0]
    return [Stage(1, t.stage1_steps + t.stage2_steps, False)]


def stage_index(plan: list[Stage], step: int) -> int:
    """Index into ``plan`` of the stage that global step ``step`` (0-based) belongs to (the last one past the end)."""
    end = 0
    for i, stage in enumerate(plan):
        end += stage.steps
        if step < end:
            return i
    return len(plan) - 1


def stage_end(plan: list[Stage], index: int) -> int:
    """The global step count at which stage ``plan[index]`` ends."""
    return sum(s.steps for s in plan[: index + 1])


class StageSchedule:
    """Learning-rate factor for :class:`torch.optim.lr_scheduler.LambdaLR` within one stage.

    Step ``k`` of ``steps`` uses ``lr * factor(k)``: 1 at the first step and ``min_lr / lr`` at the last, with
    ``cosine``: ``r + (1 - r) * (1 + cos(pi x)) / 2`` or ``exponential``: ``r ** x``, ``x = k / (steps - 1)``,
    ``r = min_lr / lr``.

    Args:
        kind: ``cosine`` or ``exponential``.
        steps: steps of the stage.
        ratio: ``min_lr / lr`` in (0, 1].
    """

    def __init__(self, kind: str, steps: int, ratio: float) -> None:
        if kind not in ("cosine", "exponential"):
            raise ConfigError(f"train.schedule must be cosine or exponential, got {kind!r}")
        self.kind = kind
        self.steps = int(steps)
        self.ratio = float(ratio)

    def __call__(self, k: int) -> float:
        x = min(max(k, 0), max(self.steps - 1, 1)) / max(self.steps - 1, 1)
        if self.kind == "cosine":
            return self.ratio + (1.0 - self.ratio) * 0.5 * (1.0 + math.cos(math.pi * x))
        return self.ratio**x


def refiner(model: nn.Module) -> nn.Module | None:
    """The model's refinement network: ESTM of :class:`~estinet.models.ESTINet`, or the official variant's fine net."""
    estm = getattr(model, "estm", None)
    if isinstance(estm, nn.Module):
        return estm
    fine = getattr(model, "fine", None)
    return fine if isinstance(fine, nn.Module) else None


def stage_optimizer(
    model: nn.Module, stage: Stage, train: TrainConfig, optimizer_state: dict[str, Any] | None = None, position: int = 0
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Freeze or unfreeze the refiner for ``stage`` and build the stage's Adam optimizer and learning-rate schedule.

    Args:
        model: the network (unwrapped); its ``requires_grad`` flags are set here.
        stage: the stage to train.
        train: the config's training section (``lr``, ``min_lr``, ``schedule``).
        optimizer_state: a state dict of this stage's optimizer to continue from (a resumed run), or None.
        position: steps this stage's optimizer has already taken; its next step uses ``lr * schedule(position)``.

    Returns:
        (optimizer over the trainable parameters, its :class:`~torch.optim.lr_scheduler.LambdaLR`).
    """
    for p in model.parameters():
        p.requires_grad_(True)
    frozen = refiner(model)
    if frozen is not None and not stage.refine:
        for p in frozen.parameters():
            p.requires_grad_(False)
    if train.veil_only:  # the veil head alone
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("veil."))
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    added = [p for name, p in named if name.startswith(ADDED_HEADS)]
    if added and train.gate_lr_scale != 1.0 and not train.veil_only:
        # a rain gate or veil head added to trained weights starts from scratch: it gets its own, larger rate
        rest = [p for name, p in named if not name.startswith(ADDED_HEADS)]
        groups = [{"params": rest, "lr_scale": 1.0}, {"params": added, "lr_scale": train.gate_lr_scale}]
    else:
        groups = [{"params": [p for _, p in named], "lr_scale": 1.0}]
    optimizer = torch.optim.Adam(groups, lr=train.lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    for group in optimizer.param_groups:
        # the schedule's base: the config being run, not a stored state's rate
        group["initial_lr"] = train.lr * group["lr_scale"]
    schedule = StageSchedule(train.schedule, stage.steps, train.min_lr / train.lr)
    # LambdaLR's constructor takes one step, so starting at position - 1 sets the learning rate of step `position`
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=position - 1)
    return optimizer, scheduler
