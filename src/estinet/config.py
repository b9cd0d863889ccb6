"""Configuration dataclasses, width presets, YAML load/save and dotted ``key=value`` overrides.

One :class:`ModelConfig` describes every network the project builds. The ablation variants of the paper's
Table 3 (``sicm-2dcnn``, ``sicm-stim-2`` .. ``sicm-stim-5``, ``estinet``) and the authors' released architecture
(``official``) are selected by :attr:`ModelConfig.variant`; widths come from a preset (``tiny``, ``small``,
``paper``) and any field can be overridden.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from estinet.errors import EstinetError
from estinet.runtime import atomic_path

VARIANTS: tuple[str, ...] = (
    "sicm-2dcnn",
    "sicm-stim-2",
    "sicm-stim-3",
    "sicm-stim-4",
    "sicm-stim-5",
    "estinet",
    "official",
)
PRESETS: tuple[str, ...] = ("tiny", "small", "paper")
INITS: tuple[str, ...] = ("kaiming", "paper")
GATE_EVIDENCE: tuple[str, ...] = ("features", "temporal")


class ConfigError(EstinetError, ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one network. Build it with :func:`estinet.models.build_model`.

    Attributes:
        variant: one of :data:`VARIANTS`.
        preset: the width preset the numbers came from (informational once built).
        base_channels: C, the SICM encoder widths are C, 2C, 4C, 8C (paper: 64).
        blocks_per_stage: residual blocks in each of the four encoder stages.
        fusion_channels: channels each encoder stage contributes to multi-scale fusion.
        fusion_out: channels of the multi-scale fusion output (SICM features are C + fusion_out channels).
        temporal_stride: STIM runs on SICM features average-pooled by this factor (1 = full resolution);
            a power of two <= 16. Above 1, the coarse head also sees the full-resolution frame features.
        temporal_channels: SICM features are projected (1x1 conv) to this many channels before STIM
            (0 keeps all C + fusion_out channels).
        hidden_channels: STIM hidden/cell state channels.
        head_channels: channels of the first conv of eq. 13 (the bidirectional fusion).
        head_kernel: kernel of the full-resolution conv that outputs the coarse residual (1 or 3).
        estm_channels: ESTM width.
        estm_blocks: densely connected 2D blocks after the two 3D convs.
        estm_layers: conv layers in each dense block.
        estm_growth: growth rate of the dense blocks.
        motion_compensation: align neighbours to the centre frame by global sub-pixel translation.
        init: ``kaiming`` (default) or ``paper`` (N(0, 0.01) as in the paper).
        rain_gate: ESTM also predicts a rain mask ``m`` in [0, 1] and the refined frame becomes
            ``rainy + m * (refined - rainy)``, so pixels without rain can come back exactly as they went in
            (:class:`estinet.models.estm.ESTM`). Needs ESTM; off in the presets (the paper's model), on in the
            shipped models' training configs.
        rain_gate_evidence: what the rain gate sees: ``features`` (ESTM's features and the two proposed residuals)
            or ``temporal`` (those and the centre frame minus the median of the aligned window: rain is transient,
            texture is not). Needs ``rain_gate``.
        veil_head: the derainer is trained to keep the veiling haze of rain (its target is the clean frame under
            the veil) and a small head estimates the veil, so that lifting it is a separate, optional step
            (:mod:`estinet.models.veil`, ``estinet derain --lift-veil``). Needs synthetic training data (the
            renderer knows the veil). Off in the presets.
    """

    variant: str = "estinet"
    preset: str = "tiny"
    base_channels: int = 8
    blocks_per_stage: int = 1
    fusion_channels: int = 2
    fusion_out: int = 8
    temporal_stride: int = 8
    temporal_channels: int = 8
    hidden_channels: int = 8
    head_channels: int = 8
    head_kernel: int = 1
    estm_channels: int = 4
    estm_blocks: int = 1
    estm_layers: int = 1
    estm_growth: int = 4
    motion_compensation: bool = True
    init: str = "kaiming"
    rain_gate: bool = False
    rain_gate_evidence: str = "features"
    veil_head: bool = False

    def __post_init__(self) -> None:
        _check_choice("variant", self.variant, VARIANTS)
        _check_choice("preset", self.preset, PRESETS)
        _check_choice("init", self.init, INITS)
        for name in (
            "base_channels",
            "blocks_per_stage",
            "fusion_channels",
            "fusion_out",
            "hidden_channels",
            "head_channels",
            "estm_channels",
            "estm_growth",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        for name in ("temporal_channels", "estm_blocks", "estm_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"model.{name} must be a non-negative integer, got {value!r}")
        if self.temporal_stride not in (1, 2, 4, 8, 16):
            raise ConfigError(f"model.temporal_stride must be one of 1, 2, 4, 8, 16, got {self.temporal_stride!r}")
        if self.head_kernel not in (1, 3):
            raise ConfigError(f"model.head_kernel must be 1 or 3, got {self.head_kernel!r}")
        if not isinstance(self.rain_gate, bool):
            raise ConfigError(f"model.rain_gate must be true or false, got {self.rain_gate!r}")
        if self.rain_gate and self.variant != "estinet":
            raise ConfigError(f"model.rain_gate needs ESTM (variant estinet), not {self.variant!r}; set it to false")
        _check_choice("rain_gate_evidence", self.rain_gate_evidence, GATE_EVIDENCE)
        if not isinstance(self.veil_head, bool):
            raise ConfigError(f"model.veil_head must be true or false, got {self.veil_head!r}")
        if self.veil_head and self.variant == "official":
            raise ConfigError("model.veil_head is not part of the authors' released model; set it to false")
        if self.rain_gate_evidence != "features" and not self.rain_gate:
            raise ConfigError(
                f"model.rain_gate_evidence={self.rain_gate_evidence!r} needs model.rain_gate=true; set both or neither"
            )

    @property
    def num_frames(self) -> int:
        """Frames in one input window: 1 for ``sicm-2dcnn``, n for ``sicm-stim-n``, 5 otherwise."""
        if self.variant == "sicm-2dcnn":
            return 1
        if self.variant.startswith("sicm-stim-"):
            return int(self.variant.rsplit("-", 1)[1])
        return 5

    @property
    def centre(self) -> int:
        """Index of the output (centre) frame inside a window: ``num_frames // 2``."""
        return self.num_frames // 2

    @property
    def has_estm(self) -> bool:
        """Whether the variant refines its coarse output with ESTM."""
        return self.variant in ("estinet", "official")

    @property
    def feature_channels(self) -> int:
        """Channels of the per-frame SICM features f_x^(t) (decoder output + fusion output)."""
        return self.base_channels + self.fusion_out


# Width presets. `tiny` is the fast tier (<= 5 GFLOPs per output frame at 640x480, streaming), `small` the
# quality tier (<= ~100 GFLOPs), `paper` the paper's scale (encoder widths 64-128-256-512, everything at full
# resolution). `estinet info` prints the measured numbers.
_PRESET_VALUES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        base_channels=8,
        blocks_per_stage=1,
        fusion_channels=2,
        fusion_out=8,
        temporal_stride=8,
        temporal_channels=8,
        hidden_channels=8,
        head_channels=8,
        head_kernel=1,
        estm_channels=4,
        estm_blocks=1,
        estm_layers=1,
        estm_growth=4,
        motion_compensation=True,
    ),
    "small": dict(
        base_channels=24,
        blocks_per_stage=2,
        fusion_channels=8,
        fusion_out=24,
        temporal_stride=4,
        temporal_channels=32,
        hidden_channels=32,
        head_channels=16,
        head_kernel=3,
        estm_channels=24,
        estm_blocks=2,
        estm_layers=3,
        estm_growth=12,
        motion_compensation=True,
    ),
    "paper": dict(
        base_channels=64,
        blocks_per_stage=2,
        fusion_channels=16,
        fusion_out=64,
        temporal_stride=1,
        temporal_channels=0,
        hidden_channels=32,
        head_channels=32,
        head_kernel=3,
        estm_channels=64,
        estm_blocks=3,
        estm_layers=4,
        estm_growth=32,
        motion_compensation=False,
    ),
}


