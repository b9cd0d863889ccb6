"""Tests for estinet.data.datasets on tiny fixtures written in every supported layout."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from estinet.data.datasets import (
    DATASET_KINDS,
    DatasetError,
    JsonIndex,
    NTURain,
    PairedFolders,
    RainSynComplex25,
    RainSynLight25,
    RainyVideo,
    SyntheticRain,
    open_dataset,
)
from estinet.data.parallax import SceneMotion
from estinet.data.sources import clean_sources
from estinet.data.video_io import write_video
from tests.helpers import textured_clip

H, W = 12, 16


def _frame(seq: int, t: int, gt: bool = False, h: int = H, w: int = W) -> np.ndarray:
    """A frame that encodes its identity: R = 10 * t + seq (+ 100 for ground truth), G = x ramp, B = y ramp."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 10 * t + seq + (100 if gt else 0)
    img[..., 1] = np.arange(w)[None, :] * 8
    img[..., 2] = np.arange(h)[:, None] * 8
    return img


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **({"quality": 100} if path.suffix == ".jpg" else {}))


def _ids(x: torch.Tensor) -> list[int]:
    """Decode the frame identities of a (T, 3, h, w) window from the R channel (rounded, JPEG-tolerant)."""
    return [round(float(v)) for v in (x[:, 0].mean(dim=(1, 2)) * 255.0)]


def _ntu(root: Path, ext: str = "jpg") -> Path:
    train = root / "Dataset_Training_Synthetic"
    for t in range(6):
        _write(train / "t1_GT" / f"{t + 1:05d}.{ext}", _frame(1, t, gt=True))
        _write(train / "t1_Rain_01" / f"{t + 1:05d}.{ext}", _frame(1, t))
        _write(train / "t1_Rain_02" / f"{t + 1:05d}.{ext}", _frame(2, t))
    for t in range(4):
        _write(train / "t2_GT" / f"{t + 1:05d}.{ext}", _frame(3, t, gt=True))
        _write(train / "t2_Rain_01" / f"{t + 1:05d}.{ext}", _frame(3, t))
    test = root / "Dataset_Testing_Synthetic"
    for t in range(3):
        _write(test / "a1_GT" / f"{t + 1:05d}.{ext}", _frame(4, t, gt=True))
        _write(test / "a1_Rain" / f"{t + 1:05d}.{ext}", _frame(4, t))
    for t in range(2):
        _write(root / "Dataset_Testing_RealRain" / "ra1_Rain" / f"{t + 1:05d}.{ext}", _frame(5, t))
    return root


# ---------------------------------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------------------------------


def test_ntu_train_pairs_versions_with_their_gt(tmp_path: Path) -> None:
    ds = NTURain(_ntu(tmp_path), split="train", num_frames=5)
    assert ds.sequences() == [("t1_Rain_01", 6), ("t1_Rain_02", 6), ("t2_Rain_01", 4)]
    assert len(ds) == 16
    s = ds[8]  # t1_Rain_02, frame 2
    assert s["sequence"] == "t1_Rain_02" and s["index"] == 2
    assert s["rainy"].shape == (5, 3, H, W) and s["rainy"].dtype == torch.float32
    assert float(s["rainy"].min()) >= 0.0 and float(s["rainy"].max()) <= 1.0
    assert _ids(s["rainy"]) == [2, 12, 22, 32, 42]
    assert _ids(s["clean"]) == [101, 111, 121, 131, 141]  # rain version 02 shares t1_GT


def test_ntu_windows_reflect_at_the_ends(tmp_path: Path) -> None:
    ds = NTURain(_ntu(tmp_path, "png"), split="train", num_frames=5)
    first, last = ds[0], ds[5]
    assert _ids(first["rainy"]) == [21, 11, 1, 11, 21]  # frames [2, 1, 0, 1, 2]
    assert _ids(last["rainy"]) == [31, 41, 51, 41, 31]  # frames [3, 4, 5, 4, 3]
    assert _ids(first["clean"]) == [121, 111, 101, 111, 121]
    short = NTURain(tmp_path, split="test", num_frames=5)  # 3 frames only
    assert _ids(short[0]["rainy"]) == [24, 14, 4, 14, 24]
    assert _ids(short[2]["rainy"]) == [4, 14, 24, 14, 4]


