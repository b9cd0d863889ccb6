"""``torch.compile`` of the streaming calls (estinet.inference.compiled): same outputs, set-up time reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from estinet.config import preset_config
from estinet.errors import DerainError
from estinet.inference import Derainer
from estinet.inference.compiled import CompiledSeam, compile_cache_dir
from estinet.models import build_model
from estinet.models.cpu import cpu_inference
from tests.test_inference import moving

CUDA = torch.cuda.is_available()


def test_compiled_derainer_equals_the_plain_calls_and_compiles_once_per_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESTINET_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    clip = moving(6, 40, 56, shift=1.6)
    plain = Derainer("tiny", device="cpu", tile=0, workers=1).derain_clip(clip)
    derainer = Derainer("tiny", device="cpu", tile=0, compile=True)
    assert derainer.workers == 1 and isinstance(derainer.tiler.model, CompiledSeam)
    assert derainer.setup_seconds() == 0.0  # compiled lazily, on the first call of each shape
    out = derainer.derain_clip(clip)
    # the compiler reorders float arithmetic: equal to rounding, far inside one 8-bit level
    assert (out - plain).abs().max() < 1e-5
    assert (out - clip).abs().max() > 1e-3  # the model did change the frames
    first = derainer.setup_seconds()
    assert first > 0.0
    again = derainer.derain_clip(clip)
    assert derainer.setup_seconds() == first  # same shapes: nothing compiled the second time
    assert torch.equal(again, out)
    assert "compile=True" in repr(derainer)
    assert Path(str(compile_cache_dir())).parent == tmp_path  # the compiler's disk cache is estinet's


def test_compile_option_errors() -> None:
    with pytest.raises(DerainError, match="compile runs one CPU worker"):
        Derainer("tiny", device="cpu", compile=True, workers=2)
    config = preset_config("sicm-2dcnn", "tiny")
    with pytest.raises(DerainError, match="compile is not supported for the 'sicm-2dcnn' variant"):
        Derainer(build_model(config), config=config, device="cpu", compile=True)


def test_cpu_inference_forms_step_aside_for_the_compiler() -> None:
    seen: list[bool] = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen.append(cpu_inference(x))
        return x + 1

    with torch.inference_mode():
        x = torch.zeros(2)
        probe(x)
        torch.compile(probe, backend="eager")(x)
    assert seen == [True, False]


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("half", [False, True])
def test_compiled_cuda_graphs_equal_eager_on_cuda(half: bool) -> None:
    clip = moving(9, 64, 96, shift=2.3).cuda()
    eager = Derainer("tiny", device="cuda", half=half, tile=0, batch=4, cuda_graphs=False).derain_clip(clip)
    fast = Derainer("tiny", device="cuda", half=half, tile=0, batch=4, cuda_graphs=True, compile=True)
    out = fast.derain_clip(clip)
    # fp16 autocast: the compiled kernels round differently from the eager ones, well inside one 8-bit level
    assert (out - eager).abs().max() < (2e-3 if half else 1e-4)
    assert fast.setup_seconds() > 0.0


def test_cli_compile_with_workers_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from estinet.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    out = tmp_path / "out.mp4"
    assert main(["derain", str(frames), "-o", str(out), "--compile", "--workers", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("estinet: error:") and "compile runs one CPU worker" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