def preset_config(variant: str = "estinet", preset: str = "tiny", **overrides: Any) -> ModelConfig:
    """Return the :class:`ModelConfig` of a variant at a width preset.

    Args:
        variant: one of :data:`VARIANTS`.
        preset: one of :data:`PRESETS`.
        **overrides: any :class:`ModelConfig` field.

    Returns:
        The configuration. The ``official`` variant ignores the widths (its architecture is fixed) and has
        motion compensation off.
    """
    _check_choice("preset", preset, PRESETS)
    values: dict[str, Any] = dict(_PRESET_VALUES[preset])
    if variant == "official":
        values["motion_compensation"] = False
    values.update(overrides)
    return ModelConfig(variant=variant, preset=preset, **values)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"model.{name} must be one of {', '.join(choices)}; got {value!r}")


# ----------------------------------------------------------------------------------------------------------
# YAML and overrides


def to_dict(config: Any) -> dict[str, Any]:
    """Convert a (nested) config dataclass into plain dicts for YAML/JSON/checkpoints."""
    return dataclasses.asdict(config)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys.

    Args:
        cls: the dataclass type.
        data: its field values; nested dataclass fields take dicts.

    Raises:
        ConfigError: an unknown key (the message lists the valid keys).
    """
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        ftype = known[name].type
        sub = _NESTED.get(ftype) if isinstance(ftype, str) else None
        values[name] = from_dict(sub, value) if sub is not None and isinstance(value, dict) else value
    return cls(**values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (["a", "b", "c"], value) with the value read as YAML (numbers, bools, lists).

    Raises:
        ConfigError: the text has no ``=`` or an empty key.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. model.base_channels=16")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    if not raw.strip():
        return parts, ""
    try:
        return parts, yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML; quote it, e.g. key='value'") from None


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Return a copy of a (nested) config dataclass with dotted ``key=value`` overrides applied.

    Raises:
        ConfigError: a key that does not exist (the message lists the valid keys at that level).
    """
    for text in overrides:
        path, value = parse_override(text)
        config = _set_path(config, path, value, text)
    return config