@pytest.mark.parametrize("size", [1, 3, 5])
def test_every_frame_is_a_centre_exactly_once(tmp_path: Path, size: int) -> None:
    ds = NTURain(_ntu(tmp_path, "png"), split="train", num_frames=size)
    centres = [(s["sequence"], s["index"]) for s in (ds[i] for i in range(len(ds)))]
    expected = [(name, t) for name, n in ds.sequences() for t in range(n)]
    assert centres == expected
    seq_ids = {"t1_Rain_01": 1, "t1_Rain_02": 2, "t2_Rain_01": 3}
    for i in range(len(ds)):
        s = ds[i]
        assert s["rainy"].shape[0] == size
        assert _ids(s["rainy"])[size // 2] == 10 * s["index"] + seq_ids[s["sequence"]]  # the centre is the frame


def test_ntu_test_real_and_split_folder_roots(tmp_path: Path) -> None:
    root = _ntu(tmp_path)
    test = NTURain(root, split="test")
    assert test.sequences() == [("a1_Rain", 3)]
    real = NTURain(root, split="real")
    assert real.sequences() == [("ra1_Rain", 2)] and "clean" not in real[0] and not real.has_clean
    direct = NTURain(root / "Dataset_Testing_Synthetic", split="test")  # the split folder itself
    assert direct.sequences() == test.sequences()


def test_rainsyn_light(tmp_path: Path) -> None:
    base = tmp_path / "video_rain_light" / "test"
    for seq in range(2):
        for t in range(1, 4):
            _write(base / "input" / f"{seq}" / f"{t}.png", _frame(seq, t))
            _write(base / "gt" / f"{seq}" / f"{t}.png", _frame(seq, t, gt=True))
    ds = RainSynLight25(tmp_path, split="test", num_frames=3)
    assert ds.sequences() == [("0", 3), ("1", 3)]
    assert _ids(ds[4]["rainy"]) == [11, 21, 31] and _ids(ds[4]["clean"]) == [111, 121, 131]
    assert RainSynLight25(tmp_path / "video_rain_light", split="test").sequences() == ds.sequences()
    with pytest.raises(DatasetError, match="does not look like RainSynLight25"):
        RainSynLight25(tmp_path, split="train")


def test_rainsyn_complex_pairs_by_number_and_prefix(tmp_path: Path) -> None:
    base = tmp_path / "frames_heavy_train_JPEG"
    for t in range(1, 12):  # rfc-10 and rfc-11 sort after rfc-9
        _write(base / "a" / f"rfc-{t}.jpg", _frame(1, t))
        _write(base / "a" / f"gtc-{t}.jpg", _frame(1, t, gt=True))
    for t in range(1, 4):
        _write(base / "b" / f"rf-{t}.jpg", _frame(2, t))
        _write(base / "b" / f"gt-{t}.jpg", _frame(2, t, gt=True))
    ds = RainSynComplex25(tmp_path, split="train", num_frames=3)
    assert ds.sequences() == [("a", 11), ("b", 3)]
    assert _ids(ds[10]["rainy"]) == [101, 111, 101]  # frame numbers 10, 11, 10 (reflected)
    assert _ids(ds[10]["clean"]) == [201, 211, 201]
    assert _ids(ds[11]["clean"]) == [122, 112, 122]  # sequence b, frame gt-1 (reflected: gt-2, gt-1, gt-2)
    (base / "b" / "gt-3.jpg").rename(base / "b" / "gt-4.jpg")
    with pytest.raises(DatasetError, match=r"rainy numbers without ground truth: \[3\]"):
        RainSynComplex25(tmp_path, split="train")


def test_paired_folders_frames_and_videos(tmp_path: Path) -> None:
    for t in range(4):
        _write(tmp_path / "pairs" / "rainy" / "s1" / f"{t}.png", _frame(1, t))
        _write(tmp_path / "pairs" / "clean" / "s1" / f"{t}.png", _frame(1, t, gt=True))
    frames = np.stack([_frame(2, t, h=16, w=16) for t in range(5)])
    write_video(tmp_path / "pairs" / "rainy" / "v.mkv", frames, 25, kind="lossless")
    write_video(tmp_path / "pairs" / "clean" / "v.mkv", frames, 25, kind="lossless")
    ds = PairedFolders(tmp_path / "pairs", num_frames=3)
    assert ds.sequences() == [("s1", 4), ("v", 5)]
    assert _ids(ds[0]["rainy"]) == [11, 1, 11] and _ids(ds[0]["clean"]) == [111, 101, 111]
    video = [ds[4 + t] for t in (0, 1, 2, 4, 3)]  # backwards access reopens the decoder
    assert [_ids(s["rainy"])[1] for s in video] == [2, 12, 22, 42, 32]
    torch.testing.assert_close(video[0]["rainy"], video[0]["clean"])


def test_datasets_pickle_for_dataloader_workers(tmp_path: Path) -> None:
    frames = np.stack([_frame(2, t, h=16, w=16) for t in range(4)])
    write_video(tmp_path / "clip.mkv", frames, 25, kind="lossless")
    ds = RainyVideo(tmp_path / "clip.mkv", num_frames=3)
    first = ds[1]  # the decoder is open now
    copy = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(copy[1]["rainy"], first["rainy"], rtol=0, atol=0)
    torch.testing.assert_close(copy[3]["rainy"], ds[3]["rainy"], rtol=0, atol=0)


def test_json_index_relative_paths(tmp_path: Path) -> None:
    for t in range(3):
        _write(tmp_path / "frames" / "rain" / "x" / f"{t}.png", _frame(1, t))
        _write(tmp_path / "frames" / "gt" / "x" / f"{t}.png", _frame(1, t, gt=True))
    index = [[{"rain": f"frames/rain/x/{t}.png", "gt": str(tmp_path / f"frames/gt/x/{t}.png")} for t in range(3)]]
    (tmp_path / "idx.json").write_text(json.dumps(index * 2))
    ds = JsonIndex(tmp_path / "idx.json", num_frames=3)
    assert ds.sequences() == [("x", 3), ("x-2", 3)]
    assert _ids(ds[1]["rainy"]) == [1, 11, 21] and _ids(ds[1]["clean"]) == [101, 111, 121]


def test_json_index_errors(tmp_path: Path) -> None:
    _write(tmp_path / "0.png", _frame(1, 0))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read the JSON index"):
        JsonIndex(bad)
    bad.write_text(json.dumps([[{"rain": "0.png", "gt": "missing.png"}]]))
    with pytest.raises(DatasetError, match=r"entry \[0\]\[0\] names 'missing.png'"):
        JsonIndex(bad)
    bad.write_text(json.dumps([[{"rain": "0.png", "gt": "0.png"}, {"rain": "0.png"}]]))
    with pytest.raises(DatasetError, match='only 1 "gt"'):
        JsonIndex(bad)
    bad.write_text(json.dumps([[{"gt": "0.png"}]]))
    with pytest.raises(DatasetError, match='no "rain" path'):
        JsonIndex(bad)


def test_rainy_video_without_ground_truth(tmp_path: Path) -> None:
    frames = np.stack([_frame(3, t, h=16, w=16) for t in range(4)])
    write_video(tmp_path / "clip.mkv", frames, 25, kind="lossless")
    ds = RainyVideo(tmp_path / "clip.mkv", num_frames=3)
    assert ds.sequences() == [("clip", 4)]
    s = ds[3]
    assert "clean" not in s and _ids(s["rainy"]) == [23, 33, 23]
    for t in range(2):
        _write(tmp_path / "folder" / f"{t}.jpg", _frame(4, t))
    assert RainyVideo(tmp_path / "folder").sequences() == [("folder", 2)]
    _write(tmp_path / "one.png", _frame(5, 0))
    assert _ids(RainyVideo(tmp_path / "one.png", num_frames=3)[0]["rainy"]) == [5, 5, 5]


# ---------------------------------------------------------------------------------------------------------------------
# training mode
# ---------------------------------------------------------------------------------------------------------------------


def _same_pairs(root: Path) -> Path:
    """Paired folders whose clean frames equal the rainy ones (so crops and flips must agree exactly)."""
    rng = np.random.default_rng(0)
    for t in range(5):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        _write(root / "rainy" / "s" / f"{t}.png", img)
        _write(root / "clean" / "s" / f"{t}.png", img)
    return root


def test_train_crops_and_flips_are_consistent_and_seeded(tmp_path: Path) -> None:
    root = _same_pairs(tmp_path)
    ds = PairedFolders(root, num_frames=3, train=True, crop=(8, 10), seed=5)
    flips = 0
    full = PairedFolders(root, num_frames=3)
    for i in range(len(ds)):
        s = ds[i]
        assert s["rainy"].shape == (3, 3, 8, 10)
        torch.testing.assert_close(s["rainy"], s["clean"], rtol=0, atol=0)
        torch.testing.assert_close(ds[i]["rainy"], s["rainy"], rtol=0, atol=0)  # deterministic per index
        # the crop is a window of the full frames, possibly mirrored
        whole = full[i]["rainy"]
        found = [
            (y, x, f)
            for f in (False, True)
            for y in range(H - 8 + 1)
            for x in range(W - 10 + 1)
            if torch.equal((whole.flip(-1) if f else whole)[..., y : y + 8, x : x + 10], s["rainy"])
        ]
        assert found
        flips += found[0][2]
    other = PairedFolders(root, num_frames=3, train=True, crop=(8, 10), seed=6)
    assert any(not torch.equal(ds[i]["rainy"], other[i]["rainy"]) for i in range(len(ds)))
    before = [ds[i]["rainy"] for i in range(len(ds))]
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i]["rainy"], before[i]) for i in range(len(ds)))
    assert 0 < flips < len(ds) or len(ds) < 4


