"""Lifting the veil at inference (``Derainer(lift_veil=True)``, ``estinet derain --lift-veil``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from estinet.checkpoint import save_weights
from estinet.config import ModelConfig
from estinet.errors import DerainError
from estinet.inference import Derainer
from estinet.inference.derainer import TileSizeWarning
from estinet.models import build_model
from tests.test_inference import moving

HAZE, LIGHT = 0.2, (0.7, 0.75, 0.8)


def _veiled_model(seed: int = 0) -> torch.nn.Module:
    """tiny with a veil head that estimates a uniform haze of 0.2 under a light of (0.7, 0.75, 0.8) everywhere."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(variant="estinet", preset="tiny", veil_head=True))
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    with torch.no_grad():
        model.veil.out.weight.zero_()
        model.veil.out.bias.copy_(torch.tensor([logit(HAZE / 0.4), *(logit(v) for v in LIGHT)]))
    return model


def test_lifted_output_is_the_kept_output_with_its_veil_inverted() -> None:
    model = _veiled_model()
    frames = moving(7, 40, 56)
    kept = Derainer(model, device="cpu", tile=0).derain_clip(frames)
    lifting = Derainer(model, device="cpu", tile=0, lift_veil=True)
    lifted = lifting.derain_clip(frames)
    light = torch.tensor(LIGHT).view(1, 3, 1, 1)
    torch.testing.assert_close(lifted, ((kept - HAZE * light) / (1 - HAZE)).clamp(0, 1), rtol=0, atol=1e-5)
    assert lifting.last_stats.seconds["veil"] > 0  # its time is reported as a stage of its own
    assert "lift_veil=True" in repr(lifting) and "lift_veil" not in repr(Derainer(model, device="cpu"))
    # streaming equals the per-window reference, and tiles change nothing: the veil is estimated on whole frames
    torch.testing.assert_close(lifting.derain_per_window(frames), lifted, rtol=0, atol=1e-5)
    with pytest.warns(TileSizeWarning):  # small tiles, so that this frame is cut into several
        tiled = Derainer(model, device="cpu", tile=32, lift_veil=True).derain_clip(frames)
    torch.testing.assert_close(tiled, lifted, rtol=0, atol=1e-5)


def test_a_trained_head_estimates_the_veil_frame_by_frame() -> None:
    model = _veiled_model(1)
    with torch.no_grad():  # haze from the frame's darkest values: more veil on the brighter (lifted) frames
        model.veil.out.weight.normal_(0, 0.5)
    frames = moving(5, 32, 48)
    frames[3] = frames[3] * 0.5 + 0.5
    out = Derainer(model, device="cpu", tile=0, lift_veil=True).derain_clip(frames)
    kept = Derainer(model, device="cpu", tile=0).derain_clip(frames)
    change = (out - kept).abs().mean(dim=(1, 2, 3))
    assert change.std() > 0 and change[3] != change[2]


def test_lift_veil_needs_weights_with_a_veil_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = ModelConfig(preset="tiny")
    weights = save_weights(build_model(plain), plain, tmp_path / "plain.safetensors")  # no veil head
    with pytest.raises(DerainError, match="no veil head"):
        Derainer(str(weights), device="cpu", lift_veil=True)
    with pytest.raises(DerainError, match="create it with lift_veil=True"):
        Derainer(_veiled_model(), device="cpu").lift(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    from estinet.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    out = tmp_path / "out.mp4"
    args = ["derain", str(frames), "-o", str(out), "--weights", str(weights), "--lift-veil", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("estinet: error:") and "drop --lift-veil" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
