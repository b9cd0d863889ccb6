"""ONNX export of the streaming seam, for ONNX Runtime (:mod:`estinet.inference.ort`) and for VapourSynth (vs-mlrt).

One export folder holds up to three graphs, a JSON sidecar (:data:`MANIFEST`) and nothing else:

- ``frame_features.onnx``: :meth:`ESTINet.frame_features`, the per-frame work. Input ``frames`` (N, 3, H, W) in
  [0, 1] with H and W multiples of 16 (padded frames); outputs ``full`` (N, 3, H, W) and ``low``
  (N, 16*hidden, H/s, W/s), s = ``temporal_stride`` (``sicm-2dcnn``: ``full`` only). The authors' release has no
  per-frame work and no such graph.
- ``window.onnx``: :meth:`ESTINet.window_forward` without the alignment, the per-window work. Inputs ``rainy``,
  ``full`` (B, T, 3, H, W) and ``low`` (B, T, 16*hidden, H/s, W/s), already aligned onto each window's centre frame;
  output ``refined`` (B, 3, H, W), padded and unclamped (``official``: input ``rainy`` only). Global motion
  (phase correlation, an FFT) and the sub-pixel alignment stay on the host: ONNX Runtime then runs exactly the
  streaming pipeline of :mod:`estinet.inference.stream`, each frame's features computed once.
- ``vsmlrt.onnx``: one whole window in the convention of vs-mlrt (VapourSynth's ONNX/TensorRT runtime): input
  ``input`` (N, 3T, H, W), the T frames' RGB planes stacked on the channel axis (frame 0 first), in [0, 1]; output
  ``output`` (N, 3, H, W), the derained centre frame, unclamped. Any H and W: the graph pads to multiples of 16 by
  edge replication and crops back. It has no motion compensation (its windows are not aligned), so on footage shot
  by a moving camera it differs from ``estinet derain``, which aligns them.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The network's control flow is fixed by its
config (loops over frames, blocks and layers), so a trace is the whole function, and ``dynamic_axes`` makes batch,
height and width symbolic; the trace needs no extra package, whereas the ``torch.export`` exporter needs onnxscript
and symbolic-shape guards for the networks' Python shape checks (``H % 16``). torch is pinned (2.13), where the
TorchScript exporter still ships (deprecated). Two model functions take an export-only path that computes the same
function (their fast PyTorch forms write into preallocated outputs, which a trace cannot follow):
:class:`~estinet.models.estm.TemporalConv3d` becomes one 2-D conv over the frames stacked on channels, and
:func:`~estinet.models.upsample.upsample_bilinear` becomes ``F.interpolate`` (one Resize node). ``torch.lerp`` (the
rain gate) and the SICM's ``F.interpolate`` to computed sizes export as they are.

Every graph is checked with ``onnx.checker`` and run once in ONNX Runtime against PyTorch at a size other than the
traced one (:data:`CHECK_TOLERANCE`); the differences are recorded in the sidecar. A folder appears under its final
name only when everything is written and checked. onnx and onnxruntime are optional (``pip install 'estinet[onnx]'``)
and imported only here, when needed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet import __version__
from estinet.config import ModelConfig, preset_config, to_dict
from estinet.errors import EstinetError
from estinet.models.estinet import PAD_MULTIPLE, ESTINet
from estinet.models.official import OfficialESTINet
from estinet.runtime import cache_dir as estinet_cache_dir
from estinet.runtime import remove_stale_partials

__all__ = [
    "CHECK_TOLERANCE",
    "DEFAULT_OPSET",
    "EXPORT_FORMAT",
    "GRAPHS",
    "MANIFEST",
    "PRECISIONS",
    "ExportError",
    "GraphSpec",
    "OnnxManifest",
    "cached_export",
    "default_cache_dir",
    "export_onnx",
    "file_sha256",
    "load_manifest",
    "open_session",
    "require_onnxruntime",
    "weights_digest",
]

EXPORT_FORMAT = "estinet-onnx-1"
"""Version of the folder layout and graph conventions (part of the cache key: bump it when they change)."""

MANIFEST = "estinet-onnx.json"
"""The sidecar's file name inside an export folder."""