def test_train_without_crop_and_eval_ignores_crop(tmp_path: Path) -> None:
    root = _same_pairs(tmp_path)
    assert PairedFolders(root, train=True, flip=False)[0]["rainy"].shape == (5, 3, H, W)
    assert PairedFolders(root, train=False, crop=4)[0]["rainy"].shape == (5, 3, H, W)
    torch.testing.assert_close(
        PairedFolders(root, train=True, flip=False)[2]["rainy"], PairedFolders(root)[2]["rainy"], rtol=0, atol=0
    )
    with pytest.raises(DatasetError, match=r"crop 20x20 \(HxW\) is larger than the 12x16 frames"):
        PairedFolders(root, train=True, crop=20)[0]


def test_dataloader_collates_batches(tmp_path: Path) -> None:
    ds = NTURain(_ntu(tmp_path, "png"), split="train", num_frames=3, train=True, crop=8)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["rainy"].shape == (4, 3, 3, 8, 8) and batch["clean"].shape == (4, 3, 3, 8, 8)
    assert batch["sequence"] == ["t1_Rain_01"] * 4 and batch["index"].tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------------


def test_missing_root_and_unrecognised_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        NTURain(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty does not look like NTURain \(train\).*t1_Rain_01/00001.jpg"):
        NTURain(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not look like RainSynComplex25"):
        RainSynComplex25(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not hold both rainy/ and clean/"):
        PairedFolders(tmp_path / "empty")
    with pytest.raises(DatasetError, match="holds no frames"):
        RainyVideo(tmp_path / "empty")
    with pytest.raises(DatasetError, match="unknown NTURain split 'val'"):
        NTURain(tmp_path, split="val")


def test_missing_ground_truth(tmp_path: Path) -> None:
    _write(tmp_path / "Dataset_Training_Synthetic" / "t1_Rain_01" / "00001.png", _frame(1, 0))
    with pytest.raises(DatasetError, match=r"t1_Rain_01 has no ground truth: expected the folder .*t1_GT"):
        NTURain(tmp_path)
    _write(tmp_path / "p" / "rainy" / "s" / "0.png", _frame(1, 0))
    (tmp_path / "p" / "clean").mkdir()
    with pytest.raises(DatasetError, match="has no ground truth"):
        PairedFolders(tmp_path / "p")


def test_unequal_frame_counts_name_both_paths(tmp_path: Path) -> None:
    train = tmp_path / "Dataset_Training_Synthetic"
    for t in range(3):
        _write(train / "t1_Rain_01" / f"{t}.png", _frame(1, t))
    for t in range(2):
        _write(train / "t1_GT" / f"{t}.png", _frame(1, t, gt=True))
    with pytest.raises(DatasetError, match=r"t1_Rain_01 has 3 rainy frames but its ground truth .*t1_GT has 2"):
        NTURain(tmp_path)


def test_mismatched_frame_sizes(tmp_path: Path) -> None:
    root = tmp_path / "a"
    _write(root / "rainy" / "s" / "0.png", _frame(1, 0))
    _write(root / "clean" / "s" / "0.png", _frame(1, 0, h=H + 2))
    with pytest.raises(DatasetError, match=r"0.png is 16x12 but its ground truth .* is 16x14"):
        PairedFolders(root)  # caught from the headers at construction
    root = tmp_path / "b"
    for t in range(3):
        _write(root / "rainy" / "s" / f"{t}.png", _frame(1, t))
        _write(root / "clean" / "s" / f"{t}.png", _frame(1, t, h=H if t < 2 else H + 2))
    ds = PairedFolders(root, num_frames=3)
    ds[0]  # frames 1, 0, 1 match
    with pytest.raises(DatasetError, match=r"2.png is 16x14 but .*1.png is 16x12 \(WxH\); all frames"):
        ds[2]


def test_bad_arguments(tmp_path: Path) -> None:
    root = _same_pairs(tmp_path)
    with pytest.raises(DatasetError, match="num_frames must be"):
        PairedFolders(root, num_frames=0)
    with pytest.raises(DatasetError, match="crop must be"):
        PairedFolders(root, crop=(0, 4))
    with pytest.raises(IndexError, match="out of range"):
        PairedFolders(root)[5]


# ---------------------------------------------------------------------------------------------------------------------
# open_dataset
# ---------------------------------------------------------------------------------------------------------------------


def test_open_dataset_kinds(tmp_path: Path) -> None:
    _ntu(tmp_path / "ntu", "png")
    ds = open_dataset(f"ntu:{tmp_path / 'ntu'}", split="test", num_frames=3)
    assert isinstance(ds, NTURain) and ds.sequences() == [("a1_Rain", 3)]
    _same_pairs(tmp_path / "pairs")
    ds = open_dataset(f"folders:{tmp_path / 'pairs'}", split="test", num_frames=3)  # split is dropped
    assert isinstance(ds, PairedFolders) and len(ds) == 5
    ds = open_dataset(f"video:{tmp_path / 'pairs' / 'rainy' / 's'}")
    assert isinstance(ds, RainyVideo)
    assert set(DATASET_KINDS) == {"ntu", "rainsyn-light", "rainsyn-complex", "folders", "json", "video", "synthetic"}
    with pytest.raises(DatasetError, match=r"unknown dataset 'nturain:/x'.*ntu, rainsyn-light"):
        open_dataset("nturain:/x")
    with pytest.raises(DatasetError, match="expected KIND:PATH"):
        open_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="names no path"):
        open_dataset("ntu:")


# ---------------------------------------------------------------------------------------------------------------------
# synthetic pairs
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    clip = textured_clip(1, 64, 72, seed=3)[0, 0].permute(1, 2, 0).numpy()
    Image.fromarray(np.clip(np.rint(clip * 255), 0, 255).astype(np.uint8)).save(root / "still.png")
    frames = textured_clip(6, 48, 64, seed=4, shift=1.5)[0].permute(0, 2, 3, 1).numpy()
    for t, f in enumerate(frames):
        _write(root / "clip" / f"{t}.png", np.clip(np.rint(f * 255), 0, 255).astype(np.uint8))
    return root


def test_synthetic_rain_is_deterministic_per_index(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "still.png", clean_dir / "clip"])
    a = SyntheticRain(srcs, preset="heavy,light", seed=7, num_frames=3, crop=24, length=6)
    b = SyntheticRain(srcs, preset=["heavy", "light"], seed=7, num_frames=3, crop=24, length=6)
    c = SyntheticRain(srcs, preset="heavy,light", seed=8, num_frames=3, crop=24, length=6)
    for i in (0, 5, 2):
        sa, sb = a[i], b[i]
        assert sa["rainy"].shape == (3, 3, 24, 24) and sa["clean"].shape == (3, 3, 24, 24)
        assert sa["rain_alpha"].shape == (3, 24, 24) and sa["rain_alpha"].dtype == torch.float32
        assert sa["index"] == i and sa["preset"] in ("heavy", "light") and sa["sequence"] in ("still", "clip")
        for key in ("rainy", "clean", "rain_alpha"):
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)
    assert any(not torch.equal(a[i]["rainy"], c[i]["rainy"]) for i in range(6))
    before = a[1]["rainy"]
    a.set_epoch(1)
    assert not torch.equal(a[1]["rainy"], before)
    assert sum(n for _, n in a.sequences()) == 6


