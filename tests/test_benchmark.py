"""``estinet bench``: every mode measures something real, end to end included, and bad modes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from estinet.benchmark import MODES, BenchmarkError, format_results, run_benchmark, write_bench_clip
from estinet.data.video_io import read_all


def test_bench_clip_is_a_panning_h264_clip(tmp_path: Path) -> None:
    path = write_bench_clip(tmp_path / "clip.mp4", 4, 48, 64)
    frames = read_all(path)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    # the texture moves 2 px per frame: frame 1 shifted back by 2 px matches frame 0 far better than unshifted
    a, b = frames[0].astype(float), frames[1].astype(float)
    assert abs(a[:, 2:] - b[:, :-2]).mean() < 0.5 * abs(a - b).mean()


def test_run_benchmark_every_mode(tmp_path: Path) -> None:
    results, peak = run_benchmark(["estinet/tiny"], sizes=((48, 64),), device="cpu", frames=6, warmup=1)
    assert peak > 0
    assert [r.mode for r in results] == list(MODES)
    for r in results:
        assert (r.height, r.width) == (48, 64)
        assert r.fps > 0 and r.peak_mib > 10 and r.gflops_per_frame > 0 and r.peak_share > 0
    streaming, per_window, end_to_end = results
    assert per_window.gflops_per_frame > streaming.gflops_per_frame == end_to_end.gflops_per_frame
    table = format_results(results, peak, "test machine")
    assert table.count("| estinet/tiny | 64x48 |") == 3 and "end-to-end" in table


def test_run_benchmark_refuses_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown benchmark mode"):
        run_benchmark(["estinet/tiny"], sizes=((48, 64),), device="cpu", modes=("batched",))


def test_run_benchmark_times_the_veil_lift_of_weights_with_a_veil_head() -> None:
    opts = {"sizes": ((48, 64),), "device": "cpu", "frames": 3, "warmup": 1, "modes": ("streaming",)}
    (result,), _ = run_benchmark(["tiny"], options={"lift_veil": True}, **opts)  # the shipped tiny has a veil head
    assert result.fps > 0
    with pytest.raises(BenchmarkError, match="no veil head"):
        run_benchmark(["estinet/tiny"], options={"lift_veil": True}, **opts)