def _set_path(obj: Any, path: list[str], value: Any, text: str) -> Any:
    names = {f.name for f in fields(obj)}
    head = path[0]
    if head not in names:
        raise ConfigError(f"override {text!r}: no key {head!r} in {type(obj).__name__}; valid: {sorted(names)}")
    if len(path) == 1:
        return replace(obj, **{head: value})
    child = getattr(obj, head)
    if not dataclasses.is_dataclass(child):
        raise ConfigError(f"override {text!r}: {head!r} is a value, not a section")
    return replace(obj, **{head: _set_path(child, path[1:], value, text)})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: it is not valid YAML, not UTF-8, or not a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist; see configs/ for examples")
    try:
        with path.open("r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"config file {path} is not valid YAML{where} ({problem}); fix it or start from a file in configs/"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason}); save it as UTF-8 YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a YAML mapping at the top level")
    return data


def save_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write a mapping as YAML (atomically: temporary name, then rename)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)


_NESTED: dict[str, type] = {"ModelConfig": ModelConfig}


# ----------------------------------------------------------------------------------------------------------
# Training experiments: data, optimisation, and the experiment that bundles them with the model

SCHEDULES: tuple[str, ...] = ("cosine", "exponential")
AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
HELDOUT_KIND = "heldout"
"""``data.val`` kind for the default validation set: synthetic rain over the held-out package sources."""


