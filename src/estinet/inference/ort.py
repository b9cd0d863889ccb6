"""The ``onnxruntime`` backend: the models' streaming seam run by ONNX Runtime from exported graphs.

:class:`OrtSeam` has the two methods of the seam that :class:`~estinet.inference.tiles.Tiler` calls
(``frame_features`` and ``window_forward``), backed by the ``frame_features.onnx`` and ``window.onnx`` graphs of an
export folder (:mod:`estinet.export`). Everything else stays as it is with the torch backend: the ring buffer of
:mod:`~estinet.inference.stream`, the tiles and the plan, global motion estimated in torch and the windows aligned
on the host while they are gathered (so the window graph receives aligned frames and terms), and file handling. The
outputs equal the torch backend's to float rounding (about 1e-6 for fp32 graphs).

The graphs come from ``onnx_dir`` (an ``estinet export`` folder, checked against the model: same config, same
weights, same precision) or, by default, from a cache folder keyed by a hash of the weights, config, opset and
precision (:func:`estinet.export.cached_export`), exported and checked on first use. ONNX Runtime runs on the CPU
(``CPUExecutionProvider``) with the torch backend's thread count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from estinet.config import ModelConfig, to_dict
from estinet.export import (
    DEFAULT_OPSET,
    ExportError,
    OnnxManifest,
    cached_export,
    file_sha256,
    load_manifest,
    open_session,
    weights_digest,
)
from estinet.inference.tiles import FrameWorkers, Tiler
from estinet.models.estinet import FrameFeatures

__all__ = ["OrtSeam", "load_export", "ort_tiler"]


def load_export(folder: str | Path, *, config: ModelConfig, digest: str, precision: str) -> OnnxManifest:
    """Read an export folder's sidecar and check that its graphs are those of the model.

    Args:
        folder: the export folder.
        config: the model's config.
        digest: the model's :func:`~estinet.export.weights_digest`.
        precision: the precision asked for (``fp32`` or ``fp16``).

    Returns:
        The sidecar.

    Raises:
        ExportError: another model, other weights, another precision, missing or altered graphs.
    """
    manifest = load_manifest(folder)
    redo = "export them again with estinet export, or leave onnx_dir unset to use the cache"
    if manifest.config != to_dict(config):
        raise ExportError(
            f"the ONNX graphs in {folder} are a {manifest.config.get('variant')!r} {manifest.config.get('preset')!r} "
            f"model with another config than the weights given ({config.variant!r} {config.preset!r}); {redo}"
        )
    if manifest.weights_sha256 != digest:
        raise ExportError(f"the ONNX graphs in {folder} were exported from other weights ({manifest.weights}); {redo}")
    if manifest.precision != precision:
        raise ExportError(
            f"the ONNX graphs in {folder} are {manifest.precision}, not {precision}; pass half="
            f"{manifest.precision == 'fp16'} (--half/--no-half) or {redo}"
        )
    needed = ["window"] if config.variant == "official" else ["frame_features", "window"]
    for name in needed:
        spec = manifest.graphs.get(name)
        if spec is None:
            raise ExportError(f"{folder} has no {name} graph, which the onnxruntime backend needs; {redo}")
        path = Path(folder) / spec.file
        if not path.is_file() or file_sha256(path) != spec.sha256:
            raise ExportError(f"{path} is missing or was changed after the export; {redo}")
    return manifest


class OrtSeam:
    """``frame_features`` / ``window_forward`` of a model, run by ONNX Runtime (the seam :class:`Tiler` calls).

    Args:
        folder: an export folder checked by :func:`load_export`.
        manifest: its sidecar.
        threads: ONNX Runtime intra-op threads (None: ``torch.get_num_threads()``).
    """

    def __init__(self, folder: str | Path, manifest: OnnxManifest, threads: int | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.dtype = np.float16 if manifest.precision == "fp16" else np.float32
        graphs = manifest.graphs
        self._features = (
            open_session(self.folder / graphs["frame_features"].file, threads) if "frame_features" in graphs else None
        )
        self._feature_outputs = list(graphs["frame_features"].outputs) if self._features is not None else []
        self._window = open_session(self.folder / graphs["window"].file, threads)
        self._window_inputs = list(graphs["window"].inputs)
        for session, spec in ((self._features, graphs.get("frame_features")), (self._window, graphs["window"])):
            if session is None or spec is None:
                continue
            names = [x.name for x in session.get_inputs()], [x.name for x in session.get_outputs()]
            if names != (list(spec.inputs), list(spec.outputs)):
                raise ExportError(f"{self.folder / spec.file} has inputs/outputs {names}, its sidecar says otherwise")

    def _array(self, x: Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().to("cpu").numpy(), dtype=self.dtype)

    @staticmethod
    def _tensor(x: Any) -> Tensor:
        return torch.from_numpy(np.asarray(x, dtype=np.float32))

    def frame_features(self, frames: Tensor) -> FrameFeatures:
        """Per-frame terms of padded frames (N, 3, Hp, Wp) (empty for a model without them); float32 on the CPU."""
        if self._features is None:
            empty = frames.new_zeros(0)
            return FrameFeatures(empty, empty)
        outputs = self._features.run(self._feature_outputs, {"frames": self._array(frames)})
        full = self._tensor(outputs[0])
        low = self._tensor(outputs[1]) if len(outputs) > 1 else full.new_zeros(0)
        return FrameFeatures(full, low)

    def window_forward(
        self, rainy: Tensor, full: Tensor, low: Tensor, displacement: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Refined centre frames (B, 3, Hp, Wp) of aligned windows (B, T, ...), as ``(refined, refined)``.

        The window graph has no alignment; :class:`Tiler` aligns while it gathers and passes no displacement.
        """
        if displacement is not None:
            raise ValueError("the ONNX window graph takes aligned windows; align them first (as Tiler does)")
        given = {"rainy": rainy, "full": full, "low": low}
        feeds = {name: self._array(given[name]) for name in self._window_inputs}
        (refined,) = self._window.run(["refined"], feeds)
        out = self._tensor(refined)
        return out, out


def ort_tiler(
    model: nn.Module,
    config: ModelConfig,
    *,
    align: int,
    precision: str,
    onnx_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    workers: FrameWorkers | None = None,
) -> Tiler:
    """A :class:`Tiler` whose per-frame and per-window calls run in ONNX Runtime.

    Args:
        model: the model (its weights are hashed to find or check the graphs).
        config: its config.
        align: tile alignment (as for the torch backend).
        precision: ``fp32`` or ``fp16``.
        onnx_dir: an ``estinet export`` folder of this model; None: the cache (exported on first use).
        cache_dir: the cache folder (default :func:`~estinet.export.default_cache_dir`).
        threads: ONNX Runtime threads (None: ``torch.get_num_threads()``); with ``workers``, per worker.
        workers: frame-parallel workers that call the sessions at once (each ``run`` is thread-safe), or None.

    Raises:
        ExportError: onnxruntime missing, or graphs that are not this model's.
    """
    digest = weights_digest(model, config)
    folder = (
        Path(onnx_dir)
        if onnx_dir is not None
        else cached_export(
            model, opset=DEFAULT_OPSET, precision=precision, cache_dir=cache_dir, digest=digest, threads=threads
        )
    )
    manifest = load_export(folder, config=config, digest=digest, precision=precision)
    seam = OrtSeam(folder, manifest, workers.threads if workers is not None else threads)
    # Tiler calls only frame_features / window_forward of its model, which OrtSeam provides
    return Tiler(
        seam,  # type: ignore[arg-type]
        align,
        config.temporal_stride,
        torch.device("cpu"),
        None,
        workers=workers,
    )
