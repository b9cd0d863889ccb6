"""``torch.compile`` of the streaming calls: the per-frame and per-window work compiled once per input shape.

The streaming seam (``frame_features`` / ``window_forward``) is all a :class:`~estinet.inference.tiles.Tiler` calls,
so a compiled model is an object with those two methods. Each is compiled for fixed shapes (``dynamic=False``): a
new frame size, batch or tile recompiles it, a video of one size compiles it once. The compiler fuses the many small
element-wise steps between ``tiny``'s and ``small``'s convolutions, which is where a GPU spends its time
(docs/results/bench-gpu.md); the CPU inference forms step aside for it (:func:`estinet.models.cpu.cpu_inference`).

Compilation takes seconds to a minute per shape. Its time is reported (:attr:`CompiledSeam.seconds`, ``estinet
bench``'s set-up column) and its results are cached on disk by the compiler (``$TORCHINDUCTOR_CACHE_DIR``; estinet
sets it to :func:`compile_cache_dir` unless it is set), so a second process with the same shapes starts faster.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from estinet.models.estinet import FrameFeatures
from estinet.runtime import cache_dir

__all__ = ["CompiledSeam", "compile_cache_dir"]


def compile_cache_dir() -> Path:
    """The compiler's disk cache: ``$ESTINET_CACHE_DIR/inductor``, else ``$XDG_CACHE_HOME/estinet/inductor``, else
    ``~/.cache/estinet/inductor`` (:func:`estinet.runtime.cache_dir`)."""
    return cache_dir("inductor")


def _signature(args: tuple[Tensor, ...]) -> tuple[Any, ...]:
    """What a ``dynamic=False`` compilation is specialised on, as far as the callers vary it."""
    autocast = torch.get_autocast_dtype(args[0].device.type) if torch.is_autocast_enabled(args[0].device.type) else None
    return (autocast, *((tuple(a.shape), a.dtype, a.stride()) for a in args))


class CompiledSeam:
    """A model's ``frame_features`` and ``window_forward`` (without alignment) compiled by ``torch.compile``.

    Args:
        model: an eval-mode :class:`~estinet.models.estinet.ESTINet` (or any module with the streaming seam).
        mode: ``torch.compile``'s mode (None: its default; CUDA graphs are captured by the tiler, not by the
            compiler).
        backend: ``torch.compile``'s backend (``inductor``, the one that generates fused kernels; ``eager`` only
            traces, for tests).

    Attributes:
        seconds: wall time of the calls that compiled (the first call per input signature), summed.
    """

    def __init__(self, model: nn.Module, mode: str | None = None, backend: str = "inductor") -> None:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        self.model = model
        self.seconds = 0.0
        self._seen: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()
        self._features = torch.compile(self._frame_terms, dynamic=False, mode=mode, backend=backend)
        self._windows = torch.compile(self._refined, dynamic=False, mode=mode, backend=backend)

    def _frame_terms(self, padded: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.frame_features(padded)
        return features.full, features.low

    def _refined(self, rainy: Tensor, full: Tensor, low: Tensor) -> Tensor:
        return self.model.window_forward(rainy, full, low, None)[1]

    def _call(self, key: str, fn: Callable[..., Any], *args: Tensor) -> Any:
        signature = (key, *_signature(args))
        if signature in self._seen:
            return fn(*args)
        with self._lock:  # one compilation at a time; the first call per signature is timed
            if signature in self._seen:  # compiled by another thread meanwhile
                return fn(*args)
            start = time.perf_counter()
            out = fn(*args)
            if args[0].device.type == "cuda":
                torch.cuda.synchronize(args[0].device)
            self.seconds += time.perf_counter() - start
            self._seen.add(signature)
        return out

    def frame_features(self, padded: Tensor) -> FrameFeatures:
        """The model's per-frame terms of padded frames (N, 3, Hp, Wp), compiled."""
        full, low = self._call("frame", self._features, padded)
        return FrameFeatures(full, low)

    def window_forward(
        self, rainy: Tensor, full: Tensor, low: Tensor, disp: Tensor | None = None
    ) -> tuple[None, Tensor]:
        """``(None, refined)`` for windows already aligned (``disp`` must be None), compiled; the coarse frames are
        not returned (the streaming code never reads them, and the compiler need not keep them)."""
        if disp is not None:
            raise ValueError("the compiled window_forward takes aligned windows: pass disp=None")
        return None, self._call("window", self._windows, rainy, full, low)
