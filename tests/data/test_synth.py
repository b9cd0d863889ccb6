"""Tests for estinet.data.synth: deterministic, atomic synthetic datasets in the NTURain layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from estinet.data.datasets import NTURain
from estinet.data.rain import RainRenderer, frames_to_float, frames_to_uint8, get_preset
from estinet.data.sources import clean_sources, make_clip
from estinet.data.synth import SynthError, write_synthetic_dataset
from tests.helpers import textured_clip


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A still and a short frame-folder clip, tiny."""
    root = tmp_path_factory.mktemp("clean")
    still = textured_clip(1, 40, 48, seed=1)[0, 0].permute(1, 2, 0).numpy()
    Image.fromarray(np.clip(np.rint(still * 255), 0, 255).astype(np.uint8)).save(root / "still.png")
    clip = textured_clip(6, 36, 44, seed=2, shift=1.0)[0].permute(0, 2, 3, 1).numpy()
    (root / "clip").mkdir()
    for t, frame in enumerate(clip):
        Image.fromarray(np.clip(np.rint(frame * 255), 0, 255).astype(np.uint8)).save(root / "clip" / f"{t}.png")
    return [root / "still.png", root / "clip"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(clean: list[Path], out: Path, **kwargs: object) -> Path:
    options: dict[str, object] = {"preset": "ntu", "seed": 3, "frames": 4, "size": (24, 32)}
    options.update(kwargs)
    return write_synthetic_dataset(clean, out, **options)  # type: ignore[arg-type]


def test_layout_manifest_and_byte_identical_reruns(clean: list[Path], tmp_path: Path) -> None:
    a = _write(clean, tmp_path / "a")
    b = _write(clean, tmp_path / "b")
    files_a, files_b = _files(a), _files(b)
    assert files_a == files_b  # same seed -> byte-identical files
    names = set(files_a)
    for k in (1, 2):
        for t in range(1, 5):
            assert f"Dataset_Training_Synthetic/t{k}_GT/{t:05d}.png" in names
            assert f"Dataset_Training_Synthetic/t{k}_Rain_01/{t:05d}.png" in names
    assert {"contact_sheet.png", "synth.json"} <= names
    assert len(names) == 2 * 2 * 4 + 2
    manifest = json.loads(files_a["synth.json"])
    assert manifest["seed"] == 3 and set(manifest["presets"]) == {"ntu"}
    assert manifest["presets"]["ntu"]["density"] == get_preset("ntu").density
    assert [s["source"]["name"] for s in manifest["sequences"]] == ["still", "clip"]
    assert [s["frames"] for s in manifest["sequences"]] == [4, 4]
    c = _write(clean, tmp_path / "c", seed=4)
    assert (
        _files(c)["Dataset_Training_Synthetic/t1_Rain_01/00001.png"]
        != files_a["Dataset_Training_Synthetic/t1_Rain_01/00001.png"]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_ntu_loader_reads_back_identical_pixels(clean: list[Path], tmp_path: Path) -> None:
    out = _write(clean, tmp_path / "d")
    manifest = json.loads((out / "synth.json").read_text())
    ds = NTURain(out, split="train", num_frames=1)
    assert ds.sequences() == [("t1_Rain_01", 4), ("t2_Rain_01", 4)]
    sources = clean_sources(clean)
    for k, (entry, source) in enumerate(zip(manifest["sequences"], sources, strict=True)):
        # regenerate the pair from the manifest's seeds with the library pieces
        frames, shifts = make_clip(source, entry["frames"], tuple(entry["size"]), entry["clip_seed"], "mixed")
        rainy, _ = RainRenderer(get_preset("ntu"), *entry["size"], seed=entry["rain_seeds"][0]).render_clip(
            frames_to_float(frames), shifts
        )
        np.testing.assert_allclose(np.asarray(entry["content_shifts"]), shifts, atol=1e-4)
        for t in range(entry["frames"]):
            sample = ds[4 * k + t]
            expect_clean = torch.from_numpy(frames[t]).permute(2, 0, 1).float() / 255.0
            expect_rainy = torch.from_numpy(frames_to_uint8(rainy[t])).permute(2, 0, 1).float() / 255.0
            torch.testing.assert_close(sample["clean"][0], expect_clean, rtol=0, atol=0)
            torch.testing.assert_close(sample["rainy"][0], expect_rainy, rtol=0, atol=0)
        assert not np.array_equal(frames_to_uint8(rainy), frames)  # it did rain


def test_versions_share_ground_truth_and_sheet_size(clean: list[Path], tmp_path: Path) -> None:
    out = _write(clean, tmp_path / "v", versions=2, frames=3)
    split = out / "Dataset_Training_Synthetic"
    assert sorted(p.name for p in split.iterdir()) == [
        "t1_GT",
        "t1_Rain_01",
        "t1_Rain_02",
        "t2_GT",
        "t2_Rain_01",
        "t2_Rain_02",
    ]
    assert (split / "t1_Rain_01" / "00001.png").read_bytes() != (split / "t1_Rain_02" / "00001.png").read_bytes()
    ds = NTURain(out, num_frames=3)
    torch.testing.assert_close(ds[0]["clean"], ds[3]["clean"], rtol=0, atol=0)  # both versions pair with t1_GT
    with Image.open(out / "contact_sheet.png") as sheet:
        # two rows of 96-pixel thumbnails with 4-pixel gaps; three (clean | rainy) pairs per row at 4:3
        assert sheet.size == (3 * (128 + 128 + 3 * 4) + 4, 2 * (96 + 4) + 4)
    none = _write(clean, tmp_path / "nosheet", sheet=False)
    assert not (none / "contact_sheet.png").exists()


def test_frame_counts_follow_the_source(clean: list[Path], tmp_path: Path) -> None:
    out = _write(clean, tmp_path / "n", frames=9, sheet=False)
    manifest = json.loads((out / "synth.json").read_text())
    assert [s["frames"] for s in manifest["sequences"]] == [9, 6]  # a still gives 9, the 6-frame clip at most 6


def test_refuses_existing_output_and_overwrites_atomically(clean: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(SynthError, match="already exists; pass overwrite=True"):
        _write(clean, out)
    assert (out / "old.txt").exists()
    with pytest.raises(SynthError, match="does not exist"):  # a failure leaves the old folder and no temporaries
        _write([tmp_path / "missing.mp4"], out, overwrite=True)
    assert (out / "old.txt").exists()
    _write(clean, out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "synth.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_bad_arguments(clean: list[Path], tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="unknown rain preset 'fog'"):
        _write(clean, tmp_path / "x", preset="fog")
    with pytest.raises(SynthError, match="frames must be"):
        _write(clean, tmp_path / "x", frames=0)
    with pytest.raises(SynthError, match="versions must be"):
        _write(clean, tmp_path / "x", versions=0)
    with pytest.raises(SynthError, match="list of clean sources is empty"):
        write_synthetic_dataset([], tmp_path / "x")
    with pytest.raises(SynthError, match="size must be"):
        _write(clean, tmp_path / "x", size=(0, 3))
    assert not list(tmp_path.iterdir())
