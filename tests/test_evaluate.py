"""Tests of estinet.evaluate: the protocol (every frame once, skip-ends, means), baselines, reports and errors."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio

import estinet.evaluate as ev
from estinet.data.datasets import PairedFolders, SyntheticRain
from estinet.data.video_io import VideoIOError
from estinet.data.windows import window_indices
from estinet.evaluate import (
    CSV_COLUMNS,
    EvalError,
    eval_main,
    evaluate,
    input_predictor,
    median_predictor,
)
from estinet.metrics import METRIC_NAMES
from tests.helpers import textured_clip

H, W = 16, 20
LENGTHS = {"seqA": 4, "seqB": 7}
Y_GAIN = (65.481 + 128.553 + 24.966) / 255.0  # Y change for a +1 change of R, G and B


def _save(path: Path, frame: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)


def _write_pairs(root: Path, rainy: dict[str, np.ndarray], clean: dict[str, np.ndarray]) -> Path:
    """Paired folders ``rainy/<seq>/<t>.png`` and ``clean/<seq>/<t>.png`` from (T, H, W, 3) uint8 arrays."""
    for name in rainy:
        for t in range(rainy[name].shape[0]):
            _save(root / "rainy" / name / f"{t}.png", rainy[name][t])
            _save(root / "clean" / name / f"{t}.png", clean[name][t])
    return root


@pytest.fixture()
def pairs(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random rainy/clean pairs of two sequences of unequal length (4 and 7 frames)."""
    rng = np.random.default_rng(0)
    clean = {n: rng.integers(0, 256, (t, H, W, 3), dtype=np.uint8) for n, t in LENGTHS.items()}
    noise = {n: rng.integers(-40, 41, c.shape) for n, c in clean.items()}
    rainy = {n: np.clip(c.astype(int) + noise[n], 0, 255).astype(np.uint8) for n, c in clean.items()}
    return _write_pairs(tmp_path / "pairs", rainy, clean), rainy, clean


def _offset_pairs(tmp_path: Path, offsets: dict[str, int]) -> Path:
    """Pairs whose rainy frames are the clean ones plus a constant k per sequence (no clipping)."""
    rng = np.random.default_rng(1)
    clean = {n: rng.integers(20, 200, (LENGTHS[n], H, W, 3), dtype=np.uint8) for n in offsets}
    rainy = {n: (c + offsets[n]).astype(np.uint8) for n, c in clean.items()}
    return _write_pairs(tmp_path / "offset", rainy, clean)


def _y(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float64)
    return 16.0 + (65.481 * f[..., 0] + 128.553 * f[..., 1] + 24.966 * f[..., 2]) / 255.0


