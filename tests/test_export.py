"""ONNX export: checked graphs and sidecar, dynamic sizes, the vs-mlrt graph, folder safety, precisions, variants,
the shipped tiny through ``estinet export``, and the one-line error without onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from estinet.cli import main
from estinet.config import preset_config
from estinet.export import (
    GRAPHS,
    MANIFEST,
    ExportError,
    export_onnx,
    load_manifest,
    open_session,
    weights_digest,
)
from estinet.models import build_model
from estinet.models.estinet import ESTINet, pad_to_multiple
from tests.test_inference import moving

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs onnx and onnxruntime (pip install 'estinet[onnx]')",
)


def gated_tiny(seed: int = 0, **overrides: object) -> ESTINet:
    """A random tiny ESTINet with the rain gate (its ``torch.lerp``), the gate's weights not left at zero."""
    torch.manual_seed(seed)
    model = build_model(preset_config("estinet", "tiny", rain_gate=True, **overrides))
    assert isinstance(model, ESTINet) and model.estm is not None and model.estm.gate is not None
    torch.nn.init.normal_(model.estm.gate[-1].weight, 0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ESTINet, Path]:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("needs onnx and onnxruntime")
    model = gated_tiny()
    folder = tmp_path_factory.mktemp("onnx") / "tiny-export"
    export_onnx(model, folder)
    return model, folder


def run(folder: Path, graph: str, **feeds: torch.Tensor) -> list[torch.Tensor]:
    session = open_session(folder / f"{graph}.onnx", threads=1)
    outputs = session.run(None, {name: x.contiguous().numpy() for name, x in feeds.items()})
    return [torch.from_numpy(np.asarray(out)) for out in outputs]


@needs_ort
def test_export_writes_checked_graphs_and_a_sidecar(exported: tuple[ESTINet, Path]) -> None:
    import onnx

    model, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, *(f"{g}.onnx" for g in GRAPHS)])
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no partial folder left
    manifest = load_manifest(folder)
    assert manifest.config == json.loads(json.dumps(manifest.config)) and manifest.config["rain_gate"] is True
    assert manifest.weights_sha256 == weights_digest(model, model.config)
    assert (manifest.opset, manifest.precision, manifest.window_size, manifest.pad_multiple) == (17, "fp32", 5, 16)
    features, window, vsmlrt = (manifest.graphs[g] for g in GRAPHS)
    assert features.inputs == {"frames": ["N", 3, "H", "W"]}
    assert features.outputs == {"full": ["N", 3, "H", "W"], "low": ["N", 128, "H/8", "W/8"]}
    assert list(window.inputs) == ["rainy", "full", "low"] and window.outputs == {"refined": ["B", 3, "H", "W"]}
    assert vsmlrt.inputs == {"input": ["N", 15, "H", "W"]} and vsmlrt.outputs == {"output": ["N", 3, "H", "W"]}
    for spec in manifest.graphs.values():
        assert spec.max_abs_diff is not None and spec.max_abs_diff < 1e-4 and spec.dtype == "float32"
        graph = onnx.load(str(folder / spec.file))
        onnx.checker.check_model(graph)
        assert max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) == 17
        dims = [[d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] for x in graph.graph.input]
        assert all(isinstance(row[0], str) and isinstance(row[-1], str) for row in dims)  # batch, width symbolic


@needs_ort
def test_graphs_run_at_other_sizes_and_batches(exported: tuple[ESTINet, Path]) -> None:
    model, folder = exported
    frames = moving(5, 32, 112)  # another size than the traced 64 x 96
    with torch.inference_mode():
        feats = model.frame_features(frames)
        full, low = run(folder, "frame_features", frames=frames)
        torch.testing.assert_close(full, feats.full, rtol=0, atol=1e-4)
        torch.testing.assert_close(low, feats.low, rtol=0, atol=1e-4)
        # two windows at once, the second with its frames reversed
        order = [4, 3, 2, 1, 0]
        rainy = torch.stack([frames, frames[order]])
        terms = (torch.stack([feats.full, feats.full[order]]), torch.stack([feats.low, feats.low[order]]))
        (refined,) = run(folder, "window", rainy=rainy, full=terms[0], low=terms[1])
        torch.testing.assert_close(refined, model.window_forward(rainy, *terms, None)[1], rtol=0, atol=1e-4)
        # vs-mlrt: any size (padded inside the graph), 5 frames stacked on channels
        clip = moving(5, 37, 53)
        (out,) = run(folder, "vsmlrt", input=torch.stack([clip, clip.flip(0)]).flatten(1, 2))
        want = model(torch.stack([clip, clip.flip(0)]), torch.zeros(2, 5, 2))[1]  # no motion compensation
        assert out.shape == (2, 3, 37, 53)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-4)
        assert pad_to_multiple(clip)[0].shape[-2:] == (48, 64)  # the graph padded it


@needs_ort
def test_existing_folders_are_refused_or_replaced_whole(exported: tuple[ESTINet, Path], tmp_path: Path) -> None:
    model, folder = exported
    with pytest.raises(ExportError, match="already holds an ONNX export; pass --overwrite"):
        export_onnx(model, folder)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(ExportError, match="not an estinet ONNX export"):
        export_onnx(model, other, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    target = tmp_path / "export"
    export_onnx(model, target, graphs=("window",), check=False)
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "window.onnx"]
    assert load_manifest(target).graphs["window"].max_abs_diff is None
    export_onnx(gated_tiny(seed=1), target, graphs=("vsmlrt",), overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "vsmlrt.onnx"]  # replaced, not merged
    assert load_manifest(target).weights_sha256 != load_manifest(folder).weights_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "mine"]


