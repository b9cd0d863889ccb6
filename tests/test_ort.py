"""The onnxruntime backend: the same streaming as torch (whole frames, tiles, batches, motion, variants), the cache,
graphs of other weights refused, the ``derain`` and ``bench`` flags."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from estinet.benchmark import format_results, run_benchmark
from estinet.cli import main
from estinet.config import preset_config
from estinet.data.video_io import read_all
from estinet.export import MANIFEST, ExportError, export_onnx
from estinet.inference import Derainer, DerainError
from estinet.models import build_model
from tests.test_export import gated_tiny
from tests.test_inference import moving

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs onnx and onnxruntime (pip install 'estinet[onnx]')",
)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test exports into its own cache, never the user's."""
    monkeypatch.setenv("ESTINET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def both(model: torch.nn.Module, clip: torch.Tensor, **options: object) -> tuple[torch.Tensor, torch.Tensor, Derainer]:
    """(torch output, onnxruntime output, the onnxruntime derainer) of one clip."""
    want = Derainer(model, device="cpu", **options).derain_clip(clip)  # type: ignore[arg-type]
    derainer = Derainer(model, device="cpu", backend="onnxruntime", **options)  # type: ignore[arg-type]
    return want, derainer.derain_clip(clip), derainer


def test_whole_frames_with_motion_equal_torch() -> None:
    model = gated_tiny()
    clip = moving(7, 64, 96, shift=1.5)
    want, got, derainer = both(model, clip)
    assert derainer.motion and derainer.last_stats.plan is not None and derainer.last_stats.plan.tile is None
    assert derainer.last_stats.seconds["motion"] > 0
    assert (got - want).abs().max() < 1e-4
    still = Derainer(model, device="cpu", motion=False).derain_clip(clip)
    assert (still - want).abs().max() > 1e-2  # motion compensation changed the output that ORT reproduced
    assert "backend='onnxruntime', precision=fp32" in repr(derainer)


def test_tiles_and_batches_equal_torch() -> None:
    clip = moving(6, 64, 96, shift=-2.0)
    want, got, derainer = both(gated_tiny(), clip, tile=32, tile_margin=32, batch=2)
    plan = derainer.last_stats.plan
    assert plan is not None and (plan.tile, plan.batch) == (32, 2)
    assert (got - want).abs().max() < 1e-4


def test_frame_parallel_workers_equal_one_at_a_time() -> None:
    """Two workers call the sessions at once (one ONNX Runtime thread each): the frames of one at a time."""
    clip = moving(7, 64, 96, shift=1.5)
    one = Derainer(gated_tiny(), device="cpu", backend="onnxruntime", workers=1)
    two = Derainer(gated_tiny(), device="cpu", backend="onnxruntime", workers=2)
    want, got = one.derain_clip(clip), two.derain_clip(clip)
    assert one.tiler.workers is None and two.tiler.workers is not None and two.tiler.workers.threads == 1
    assert two.last_stats.plan is not None and two.last_stats.plan.batch == 2
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize("variant", ["sicm-2dcnn", "sicm-stim-3"])
def test_other_variants_equal_torch(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(preset_config(variant, "tiny"))
    want, got, _ = both(model, moving(4, 32, 48))
    assert (got - want).abs().max() < 1e-4


def test_the_cache_is_keyed_by_weights_and_precision(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import estinet.export as export_module

    Derainer(gated_tiny(), device="cpu", backend="onnxruntime")
    (folder,) = cache.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, "frame_features.onnx", "window.onnx"])
    calls: list[Path] = []
    real = export_module.export_onnx

    def counting(weights: object, out_dir: Path, **options: object) -> object:
        calls.append(Path(out_dir))
        return real(weights, out_dir, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(export_module, "export_onnx", counting)
    clip = moving(3, 32, 48)
    again = Derainer(gated_tiny(), device="cpu", backend="onnxruntime")  # same weights: reused
    assert calls == []
    assert (again.derain_clip(clip) - Derainer(gated_tiny(), device="cpu").derain_clip(clip)).abs().max() < 1e-4
    Derainer(gated_tiny(seed=1), device="cpu", backend="onnxruntime")  # other weights: another folder
    half = Derainer(gated_tiny(), device="cpu", backend="onnxruntime", half=True)  # fp16: another folder
    assert len(calls) == 2 and len(list(cache.iterdir())) == 3 and half.precision == "fp16"
    assert (half.derain_clip(clip) - Derainer(gated_tiny(), device="cpu").derain_clip(clip)).abs().max() < 2e-2


def test_graphs_of_other_weights_precision_or_altered_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    export_onnx(gated_tiny(), folder, graphs=("frame_features", "window"), check=False)
    with pytest.raises(ExportError, match="exported from other weights"):
        Derainer(gated_tiny(seed=1), device="cpu", backend="onnxruntime", onnx_dir=folder)
    with pytest.raises(ExportError, match="another config"):
        Derainer(gated_tiny(motion_compensation=False), device="cpu", backend="onnxruntime", onnx_dir=folder)
    with pytest.raises(ExportError, match="are fp32, not fp16"):
        Derainer(gated_tiny(), device="cpu", backend="onnxruntime", onnx_dir=folder, half=True)
    with (folder / "window.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ExportError, match=r"window\.onnx is missing or was changed"):
        Derainer(gated_tiny(), device="cpu", backend="onnxruntime", onnx_dir=folder)
    with pytest.raises(ExportError, match="is not an estinet ONNX export"):
        Derainer(gated_tiny(), device="cpu", backend="onnxruntime", onnx_dir=tmp_path)


def test_backend_options_are_checked(tmp_path: Path) -> None:
    model = gated_tiny()
    with pytest.raises(DerainError, match="backend must be one of torch, onnxruntime"):
        Derainer(model, device="cpu", backend="tensorrt")
    with pytest.raises(DerainError, match="onnx_dir is only used by backend='onnxruntime'"):
        Derainer(model, device="cpu", onnx_dir=tmp_path)
    with pytest.raises(DerainError, match="cuda"):
        Derainer(model, device="cuda", backend="onnxruntime")
    assert Derainer(model, backend="onnxruntime").device.type == "cpu"  # auto means the CPU here


def test_cli_derain_with_the_onnxruntime_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, frame in enumerate(moving(3, 40, 56)):
        Image.fromarray((frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(frames / f"{t}.png")
    assert main(["derain", str(frames), "-o", str(tmp_path / "torch"), "--quiet"]) == 0
    assert main(["derain", str(frames), "-o", str(tmp_path / "ort"), "--backend", "onnxruntime", "--quiet"]) == 0
    out = main(["derain", str(frames), "-o", str(tmp_path / "x"), "--onnx-dir", str(tmp_path), "--quiet"])
    assert out == 2 and "onnx_dir is only used by backend='onnxruntime'" in capsys.readouterr().err
    diff = read_all(tmp_path / "ort").astype(int) - read_all(tmp_path / "torch").astype(int)
    assert diff.shape == (3, 40, 56, 3) and np.abs(diff).max() <= 1


def test_bench_times_both_backends() -> None:
    results, peak = run_benchmark(
        ["estinet/tiny"],
        sizes=((48, 64),),
        device="cpu",
        frames=3,
        warmup=1,
        modes=("streaming",),
        backends=("torch", "onnxruntime"),
    )
    assert [(r.mode, r.backend) for r in results] == [("streaming", "torch"), ("streaming", "onnxruntime")]
    assert all(r.fps > 0 for r in results)
    assert "| estinet/tiny | 64x48 | streaming | onnxruntime |" in format_results(results, peak, "test machine")
    # the per-window reference is torch's own: nothing to time for onnxruntime
    per_window, _ = run_benchmark(
        ["estinet/tiny"], sizes=((48, 64),), device="cpu", modes=("per-window",), backends=("onnxruntime",)
    )
    assert per_window == []
    with pytest.raises(ValueError, match="unknown backend"):
        run_benchmark(["estinet/tiny"], sizes=((48, 64),), backends=("tensorrt",))