def _ssim_matlab(a: np.ndarray, b: np.ndarray) -> float:
    """Whole-map SSIM with replicate padding, built on scipy (independent of estinet.metrics)."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=1.5, truncate=3.5, mode="nearest")

    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return float(s.mean())


def _report_json(tmp_path: Path, spec: str, **kwargs: Any) -> dict[str, Any]:
    out = tmp_path / "report.json"
    assert eval_main(spec, json_out=out, progress=False, **kwargs) == 0
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------------------------------
# Report shape
# ----------------------------------------------------------------------------------------------------------------------


def test_json_has_exactly_the_documented_shape(pairs: tuple[Path, Any, Any], tmp_path: Path, capsys: Any) -> None:
    root, _, _ = pairs
    report = _report_json(tmp_path, f"folders:{root}", method="input")
    metrics = set(METRIC_NAMES)
    assert {"sequences", "sequence_mean", "frame_mean", "fps"} <= set(report)
    assert list(report["sequences"]) == ["seqA", "seqB"]
    for name, row in report["sequences"].items():
        assert set(row) == {"frames", *metrics}
        assert row["frames"] == LENGTHS[name] and isinstance(row["frames"], int)
        assert all(isinstance(row[m], float) for m in metrics)
    assert set(report["sequence_mean"]) == metrics and set(report["frame_mean"]) == metrics
    assert isinstance(report["fps"], float) and report["fps"] > 0
    assert report["method"] == "input" and report["skip_ends"] == 0 and report["frames_processed"] == 11
    assert report["background_psnr_y"] is None  # no rain_alpha in folder datasets
    assert isinstance(report["brightness_bias"], float)
    out = capsys.readouterr().out
    assert "| sequence | frames | PSNR-Y |" in out and "| seqA | 4 |" in out and "**frame mean**" in out


def test_markdown_table_means_and_protocol_line(pairs: tuple[Path, Any, Any]) -> None:
    root, _, _ = pairs
    report = evaluate(input_predictor, PairedFolders(root, num_frames=1), skip_ends=1, progress=False, method="input")
    lines = report.to_markdown().splitlines()
    assert lines[0].startswith("| sequence | frames | PSNR-Y | SSIM-Y | PSNR-RGB | SSIM-RGB | bias Y |")
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 2 + 2  # header, rule, two sequences, two means
    assert table[2].startswith("| seqA | 2 | ") and table[3].startswith("| seqB | 5 | ")
    assert table[4].startswith("| **sequence mean** (2 seq.) | 7 | ") and table[5].startswith("| **frame mean** | 7 |")
    assert f"{report.sequence_mean['psnr_y']:.2f}" in table[4] and f"{report.frame_mean['ssim_y']:.4f}" in table[5]
    protocol = lines[len(table) + 1]  # one blank line under the table
    assert protocol.startswith("Protocol:")
    for words in ("BT.601, unrounded", "Gaussian 11/1.5", "no border crop", "uint8", "skip-ends 1"):
        assert words in protocol
    assert any(line.startswith("Speed of `input`:") and "frames/s" in line for line in lines)


def test_csv_columns_rows_and_values_match_json(pairs: tuple[Path, Any, Any], tmp_path: Path) -> None:
    root, _, _ = pairs
    csv_path, json_path = tmp_path / "out" / "r.csv", tmp_path / "out" / "r.json"
    eval_main(f"folders:{root}", method="median", csv_out=csv_path, json_out=json_path, progress=False)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    header = csv_path.read_text().splitlines()[0].split(",")
    assert tuple(header) == CSV_COLUMNS
    assert CSV_COLUMNS[:6] == ("sequence", "frames", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
    assert [r["sequence"] for r in rows] == ["seqA", "seqB", "sequence_mean", "frame_mean"]
    report = json.loads(json_path.read_text())
    for r in rows[:2]:
        assert int(r["frames"]) == report["sequences"][r["sequence"]]["frames"]
        for m in METRIC_NAMES:
            assert float(r[m]) == report["sequences"][r["sequence"]][m]  # full precision
        assert r["background_psnr_y"] == ""  # not available without rain_alpha
    for m in METRIC_NAMES:
        assert float(rows[2][m]) == report["sequence_mean"][m] and float(rows[3][m]) == report["frame_mean"][m]
    assert float(rows[2]["brightness_bias"]) == report["brightness_bias"]


# ----------------------------------------------------------------------------------------------------------------------
# Protocol
# ----------------------------------------------------------------------------------------------------------------------


def test_input_method_matches_skimage_and_scipy(pairs: tuple[Path, Any, Any]) -> None:
    root, rainy, clean = pairs
    report = evaluate(input_predictor, PairedFolders(root, num_frames=5), progress=False)
    frame_rows = []
    for name in LENGTHS:
        rows = [
            {
                "psnr_y": peak_signal_noise_ratio(_y(clean[name][t]), _y(rainy[name][t]), data_range=255),
                "psnr_rgb": peak_signal_noise_ratio(clean[name][t], rainy[name][t], data_range=255),
                "ssim_y": _ssim_matlab(_y(rainy[name][t]), _y(clean[name][t])),
                "ssim_rgb": np.mean([_ssim_matlab(rainy[name][t][..., c], clean[name][t][..., c]) for c in range(3)]),
            }
            for t in range(LENGTHS[name])
        ]
        frame_rows += rows
        for m in METRIC_NAMES:
            assert report.sequences[name][m] == pytest.approx(np.mean([r[m] for r in rows]), rel=1e-10)
    for m in METRIC_NAMES:
        seq_mean = np.mean([report.sequences[n][m] for n in LENGTHS])
        assert report.sequence_mean[m] == pytest.approx(seq_mean, rel=1e-12)
        assert report.frame_mean[m] == pytest.approx(np.mean([r[m] for r in frame_rows]), rel=1e-10)
    assert report.sequence_mean["psnr_y"] < 30  # the fixture's noise is strong: the test can fail


def _recording_metrics(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Patch the evaluator's frame_metrics to record every ground-truth frame it scores."""
    seen: list[bytes] = []
    original = ev.frame_metrics

    def record(pred: Any, gt: Any) -> dict[str, float]:
        seen.append(np.asarray(gt).tobytes())
        return original(pred, gt)

    monkeypatch.setattr(ev, "frame_metrics", record)
    return seen