def test_synthetic_rain_alpha_marks_the_rain(clean_dir: Path) -> None:
    ds = SyntheticRain([clean_dir / "still.png"], preset="light", seed=1, num_frames=2, crop=(40, 48), length=3)
    for i in range(3):
        s = ds[i]
        alpha = s["rain_alpha"]
        assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0 and float(alpha.max()) > 0.05
        dry = (alpha == 0)[:, None].expand_as(s["rainy"])  # the light preset has no haze: rain-free pixels are clean
        assert bool(dry.any())
        torch.testing.assert_close(s["rainy"][dry], s["clean"][dry], rtol=0, atol=0)
        wet = (alpha > 0.05)[:, None].expand_as(s["rainy"])
        assert float((s["rainy"] - s["clean"])[wet].abs().mean()) > 0.01  # and the rain is where alpha says


def test_synthetic_rain_via_open_dataset_and_errors(clean_dir: Path) -> None:
    ds = open_dataset("synthetic:heavy", sources=[clean_dir / "clip"], crop=16, length=2, split="train")
    assert isinstance(ds, SyntheticRain) and ds[0]["preset"] == "heavy"
    with pytest.raises(DatasetError, match="unknown rain preset 'drizzle'"):
        SyntheticRain([clean_dir / "clip"], preset="drizzle")
    with pytest.raises(DatasetError, match="sources is empty"):
        SyntheticRain([])
    with pytest.raises(DatasetError, match="does not exist"):
        SyntheticRain([clean_dir / "missing.mp4"])
    with pytest.raises(DatasetError, match="unknown camera preset"):
        SyntheticRain([clean_dir / "clip"], camera="wobbly")


