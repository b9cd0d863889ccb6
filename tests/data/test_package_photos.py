"""Tests for the photographs of the `make data` Debian packages (estinet.data.sources.debian_photo_sources)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estinet.data.sources import (
    HELDOUT,
    MAX_STILL_SIDE,
    debian_photo_sources,
    load_frames,
    still_problem,
    training_sources,
)
from tests.data.test_sources import _texture

INSTALLED = Path("/usr/share/wallpapers/Path").is_dir() and Path("/usr/share/doc/opencv-doc/examples/data").is_dir()


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    photo = _texture(300, 400, seed=1)[0]  # (300, 400, 3) colourful
    _save(root / "usr/share/backgrounds/mate/nature/Garden.jpg", photo)
    _save(root / "usr/share/backgrounds/mate/nature/Dune.jpg", np.full((300, 400, 3), (120, 90, 60), np.uint8))  # flat
    _save(root / "usr/share/backgrounds/mate/nature/Aqua.jpg", photo[:200])  # too small
    _save(root / "usr/share/backgrounds/mate/nature/Notlisted.jpg", photo)
    _save(root / "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg", np.repeat(photo[..., :1], 3, axis=2))  # grey
    _save(root / "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", photo)
    big = np.asarray(Image.fromarray(photo).resize((2000, 1500)))
    _save(root / "usr/share/wallpapers/Path/contents/images/2000x1500.jpg", big)
    _save(root / "usr/share/wallpapers/Path/contents/images/1080x1920.jpg", big[:, :200])
    _save(root / "usr/share/wallpapers/Path/contents/screenshot.jpg", photo)
    _save(root / "usr/share/doc/opencv-doc/examples/data/fruits.jpg", photo)
    return root


def test_discovers_listed_photographs_with_names_and_origins(fake_root: Path) -> None:
    found = debian_photo_sources(fake_root)
    assert [(s.name, s.origin) for s in found] == [
        ("opencv-fruits", "opencv-doc"),
        ("mate-garden", "mate-backgrounds"),
        ("lomiri-kleiber", "lomiri-wallpapers-20.04"),
        ("plasma-path", "plasma-workspace-wallpapers"),
    ]
    assert all(s.kind == "still" and s.camera == "static" and s.frames == 1 for s in found)
    assert len({s.name for s in found}) == len(found)


def test_large_photographs_are_downscaled_on_load(fake_root: Path) -> None:
    plasma = next(s for s in debian_photo_sources(fake_root) if s.name == "plasma-path")
    assert plasma.path.name == "2000x1500.jpg"  # the largest landscape image of the wallpaper
    assert (plasma.height, plasma.width) == (960, MAX_STILL_SIDE)
    assert load_frames(plasma, 0, 2).shape == (2, 960, MAX_STILL_SIDE, 3)


def test_absent_packages_give_nothing(tmp_path: Path) -> None:
    assert debian_photo_sources(tmp_path) == []


def test_still_problem_rules() -> None:
    photo = _texture(300, 400, seed=2)[0]
    assert still_problem(photo) is None
    assert "too small" in still_problem(photo[:255])  # type: ignore[operator]
    assert still_problem(np.repeat(photo[..., 1:2], 3, axis=2)) == "grey"
    assert "flat" in still_problem(np.full((300, 400, 3), (200, 100, 50), np.uint8))  # type: ignore[operator]


@pytest.mark.skipif(not INSTALLED, reason="the `make data` Debian packages are not installed")
def test_installed_packages_give_at_least_50_training_scenes() -> None:
    found = training_sources()
    assert len(found) >= 50
    assert not HELDOUT & {s.name for s in found}
    assert {"opencv-doc", "mate-backgrounds", "plasma-workspace-wallpapers"} <= {s.origin for s in found}


def test_data_root_environment_moves_the_search(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ESTINET_DATA_ROOT points the training sources at a packed copy of the photographs (a machine without them)."""
    from estinet.data import sources

    monkeypatch.setenv(sources.DATA_ROOT_ENV, str(fake_root))
    sources._package_stills_cached.cache_clear()
    try:
        names = {s.name for s in training_sources()}
        assert {"opencv-fruits", "mate-garden", "lomiri-kleiber", "plasma-path"} <= names
    finally:
        monkeypatch.delenv(sources.DATA_ROOT_ENV)
        sources._package_stills_cached.cache_clear()


def test_pack_scenes_keeps_every_photograph(fake_root: Path, tmp_path: Path) -> None:
    """benchmarks/pack_scenes.py: the packed tree yields the same sources, downscaled."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import pack_scenes
    finally:
        sys.path.pop(0)
    files, _ = pack_scenes.pack(tmp_path / "packed", max_side=512, quality=85, root=fake_root)
    packed = debian_photo_sources(tmp_path / "packed")
    assert files == 4 and [s.name for s in packed] == [s.name for s in debian_photo_sources(fake_root)]
    assert max(max(s.height, s.width) for s in packed) <= 512
