"""The trainer: one run (or its continuation) from model building to exported weights.

Motion compensation
    When the model compensates global motion, each batch's displacements are estimated once
    (``model.estimate_motion(rainy)``) and passed to the forward pass; the clean targets are aligned with
    :func:`~estinet.models.motion.align_to_centre` and the same displacements, and the border pixels that the
    translation filled by replication are left out of ``L_STI`` (:func:`estinet.losses.border_mask`).

Precision
    Mixed precision (``train.amp``: ``bf16``, or ``fp16`` with a gradient scaler on CUDA) and channels-last weights
    (``train.channels_last``) are config switches.

Run folder (``out_dir``)
    ``config.yaml`` (the resolved config), ``metrics.jsonl`` (:class:`~estinet.train.log.MetricsLog`), ``last.pt``
    (every ``ckpt_every`` steps, at stage ends and at the end), ``best.pt`` (best validation ``psnr_y`` of the final
    stage), and at the end ``model.safetensors`` (final weights) and ``best.safetensors`` (best weights), both
    loadable with :func:`estinet.checkpoint.load_model`. Under DDP rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from estinet import runtime
from estinet.config import ConfigError, ExperimentConfig, experiment_from_dict, save_experiment, to_dict
from estinet.losses import LossTerms, border_mask, derain_loss, veil_loss
from estinet.models import build_model
from estinet.models.motion import align_to_centre
from estinet.train.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_flag,
    local_rank_from_env,
    mean_over_ranks,
    resolve_device,
    setup_distributed,
    teardown,
    wrap_model,
)
from estinet.train.log import MetricsLog
from estinet.train.sampling import BatchPlan, build_train_dataset, make_loader
from estinet.train.schedule import Stage, refiner, stage_end, stage_index, stage_optimizer, stage_plan
from estinet.train.state import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    init_from_weights,
    load_training_checkpoint,
    remove_stale_temps,
    rng_state,
    save_training_checkpoint,
    schedule_position,
    seed_everything,
    set_rng_state,
)
from estinet.train.validation import BEST_METRIC, ValSet, evaluate_windows

__all__ = ["Trainer"]


class _LossMeter:
    """Sums of the loss terms since the last train record, kept on the device (no synchronisation per step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.started = time.perf_counter()
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0
        self.tick = time.perf_counter()

    def add(self, terms: LossTerms) -> None:
        for name, value in (("loss", terms.total), ("l_sti", terms.sti), ("l_est", terms.est), ("l_veil", terms.veil)):
            if value is not None:
                self.sums[name] = self.sums.get(name, torch.zeros((), device=self.device)) + value
        self.count += 1


class Trainer:
    """Runs (or resumes) the training an :class:`ExperimentConfig` describes.

    Args:
        config: the experiment.
        out_dir: run folder (default ``config.run_dir``).
        resume: a checkpoint to continue from (its model must match ``config.model``).
        dist_info: this process's place in a distributed run (default: from torchrun's environment).

    Raises:
        CheckpointError: ``resume`` cannot be used (see :func:`load_training_checkpoint`), or its model differs from
            ``config.model``.
        ConfigError: an unusable setting (device, precision).
        DatasetError: the data cannot be opened.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR

    def __init__(
        self,
        config: ExperimentConfig,
        out_dir: str | Path | None = None,
        resume: str | Path | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else config.run_dir
        t = config.train
        local_rank = dist_info.local_rank if dist_info is not None else local_rank_from_env()
        self.device = resolve_device(t.device, local_rank)
        if self.device.type == "cpu":  # reuse freed memory (benchmarks/bench_train_allocator.py)
            from estinet.allocator import keep_freed_memory

            keep_freed_memory()
        self.dist = dist_info if dist_info is not None else setup_distributed(self.device)
        if t.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"train.amp=fp16 needs a CUDA device, not {self.device}; use train.amp=bf16 or none")
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.amp]
        self.scaler = torch.amp.GradScaler("cuda") if t.amp == "fp16" else None

        ckpt = self._read_resume(resume)
        self.core = self._build_core(ckpt, resume)
        seed_everything(t.seed + self.dist.rank)
        self._gate_logits: list[Tensor] = []  # the rain gate's logits of the current step, for L_GATE
        if t.gate_weight > 0:
            gate = getattr(getattr(self.core, "estm", None), "gate", None)
            if gate is None:
                raise ConfigError("train.gate_weight > 0 needs a rain gate: set model.rain_gate=true (variant estinet)")
            # keep only the latest call's logits (validation forwards pass through the hook too)
            gate.register_forward_hook(self._keep_gate_logits)

        self.plan = stage_plan(config)
        self.total_steps = sum(s.steps for s in self.plan)
        self.step = int(ckpt["step"]) if ckpt is not None else 0
        if self.step > self.total_steps:
            raise CheckpointError(
                f"{resume} is at step {self.step}, beyond this config's {self.total_steps} steps; raise "
                "train.stage1_steps / train.stage2_steps to continue training"
            )
        self.best: dict[str, Any] = (
            dict(ckpt["best"]) if ckpt is not None else {"metric": BEST_METRIC, "value": None, "step": None}
        )
        self.dataset = build_train_dataset(config)
        self.data_epoch, self.data_batch = self._data_position(ckpt)
        self.batches = BatchPlan(
            len(self.dataset),  # type: ignore[arg-type]
            config.data.batch_size,
            self.dist.world_size,
            self.dist.rank,
            t.seed,
            self.data_epoch,
            self.data_batch,
        )
        self.val = ValSet(config) if config.data.val is not None and self.dist.is_main else None

        self.model: nn.Module = self.core
        self.stage_index = stage_index(self.plan, self.step)
        stage_state = ckpt if ckpt is not None and ckpt["stage"] == self.plan[self.stage_index].number else None
        self._enter_stage(self.stage_index, stage_state)
        if ckpt is not None:
            if self.scaler is not None and ckpt["scaler"]:
                self.scaler.load_state_dict(ckpt["scaler"])
            states = ckpt["rng"]
            if self.dist.rank < len(states):
                set_rng_state(states[self.dist.rank])
        self.resumed_from = self.step if ckpt is not None else None
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])

    # -----------------------------------------------------------------------------------------------------------------
    # set-up
    # -----------------------------------------------------------------------------------------------------------------

    def _read_resume(self, resume: str | Path | None) -> dict[str, Any] | None:
        """The checkpoint to continue from (None for a new run), refused when its model is not the config's."""
        if resume is None:
            return None
        ckpt = load_training_checkpoint(resume)
        stored = experiment_from_dict(ckpt["config"]).model
        if stored != self.config.model:
            raise CheckpointError(
                f"{resume} was trained with model {to_dict(stored)}, but the config asks for "
                f"{to_dict(self.config.model)}; resume without --config (the checkpoint's own config is used) or start "
                "a new run"
            )
        return ckpt

    def _build_core(self, ckpt: dict[str, Any] | None, resume: str | Path | None) -> nn.Module:
        """The model on the device in training mode: seeded initial weights, ``init_from``'s, or the checkpoint's."""
        t = self.config.train
        torch.manual_seed(t.seed)  # identical initial weights on every process
        core = build_model(self.config.model)
        if ckpt is None and t.init_from:
            init_from_weights(core, self.config.model, t.init_from)
        if ckpt is not None:
            from estinet.checkpoint import WeightsError, load_state

            try:
                load_state(core, ckpt["model"], str(resume))
            except WeightsError as exc:
                raise CheckpointError(str(exc)) from exc
        core.to(self.device)
        if t.channels_last:
            for module in core.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        return core.train()

    def _data_position(self, ckpt: dict[str, Any] | None) -> tuple[int, int]:
        """(data epoch, global batch) to continue at: the checkpoint's, or the next epoch's start if data changed."""
        if ckpt is None:
            return 0, 0
        data = ckpt["data"]
        global_batch = self.config.data.batch_size * self.dist.world_size
        if data.get("global_batch") == global_batch and data.get("length") == len(self.dataset):  # type: ignore[arg-type]
            return int(data["epoch"]), int(data["batch"])
        return int(data["epoch"]) + 1, 0  # batch size or data changed: continue with the next data epoch

    def _enter_stage(self, index: int, state: dict[str, Any] | None = None) -> None:
        """Freeze or unfreeze the refiner, build the stage's optimizer and schedule (from ``state``), wrap for DDP."""
        optimizer_state = state["optimizer"] if state is not None else None
        position = schedule_position(state) if state is not None else 0
        self.optimizer, self.scheduler = stage_optimizer(
            self.core, self.plan[index], self.config.train, optimizer_state, position
        )
        self.stage_index = index
        # the official variant keeps batch-norm layers the release never applies
        unused = self.config.model.variant == "official"
        self.model = wrap_model(self.dist, self.core, self.device, find_unused_parameters=unused)

    def _autocast(self) -> AbstractContextManager[Any]:
        return runtime.autocast(self.device, self.amp_dtype)

    @property
    def stage(self) -> Stage:
        """The current stage."""
        return self.plan[self.stage_index]

    def cpu_threads(self) -> int:
        """Torch threads for CPU training: ``train.threads``, or ``max(1, cores // processes - data.workers)``."""
        if self.config.train.threads:
            return self.config.train.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.dist.world_size - self.config.data.workers)

    # -----------------------------------------------------------------------------------------------------------------
    # one step, validation, state
    # -----------------------------------------------------------------------------------------------------------------

    def _keep_gate_logits(self, _module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        """Forward hook of the rain gate: remember its logits (N, 1, H, W) for the gate's loss term."""
        self._gate_logits[:] = [output]

    def train_step(self, batch: dict[str, Tensor]) -> LossTerms:
        """One optimisation step.

        Args:
            batch: ``rainy`` and ``clean``, each (B, T, 3, h, w) in [0, 1].

        Returns:
            The (detached) loss terms of this process's batch.
        """
        veil_head = getattr(self.core, "veil", None)
        if veil_head is not None and "veiled" not in batch:
            if self.config.train.trains_veil:
                raise ConfigError(
                    "model.veil_head needs the veiled targets of synthetic training data (synthetic:...), or "
                    "train.veil_weight=0 to carry the head along unchanged"
                )
            veil_head = None  # paired data: the derainer learns the pairs' clean frames, the head stays as it was
        if self.config.train.veil_only:
            return self._veil_step(batch)
        rainy = batch["rainy"].to(self.device, non_blocking=True)  # (B, T, 3, h, w)
        clean = batch["clean"].to(self.device, non_blocking=True)  # (B, T, 3, h, w)
        centre = self.config.model.centre
        if veil_head is not None:  # the derainer keeps the veil: its target is the clean clip under the veil
            clean_centre = clean[:, centre]
            clean = batch["veiled"].to(self.device, non_blocking=True)  # (B, T, 3, h, w)
        rain_mask = None  # (B, 1, h, w) of the centre frame, when the data knows where the rain is
        if "rain_mask" in batch:
            rain_mask = batch["rain_mask"][:, centre, None].to(self.device, non_blocking=True)
        estimate = getattr(self.core, "estimate_motion", None)
        disp = estimate(rainy) if estimate is not None else None  # (B, T, 2) or None
        if disp is not None:
            target = align_to_centre(clean, disp)  # (B, T, 3, h, w) in the centre frame's coordinates
            mask = border_mask(disp, rainy.shape[-2], rainy.shape[-1])  # (B, T, 1, h, w)
        else:
            target, mask = clean, None
        self._gate_logits.clear()
        with self._autocast():
            coarse, refined = self.model(rainy, disp) if disp is not None else self.model(rainy)
        terms = derain_loss(
            coarse.float(),
            refined.float(),
            target,
            mask,
            centre=centre,
            alpha=self.config.train.alpha,
            refine=self.stage.refine,
            rainy=rainy,
            background_weight=self.config.train.background_weight,
            gate_logits=self._gate_logits[-1] if self._gate_logits else None,
            gate_weight=self.config.train.gate_weight if self.stage.refine else 0.0,
            rain_mask=rain_mask,
            detail_weight=self.config.train.detail_weight,
        )
        if veil_head is not None:  # the head sees the frame without its streaks, as it will see the derained one
            with self._autocast():
                veil = veil_head(clean[:, centre], rainy[:, centre])
            veil_term = veil_loss(veil, clean[:, centre], clean_centre)
            terms = terms._replace(total=terms.total + self.config.train.veil_weight * veil_term, veil=veil_term)
        self._optimise(terms.total)
        return LossTerms(
            terms.total.detach(),
            terms.sti.detach(),
            terms.est.detach() if terms.est is not None else None,
            terms.veil.detach() if terms.veil is not None else None,
        )

    def _optimise(self, loss: Tensor) -> None:
        """Backward pass of ``loss``, gradient clipping (``train.grad_clip``), optimizer and schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        clip = self.config.train.grad_clip
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], clip)
            self.optimizer.step()
        self.scheduler.step()

    def _veil_step(self, batch: dict[str, Tensor]) -> LossTerms:
        """One step of ``train.veil_only``: the veil head's loss on the (one-frame) clips, the derainer not run."""
        middle = batch["veiled"].shape[1] // 2
        rainy = batch["rainy"][:, middle].to(self.device, non_blocking=True)  # (B, 3, h, w)
        clean = batch["clean"][:, middle].to(self.device, non_blocking=True)
        veiled = batch["veiled"][:, middle].to(self.device, non_blocking=True)
        assert self.core.veil is not None
        # the head sees the frame without its streaks (the derained frame at inference); float32: a tiny head
        loss = self.config.train.veil_weight * veil_loss(self.core.veil(veiled, rainy), veiled, clean)
        self._optimise(loss)
        loss = loss.detach()
        return LossTerms(loss, torch.zeros_like(loss), None, loss)

    def validate(self) -> dict[str, float] | None:
        """Score the validation set (rank 0; None elsewhere or when ``data.val`` is null).

        In stage 1 of a model with a refiner the coarse centre frame is scored (the refiner is untrained);
        otherwise the model's output frame.
        """
        if self.val is None:
            return None
        output = "coarse" if refiner(self.core) is not None and not self.stage.refine else "refined"
        result = evaluate_windows(
            self.core,
            self.val,
            self.device,
            output=output,
            batch_size=self.config.data.batch_size,
            autocast=self._autocast(),
        )
        result["output"] = output  # type: ignore[assignment]
        return result

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint dict of the current state (collective under DDP: gathers every process's RNG state)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": {k: v.detach().cpu() for k, v in self.core.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": all_gather_objects(self.dist, rng_state()),
            "step": self.step,
            "stage": self.stage.number,
            "config": to_dict(self.config),
            "best": dict(self.best),
            "data": {
                "epoch": self.data_epoch,
                "batch": self.data_batch,
                "global_batch": self.batches.global_batch,
                "length": self.batches.length,
            },
        }

    # -----------------------------------------------------------------------------------------------------------------
    # the run
    # -----------------------------------------------------------------------------------------------------------------

    def fit(self, stop_at: int | None = None) -> Path:
        """Train until the end of the schedule (or until step ``stop_at``, leaving a resumable ``last.pt``).

        Returns:
            The run folder.
        """
        t = self.config.train
        self._open_run_folder()
        log = MetricsLog(self.out_dir, self.dist.is_main, self.resumed_from)
        target = self.total_steps if stop_at is None else min(self.total_steps, max(stop_at, self.step))
        threads_before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(self.cpu_threads())
        self.batches.epoch, self.batches.batch = self.data_epoch, self.data_batch  # continue where we are
        loader = make_loader(
            self.dataset, self.batches, self.config.data.workers, t.seed + self.dist.rank, self.device.type == "cuda"
        )
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (self.dist.is_main and t.progress),
            unit="step",
            desc=f"stage {self.stage.number}",
            dynamic_ncols=True,
        )
        iterator = iter(loader) if self.step < target else None
        meter = _LossMeter(self.device)
        try:
            while self.step < target:
                assert iterator is not None
                meter.add(self.train_step(next(iterator)))
                self._advance()
                bar.update(1)
                self._after_step(log, bar, meter, target)
            if self.step == self.total_steps and self.dist.is_main:
                self._export()
            # every rank leaves together, after rank 0's export: tearing a process group down while another rank
            # still uses it aborts that rank
            barrier(self.dist)
        finally:
            bar.close()
            log.close()
            del iterator
            self.resumed_from = self.step  # a later fit() continues this run
            torch.set_num_threads(threads_before)
        return self.out_dir

    def _open_run_folder(self) -> None:
        """Refuse to start a new run over an existing one; on rank 0 create the folder and write ``config.yaml``."""
        if self.resumed_from is None and (self.out_dir / "last.pt").exists():
            raise FileExistsError(
                f"run folder {self.out_dir} already holds a checkpoint; continue it with --resume "
                f"{self.out_dir / 'last.pt'} or choose another output folder"
            )
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.out_dir)
            save_experiment(self.config, self.out_dir / "config.yaml")

    def _advance(self) -> None:
        """Count a finished step and move the data position past its global batch."""
        self.step += 1
        self.data_batch += 1
        if self.data_batch == self.batches.per_epoch:
            self.data_epoch, self.data_batch = self.data_epoch + 1, 0

    def _after_step(self, log: MetricsLog, bar: Any, meter: _LossMeter, target: int) -> None:
        """Log, validate, save and switch stages as the step just finished calls for."""
        t = self.config.train
        at_stage_end = self.step == stage_end(self.plan, self.stage_index)
        if self.step % t.log_every == 0 or at_stage_end or self.step == target:
            self._log_train(log, bar, meter)
            meter.reset()
        improved = False
        if (t.val_every and self.step % t.val_every == 0) or at_stage_end:
            improved = broadcast_flag(self.dist, self._validate_and_log(log))
        due = (t.ckpt_every and self.step % t.ckpt_every == 0) or at_stage_end or self.step == target
        if due or improved:
            state = self.checkpoint_state()
            if self.dist.is_main:
                if due:
                    save_training_checkpoint(state, self.out_dir / "last.pt")
                if improved:
                    save_training_checkpoint(state, self.out_dir / "best.pt")
        if at_stage_end and self.step < self.total_steps:
            self._enter_stage(self.stage_index + 1)
            bar.set_description(f"stage {self.stage.number}")

    def _log_train(self, log: MetricsLog, bar: Any, meter: _LossMeter) -> None:
        seconds = time.perf_counter() - meter.tick
        names = sorted(meter.sums)
        values = mean_over_ranks(self.dist, torch.stack([meter.sums[n] for n in names]) / max(meter.count, 1))
        record: dict[str, Any] = {"kind": "train", "step": self.step, "stage": self.stage.number}
        record.update({n: float(v) for n, v in zip(names, values.tolist(), strict=True)})
        record["lr"] = self.last_lr  # the learning rate of the latest step
        record["it_per_s"] = meter.count / seconds if seconds > 0 else 0.0
        record["elapsed_s"] = time.perf_counter() - meter.started
        log.write(record)
        bar.set_postfix(loss=f"{record['loss']:.5f}", lr=f"{record['lr']:.2e}", refresh=False)

    def _validate_and_log(self, log: MetricsLog) -> bool:
        """Validate on rank 0, log, and say whether this is the best final-stage result so far."""
        result = self.validate()
        if result is None:
            return False
        log.write({"kind": "val", "step": self.step, "stage": self.stage.number, **result})
        final_stage = self.stage_index == len(self.plan) - 1
        value = float(result[BEST_METRIC])
        if final_stage and (self.best["value"] is None or value > self.best["value"]):
            self.best = {"metric": BEST_METRIC, "value": value, "step": self.step}
            return True
        return False

    def _export(self) -> None:
        """Write ``model.safetensors`` (final weights) and, after a validated run, ``best.safetensors``."""
        from estinet.checkpoint import load_model, save_weights

        lineage = {"init_from": self.config.train.init_from} if self.config.train.init_from else {}
        extra = {"steps": str(self.step), "run": self.config.name, **lineage}
        save_weights(self.core, self.config.model, self.out_dir / "model.safetensors", extra=extra)
        best = self.out_dir / "best.pt"
        if best.is_file() and self.best["step"] is not None:
            model, model_config = load_model(best)
            extra = {
                "steps": str(self.best["step"]),
                "run": self.config.name,
                BEST_METRIC: str(self.best["value"]),
                **lineage,
            }
            save_weights(model, model_config, self.out_dir / "best.safetensors", extra=extra)

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        teardown(self.dist)