def test_synthetic_rain_compression_applies_to_rainy_and_clean_alike(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "still.png"])
    plain = SyntheticRain(srcs, preset="light", seed=3, num_frames=3, crop=32, length=4)
    zero = SyntheticRain(srcs, preset="light", seed=3, num_frames=3, crop=32, length=4, compression=0.0)
    always = SyntheticRain(srcs, preset="light", seed=3, num_frames=3, crop=32, length=4, compression=1.0)
    for i in range(4):
        a, b, c = plain[i], zero[i], always[i]
        torch.testing.assert_close(a["rainy"], b["rainy"], rtol=0, atol=0)  # 0 changes nothing
        assert not torch.equal(a["clean"], c["clean"])  # the target is compressed too
        assert not torch.equal(a["rainy"], c["rainy"])
        # where the rain left the exact pair alone, the compressed input is closer to the compressed target than to
        # the exact clean frame (the reason the target is compressed the same way)
        dry = (a["rain_alpha"] == 0)[:, None].expand_as(a["rainy"])
        to_same = float((c["rainy"] - c["clean"])[dry].abs().mean())
        assert to_same < float((c["rainy"] - a["clean"])[dry].abs().mean())
    with pytest.raises(DatasetError, match="compression is a probability"):
        SyntheticRain(srcs, compression=1.5)