GRAPHS: tuple[str, ...] = ("frame_features", "window", "vsmlrt")
"""The graphs an export folder can hold (each as ``<name>.onnx``)."""

PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
"""Graph precisions: fp16 graphs take and return float16 tensors."""

DEFAULT_OPSET = 17
MIN_OPSET = 17

CHECK_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
"""Largest difference (times max(1, largest reference value)) of a graph's outputs from PyTorch in float32 that the
export check accepts; fp16 graphs are compared with the float32 network too."""

_TRACE_SIZE = (64, 96)  # frames traced at this size ...
_CHECK_SIZE = (48, 80)  # ... and checked at another (vs-mlrt: 45 x 70, not a multiple of 16)
_INSTALL_HINT = "pip install 'estinet[onnx]'"


class ExportError(EstinetError, ValueError):
    """An export that cannot be written or used: missing packages, a refused folder, graphs that do not fit."""


# ---------------------------------------------------------------------------------------------------------------------
# optional packages
# ---------------------------------------------------------------------------------------------------------------------


def _require(name: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ExportError(
            f"{name} is not installed; ONNX export and the onnxruntime backend need {_INSTALL_HINT}"
        ) from None


def require_onnxruntime() -> ModuleType:
    """Import onnxruntime, or raise :class:`ExportError` naming ``pip install 'estinet[onnx]'``."""
    return _require("onnxruntime")


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of one graph on the CPU.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (None: ``torch.get_num_threads()``, the same as the torch backend).

    Threads sleep instead of spinning while they wait (``session.intra_op.allow_spinning = 0``), as estinet asks of
    OpenMP (``OMP_WAIT_POLICY=PASSIVE``): spinning threads lose most of the speed beside another busy process
    (docs/results/cpu-load.md).
    """
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------------------------
# the sidecar
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph.

    Attributes:
        file: file name inside the export folder.
        sha256: digest of the file (checked when a backend loads it).
        inputs: ``{name: shape}``; symbolic dims are strings (``"N"``, ``"H"``, ``"H/8"``).
        outputs: ``{name: shape}``.
        dtype: element type of every input and output (``float32`` or ``float16``).
        max_abs_diff: largest difference from PyTorch (float32) found by the export check (None: not checked).
        note: the graph's size rule, in words.
    """

    file: str
    sha256: str
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    dtype: str
    max_abs_diff: float | None
    note: str


@dataclass(frozen=True)
class OnnxManifest:
    """The JSON sidecar of an export folder (:data:`MANIFEST`).

    Attributes:
        format: :data:`EXPORT_FORMAT`.
        config: the model's :class:`~estinet.config.ModelConfig` as a dict.
        weights_sha256: :func:`weights_digest` of the exported weights.
        weights: where they came from (a shipped name, a path, or the model's class).
        opset: ONNX opset.
        precision: ``fp32`` or ``fp16``.
        window_size: frames per window.
        pad_multiple: frames are padded to multiples of this before ``frame_features`` / ``window`` (1: unpadded).
        temporal_stride: resolution factor of ``low``.
        graphs: :class:`GraphSpec` by graph name.
        exporter: the exporter and versions that wrote it.
    """

    format: str
    config: dict[str, Any]
    weights_sha256: str
    weights: str
    opset: int
    precision: str
    window_size: int
    pad_multiple: int
    temporal_stride: int
    graphs: dict[str, GraphSpec] = field(default_factory=dict)
    exporter: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"


def load_manifest(folder: str | Path) -> OnnxManifest:
    """Read an export folder's sidecar.

    Raises:
        ExportError: no sidecar, an unreadable one, or one of another format.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ExportError(f"{folder} is not an estinet ONNX export (no {MANIFEST}); write one with estinet export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != EXPORT_FORMAT:
            raise ExportError(
                f"{path} is format {data.get('format')!r}, this estinet reads {EXPORT_FORMAT!r}; export again with "
                "estinet export --overwrite"
            )
        graphs = {name: GraphSpec(**spec) for name, spec in data.pop("graphs").items()}
        return OnnxManifest(**data, graphs=graphs)
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise ExportError(f"{path} is not a readable estinet ONNX sidecar ({exc}); export again") from exc


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model: nn.Module, config: ModelConfig) -> str:
    """SHA-256 of a model's config and of every state tensor (name, shape and float32 values, in name order)."""
    digest = hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu")
        value = value.float() if value.is_floating_point() else value
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# the graphs
# ---------------------------------------------------------------------------------------------------------------------


class FrameFeaturesGraph(nn.Module):
    """``frames`` (N, 3, H, W) -> ``full`` (N, 3, H, W), ``low`` (N, 16*hidden, H/s, W/s) (no ``low``: sicm-2dcnn)."""

    def __init__(self, model: ESTINet) -> None:
        super().__init__()
        self.model = model
        self.has_low = model.stim is not None

    def forward(self, frames: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        feats = self.model.frame_features(frames)
        return (feats.full, feats.low) if self.has_low else feats.full


class WindowGraph(nn.Module):
    """Aligned ``rainy``, ``full`` (B, T, 3, H, W) and ``low`` (B, T, C, H/s, W/s) -> ``refined`` (B, 3, H, W).

    ``official`` takes ``rainy`` only, ``sicm-2dcnn`` ``rainy`` and ``full``.
    """

    def __init__(self, model: nn.Module, inputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.inputs = tuple(inputs)

    def forward(self, *terms: Tensor) -> Tensor:
        given = dict(zip(self.inputs, terms, strict=True))
        rainy = given["rainy"]
        empty = rainy.new_zeros(0)
        return self.model.window_forward(rainy, given.get("full", empty), given.get("low", empty), None)[1]


class VsmlrtGraph(nn.Module):
    """vs-mlrt's convention: ``input`` (N, 3T, H, W), the T frames stacked on channels -> ``output`` (N, 3, H, W).

    Any H and W: ESTINet's frames are padded to multiples of 16 by edge replication inside the graph (as
    :meth:`ESTINet.forward` does) and the output cropped back; no motion compensation.
    """

    def __init__(self, model: nn.Module, window_size: int) -> None:
        super().__init__()
        self.model = model
        self.window_size = window_size

    def forward(self, stacked: Tensor) -> Tensor:
        n, _, height, width = stacked.shape
        frames = stacked.reshape(n, self.window_size, 3, height, width)  # (N, T, 3, H, W)
        if isinstance(self.model, OfficialESTINet):
            return self.model(frames)[1]
        # pad always (amounts computed in the graph, zero for multiples of 16): pad_to_multiple decides in Python
        pad_h = (PAD_MULTIPLE - height % PAD_MULTIPLE) % PAD_MULTIPLE
        pad_w = (PAD_MULTIPLE - width % PAD_MULTIPLE) % PAD_MULTIPLE
        flat = F.pad(frames.reshape(n * self.window_size, 3, height, width), (0, pad_w, 0, pad_h), mode="replicate")
        hp, wp = flat.shape[-2:]
        feats = self.model.frame_features(flat)  # (N*T, ...)
        full = feats.full.reshape(n, self.window_size, 3, hp, wp)
        low = feats.low
        if low.numel():
            low = low.reshape(n, self.window_size, *low.shape[1:])
        refined = self.model.window_forward(flat.reshape(n, self.window_size, 3, hp, wp), full, low, None)[1]
        return refined[:, :, :height, :width]


@dataclass(frozen=True)
class _Graph:
    """How to export and check one graph."""

    module: nn.Module
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    trace: tuple[Tensor, ...]
    check: tuple[Tensor, ...]
    expected: tuple[Tensor, ...]
    note: str


def _symbolic(shape: list[int | str]) -> dict[int, str]:
    """``dynamic_axes`` of a shape: its string dims, named without the ``/`` (``H/8`` -> ``H_8``)."""
    return {k: str(d).replace("/", "_") for k, d in enumerate(shape) if isinstance(d, str)}


def _plan_graphs(
    model: nn.Module, exported: nn.Module, config: ModelConfig, window_size: int, dtype: torch.dtype
) -> dict[str, _Graph]:
    """The graphs of ``exported`` (``model`` in ``dtype``) with their trace and check inputs (of ``dtype``) and the
    expected outputs (of ``model`` in float32)."""
    g = torch.Generator().manual_seed(0)
    t = window_size
    (th, tw), (ch, cw) = _TRACE_SIZE, _CHECK_SIZE
    trace_frames = torch.rand(2 * t, 3, th, tw, generator=g)
    check_frames = torch.rand(t, 3, ch, cw, generator=g)
    graphs: dict[str, _Graph] = {}
    with torch.inference_mode():
        ref_window = check_frames[None]  # (1, T, 3, h, w)
        if isinstance(model, OfficialESTINet):
            window_inputs: dict[str, list[int | str]] = {"rainy": ["B", t, 3, "H", "W"]}
            trace_terms: tuple[Tensor, ...] = (trace_frames[:t][None],)
            check_terms: tuple[Tensor, ...] = (ref_window,)
            size_note = "any H, W (unpadded frames)"
        else:
            s = config.temporal_stride
            trace_feats = model.frame_features(trace_frames)
            check_feats = model.frame_features(check_frames)
            full_out = {"full": ["N", 3, "H", "W"]}
            has_low = model.stim is not None
            low_shape: list[int | str] = ["N", int(check_feats.low.shape[1]) if has_low else 0, f"H/{s}", f"W/{s}"]
            outputs = {**full_out, "low": low_shape} if has_low else full_out
            expected = (check_feats.full, check_feats.low) if has_low else (check_feats.full,)
            size_note = "H, W multiples of 16 (frames padded by edge replication)"
            graphs["frame_features"] = _Graph(
                FrameFeaturesGraph(exported),
                {"frames": ["N", 3, "H", "W"]},
                outputs,
                (trace_frames,),
                (check_frames,),
                expected,
                size_note,
            )
            window_inputs = {"rainy": ["B", t, 3, "H", "W"], "full": ["B", t, 3, "H", "W"]}
            trace_terms = (trace_frames[:t][None], trace_feats.full[:t][None])
            check_terms = (ref_window, check_feats.full[None])
            if has_low:
                window_inputs["low"] = ["B", t, low_shape[1], f"H/{s}", f"W/{s}"]
                trace_terms = (*trace_terms, trace_feats.low[:t][None])
                check_terms = (*check_terms, check_feats.low[None])
        graphs["window"] = _Graph(
            WindowGraph(exported, list(window_inputs)),
            window_inputs,
            {"refined": ["B", 3, "H", "W"]},
            trace_terms,
            check_terms,
            (WindowGraph(model, list(window_inputs))(*check_terms),),
            f"{size_note}; windows aligned onto their centre frames on the host, refined frame padded and unclamped",
        )
        vs_check = torch.rand(2, 3 * t, 45, 70, generator=g)
        vs_trace = torch.rand(1, 3 * t, 50, 70, generator=g)
        graphs["vsmlrt"] = _Graph(
            VsmlrtGraph(exported, t),
            {"input": ["N", 3 * t, "H", "W"]},
            {"output": ["N", 3, "H", "W"]},
            (vs_trace,),
            (vs_check,),
            (VsmlrtGraph(model, t)(vs_check),),
            f"vs-mlrt convention: {t} RGB frames stacked on channels (frame 0 first), any H, W"
            f"{'' if isinstance(model, OfficialESTINet) else ' (padded to 16 inside)'}, centre frame out, unclamped, "
            "no motion compensation",
        )
    if dtype != torch.float32:
        for name, graph in graphs.items():
            graphs[name] = _Graph(
                graph.module,
                graph.inputs,
                graph.outputs,
                tuple(x.to(dtype) for x in graph.trace),
                tuple(x.to(dtype) for x in graph.check),
                graph.expected,
                graph.note,
            )
    return graphs


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the tracer's warnings (the networks' Python shape checks) and the exporter's deprecation notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        yield


def _export_graph(graph: _Graph, path: Path, opset: int) -> None:
    names = [*graph.inputs, *graph.outputs]
    shapes = [*graph.inputs.values(), *graph.outputs.values()]
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(
            graph.module,
            graph.trace,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes={name: _symbolic(shape) for name, shape in zip(names, shapes, strict=True)},
            do_constant_folding=True,
        )


def _check_graph(graph: _Graph, path: Path, precision: str, threads: int | None) -> float:
    """Run the graph once in ONNX Runtime on the check inputs; the largest difference from PyTorch (float32)."""
    onnx = _require("onnx")
    onnx.checker.check_model(str(path))
    session = open_session(path, threads)
    feeds = {name: x.contiguous().numpy() for name, x in zip(graph.inputs, graph.check, strict=True)}
    outputs = session.run(list(graph.outputs), feeds)
    worst = 0.0
    for name, got, want in zip(graph.outputs, outputs, graph.expected, strict=True):
        if tuple(got.shape) != tuple(want.shape):
            raise ExportError(f"{path.name}: output {name} has shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
        diff = float((torch.from_numpy(got).float() - want).abs().max()) if want.numel() else 0.0
        limit = CHECK_TOLERANCE[precision] * max(1.0, float(want.abs().max()) if want.numel() else 0.0)
        if not diff <= limit:
            raise ExportError(
                f"{path.name}: ONNX Runtime's {name} differs from PyTorch's by {diff:.3g} (limit {limit:.3g}); the "
                "exported graph is not the network's function, please report this"
            )
        worst = max(worst, diff)
    return worst


# ---------------------------------------------------------------------------------------------------------------------
# export folders
# ---------------------------------------------------------------------------------------------------------------------


def _model_and_config(weights: str | Path | nn.Module) -> tuple[nn.Module, ModelConfig, str]:
    if isinstance(weights, OfficialESTINet):
        return weights, preset_config("official", "paper"), type(weights).__name__
    if isinstance(weights, ESTINet):
        return weights, weights.config, type(weights).__name__
    if isinstance(weights, str | Path):
        from estinet.checkpoint import load_model

        model, config = load_model(weights, device="cpu")
        return model, config, str(weights)
    raise TypeError(
        f"weights must be a shipped name, a file path, 'COARSE,FINE' or an ESTINet/OfficialESTINet module, got "
        f"{type(weights).__name__}"
    )


def _export_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A float32/float16 CPU copy in eval mode with contiguous parameters (channels_last weights made plain)."""
    out = copy.deepcopy(model).to("cpu").eval()
    for tensor in [*out.parameters(), *out.buffers()]:
        tensor.requires_grad_(False)
        tensor.data = tensor.data.contiguous()
    return out.to(dtype)


def _check_options(opset: int, precision: str, graphs: Sequence[str]) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    max_opset = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)  # 20 in torch 2.13
    if opset > max_opset:
        raise ExportError(f"opset {opset} is newer than torch {torch.__version__}'s exporter writes ({max_opset})")
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown or not graphs:
        raise ExportError(f"graphs must be some of {', '.join(GRAPHS)}, got {', '.join(graphs) or 'none'}")


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; pick another output folder")
    entries = list(out.iterdir())
    if not entries:
        return
    if not (out / MANIFEST).is_file():
        raise ExportError(
            f"refusing to write into {out}: it holds files that are not an estinet ONNX export; --overwrite only "
            "replaces estinet's own exports, so pick another folder"
        )
    if not overwrite:
        raise ExportError(f"{out} already holds an ONNX export; pass --overwrite (overwrite=True) to replace it")


def export_onnx(
    weights: str | Path | nn.Module,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    graphs: Sequence[str] = GRAPHS,
    overwrite: bool = False,
    check: bool = True,
    threads: int | None = None,
) -> OnnxManifest:
    """Export a model's streaming graphs (and the vs-mlrt window graph) to an ONNX folder.

    Args:
        weights: a shipped name, a weights file, a training checkpoint, ``COARSE,FINE`` (the authors' release) or an
            :class:`ESTINet` / :class:`OfficialESTINet` (copied; the caller's module is left untouched).
        out_dir: the folder to write (created; it appears only once complete).
        opset: ONNX opset (>= 17).
        precision: ``fp32`` or ``fp16`` (float16 weights, inputs and outputs).
        graphs: which of :data:`GRAPHS` to write (the onnxruntime backend needs ``frame_features`` and ``window``).
        overwrite: replace an earlier export in ``out_dir`` (never a folder of other files).
        check: run ``onnx.checker`` and each graph once in ONNX Runtime against PyTorch (needs onnxruntime).
        threads: ONNX Runtime threads for the check (default: torch's).

    Returns:
        The sidecar written to ``out_dir / MANIFEST``.

    Raises:
        ExportError: bad options, a refused folder, missing onnx/onnxruntime, or a graph that fails its check.
        WeightsError: weights that cannot be loaded.
    """
    _check_options(opset, precision, graphs)
    out = Path(out_dir)
    _refuse_existing(out, overwrite)
    if check:
        require_onnxruntime()  # first: the onnxruntime backend is what most users are missing it for
    _require("onnx")
    model, config, source = _model_and_config(weights)
    digest = weights_digest(model, config)
    window_size = int(model.num_frames)
    official = isinstance(model, OfficialESTINet)
    dtype = torch.float16 if precision == "fp16" else torch.float32
    reference = _export_copy(model, torch.float32)
    exported = _export_copy(model, dtype) if dtype != torch.float32 else reference
    planned = _plan_graphs(reference, exported, config, window_size, dtype)
    remove_stale_partials(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        specs: dict[str, GraphSpec] = {}
        for name in (g for g in GRAPHS if g in graphs and g in planned):
            plan = planned[name]
            path = tmp / f"{name}.onnx"
            _export_graph(plan, path, opset)
            diff = _check_graph(plan, path, precision, threads) if check else None
            specs[name] = GraphSpec(
                path.name, file_sha256(path), plan.inputs, plan.outputs, str(dtype).split(".")[-1], diff, plan.note
            )
        manifest = OnnxManifest(
            format=EXPORT_FORMAT,
            config=to_dict(config),
            weights_sha256=digest,
            weights=source,
            opset=opset,
            precision=precision,
            window_size=window_size,
            pad_multiple=1 if official else PAD_MULTIPLE,
            temporal_stride=config.temporal_stride,
            graphs=specs,
            exporter={
                "estinet": __version__,
                "torch": torch.__version__,
                "onnx": _require("onnx").__version__,
                "exporter": "torch.onnx.export(dynamo=False), TorchScript trace",
            },
        )
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _commit_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _commit_folder(tmp: Path, out: Path) -> None:
    """Flush the finished folder and move it to ``out`` (replacing an earlier export, which is then removed)."""
    for entry in tmp.iterdir():
        fd = os.open(entry, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# the cache of the onnxruntime backend
# ---------------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$ESTINET_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/estinet/onnx``, else ``~/.cache/estinet/onnx``."""
    return estinet_cache_dir("onnx")


def cache_key(digest: str, opset: int, precision: str) -> str:
    """Folder name of an export in the cache: a hash of the weights (and config), opset, precision and format."""
    text = json.dumps([EXPORT_FORMAT, digest, opset, precision, torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_export(
    model: nn.Module,
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    digest: str | None = None,
    threads: int | None = None,
) -> Path:
    """The export folder of ``model`` in the cache, exported (and checked) on first use.

    Args:
        model: an :class:`ESTINet` or :class:`OfficialESTINet`.
        opset: ONNX opset.
        precision: ``fp32`` or ``fp16``.
        cache_dir: the cache (default :func:`default_cache_dir`).
        digest: the model's :func:`weights_digest`, when already computed.
        threads: ONNX Runtime threads for the export check.

    Returns:
        The folder (``<cache>/<cache_key>``).
    """
    _, config, _ = _model_and_config(model)
    digest = digest or weights_digest(model, config)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / cache_key(digest, opset, precision)
    if (folder / MANIFEST).is_file():
        return folder
    try:
        graphs = ("frame_features", "window")
        export_onnx(model, folder, opset=opset, precision=precision, graphs=graphs, threads=threads)
    except (OSError, ExportError):
        if (folder / MANIFEST).is_file():  # another process exported the same graphs at the same time
            return folder
        raise
    return folder
