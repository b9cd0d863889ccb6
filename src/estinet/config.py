"""Configuration dataclasses, width presets, YAML load/save and dotted ``key=value`` overrides.

One :class:`ModelConfig` describes every network the project builds. The ablation variants of the paper's
Table 3 (``sicm-2dcnn``, ``sicm-stim-2`` .. ``sicm-stim-5``, ``estinet``) and the authors' released architecture
(``official``) are selected by :attr:`ModelConfig.variant`; widths come from a preset (``tiny``, ``small``,
``paper``) and any field can be overridden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

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


class ConfigError(ValueError):
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
    return parts, yaml.safe_load(raw) if raw.strip() else ""


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
        ConfigError: it is not a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist; see configs/ for examples")
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a YAML mapping at the top level")
    return data


def save_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write a mapping as YAML (atomically: temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    tmp.replace(path)


_NESTED: dict[str, type] = {"ModelConfig": ModelConfig}
