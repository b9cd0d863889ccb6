"""estinet: video deraining with ESTINet (Zhang et al., 2021).

The public API is imported lazily so that ``import estinet`` (and ``estinet --version``) stays fast:

- :class:`estinet.Derainer` (:mod:`estinet.inference`): derain videos, frame folders and frame streams;
- :func:`estinet.derain_many` (:mod:`estinet.inference.batch`): many videos into a folder, on every GPU or on Ray;
- :func:`estinet.build_model` and :func:`estinet.preset_config`: the model family;
- :func:`estinet.load_model`: weights files, training checkpoints and the authors' checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Derainer", "__version__", "build_model", "derain_many", "load_model", "preset_config"]

_LAZY = {
    "Derainer": "estinet.inference",
    "derain_many": "estinet.inference.batch",
    "build_model": "estinet.models",
    "preset_config": "estinet.config",
    "load_model": "estinet.checkpoint",
}

if TYPE_CHECKING:
    from estinet.checkpoint import load_model
    from estinet.config import preset_config
    from estinet.inference import Derainer
    from estinet.inference.batch import derain_many
    from estinet.models import build_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'estinet' has no attribute {name!r}")