def test_synthetic_rain_random_preset_and_scene_motion(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "still.png"])
    a = SyntheticRain(srcs, preset="random", seed=5, num_frames=3, crop=32, length=4, scene_motion=1.0)
    b = SyntheticRain(srcs, preset="random", seed=5, num_frames=3, crop=32, length=4, scene_motion=1.0)
    c = SyntheticRain(srcs, preset="random", seed=5, num_frames=3, crop=32, length=4)
    for i in range(4):
        assert a[i]["preset"] == "random"
        torch.testing.assert_close(a[i]["rainy"], b[i]["rainy"], rtol=0, atol=0)
    assert any(not torch.equal(a[i]["clean"], c[i]["clean"]) for i in range(4))  # scene motion changes the clip
    with pytest.raises(DatasetError, match="scene_motion is a probability"):
        SyntheticRain(srcs, scene_motion=-0.1)
    # a SceneMotion says which motion: two parallax layers, no objects, a near layer twice as fast
    layers = SceneMotion(fraction=1.0, parallax=1.0, layers=(2, 2), near_gain=(2.0, 2.0), objects=0.0)
    opts = {"preset": "light", "seed": 5, "num_frames": 3, "crop": 32, "length": 2, "camera": "pan"}
    d, e = SyntheticRain(srcs, scene_motion=layers, **opts), SyntheticRain(srcs, scene_motion=layers, **opts)
    flat = SyntheticRain(srcs, **opts)
    for i in range(2):
        torch.testing.assert_close(d[i]["clean"], e[i]["clean"], rtol=0, atol=0)
        assert not torch.equal(d[i]["clean"], flat[i]["clean"])