def _section_error(section: str, name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{section}.{name} must be {expected}, got {value!r}")


def _check_int(section: str, obj: Any, name: str, minimum: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise _section_error(section, name, value, kind)


def _coerce_float(section: str, obj: Any, name: str, minimum: float, strict: bool = False) -> None:
    """Accept ints and numeric strings (YAML reads ``1e-4`` as a string) for a float field of a frozen dataclass."""
    value = getattr(obj, name)
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    ok = number is not None and math.isfinite(number) and (number > minimum if strict else number >= minimum)
    if not ok:
        raise _section_error(section, name, value, f"a number {'>' if strict else '>='} {minimum}")
    object.__setattr__(obj, name, number)


def _check_str_list(section: str, obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if value is None:
        return
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v for v in value):
        raise _section_error(section, name, value, "null or a non-empty list of paths")
    object.__setattr__(obj, name, [str(v) for v in value])


@dataclass(frozen=True)
class DataConfig:
    """Training and validation data.

    Attributes:
        train: training dataset as ``KIND:PATH`` (:func:`estinet.data.datasets.open_dataset`), e.g.
            ``synthetic:light,heavy,ntu`` (rain rendered on the fly), ``ntu:/data/NTURain``,
            ``rainsyn-light:/data``, ``rainsyn-complex:/data``, ``folders:/data/pairs``, ``json:index.json``.
        split: split of the training dataset for kinds that have splits (``train``).
        clean: clean footage (videos, frame folders, images) for ``synthetic:`` training; null uses the package
            training sources (never the held-out ones).
        camera: camera-motion preset of synthetic clips (``mixed``, ``static``, ``pan``, ``handheld``).
        epoch_samples: synthetic samples per data epoch (a new epoch renders new clips).
        crop: square training crop in pixels.
        batch_size: clips per optimisation step *per process* (under DDP the global batch is this times the number
            of processes).
        workers: DataLoader worker processes per training process (0 loads in the main process).
        flip: random horizontal flips.
        compression: probability that a synthetic training clip passes through JPEG or H.264 at a random quality,
            rainy and clean alike (:mod:`estinet.data.compress`); 0 keeps exact frames.
        scene_motion: share of synthetic stills and static-camera clips given parallax layers and moving objects
            (:func:`estinet.data.sources.make_clip`); 0 keeps them as before.
        still: share of synthetic training clips whose every frame is the rainy centre frame (single-image
            deraining: photographs, and neighbours that cannot be aligned); 0 keeps them as before.
        veil: share of synthetic training clips that keep their rain preset's veiling haze (the rest are rendered
            without it); 1 keeps them as before.
        val: validation dataset: ``heldout:PRESETS`` (synthetic rain over the held-out package sources, rendered
            once with ``val_seed``), any ``KIND:PATH`` with ground truth (evaluated on full frames), or null to
            switch validation off.
        val_split: split of the validation dataset for kinds that have splits (``test``).
        val_clean: clean footage for ``heldout:`` validation instead of the packaged held-out sources.
        val_samples: ``heldout:`` clips, or the most frames scored from a ``KIND:PATH`` dataset (evenly spaced;
            0 scores every frame).
        val_crop: size of ``heldout:`` clips.
        val_seed: seed of the ``heldout:`` clips (fixed, so every validation sees the same clips).
    """

    train: str = "synthetic:light,heavy,ntu"
    split: str = "train"
    clean: list[str] | None = None
    camera: str = "mixed"
    epoch_samples: int = 2000
    crop: int = 128
    batch_size: int = 4
    workers: int = 1
    flip: bool = True
    compression: float = 0.0
    scene_motion: float = 0.0
    still: float = 0.0
    veil: float = 1.0
    val: str | None = "heldout:light,heavy,ntu"
    val_split: str = "test"
    val_clean: list[str] | None = None
    val_samples: int = 12
    val_crop: int = 128
    val_seed: int = 2021

    def __post_init__(self) -> None:
        if not isinstance(self.train, str) or ":" not in self.train:
            raise _section_error("data", "train", self.train, "a dataset spec KIND:PATH, e.g. synthetic:light,heavy")
        if self.val is not None and (not isinstance(self.val, str) or ":" not in self.val):
            raise _section_error("data", "val", self.val, "null or a dataset spec (heldout:light,heavy or KIND:PATH)")
        _check_str_list("data", self, "clean")
        _check_str_list("data", self, "val_clean")
        for name in ("epoch_samples", "crop", "batch_size", "val_crop"):
            _check_int("data", self, name, 1)
        for name in ("workers", "val_samples", "val_seed"):
            _check_int("data", self, name, 0)
        if not isinstance(self.flip, bool):
            raise _section_error("data", "flip", self.flip, "true or false")
        for name in ("compression", "scene_motion", "still", "veil"):
            _coerce_float("data", self, name, 0.0)
            if getattr(self, name) > 1:
                raise _section_error("data", name, getattr(self, name), "a probability in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule, precision, logging and checkpointing.

    The paper trains in two stages (SPEC §1): stage 1 updates SICM + STIM with L_STI; stage 2 updates everything
    with L_STI + alpha * L_EST. Variants without ESTM train one stage of ``stage1_steps + stage2_steps`` steps.

    Attributes:
        stage1_steps: optimisation steps of stage 1.
        stage2_steps: optimisation steps of stage 2.
        lr: Adam learning rate at the start of each stage.
        min_lr: learning rate reached at the end of each stage.
        schedule: ``cosine`` or ``exponential`` decay from ``lr`` to ``min_lr`` within each stage.
        alpha: weight of L_EST in stage 2 (paper: 1).
        background_weight: weight of the background term inside L_EST (:func:`estinet.losses.derain_loss`: the MSE
            over pixels the rain left alone; 0 is the paper's loss).
        gate_weight: weight of the rain gate's cross-entropy against the pixels the rain changed (needs
            ``model.rain_gate``; :func:`estinet.losses.derain_loss`).
        detail_weight: weight of the fine-detail term inside L_EST (the MSE of the refined and clean frames minus
            their 5x5 local means, :func:`estinet.losses.high_pass`; thin streaks weigh more there); 0 leaves it out.
        gate_lr_scale: the rain gate's and the veil head's learning rate is ``lr * gate_lr_scale`` (a head added to
            trained weights starts from scratch and must move much further than the rest).
        veil_weight: weight of the veil head's loss (needs ``model.veil_head``; :func:`estinet.losses.veil_loss`).
        veil_only: train the veil head alone: everything else stays as ``init_from`` gave it, the derainer is not run
            and the training clips are one frame each (the head sees the centre frame only), so a step costs a
            fraction of a derainer's. Needs ``model.veil_head``.
        grad_clip: clip the global gradient norm to this value (0 switches clipping off).
        seed: seed of the model initialisation and of the data order; process ``rank`` seeds its RNGs with
            ``seed + rank``.
        device: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or
            ``mps``.
        amp: autocast precision: ``none``, ``bf16`` (CUDA or CPU) or ``fp16`` (CUDA only, with a gradient scaler).
        channels_last: store 2D conv weights and activations in channels-last layout (fast on recent GPUs).
        threads: torch CPU threads per training process when training on the CPU; 0 picks
            ``max(1, cores // processes - data.workers)``, so the DataLoader workers keep a core each
            (oversubscribed OpenMP threads are many times slower on a busy machine).
        log_every: steps between metrics-log lines and progress-bar updates.
        val_every: steps between validations (0: only at the end of each stage).
        ckpt_every: steps between ``last.pt`` checkpoints (0: only at stage ends and at the end).
        progress: show a tqdm progress bar (rank 0 only).
        init_from: start from these weights instead of a random initialisation (fine-tuning): a shipped name such
            as ``tiny``, a ``.safetensors`` file or a training checkpoint, of the same architecture as ``model``.
            Empty: random initialisation. Ignored when resuming (the checkpoint holds the weights).
    """

    stage1_steps: int = 2000
    stage2_steps: int = 2000
    lr: float = 1e-4
    min_lr: float = 1e-6
    schedule: str = "cosine"
    alpha: float = 1.0
    background_weight: float = 0.0
    gate_weight: float = 0.0
    detail_weight: float = 0.0
    gate_lr_scale: float = 1.0
    veil_weight: float = 1.0
    veil_only: bool = False
    grad_clip: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    threads: int = 0
    log_every: int = 10
    val_every: int = 500
    ckpt_every: int = 250
    progress: bool = True
    init_from: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.init_from, str):
            raise _section_error("train", "init_from", self.init_from, "a shipped name, a weights file or empty")
        for name in ("stage1_steps", "stage2_steps", "seed", "val_every", "ckpt_every", "threads"):
            _check_int("train", self, name, 0)
        _check_int("train", self, "log_every", 1)
        if self.stage1_steps + self.stage2_steps < 1:
            raise ConfigError("train.stage1_steps + train.stage2_steps must be at least 1")
        _coerce_float("train", self, "lr", 0.0, strict=True)
        _coerce_float("train", self, "min_lr", 0.0, strict=True)
        _coerce_float("train", self, "alpha", 0.0)
        _coerce_float("train", self, "background_weight", 0.0)
        _coerce_float("train", self, "gate_weight", 0.0)
        _coerce_float("train", self, "detail_weight", 0.0)
        _coerce_float("train", self, "gate_lr_scale", 0.0, strict=True)
        _coerce_float("train", self, "veil_weight", 0.0)
        _coerce_float("train", self, "grad_clip", 0.0)
        if self.min_lr > self.lr:
            raise ConfigError(f"train.min_lr ({self.min_lr}) must not exceed train.lr ({self.lr})")
        if self.schedule not in SCHEDULES:
            raise _section_error("train", "schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        if self.amp not in AMP_MODES:
            raise _section_error("train", "amp", self.amp, f"one of {', '.join(AMP_MODES)}")
        if not isinstance(self.device, str) or not self.device:
            raise _section_error("train", "device", self.device, "auto, cpu, cuda, cuda:N or mps")
        for name in ("channels_last", "progress", "veil_only"):
            if not isinstance(getattr(self, name), bool):
                raise _section_error("train", name, getattr(self, name), "true or false")

    @property
    def trains_veil(self) -> bool:
        """Whether the veil head learns in this run (``veil_only``, or a loss weight above 0); with
        ``veil_weight=0`` a veil head is carried along unchanged, on any training data."""
        return self.veil_only or self.veil_weight > 0


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run: model, data and schedule. ``estinet train --config FILE.yaml`` reads it.

    YAML layout (every key optional; the ``model`` section starts from the width preset it names, so
    ``model: {preset: small}`` is enough, and any :class:`ModelConfig` field overrides the preset)::

        name: tiny-synthetic
        out_dir: runs/tiny-synthetic      # empty: runs/<name>
        model: {variant: estinet, preset: tiny}
        data: {train: "synthetic:light,heavy,ntu", crop: 112, batch_size: 4}
        train: {stage1_steps: 4000, stage2_steps: 2000, lr: 1.0e-4}

    Attributes:
        name: run name.
        out_dir: output folder (checkpoints, metrics log, exported weights); empty means ``runs/<name>``.
        model: the architecture.
        data: training and validation data.
        train: optimisation settings.
    """

    name: str = "estinet"
    out_dir: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.out_dir, str):
            raise ConfigError(f"out_dir must be a path string (or empty for runs/<name>), got {self.out_dir!r}")
        if self.train.veil_only and not self.model.veil_head:
            raise ConfigError("train.veil_only trains the veil head: set model.veil_head=true as well")

    @property
    def run_dir(self) -> Path:
        """The output folder: ``out_dir``, or ``runs/<name>`` when it is empty."""
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


_NESTED.update({"DataConfig": DataConfig, "TrainConfig": TrainConfig, "ExperimentConfig": ExperimentConfig})


def model_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Build a :class:`ModelConfig` from a (possibly partial) mapping, starting from the preset it names.

    Args:
        data: ``variant`` and ``preset`` (defaults ``estinet``, ``tiny``) plus any other field to override.

    Raises:
        ConfigError: an unknown key or an invalid value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"the model section must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown ModelConfig key(s) {unknown}; valid keys: {', '.join(sorted(known))}")
    rest = dict(data)
    variant = rest.pop("variant", "estinet")
    preset = rest.pop("preset", "tiny")
    _check_choice("variant", variant, VARIANTS)
    return preset_config(variant, preset, **rest)


def experiment_from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from a mapping such as a YAML file's (see its docstring).

    Args:
        data: the mapping (not modified).
        overrides: dotted ``key=value`` overrides applied to the mapping first (see :func:`load_experiment`).

    Raises:
        ConfigError: an unknown key at any level (the message lists the valid keys) or an invalid value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"an experiment config must be a mapping, got {type(data).__name__}")
    if overrides:
        data = copy.deepcopy(data)
        for text in overrides:
            _override_dict(data, text)
    known = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown ExperimentConfig key(s) {unknown}; valid keys: {', '.join(sorted(known))}")
    values: dict[str, Any] = {k: v for k, v in data.items() if k not in ("model", "data", "train")}
    values["model"] = model_from_dict(data.get("model") or {})
    for name, cls in (("data", DataConfig), ("train", TrainConfig)):
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"the {name} section must be a mapping, got {type(section).__name__}")
        values[name] = from_dict(cls, section)
    return ExperimentConfig(**values)


