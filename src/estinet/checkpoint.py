"""Saving and loading model weights without unpickling arbitrary objects.

Three kinds of weights load through :func:`load_model`:

- a shipped name (``tiny``, ...) or any ``.safetensors`` file written by :func:`save_weights`: the tensors plus the
  model config as JSON in the file's metadata;
- a training checkpoint (``.pt``/``.pth``): a plain dict with ``"model"`` (a state dict) and ``"config"`` (a dict with
  a ``"model"`` section), read with :func:`read_torch_file` (``torch.load(weights_only=True)``); the full resumable
  format, of which these two entries are the weights, is :mod:`estinet.train.state`'s;
- the authors' released coarse + fine checkpoints, given as ``COARSE,FINE`` (two paths joined by a comma), loaded
  into the ``official`` variant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from estinet.config import ModelConfig, from_dict, to_dict
from estinet.errors import EstinetError
from estinet.models import build_model
from estinet.runtime import atomic_path


class WeightsError(EstinetError, ValueError):
    """Weights that cannot be loaded: missing, corrupt, or of another architecture."""


def shipped_weights() -> dict[str, Path]:
    """Names and paths of the weights that ship inside the package (``estinet/weights/*.safetensors``)."""
    folder = resources.files("estinet") / "weights"
    out: dict[str, Path] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".safetensors"):
            out[entry.name[: -len(".safetensors")]] = Path(str(entry))
    return dict(sorted(out.items()))


def default_weights() -> str:
    """The fastest shipped weights: ``tiny`` when installed, else the first shipped name.

    Raises:
        WeightsError: no weights ship with this installation.
    """
    names = list(shipped_weights())
    if not names:
        raise WeightsError("no shipped weights are installed; pass --weights with a weights file")
    return "tiny" if "tiny" in names else names[0]


def _umask() -> int:
    """The process's file-creation mask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_weights(
    model: nn.Module, config: ModelConfig, path: str | Path, extra: Mapping[str, str] | None = None
) -> Path:
    """Write a model's weights and config to a ``.safetensors`` file, atomically.

    Args:
        model: the network (its ``state_dict`` is saved as float32, contiguous).
        config: its architecture, stored as JSON metadata under ``"estinet_config"``.
        path: destination file.
        extra: more string metadata (e.g. training steps).

    Returns:
        The path written.
    """
    path = Path(path)
    state = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"estinet_config": json.dumps(to_dict(config)), "format": "estinet-weights-1"}
    meta.update(extra or {})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates owner-only files; give the usual permissions
    return path


def _config_from_json(text: str, source: Path) -> ModelConfig:
    try:
        return from_dict(ModelConfig, json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: the stored model config is unreadable ({exc})") from exc


def load_state(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load a state dict strictly, or raise :class:`WeightsError` naming what does not match.

    Args:
        model: the network built from the weights' config.
        state: the tensors.
        source: where they came from (for the message).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shaped:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if shaped:
            k = shaped[0]
            parts.append(f"shape of {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise WeightsError(
            f"{source} does not fit this architecture ({'; '.join(parts)}); use weights trained for the same "
            "variant and preset, or pass the matching --variant"
        )
    model.load_state_dict(state, strict=True)


def load_model(spec: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Build a model and load its weights.

    Args:
        spec: a shipped name, a ``.safetensors`` file, a training checkpoint, or ``COARSE,FINE`` for the authors'
            released checkpoints.
        device: where to put the model.

    Returns:
        (model in eval mode on ``device``, its config).

    Raises:
        WeightsError: unknown name, missing or corrupt file, or weights of another architecture.
    """
    text = str(spec)
    if "," in text:
        return _load_official(*text.split(",", 1), device=device)
    shipped = shipped_weights()
    path = shipped.get(text, Path(text))
    if not path.is_file():
        names = ", ".join(shipped) or "none installed"
        raise WeightsError(f"weights {text!r} not found: give a file path or a shipped name ({names})")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise WeightsError(
                f"{path} is not a readable safetensors file ({exc}); re-download or re-export it"
            ) from exc
        if "estinet_config" not in meta:
            raise WeightsError(f"{path} has no estinet config in its metadata; it was not written by estinet")
        config = _config_from_json(meta["estinet_config"], path)
    else:
        ckpt = _torch_load(path)
        if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
            raise WeightsError(
                f"{path} is not an estinet checkpoint (expected a dict with 'model' and 'config'); for the authors' "
                "release pass COARSE,FINE"
            )
        cfg = ckpt["config"].get("model", ckpt["config"]) if isinstance(ckpt["config"], dict) else None
        if not isinstance(cfg, dict):
            raise WeightsError(f"{path}: its 'config' entry is not a mapping")
        config = _config_from_json(json.dumps(cfg), path)
        state = ckpt["model"]
    model = build_model(config)
    load_state(model, state, str(path))
    return model.to(device).eval(), config


def pickle_refusal(path: str | Path) -> str:
    """The message for a file that holds pickled Python objects (code), which estinet never unpickles."""
    return (
        f"{path} cannot be read: it holds pickled Python objects (for example a whole model saved with "
        "torch.save(model)), not just "
        "tensors; estinet never unpickles code, because loading a pickle runs whatever it contains. If you trust the "
        "file, convert it where it was made: torch.save(model.state_dict(), 'weights.pt') saves the tensors alone "
        "(or estinet.checkpoint.save_weights writes .safetensors), and pass that file instead"
    )


def is_code_pickle(error: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` failed because the file pickles objects other than tensors."""
    import pickle

    return isinstance(error, pickle.UnpicklingError) and "unsupported global" in str(error).lower()


def load_failure(path: str | Path, error: BaseException, hint: str) -> str:
    """The message for a file ``torch.load(weights_only=True)`` refused, in estinet's words, never torch's advice.

    torch's own text suggests retrying with ``weights_only=False``, which would run the code a pickle holds.

    Args:
        path: the file.
        error: what ``torch.load`` raised.
        hint: what the user should pass instead, appended to the message.
    """
    if is_code_pickle(error):
        return pickle_refusal(path)
    return (
        f"{path} cannot be read as a checkpoint; it is truncated, corrupt or not a torch file "
        f"({type(error).__name__}); {hint}"
    )


def read_torch_file(path: str | Path, error: type[EstinetError], hint: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: plain containers and tensors, never arbitrary objects.

    This is the one reader of ``.pt`` files, for weights (:func:`load_model`) and for resuming training
    (:func:`estinet.train.load_training_checkpoint`) alike.

    Args:
        path: the file.
        error: the caller's error class.
        hint: what the user should pass instead, appended to the message.

    Raises:
        EstinetError: (``error``) the file is truncated, corrupt, not a torch file, or holds pickled objects.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, pickled foreign objects: torch raises many types
        raise error(load_failure(path, exc, hint)) from None


def _torch_load(path: Path) -> Any:
    return read_torch_file(
        path,
        WeightsError,
        "pass a .safetensors file, an estinet training checkpoint, or the authors' COARSE,FINE checkpoints",
    )


def _load_official(coarse: str, fine: str, device: str | torch.device) -> tuple[nn.Module, ModelConfig]:
    from estinet.config import preset_config
    from estinet.models.official import OfficialESTINet

    states = []
    for p in (Path(coarse.strip()), Path(fine.strip())):
        if not p.is_file():
            raise WeightsError(f"official checkpoint {p} not found; pass COARSE,FINE (net_C and net_F files)")
        obj = _torch_load(p)
        states.append(obj.get("state_dict", obj) if isinstance(obj, dict) else obj)
    model = OfficialESTINet()
    model.load_official(states[0], states[1])
    return model.to(device).eval(), preset_config("official", "paper")