def test_synthetic_rain_mask_is_decided_before_compression(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "still.png"])
    exact = SyntheticRain(srcs, preset="light", seed=3, num_frames=3, crop=32, length=3)
    packed = SyntheticRain(srcs, preset="light", seed=3, num_frames=3, crop=32, length=3, compression=1.0)
    for i in range(3):
        a, b = exact[i], packed[i]
        want = (a["rainy"] - a["clean"]).abs().amax(dim=1) > 2.5 / 255  # (T, h, w): changed by more than 2 levels
        assert a["rain_mask"].dtype == torch.bool and torch.equal(a["rain_mask"], want)
        assert torch.equal(b["rain_mask"], a["rain_mask"])  # the same rain, whatever the codec did to the pair


def test_synthetic_rain_still_samples_repeat_the_rainy_centre_frame(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "clip"])
    moving = SyntheticRain(srcs, preset="heavy", seed=4, num_frames=5, crop=32, length=12, camera="pan")
    half = SyntheticRain(srcs, preset="heavy", seed=4, num_frames=5, crop=32, length=12, camera="pan", still=0.5)
    stills = 0
    for i in range(12):
        a, b = moving[i], half[i]
        if torch.equal(a["rainy"], b["rainy"]):  # left as it was: the rain still differs between frames
            assert not torch.equal(b["rainy"][0], b["rainy"][2])
            continue
        stills += 1
        for key in ("rainy", "clean", "rain_alpha", "rain_mask"):  # the centre frame, everywhere in the window
            assert torch.equal(b[key], a[key][2:3].expand_as(a[key])), key
    assert 2 <= stills <= 10  # about half of 12
    for i in range(12):  # which samples are stills depends on (seed, epoch, index) only
        assert torch.equal(half[i]["rainy"], half[i]["rainy"])
    with pytest.raises(DatasetError, match="still is a probability"):
        SyntheticRain(srcs, still=2.0)