@pytest.mark.parametrize("num_frames", [1, 5])
def test_every_ground_truth_frame_is_scored_exactly_once(
    pairs: tuple[Path, Any, Any], monkeypatch: pytest.MonkeyPatch, num_frames: int
) -> None:
    root, _, clean = pairs
    seen = _recording_metrics(monkeypatch)
    report = evaluate(input_predictor, PairedFolders(root, num_frames=num_frames), progress=False)
    expected = [clean[n][t].tobytes() for n in LENGTHS for t in range(LENGTHS[n])]
    assert seen == expected  # each frame once, in order, paired with its own ground truth
    assert {n: r["frames"] for n, r in report.sequences.items()} == LENGTHS
    assert report.frames_processed == sum(LENGTHS.values())


def test_skip_ends_counts_and_errors(pairs: tuple[Path, Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, clean = pairs
    seen = _recording_metrics(monkeypatch)
    report = evaluate(input_predictor, PairedFolders(root, num_frames=1), skip_ends=1, progress=False)
    expected = [clean[n][t].tobytes() for n in LENGTHS for t in range(1, LENGTHS[n] - 1)]
    assert seen == expected
    assert {n: r["frames"] for n, r in report.sequences.items()} == {"seqA": 2, "seqB": 5}
    assert report.frames_processed == 11  # the method still restores every frame
    with pytest.raises(ValueError, match="skip_ends=2 drops all 4 frames"):
        evaluate(input_predictor, PairedFolders(root, num_frames=1), skip_ends=2, progress=False)
    with pytest.raises(EvalError, match="skip_ends must be a non-negative int, got -1"):
        evaluate(input_predictor, PairedFolders(root, num_frames=1), skip_ends=-1, progress=False)


def test_sequence_mean_and_frame_mean_differ_with_unequal_lengths(tmp_path: Path) -> None:
    root = _offset_pairs(tmp_path, {"seqA": 1, "seqB": 4})
    report = evaluate(input_predictor, PairedFolders(root, num_frames=1), progress=False)
    rgb = {"seqA": 20 * math.log10(255 / 1), "seqB": 20 * math.log10(255 / 4)}
    y = {n: 20 * math.log10(255 / (k * Y_GAIN)) for n, k in (("seqA", 1), ("seqB", 4))}
    for n in LENGTHS:
        assert report.sequences[n]["psnr_rgb"] == pytest.approx(rgb[n], rel=1e-12)
        assert report.sequences[n]["psnr_y"] == pytest.approx(y[n], rel=1e-12)
    assert report.sequence_mean["psnr_rgb"] == pytest.approx((rgb["seqA"] + rgb["seqB"]) / 2, rel=1e-12)
    frame_mean = (4 * rgb["seqA"] + 7 * rgb["seqB"]) / 11
    assert report.frame_mean["psnr_rgb"] == pytest.approx(frame_mean, rel=1e-12)
    assert abs(report.sequence_mean["psnr_rgb"] - report.frame_mean["psnr_rgb"]) > 1.0
    bias = {"seqA": 1 * Y_GAIN, "seqB": 4 * Y_GAIN}
    assert report.brightness_bias == pytest.approx((bias["seqA"] + bias["seqB"]) / 2, rel=1e-12)
    assert report.frame_mean_extras["brightness_bias"] == pytest.approx((4 + 28) * Y_GAIN / 11, rel=1e-12)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_constant_offset_predictor_gives_the_analytic_psnr(pairs: tuple[Path, Any, Any], k: int) -> None:
    root, _, _ = pairs
    clean_root = root.parent / "same"
    for name in LENGTHS:  # rainy = clean, so the predictor's offset is the whole error; keep values <= 255 - k
        frames = sorted((root / "clean" / name).iterdir())
        for f in frames:
            img = np.asarray(Image.open(f)) // 2
            _save(clean_root / "rainy" / name / f.name, img)
            _save(clean_root / "clean" / name / f.name, img)

    def offset(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for f in frames:
            yield f + np.uint8(k)

    report = evaluate(offset, PairedFolders(clean_root, num_frames=1), progress=False)
    for stats in (report.sequence_mean, report.frame_mean, *report.sequences.values()):
        assert stats["psnr_rgb"] == pytest.approx(20 * math.log10(255 / k), rel=1e-12)
        assert stats["psnr_y"] == pytest.approx(20 * math.log10(255 / (k * Y_GAIN)), rel=1e-12)
    assert report.brightness_bias == pytest.approx(k * Y_GAIN, rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------------------------------


def test_median_removes_one_frame_impulses_exactly() -> None:
    rng = np.random.default_rng(2)
    background = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    frames = []
    for t in range(9):  # a static scene; frame t has a bright 2x2 impulse at its own place
        f = background.copy()
        f[(t // 3) * 4 : (t // 3) * 4 + 2, (t % 3) * 4 : (t % 3) * 4 + 2] = 255 - background[0, 0]
        frames.append(f)
    out = list(median_predictor(iter(frames)))
    assert len(out) == 9
    for t, o in enumerate(out):
        assert o.dtype == np.uint8 and o.shape == background.shape
        np.testing.assert_array_equal(o, background, err_msg=f"frame {t}")
    assert any(not np.array_equal(f, background) for f in frames)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 6, 9])
def test_median_matches_a_brute_force_reflect_window(length: int) -> None:
    rng = np.random.default_rng(length)
    frames = [rng.integers(0, 256, (5, 6, 3), dtype=np.uint8) for _ in range(length)]
    out = list(median_predictor(f for f in frames))
    assert len(out) == length
    for t in range(length):
        window = np.stack([frames[i] for i in window_indices(length, t, 5, mode="reflect")])
        np.testing.assert_array_equal(out[t], np.median(window, axis=0).astype(np.uint8))


def test_median_streams_with_bounded_lookahead() -> None:
    reads: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        for t in range(40):
            reads.append(t)
            yield np.full((2, 3, 3), t, np.uint8)

    outputs = median_predictor(frames())
    for t in range(40):
        out = next(outputs)
        assert len(reads) <= t + 5  # never more than the window's size ahead
        assert int(out[0, 0, 0]) == min(
            max(t, 1), 38
        )  # a ramp: [2, 1, 0, 1, 2] -> 1 at t = 0, [37, 38, 39, 38, 37] -> 38


def test_median_errors() -> None:
    with pytest.raises(EvalError, match="median window size must be a positive int, got 0"):
        list(median_predictor([np.zeros((2, 2, 3), np.uint8)], size=0))
    with pytest.raises(EvalError, match="expected a uint8 numpy array"):
        list(median_predictor([np.zeros((2, 2, 3), np.float32)]))


# ----------------------------------------------------------------------------------------------------------------------
# Saving frames, timing, synthetic extras
# ----------------------------------------------------------------------------------------------------------------------


def test_save_frames_writes_one_png_per_frame(pairs: tuple[Path, Any, Any], tmp_path: Path) -> None:
    root, rainy, _ = pairs
    out = tmp_path / "saved"
    evaluate(input_predictor, PairedFolders(root, num_frames=1), skip_ends=1, save_frames=out, progress=False)
    for name, n in LENGTHS.items():
        files = sorted(p.name for p in (out / name).iterdir() if not p.name.startswith("."))
        assert files == [f"{t + 1:08d}.png" for t in range(n)]  # every frame, also the unscored ends
        for t in range(n):
            np.testing.assert_array_equal(np.asarray(Image.open(out / name / f"{t + 1:08d}.png")), rainy[name][t])
    with pytest.raises(VideoIOError, match="already exists"):
        evaluate(input_predictor, PairedFolders(root, num_frames=1), save_frames=out, progress=False)
    evaluate(median_predictor, PairedFolders(root, num_frames=1), save_frames=out, overwrite=True, progress=False)
    assert not np.array_equal(np.asarray(Image.open(out / "seqB" / "00000004.png")), rainy["seqB"][3])


class _Clips:
    """A map-style dataset of clips, like SyntheticRain in evaluation mode (rainy/clean/rain_alpha)."""

    def __init__(self, clips: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rainy, clean, alpha = self.clips[i]
        sample = {
            "rainy": torch.from_numpy(rainy).permute(0, 3, 1, 2).float() / 255,
            "clean": torch.from_numpy(clean).permute(0, 3, 1, 2).float() / 255,
            "sequence": "crafted",
            "index": i,
        }
        if alpha is not None:
            sample["rain_alpha"] = torch.from_numpy(alpha)
        return sample


def test_background_psnr_and_brightness_bias_on_a_crafted_case() -> None:
    clean = np.full((3, 8, 10, 3), 100, np.uint8)
    rainy = clean.copy()
    rainy[:, :, :5] += 2  # background (alpha = 0): a small error of 2 levels
    rainy[:, :, 5:] += 10  # rain (alpha > 0): 10 levels
    alpha = np.zeros((3, 8, 10), np.float32)
    alpha[:, :, 5:] = 0.3
    alpha[2] = 0.3  # the last frame has no rain-free pixel: left out of the background PSNR
    report = evaluate(input_predictor, _Clips([(rainy, clean, alpha)]), progress=False)
    assert list(report.sequences) == ["crafted-0000"]
    expected_bg = 20 * math.log10(255 / (2 * Y_GAIN))
    assert report.background_psnr_y == pytest.approx(expected_bg, rel=1e-12)
    assert report.sequence_extras["crafted-0000"]["background_psnr_y"] == pytest.approx(expected_bg, rel=1e-12)
    assert report.brightness_bias == pytest.approx(6 * Y_GAIN, rel=1e-12)  # mean of 2 and 10 over the pixels
    assert report.sequences["crafted-0000"]["psnr_y"] < expected_bg - 5  # the rain dominates the full-frame PSNR
    data = json.loads(report.to_json())
    assert data["background_psnr_y"] == report.background_psnr_y and data["brightness_bias"] == report.brightness_bias
    assert "bg PSNR-Y" in report.to_markdown()


def test_synthetic_rain_input_has_a_perfect_background(tmp_path: Path) -> None:
    frames = textured_clip(6, 40, 48, seed=4, shift=1.0)[0].permute(0, 2, 3, 1).numpy()
    for t, f in enumerate(frames):
        _save(tmp_path / "clean" / "clip" / f"{t}.png", np.clip(np.rint(f * 255), 0, 255).astype(np.uint8))
    report = _report_json(
        tmp_path,
        "synthetic:light",
        method="input",
        synthetic_sources=[tmp_path / "clean" / "clip"],
        clips=2,
        clip_frames=4,
        crop=32,
        seed=3,
    )
    assert list(report["sequences"]) == ["clip-0000", "clip-0001"]
    assert all(r["frames"] == 4 for r in report["sequences"].values())
    assert report["background_psnr_y"] == 100.0  # the light preset leaves rain-free pixels untouched (PSNR cap)
    assert report["sequence_mean"]["psnr_y"] < 60 and report["brightness_bias"] > 0  # rain brightens the input
    direct = evaluate(
        input_predictor,
        SyntheticRain([tmp_path / "clean" / "clip"], "light", seed=3, num_frames=4, crop=32, length=2, train=False),
        progress=False,
    )
    assert direct.sequence_mean == report["sequence_mean"]


class _SlowFolders(PairedFolders):
    """Paired folders whose frames take 30 ms each to read."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        time.sleep(0.03)
        return super().__getitem__(index)


def test_fps_times_the_predictor_only(pairs: tuple[Path, Any, Any]) -> None:
    root, _, _ = pairs

    def slow(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for f in frames:
            time.sleep(0.02)
            yield f

    # the frames are read inside the predictor's calls (streaming), yet reading is not timed
    slow_read = evaluate(input_predictor, _SlowFolders(root, num_frames=1), progress=False)
    assert slow_read.frames_processed == 11 and slow_read.method_seconds < 0.15  # reading took >= 0.33 s
    clean = np.full((4, 6, 6, 3), 50, np.uint8)
    slow_method = evaluate(slow, _Clips([(clean, clean, None)] * 3), progress=False)
    assert slow_method.method_seconds >= 12 * 0.02
    assert slow_method.fps == pytest.approx(12 / slow_method.method_seconds)


# ----------------------------------------------------------------------------------------------------------------------
# The model method and errors
# ----------------------------------------------------------------------------------------------------------------------


def test_model_method_builds_the_derainer_lazily(
    pairs: tuple[Path, Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[Any, dict[str, Any]]] = []

    class FakeDerainer:
        def __init__(self, weights: Any, **kwargs: Any) -> None:
            created.append((weights, kwargs))

        def derain_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            for f in frames:
                yield f // 2

    fake = types.ModuleType("estinet.inference")
    fake.Derainer = FakeDerainer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "estinet.inference", fake)
    root, _, _ = pairs
    report = _report_json(tmp_path, f"folders:{root}", weights="w.safetensors", variant="estinet", device="cpu")
    assert created == [("w.safetensors", {"device": "cpu", "variant": "estinet"})]
    assert report["method"] == "model" and report["brightness_bias"] < -20  # halving darkens the frames
    ev.model_predictor("w.safetensors", device="cpu", lift_veil=True)
    assert created[-1] == ("w.safetensors", {"device": "cpu", "lift_veil": True})


def test_method_and_weights_errors(pairs: tuple[Path, Any, Any]) -> None:
    root, _, _ = pairs
    spec = f"folders:{root}"
    with pytest.raises(EvalError, match="unknown method 'bogus'; use one of model, input, median"):
        eval_main(spec, method="bogus", progress=False)
    with pytest.raises(EvalError, match="method 'model' needs weights"):
        eval_main(spec, progress=False)
    with pytest.raises(EvalError, match="method 'median' uses no network"):
        eval_main(spec, method="median", weights="tiny", progress=False)
    with pytest.raises(EvalError, match="is a folder"):
        eval_main(spec, method="input", json_out=root, progress=False)


def test_bad_predictors_and_datasets(pairs: tuple[Path, Any, Any], tmp_path: Path) -> None:
    root, _, _ = pairs
    ds = PairedFolders(root, num_frames=1)
    with pytest.raises(EvalError, match=r"returned 3 frames for the 4 rainy frames"):
        evaluate(lambda frames: list(frames)[:3], ds, progress=False)
    with pytest.raises(EvalError, match="more frames than the 4"):
        evaluate(lambda frames: [f for f in frames for _ in range(2)], ds, progress=False)
    with pytest.raises(EvalError, match="expected a uint8 numpy array"):
        evaluate(lambda frames: (f / 255.0 for f in frames), ds, progress=False)
    with pytest.raises(EvalError, match="has shape"):
        evaluate(lambda frames: (f[1:] for f in frames), ds, progress=False)
    with pytest.raises(EvalError, match="training mode"):
        evaluate(input_predictor, PairedFolders(root, train=True), progress=False)
    _save(tmp_path / "real" / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(EvalError, match="no ground truth"):
        eval_main(f"video:{tmp_path / 'real'}", method="input", progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        eval_main("nonsense", method="input", progress=False)


def _streak_clip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two frames: a flat grey background, a bright 1-px vertical streak (+40 levels) in column 6, alpha on it."""
    clean = np.full((2, 12, 14, 3), 90, np.uint8)
    rainy = clean.copy()
    rainy[:, 2:10, 6] += 40
    alpha = np.zeros((2, 12, 14), np.float32)
    alpha[:, 2:10, 6] = 0.4
    return rainy, clean, alpha


def _constant_predictor(outputs: np.ndarray) -> ev.Predictor:
    def predict(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for t, _ in enumerate(frames):
            yield outputs[t]

    return predict


def test_streaks_removed_is_zero_for_the_input_and_100_for_the_ground_truth() -> None:
    rainy, clean, alpha = _streak_clip()
    data = _Clips([(rainy, clean, alpha)])
    assert evaluate(input_predictor, data, progress=False).streaks_removed == pytest.approx(0.0, abs=1e-12)
    assert evaluate(_constant_predictor(clean), data, progress=False).streaks_removed == pytest.approx(100.0)


def test_streaks_removed_ignores_a_veil_and_counts_half_a_streak() -> None:
    rainy, clean, alpha = _streak_clip()
    data = _Clips([(rainy, clean, alpha)])
    veil = rainy.copy()
    veil[:] -= 10  # a uniform brightness change leaves the streak's fine detail where it was
    report = evaluate(_constant_predictor(veil), data, progress=False)
    assert report.streaks_removed == pytest.approx(0.0, abs=1e-9)
    assert report.sequence_mean["psnr_y"] != evaluate(input_predictor, data, progress=False).sequence_mean["psnr_y"]
    half = rainy.copy()
    half[:, 2:10, 6] = 110  # the streak dimmed from +40 to +20 levels: a quarter of its energy is left
    report = evaluate(_constant_predictor(half), data, progress=False)
    assert report.streaks_removed == pytest.approx(75.0, rel=1e-9)
    assert report.sequence_extras["crafted-0000"]["streaks_removed"] == report.streaks_removed
    assert json.loads(report.to_json())["streaks_removed"] == report.streaks_removed
    assert "75.0%" in report.to_markdown()


def test_streaks_removed_is_none_without_rain_alpha_and_skips_frames_without_streaks() -> None:
    rainy, clean, alpha = _streak_clip()
    assert evaluate(input_predictor, _Clips([(rainy, clean, None)]), progress=False).streaks_removed is None
    rainy[1] = clean[1]  # the second frame has no streak: it is left out, not counted as 0 or 100
    alpha[1] = 0.0
    half = rainy.copy()
    half[0, 2:10, 6] = 110
    report = evaluate(_constant_predictor(half), _Clips([(rainy, clean, alpha)]), progress=False)
    assert report.streaks_removed == pytest.approx(75.0, rel=1e-9)
    assert report.frame_mean_extras["streaks_removed"] == pytest.approx(75.0, rel=1e-9)


def test_streak_high_pass_matches_the_training_loss_high_pass() -> None:
    from estinet.losses import high_pass

    y = np.random.default_rng(3).uniform(0, 255, (9, 13))
    expected = high_pass(torch.from_numpy(y)[None, None]).numpy()[0, 0]
    np.testing.assert_allclose(ev._high_pass(y), expected, rtol=1e-10, atol=1e-9)


def test_open_eval_dataset_compression_is_seeded_and_applied_to_both_sides(tmp_path: Path) -> None:
    frames = textured_clip(6, 40, 48, seed=5, shift=1.0)[0].permute(0, 2, 3, 1).numpy()
    for t, f in enumerate(frames):
        _save(tmp_path / "clip" / f"{t}.png", np.clip(np.rint(f * 255), 0, 255).astype(np.uint8))
    opts = {"synthetic_sources": [tmp_path / "clip"], "clips": 2, "clip_frames": 3, "crop": 32, "seed": 3}
    exact = ev.open_eval_dataset("synthetic:heavy", **opts)[0]
    first = ev.open_eval_dataset("synthetic:heavy", compression=1.0, **opts)[0]
    again = ev.open_eval_dataset("synthetic:heavy", compression=1.0, **opts)[0]
    for key in ("rainy", "clean"):
        assert torch.equal(first[key], again[key])  # the codec and its quality are drawn from the seed
        assert not torch.equal(first[key], exact[key])  # both sides went through the codec
        assert (first[key] - exact[key]).abs().mean() < 0.05  # a lossy copy, not another clip


def test_open_eval_dataset_veil_zero_renders_streaks_without_their_haze(tmp_path: Path) -> None:
    frames = textured_clip(6, 40, 48, seed=5, shift=1.0)[0].permute(0, 2, 3, 1).numpy()
    for t, f in enumerate(frames):
        _save(tmp_path / "clip" / f"{t}.png", np.clip(np.rint(f * 255), 0, 255).astype(np.uint8))
    opts = {"synthetic_sources": [tmp_path / "clip"], "clips": 1, "clip_frames": 3, "crop": 32, "seed": 3}
    for veil, veiled in ((1.0, True), (0.0, False)):
        sample = ev.open_eval_dataset("synthetic:heavy", veil=veil, **opts)[0]  # `heavy` has a uniform haze of 0.12
        free = (sample["rain_alpha"] == 0)[:, None].expand_as(sample["rainy"])  # (T, 3, h, w) rain-free pixels
        assert free.float().mean() > 0.2
        gap = (sample["rainy"] - sample["clean"]).abs()[free].max().item()
        assert (gap > 0.02) == veiled  # the haze lifts every rain-free pixel; without it they stay exact
