"""The demo: outputs written, scores computed under the protocol, no silent overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from estinet.checkpoint import save_weights
from estinet.config import preset_config
from estinet.data.video_io import open_frames
from estinet.demo import run_demo
from estinet.models import build_model


def test_demo_writes_outputs_and_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("skimage")
    torch.manual_seed(0)
    config = preset_config("estinet", "tiny")
    weights = save_weights(build_model(config), config, tmp_path / "w.safetensors")
    out = tmp_path / "demo"
    result = run_demo(out, weights=str(weights), frames=6, preset="heavy", device="cpu")
    for name in ("rainy.mp4", "derained.mp4", "side_by_side.mp4", "contact_sheet.png"):
        assert (out / name).is_file()
    with open_frames(out / "side_by_side.mp4") as src:
        rainy = open_frames(out / "rainy.mp4")
        assert src.width == 3 * rainy.width and src.num_frames == rainy.num_frames == 6
        rainy.close()
    # heavy rain on a clean clip costs many dB; an untrained model changes the frames but does not derain them
    assert result["psnr_y_before"] < 30
    assert 5 < result["psnr_y_after"] < 60 and result["psnr_y_after"] != result["psnr_y_before"]
    assert result["fps"] > 0
    assert "PSNR-Y" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_demo(out, weights=str(weights), frames=6, device="cpu")
    run_demo(out, weights=str(weights), frames=6, device="cpu", overwrite=True)