@needs_ort
def test_a_failed_check_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import estinet.export as export_module

    def fail(*args: object) -> float:
        raise ExportError("window.onnx: ONNX Runtime's refined differs from PyTorch's")

    monkeypatch.setattr(export_module, "_check_graph", fail)
    with pytest.raises(ExportError, match="differs"):
        export_onnx(gated_tiny(), tmp_path / "out", graphs=("window",))
    assert list(tmp_path.iterdir()) == []


@needs_ort
def test_fp16_graphs(tmp_path: Path) -> None:
    model = gated_tiny()
    manifest = export_onnx(model, tmp_path / "fp16", precision="fp16", graphs=("frame_features", "window"))
    assert manifest.precision == "fp16"
    for spec in manifest.graphs.values():
        assert (
            spec.dtype == "float16" and spec.max_abs_diff is not None and 0 < spec.max_abs_diff < 0.1
        )  # relative limit 1e-2
    frames = moving(2, 32, 48)
    full, _ = run(tmp_path / "fp16", "frame_features", frames=frames.half())
    assert full.dtype == torch.float16
    with torch.inference_mode():
        torch.testing.assert_close(full.float(), model.frame_features(frames).full, rtol=0, atol=1e-2)


@needs_ort
@pytest.mark.parametrize("variant", ["sicm-2dcnn", "sicm-stim-3"])
def test_other_variants_export(variant: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(preset_config(variant, "tiny"))
    manifest = export_onnx(model, tmp_path / variant)  # each graph checked against PyTorch inside
    t = model.num_frames
    assert manifest.window_size == t and manifest.graphs["vsmlrt"].inputs == {"input": ["N", 3 * t, "H", "W"]}
    has_low = variant != "sicm-2dcnn"
    assert ("low" in manifest.graphs["frame_features"].outputs) == has_low
    assert ("low" in manifest.graphs["window"].inputs) == has_low


@needs_ort
def test_bad_options_are_refused(tmp_path: Path) -> None:
    for options, message in [
        ({"opset": 16}, "opset must be an integer >= 17"),
        ({"opset": 99}, "newer than"),
        ({"precision": "int8"}, "precision must be one of fp32, fp16"),
        ({"graphs": ("everything",)}, "graphs must be some of"),
    ]:
        with pytest.raises(ExportError, match=message):
            export_onnx("tiny", tmp_path / "out", **options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="weights must be"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "out")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@needs_ort
def test_cli_exports_the_shipped_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from estinet.inference import Derainer

    out = tmp_path / "tiny-onnx"
    assert main(["export", "--weights", "tiny", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: tiny, fp32, opset 17" in printed
    assert "vsmlrt.onnx: input (N x 15 x H x W) -> output (N x 3 x H x W); max |ONNX Runtime - PyTorch|" in printed
    assert main(["export", "--weights", "tiny", "-o", str(out)]) == 2  # no overwrite
    assert "already holds an ONNX export; pass --overwrite" in capsys.readouterr().err
    # the shipped weights through the onnxruntime backend from that folder, motion on, equal torch's
    clip = moving(6, 48, 80, shift=1.5)
    want = Derainer("tiny", device="cpu").derain_clip(clip)
    got = Derainer("tiny", device="cpu", backend="onnxruntime", onnx_dir=out).derain_clip(clip)
    assert (got - want).abs().max() < 1e-4


def test_cli_defaults_are_the_librarys() -> None:
    from estinet.cli import EXPORT_GRAPHS, build_parser
    from estinet.export import DEFAULT_OPSET, PRECISIONS

    args = build_parser().parse_args(["export", "-o", "out"])
    assert (tuple(args.graphs), args.opset, args.precision) == (GRAPHS, DEFAULT_OPSET, PRECISIONS[0])
    assert EXPORT_GRAPHS == GRAPHS and args.check and not args.overwrite


def test_missing_onnxruntime_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    monkeypatch.setenv("ESTINET_CACHE_DIR", str(tmp_path / "cache"))
    from estinet.export import require_onnxruntime

    with pytest.raises(ExportError, match=r"onnxruntime is not installed; .* pip install 'estinet\[onnx\]'"):
        require_onnxruntime()
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(frames / "0.png")
    rc = main(["derain", str(frames), "-o", str(tmp_path / "out"), "--backend", "onnxruntime", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("estinet: error: onnxruntime is not installed") and "pip install 'estinet[onnx]'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@needs_ort
def test_official_release_exports(tmp_path: Path) -> None:
    from estinet.models.official import OfficialESTINet, random_official_state

    model = OfficialESTINet()
    model.load_official(*random_official_state(0))
    manifest = export_onnx(model.eval(), tmp_path / "official", graphs=("window", "vsmlrt"))
    assert manifest.pad_multiple == 1 and list(manifest.graphs["window"].inputs) == ["rainy"]
    assert all(spec.max_abs_diff is not None and spec.max_abs_diff < 1e-4 for spec in manifest.graphs.values())
