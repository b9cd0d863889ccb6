"""Training state: RNG streams, the resumable checkpoint file, and the weights a run starts from.

The checkpoint is a plain dict (:data:`CHECKPOINT_KEYS`): ``model`` and ``optimizer``/``scheduler``/``scaler``
state dicts, the RNG states of every process (Python, NumPy, torch CPU and CUDA), ``step`` (completed steps),
``stage`` (the stage the optimizer state belongs to), ``config`` (the experiment as a dict), ``best`` and ``data``
(data epoch and batch position). It is also a weights file: its ``model`` and ``config`` entries are what
:func:`estinet.checkpoint.load_model` reads, so ``best.pt`` derains like any exported weights, and both read the file
with :func:`estinet.checkpoint.read_torch_file` (``torch.load(weights_only=True)``: no arbitrary objects).

Files are written to a temporary name in the same folder, flushed and fsync-ed, then renamed over the target
(:func:`estinet.runtime.atomic_path`), so a crash during a save leaves the previous file intact; leftovers
``.NAME.tmp-PID`` are ignored and removed at the next start. Loading checks the format marker and every key, so
truncated, corrupt and foreign files are refused with :class:`CheckpointError`. Resuming restores everything, so on
CPU an interrupted run continues bit for bit as if it had not stopped.

Python, NumPy and torch RNGs of process ``rank`` are seeded with ``train.seed + rank``; RNG states are stored as plain
types and tensors so that ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from estinet import runtime
from estinet.checkpoint import read_torch_file
from estinet.config import ConfigError, ModelConfig, experiment_from_dict, to_dict
from estinet.errors import EstinetError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEYS",
    "CheckpointError",
    "init_from_weights",
    "load_training_checkpoint",
    "remove_stale_temps",
    "rng_state",
    "save_training_checkpoint",
    "schedule_position",
    "seed_everything",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "estinet-train-1"
"""Value of the ``"format"`` key of every training checkpoint."""
CHECKPOINT_KEYS: tuple[str, ...] = (
    "format",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "step",
    "stage",
    "config",
    "best",
    "data",
)
"""Keys every training checkpoint holds."""

_FOREIGN = "resume from a last.pt or best.pt written by estinet train"


class CheckpointError(EstinetError, ValueError):
    """A training checkpoint that cannot be resumed: missing, truncated, corrupt, foreign, or of another model."""


# ---------------------------------------------------------------------------------------------------------------------
# RNG streams
# ---------------------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states: ``python``, ``numpy``, ``torch`` (CPU) and ``cuda`` (a list, empty without CUDA)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state` (CUDA states only where the device count matches)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint files
# ---------------------------------------------------------------------------------------------------------------------


def _temp_name(path: Path) -> Path:
    # not runtime.temp_sibling: remove_stale_temps recognises a killed save's leftover by this `.NAME.tmp-PID` name
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_training_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint atomically: temporary file in the same folder, flush + fsync, rename, fsync the folder.

    A crash at any point leaves either the previous file or the new one at ``path``, never a partial file.

    Args:
        state: the checkpoint dict (see :data:`CHECKPOINT_KEYS`).
        path: destination.

    Returns:
        ``path``.
    """
    path = Path(path)
    with runtime.atomic_path(path, _temp_name(path)) as tmp, tmp.open("wb") as fh:
        torch.save(state, fh)
    return path