def _override_dict(data: dict[str, Any], text: str) -> None:
    """Apply one ``a.b=value`` override to a raw experiment mapping, refusing keys the dataclasses do not have."""
    path, value = parse_override(text)
    cls: type = ExperimentConfig
    node = data
    for depth, key in enumerate(path):
        names = {f.name: f for f in fields(cls)}
        if key not in names:
            raise ConfigError(f"override {text!r}: no key {key!r} in {cls.__name__}; valid: {sorted(names)}")
        ftype = names[key].type
        sub = _NESTED.get(ftype) if isinstance(ftype, str) else None
        if depth == len(path) - 1:
            if sub is not None and not isinstance(value, dict):
                raise ConfigError(f"override {text!r}: {key!r} is a section; set one of its keys, e.g. {key}.KEY=...")
            node[key] = value
            return
        if sub is None:
            raise ConfigError(f"override {text!r}: {key!r} is a value, not a section")
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node, cls = child, sub


def load_experiment(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read an experiment YAML file and apply dotted ``key=value`` overrides.

    Overrides are applied to the file's mapping *before* presets expand, so ``model.preset=small`` switches every
    width the file does not set explicitly.

    Args:
        path: the YAML file, or None to start from the defaults.
        overrides: e.g. ``["data.train=ntu:/data/NTURain", "train.stage1_steps=100"]``.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: the file is not a mapping, or a key is unknown, or a value is invalid.
    """
    data = load_yaml(path) if path is not None else {}
    return experiment_from_dict(data, overrides)


def save_experiment(config: ExperimentConfig, path: str | Path) -> None:
    """Write an experiment config as YAML (every field, so the file reproduces the run)."""
    save_yaml(to_dict(config), path)
