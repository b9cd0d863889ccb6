"""The demo: outputs written, scores computed under the protocol, no silent overwrite."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from estinet.checkpoint import save_weights
from estinet.config import preset_config
from estinet.data.video_io import open_frames
from estinet.demo import run_demo
from estinet.errors import EstinetError
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


def test_demo_lifts_the_veil_of_a_veiled_preset_with_a_veil_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("skimage")
    torch.manual_seed(0)
    config = dataclasses.replace(preset_config("estinet", "tiny"), veil_head=True)
    model = build_model(config)
    with torch.no_grad():
        model.veil.out.bias[0] = 0.0  # a head that sees a veil of haze 0.2 everywhere
    weights = str(save_weights(model, config, tmp_path / "w.safetensors"))
    runs = {}
    for name, preset, veil in (("auto", "heavy", None), ("keep", "heavy", False), ("light", "light", None)):
        runs[name] = run_demo(tmp_path / name, weights=weights, frames=5, preset=preset, device="cpu", lift_veil=veil)
        runs[name]["said"] = capsys.readouterr().out
    assert "veil of haze lifted" in runs["auto"]["said"]  # `heavy` draws a veil, the clean frames have none
    assert "veil of haze kept" in runs["keep"]["said"] and "veil of haze kept" in runs["light"]["said"]
    assert runs["auto"]["psnr_y_after"] != runs["keep"]["psnr_y_after"]
    plain = preset_config("estinet", "tiny")
    no_head = str(save_weights(build_model(plain), plain, tmp_path / "plain.safetensors"))
    with pytest.raises(EstinetError, match="no veil head"):
        run_demo(tmp_path / "plain", weights=no_head, frames=5, device="cpu", lift_veil=True)