def remove_stale_temps(folder: Path) -> None:
    """Delete temporary files that a crash during a save left behind (``.NAME.tmp-PID``)."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(".*.tmp-*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def _problems(ckpt: dict[str, Any]) -> list[str]:
    """What is malformed in a checkpoint dict that has every key (empty: nothing)."""
    problems = []
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, Tensor) for v in ckpt["model"].values()):
        problems.append("'model' is not a state dict of tensors")
    for key in ("optimizer", "scheduler", "config", "best", "data"):
        if not isinstance(ckpt[key], dict):
            problems.append(f"{key!r} is not a mapping")
    if ckpt["scaler"] is not None and not isinstance(ckpt["scaler"], dict):
        problems.append("'scaler' is neither None nor a mapping")
    if not isinstance(ckpt["rng"], list) or not all(isinstance(r, dict) for r in ckpt["rng"]):
        problems.append("'rng' is not a list of per-process RNG states")
    for key in ("step", "stage"):
        if isinstance(ckpt[key], bool) or not isinstance(ckpt[key], int) or ckpt[key] < 0:
            problems.append(f"{key!r} is not a non-negative integer")
    if isinstance(ckpt["data"], dict) and not all(isinstance(ckpt["data"].get(k), int) for k in ("epoch", "batch")):
        problems.append("'data' lacks the integer 'epoch' and 'batch' positions")
    return problems


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a training checkpoint written by :class:`~estinet.train.Trainer`.

    Args:
        path: a ``last.pt`` or ``best.pt``.

    Returns:
        The checkpoint dict; ``"config"`` is a valid experiment mapping.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, not an estinet training checkpoint, or its parts
            are malformed. The message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; resume from a last.pt or best.pt of a training run")
    ckpt = read_torch_file(path, CheckpointError, _FOREIGN)
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path} is not an estinet training checkpoint (it holds a {type(ckpt).__name__}); {_FOREIGN}"
        )
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        hint = " (it looks like exported weights; train from scratch instead)" if "model" in ckpt else ""
        raise CheckpointError(f"{path} is not an estinet training checkpoint: missing keys {missing}{hint}; {_FOREIGN}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format']!r}; this version of estinet reads {CHECKPOINT_FORMAT!r}"
        )
    problems = _problems(ckpt)
    if problems:
        raise CheckpointError(f"{path} is a damaged estinet training checkpoint: {'; '.join(problems)}")
    try:
        experiment_from_dict(ckpt["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path} holds an invalid experiment config ({exc})") from exc
    return ckpt


def schedule_position(ckpt: dict[str, Any]) -> int:
    """Steps the checkpoint's stage optimizer had taken: where that stage's learning-rate schedule continues.

    It is the stored scheduler's ``last_epoch``; it can differ from ``step`` minus the stage's start when a resumed
    run changed the stage lengths, and the schedule keeps counting from it.
    """
    position = ckpt["scheduler"].get("last_epoch", 0)
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise CheckpointError(f"the checkpoint's scheduler position {position!r} is not a non-negative integer")
    return position


# ---------------------------------------------------------------------------------------------------------------------
# initial weights
# ---------------------------------------------------------------------------------------------------------------------


def init_from_weights(model: nn.Module, config: ModelConfig, spec: str) -> None:
    """Load the weights ``spec`` names into ``model`` (``train.init_from``, fine-tuning).

    Args:
        model: the freshly built model to train.
        config: its architecture.
        spec: a shipped name, a ``.safetensors`` file or a training checkpoint (:func:`estinet.checkpoint.load_model`).

    Raises:
        ConfigError: the weights cannot be read, or are of another architecture (the differing fields are named).
    """
    from estinet.checkpoint import WeightsError, load_model

    try:
        source, stored = load_model(spec, device="cpu")
    except WeightsError as exc:
        raise ConfigError(f"train.init_from: {exc}") from exc
    # the initialisation scheme does not matter once weights are loaded; every other field is the architecture,
    # except that a rain gate (it starts open: their function) or a veil head may be added to weights trained
    # without one
    add_gate = config.rain_gate and not stored.rain_gate
    add_veil = config.veil_head and not stored.veil_head
    wanted = dataclasses.replace(
        config,
        init=stored.init,
        rain_gate=stored.rain_gate if add_gate else config.rain_gate,
        rain_gate_evidence=stored.rain_gate_evidence if add_gate else config.rain_gate_evidence,
        veil_head=stored.veil_head if add_veil else config.veil_head,
    )
    if stored != wanted:
        stored_fields, wanted_fields = to_dict(stored), to_dict(wanted)
        differ = ", ".join(
            f"{key}={stored_fields[key]!r} (config: {wanted_fields[key]!r})"
            for key in stored_fields
            if stored_fields[key] != wanted_fields.get(key)
        )
        raise ConfigError(
            f"train.init_from={spec!r} holds weights of the {stored.variant}/{stored.preset} model, which differs from "
            f"the config's model in {differ}; set the model section to match those weights or drop train.init_from"
        )
    added = tuple(prefix for prefix, on in (("estm.gate.", add_gate), ("veil.", add_veil)) if on)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=not added)
    if added and (unexpected or any(not key.startswith(added) for key in missing)):
        raise ConfigError(f"train.init_from={spec!r}: does not fit the added heads {added}: {missing + unexpected}")
