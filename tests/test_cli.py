"""The command line: the model table, synth, and one-line errors with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estinet.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("estinet ")


def test_info_prints_every_variant_and_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for variant in ("sicm-2dcnn", "sicm-stim-2", "sicm-stim-5", "estinet", "official"):
        assert f"| {variant} |" in out
    rows = [line for line in out.splitlines() if line.startswith("| estinet |")]
    assert [r.split("|")[2].strip() for r in rows] == ["tiny", "small", "paper"]
    tiny = rows[0].split("|")
    assert float(tiny[4]) <= 5.0, "tiny must stay within 5 GFLOPs per output frame at 640x480 (streaming)"
    assert float(tiny[5]) >= 3 * float(tiny[4]), "streaming must save at least 3x over per-window recomputation"
    assert float(rows[1].split("|")[4]) <= 100.0


def test_info_filters_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--variant", "estinet", "--preset", "tiny", "--size", "240x320"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| estinet |")]
    assert len(rows) == 1 and "240x320" in out
    assert main(["info", "--variant", "official", "--preset", "tiny"]) == 0
    assert "| official |" in capsys.readouterr().out


def test_bad_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["info", "--size", "big"])
    assert exc.value.code == 2
    assert "must look like HxW" in capsys.readouterr().err


def test_synth_writes_ntu_layout_and_refuses_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "still.png")
    out = tmp_path / "ds"
    args = ["synth", str(tmp_path / "still.png"), "-o", str(out), "--frames", "3", "--size", "32x48", "--quiet"]
    assert main(args) == 0
    rainy = sorted((out / "Dataset_Training_Synthetic").glob("t*_Rain_01/*.png"))
    assert len(rainy) == 3
    capsys.readouterr()
    assert main(args) == 2  # exists, no --overwrite
    err = capsys.readouterr().err
    assert err.startswith("estinet: error:") and "overwrite" in err and len(err.strip().splitlines()) == 1


def test_synth_missing_input_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing.mp4" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