def test_synthetic_rain_veil_share_drops_the_haze_of_the_other_samples(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "clip"])
    kwargs = {"preset": "heavy", "seed": 5, "num_frames": 3, "crop": 32, "length": 10, "camera": "static"}
    veiled, default = SyntheticRain(srcs, veil=1.0, **kwargs), SyntheticRain(srcs, **kwargs)
    clear, half = SyntheticRain(srcs, veil=0.0, **kwargs), SyntheticRain(srcs, veil=0.5, **kwargs)
    dropped = 0
    for i in range(10):
        a, b, h = veiled[i], clear[i], half[i]
        assert torch.equal(a["rainy"], default[i]["rainy"])  # veil=1 is the old sample
        background = a["rain_alpha"] == 0  # (T, h, w): the same rain in both
        assert torch.equal(background, b["rain_alpha"] == 0)
        # heavy's haze (0.12) lifts the rain-free pixels; without the veil they are the clean frame's
        assert (a["rainy"] - a["clean"]).abs().amax(dim=1)[background].max() > 4 / 255
        assert (b["rainy"] - b["clean"]).abs().amax(dim=1)[background].max() <= 1 / 255 + 1e-6
        dropped += torch.equal(h["rainy"], b["rainy"])
        assert torch.equal(h["rainy"], b["rainy"]) or torch.equal(h["rainy"], a["rainy"])
    assert 2 <= dropped <= 8  # about half of 10
    with pytest.raises(DatasetError, match="veil is a probability"):
        SyntheticRain(srcs, veil=1.5)


def test_synthetic_rain_veiled_target_is_the_clean_clip_under_the_veil(clean_dir: Path) -> None:
    srcs = clean_sources([clean_dir / "clip"])
    kwargs = {"seed": 6, "num_frames": 3, "crop": 32, "length": 6, "camera": "pan"}
    for preset in ("heavy", "light"):
        plain = SyntheticRain(srcs, preset=preset, **kwargs)
        both = SyntheticRain(srcs, preset=preset, veiled=True, **kwargs)
        for i in range(len(both)):
            a, b = plain[i], both[i]
            for key in ("rainy", "clean", "rain_alpha"):  # the same sample, with one more key
                assert torch.equal(a[key], b[key]), key
            assert "veiled" not in a and b["veiled"].shape == b["clean"].shape
            veil = (b["veiled"] - b["clean"]).abs().amax(dim=1)  # (T, h, w)
            free = b["rain_alpha"] == 0
            if preset == "light":  # no haze: the veiled target is the clean clip, and so is rain_mask
                assert torch.equal(b["veiled"], b["clean"]) and torch.equal(a["rain_mask"], b["rain_mask"])
            else:  # heavy's haze (0.12) everywhere; the rain-free pixels of the rainy clip are the veiled ones
                assert (veil > 2 / 255).float().mean() > 0.9
                assert (b["rainy"] - b["veiled"]).abs().amax(dim=1)[free].max() <= 1 / 255 + 1e-6
                # rain_mask marks the streaks against the veiled target, not the whole veiled frame
                assert a["rain_mask"].float().mean() > 0.99 and b["rain_mask"].float().mean() < 0.9
    # compressed, one-frame and flipped samples carry their veiled target through the same steps
    exact = SyntheticRain(srcs, preset="heavy", veiled=True, still=1.0, **kwargs)
    odd = SyntheticRain(srcs, preset="heavy", veiled=True, compression=1.0, still=1.0, **kwargs)
    for i in range(3):
        s, e = odd[i], exact[i]
        assert torch.equal(s["veiled"][0], s["veiled"][1]) and torch.equal(s["clean"][0], s["clean"][1])
        assert not torch.equal(s["veiled"], e["veiled"])  # through the codec, as the rainy and clean clips
        free = s["rain_alpha"] == 0
        to_veiled = (s["rainy"] - s["veiled"]).abs().amax(dim=1)[free].mean()
        assert to_veiled < (s["rainy"] - s["clean"]).abs().amax(dim=1)[free].mean()
