"""Weights files: round trip, shipped names, refusal of foreign, corrupt or mismatched files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from estinet.checkpoint import WeightsError, load_model, save_weights
from estinet.config import preset_config, to_dict
from estinet.models import build_model
from estinet.models.official import random_official_state


def test_safetensors_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = preset_config("sicm-stim-3", "tiny")
    model = build_model(config)
    path = save_weights(model, config, tmp_path / "m.safetensors", extra={"steps": "10"})
    loaded, cfg = load_model(path)
    assert cfg == config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert not list(tmp_path.glob(".*partial*"))


def test_saved_weights_get_the_usual_file_permissions(tmp_path: Path) -> None:
    """safetensors writes owner-only files; exported weights follow the umask like any other output."""
    config = preset_config("estinet", "tiny")
    old = os.umask(0o022)
    try:
        path = save_weights(build_model(config), config, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_training_checkpoint_loads(tmp_path: Path) -> None:
    config = preset_config("estinet", "tiny")
    model = build_model(config)
    torch.save({"model": model.state_dict(), "config": {"model": to_dict(config)}, "step": 3}, tmp_path / "c.pt")
    loaded, cfg = load_model(tmp_path / "c.pt")
    assert cfg == config and not loaded.training


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    small = preset_config("estinet", "small")
    model = build_model(preset_config("estinet", "tiny"))
    torch.save({"model": model.state_dict(), "config": {"model": to_dict(small)}}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match=r"does not fit this architecture \(.*shape of"):
        load_model(tmp_path / "x.pt")


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_model(bad)
    trunc = tmp_path / "t.pt"
    torch.save({"model": {}, "config": {}}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:20])
    with pytest.raises(WeightsError, match="cannot be read as a checkpoint"):
        load_model(trunc)
    foreign = tmp_path / "f.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(WeightsError, match="not an estinet checkpoint"):
        load_model(foreign)


def test_official_pair_loads(tmp_path: Path) -> None:
    coarse, fine = random_official_state(0)
    torch.save({"state_dict": {f"module.{k}": v for k, v in coarse.items()}}, tmp_path / "c.pth.tar")
    torch.save({"state_dict": fine}, tmp_path / "f.pth.tar")
    model, cfg = load_model(f"{tmp_path / 'c.pth.tar'},{tmp_path / 'f.pth.tar'}")
    assert cfg.variant == "official"
    with torch.no_grad():
        _, refined = model(torch.rand(1, 5, 3, 16, 24))
    assert refined.shape == (1, 3, 16, 24)
    with pytest.raises(WeightsError, match="not found"):
        load_model(f"{tmp_path / 'c.pth.tar'},{tmp_path / 'missing'}")


def test_unreadable_checkpoint_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("model: tiny\nsteps: 10\n")
    with pytest.raises(WeightsError) as exc:
        load_model(bad)
    assert "\n" not in str(exc.value) and "cannot be read as a checkpoint" in str(exc.value)
