"""Streaming inference: equality with the per-window computation, tiles, memory, files, options."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from estinet.checkpoint import WeightsError
from estinet.config import preset_config, to_dict
from estinet.data.video_io import VideoIOError, open_frames, read_all, write_video
from estinet.data.windows import window_indices
from estinet.inference import (
    Derainer,
    DerainError,
    default_tile_margin,
    derain_main,
    official_window,
    resolve_device,
    tile_spans,
)
from estinet.inference.video import SingleFrameWarning
from estinet.models import build_model
from estinet.models.estinet import ESTINet
from estinet.models.motion import pair_displacements
from estinet.models.official import OfficialESTINet, official_windows, random_official_state
from tests.helpers import textured_clip, write_pyav_video


def tiny_model(variant: str = "estinet", motion: bool = True, seed: int = 0) -> ESTINet:
    torch.manual_seed(seed)
    model = build_model(preset_config(variant, "tiny", motion_compensation=motion))
    assert isinstance(model, ESTINet)
    return model


def moving(t: int, h: int = 32, w: int = 48, shift: float = 1.5, seed: int = 0) -> torch.Tensor:
    """(t, 3, h, w) textured frames panning ``shift`` px per frame."""
    return textured_clip(t, h, w, seed=seed, shift=shift)[0]


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> (T, H, W, 3) uint8, rounded as a saved frame."""
    return (frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if "partial" in p.name)


# ---------------------------------------------------------------------------------------------------------------------
# windows and tiles
# ---------------------------------------------------------------------------------------------------------------------


def test_official_window_matches_release_rule() -> None:
    for n in range(1, 13):
        assert [official_window(n, t) for t in range(n)] == official_windows(n)


def test_tile_spans_cover_aligned_and_overlap() -> None:
    spans = tile_spans(480, 128, 32, 16)
    assert spans[0][0] == 0 and spans[-1][1] == 480
    for (a0, a1, c0, c1), nxt in zip(spans, [*spans[1:], None], strict=True):
        assert a0 % 16 == 0 and c0 % 16 == 0 and a1 - a0 <= 128
        assert c0 == max(0, a0 - 32) and c1 == min(480, a1 + 32)
        if nxt is not None:
            assert nxt[0] == a1
    assert tile_spans(96, None, 32) == [(0, 96, 0, 96)]
    assert tile_spans(96, 128, 32) == [(0, 96, 0, 96)]


# ---------------------------------------------------------------------------------------------------------------------
# streaming == per-window
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["estinet", "sicm-stim-3", "sicm-stim-4", "sicm-2dcnn"])
@pytest.mark.parametrize("motion", [True, False])
def test_streaming_equals_per_window(variant: str, motion: bool) -> None:
    derainer = Derainer(tiny_model(variant, motion), device="cpu")
    for n in (1, 2, 3, 4, 9):
        clip = moving(n)
        streamed = derainer.derain_clip(clip)
        assert streamed.shape == clip.shape
        reference = derainer.derain_per_window(clip)
        assert (streamed - reference).abs().max() < 1e-5, (variant, motion, n)
        assert streamed.min() >= 0 and streamed.max() <= 1


def test_per_window_reference_built_by_hand() -> None:
    """The ends use reflected windows aligned by the real frames' accumulated positions; interior windows equal
    ``model.forward`` with the model's own motion estimate."""
    model = tiny_model()
    derainer = Derainer(model, device="cpu", channels_last=False)
    clip = moving(9, shift=1.5)
    streamed = derainer.derain_clip(clip)
    pair, _ = pair_displacements(clip[None])
    assert pair[0, :, 1].abs().min() > 1.0  # the clip really moves, so alignment matters
    position = torch.cat([torch.zeros(1, 2), pair[0].double().cumsum(0).float()])  # (9, 2)
    with torch.inference_mode():
        for t, window in [(0, [2, 1, 0, 1, 2]), (1, [1, 0, 1, 2, 3]), (8, [6, 7, 8, 7, 6])]:
            assert window_indices(9, t) == window
            disp = (position[window] - position[t])[None]  # (1, 5, 2)
            expected = model(clip[window][None], disp)[1][0].clamp(0, 1)
            assert (streamed[t] - expected).abs().max() < 1e-5
            wrong = model(clip[window][None], torch.zeros_like(disp))[1][0].clamp(0, 1)
            assert (streamed[t] - wrong).abs().max() > 1e-3  # the test can tell aligned from unaligned
        expected = model(clip[2:7][None])[1][0].clamp(0, 1)  # interior: the model estimates motion itself
        assert (streamed[4] - expected).abs().max() < 1e-4


@pytest.mark.parametrize("release_windows", [False, True])
def test_official_variant_streams_per_window(release_windows: bool) -> None:
    model = OfficialESTINet()
    model.load_official(*random_official_state(0))
    derainer = Derainer(model, device="cpu", official_windows=release_windows)
    clip = moving(3, 16, 24)
    streamed = derainer.derain_clip(clip)
    window = [0, 1, 0, 1, 2] if release_windows else [2, 1, 0, 1, 2]
    with torch.inference_mode():
        expected = model(clip[window][None])[1][0]
    assert (streamed[0] - expected).abs().max() < 1e-5
    assert (streamed - derainer.derain_per_window(clip)).abs().max() < 1e-5


def test_batched_windows_equal_single_windows() -> None:
    model = tiny_model()
    clip = moving(7)
    single = Derainer(model, device="cpu", batch=1).derain_clip(clip)
    batched = Derainer(model, device="cpu", batch=3)
    assert (batched.derain_clip(clip) - single).abs().max() < 1e-5
    assert batched.last_stats.plan is not None and batched.last_stats.plan.batch == 3


def test_channels_last_and_bf16_keep_the_function_and_the_callers_model() -> None:
    model = tiny_model()
    before = {k: (v.clone(), v.stride()) for k, v in model.state_dict().items()}
    clip = moving(5)
    plain = Derainer(model, device="cpu", channels_last=False).derain_clip(clip)
    fast = Derainer(model, device="cpu", channels_last=True).derain_clip(clip)
    assert (plain - fast).abs().max() < 1e-5
    bf16 = Derainer(model, device="cpu", half=True)
    assert bf16.amp_dtype == torch.bfloat16
    assert (bf16.derain_clip(clip) - plain).abs().max() < 0.1
    for key, value in model.state_dict().items():  # the caller's module is not modified
        assert torch.equal(value, before[key][0]) and value.stride() == before[key][1]


# ---------------------------------------------------------------------------------------------------------------------
# tiles and memory
# ---------------------------------------------------------------------------------------------------------------------


def test_tiled_equals_untiled() -> None:
    """Forced 32-px tiles. The default margin (96 px for tiny: its receptive field) would make every crop of a 96x128
    frame the whole frame, so the frame is wider than two margins plus a tile."""
    model = tiny_model()
    clip = moving(5, 96, 320, shift=2.0)
    whole = Derainer(model, device="cpu", tile=0).derain_clip(clip)
    tiled = Derainer(model, device="cpu", tile=32, batch=2)  # two frames / windows per call, in tiles
    out = tiled.derain_clip(clip)
    plan = tiled.last_stats.plan
    assert plan is not None and plan.tile == 32 and plan.batch == 2
    assert plan.margin == default_tile_margin(model.config) == 96
    assert (out - whole).abs().max() <= 1e-3
    short = Derainer(model, device="cpu", tile=32, tile_margin=32).derain_clip(clip)
    assert (short - whole).abs().max() > 1e-2  # the margin is what makes tiles agree


def test_automatic_plan_follows_available_memory() -> None:
    derainer = Derainer(tiny_model(), device="cpu")
    roomy = derainer.plan_for(480, 640, available=64 << 30)
    assert roomy.tile is None and roomy.batch == 1 and roomy.capacity == 5
    tight = derainer.plan_for(480, 640, available=roomy.estimated_bytes)  # only MEMORY_SAFETY of it may be used
    assert tight.tile is not None and tight.tile % 16 == 0 and tight.estimated_bytes <= roomy.estimated_bytes
    with pytest.raises(DerainError, match=r"GiB.*smaller preset"):
        derainer.plan_for(2160, 3840, available=1 << 20)
    forced = Derainer(tiny_model(), device="cpu", tile=100).plan_for(480, 640, available=1 << 20)
    assert forced.tile == 112  # rounded up to a multiple of 16, and never refused


def test_ring_buffer_stays_small_and_input_is_pulled_lazily() -> None:
    clip = moving(30, 16, 16)
    for variant, batch in [("estinet", 1), ("estinet", 3), ("sicm-stim-2", 1)]:
        derainer = Derainer(tiny_model(variant), device="cpu", batch=batch)
        pulled = 0

        def source() -> Iterator[np.ndarray]:
            nonlocal pulled
            for frame in to_uint8(clip):
                pulled += 1
                yield frame

        capacity = 2 * (derainer.window_size // 2) + 2 * batch - 1  # 5 for 5-frame windows one at a time
        produced = 0
        for _ in derainer.derain_frames(source()):
            produced += 1
            assert pulled - produced <= capacity  # never reads far ahead of what it writes
        assert produced == 30
        stats = derainer.last_stats
        assert stats.frames_in == stats.frames_out == 30
        assert stats.plan is not None and stats.plan.capacity == capacity
        assert stats.max_buffered <= capacity
        assert batch > 1 or stats.max_buffered == capacity


# ---------------------------------------------------------------------------------------------------------------------
# frames, files, audio
# ---------------------------------------------------------------------------------------------------------------------


def test_derain_frames_rounds_like_a_saved_frame() -> None:
    derainer = Derainer(tiny_model(), device="cpu")
    frames = to_uint8(moving(4, 21, 35))  # odd size
    out = list(derainer.derain_frames(iter(frames)))
    assert len(out) == 4 and all(o.dtype == np.uint8 and o.shape == (21, 35, 3) for o in out)
    expected = to_uint8(derainer.derain_clip(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255))
    assert np.array_equal(np.stack(out), expected)
    with pytest.raises(DerainError, match="uint8"):
        list(derainer.derain_frames([frames[0].astype(np.float32)]))
    with pytest.raises(DerainError, match="same size"):
        list(derainer.derain_frames([frames[0], frames[1][:20]]))
    with pytest.raises(DerainError, match="empty"):
        list(derainer.derain_frames([]))


def test_video_keeps_size_fps_frame_count_and_audio(tmp_path: Path) -> None:
    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(9, 48, 64)), fps=12, audio_codec="aac")
    dst = tmp_path / "out" / "clean.mp4"
    derainer = Derainer(tiny_model(), device="cpu")
    assert derainer.derain_video(src, dst, compare=True, progress=False) == dst
    with open_frames(dst) as out:
        assert (out.width, out.height, out.has_audio) == (64, 48, True)
        assert out.fps_fraction == Fraction(12)
        assert len(list(out)) == 9
    with av.open(str(dst)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    compare = tmp_path / "out" / "clean_compare.mp4"
    with open_frames(compare) as side:
        assert (side.width, side.height) == (128, 48) and len(list(side)) == 9
    assert set(derainer.last_stats.seconds) >= {"decode", "encode", "features", "windows", "motion"}
    assert leftovers(tmp_path) == []


def test_odd_sized_frame_folder_to_folder_and_image_to_image(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_video(folder, list(to_uint8(moving(3, 37, 53))), 25)
    derainer = Derainer(tiny_model(), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleFrameWarning)  # three frames: no single-frame warning
        derainer.derain_video(folder, tmp_path / "clean", progress=False)
    assert read_all(tmp_path / "clean").shape == (3, 37, 53, 3)
    derainer.derain_video(folder, tmp_path / "clean.mp4", progress=False)  # H.264 needs even sizes: padded, cropped
    with open_frames(tmp_path / "clean.mp4") as video:
        assert (video.width, video.height, len(list(video))) == (53, 37, 3)
    with pytest.warns(SingleFrameWarning, match="single frame"):
        derainer.derain_video(tmp_path / "clean" / "00000001.png", tmp_path / "one.png", progress=False)
    assert read_all(tmp_path / "one.png").shape == (1, 37, 53, 3)
    with pytest.raises(DerainError, match="image"):
        derainer.derain_video(folder, tmp_path / "many.png", progress=False)
    assert not (tmp_path / "many.png").exists()


def test_existing_output_is_refused_untouched_unless_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(3, 32, 32)), fps=12)
    dst = tmp_path / "clean.mp4"
    dst.write_bytes(b"precious")
    derainer = Derainer(tiny_model(), device="cpu")
    with pytest.raises(VideoIOError, match="already exists"):
        derainer.derain_video(src, dst, progress=False)
    assert dst.read_bytes() == b"precious"
    (tmp_path / "clean_compare.mp4").write_bytes(b"old")  # the compare output is checked before any work too
    with pytest.raises(VideoIOError, match="already exists"):
        derainer.derain_video(src, tmp_path / "new.mp4", compare=tmp_path / "clean_compare.mp4", progress=False)
    assert not (tmp_path / "new.mp4").exists() and leftovers(tmp_path) == []
    derainer.derain_video(src, dst, overwrite=True, progress=False)
    assert len(read_all(dst)) == 3
    with pytest.raises(DerainError, match="is the input"):
        derainer.derain_video(src, src, overwrite=True, progress=False)


@pytest.mark.filterwarnings("ignore:a PNG frame folder")
def test_no_partial_output_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(8, 32, 32)), fps=12, audio_codec="aac")
    derainer = Derainer(tiny_model(), device="cpu")
    real = Derainer.derain_frames

    def failing(self: Derainer, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for index, frame in enumerate(real(self, frames)):
            if index == 4:
                raise KeyboardInterrupt  # e.g. Ctrl-C half-way
            yield frame

    monkeypatch.setattr(Derainer, "derain_frames", failing)
    for dst in (tmp_path / "clean.mp4", tmp_path / "folder"):
        with pytest.raises(KeyboardInterrupt):
            derainer.derain_video(src, dst, compare=True, progress=False)
        assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rainy.mp4"]


def test_callback_counts_frames_and_its_exception_cancels_without_leftovers(tmp_path: Path) -> None:
    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(7, 32, 32)), fps=12, audio_codec="aac")
    derainer = Derainer(tiny_model(), device="cpu")
    counts: list[int] = []
    derainer.derain_video(src, tmp_path / "clean.mp4", progress=False, callback=counts.append)
    assert counts == [1, 2, 3, 4, 5, 6, 7]

    class CancelledError(Exception):
        pass

    def cancel_at_three(done: int) -> None:
        if done == 3:
            raise CancelledError

    with pytest.raises(CancelledError):
        derainer.derain_video(src, tmp_path / "cancelled.mp4", compare=True, progress=False, callback=cancel_at_three)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.mp4", "rainy.mp4"]


def test_encoder_error_on_worker_thread_is_raised_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from estinet.data.video_io import VideoWriter

    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(12, 32, 32)), fps=12)
    real = VideoWriter.write

    def full_disk(self: VideoWriter, frame: np.ndarray) -> None:
        if self.frames_written == 3:
            raise VideoIOError(f"encoding frame 3 of {self.path} failed (No space left on device)")
        real(self, frame)

    monkeypatch.setattr(VideoWriter, "write", full_disk)
    dst = tmp_path / "clean.mp4"
    with pytest.raises(VideoIOError, match="No space left"):
        Derainer(tiny_model(), device="cpu").derain_video(src, dst, compare=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rainy.mp4"]


def test_x264_preset_is_passed_and_checked(tmp_path: Path) -> None:
    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(6, 32, 32)), fps=12)
    derainer = Derainer(tiny_model(), device="cpu")
    with pytest.raises(VideoIOError, match="unknown x264 preset 'quick'"):
        derainer.derain_video(src, tmp_path / "a.mp4", progress=False, x264_preset="quick")
    assert not (tmp_path / "a.mp4").exists()
    fast = derainer.derain_video(src, tmp_path / "fast.mp4", progress=False, x264_preset="ultrafast")
    slow = derainer.derain_video(src, tmp_path / "slow.mp4", progress=False, x264_preset="medium")
    assert len(read_all(fast)) == len(read_all(slow)) == 6
    assert fast.stat().st_size != slow.stat().st_size  # the preset reached the encoder


# ---------------------------------------------------------------------------------------------------------------------
# weights and options
# ---------------------------------------------------------------------------------------------------------------------


def test_weights_of_the_wrong_architecture_are_refused(tmp_path: Path) -> None:
    model = tiny_model()
    bad = tmp_path / "bad.pt"
    torch.save({"model": model.state_dict(), "config": {"model": to_dict(preset_config("estinet", "small"))}}, bad)
    with pytest.raises(WeightsError, match=r"does not fit this architecture"):
        Derainer(str(bad), device="cpu")
    good = tmp_path / "good.pt"
    torch.save({"model": model.state_dict(), "config": {"model": to_dict(model.config)}}, good)
    loaded = Derainer(good, device="cpu")
    clip = moving(3)
    assert (loaded.derain_clip(clip) - Derainer(model, device="cpu").derain_clip(clip)).abs().max() < 1e-6
    with pytest.raises(WeightsError, match=r"'estinet' model \(tiny preset\), not 'sicm-stim-3'"):
        Derainer(good, device="cpu", variant="sicm-stim-3")
    assert Derainer(good, device="cpu", variant="estinet").config == model.config
    with pytest.raises(WeightsError, match="not found"):
        Derainer("no-such-weights", device="cpu")
    with pytest.raises(TypeError, match="ESTINet"):
        Derainer(torch.nn.Conv2d(3, 3, 3), device="cpu")


def test_option_validation() -> None:
    with pytest.raises(DerainError, match="unknown device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(DerainError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")
    model = tiny_model()
    for kwargs, match in [
        ({"tile": -1}, "tile"),
        ({"batch": 0}, "batch"),
        ({"tile_margin": -16}, "tile_margin"),
        ({"threads": 0}, "threads"),
        ({"official_windows": True}, "official"),
    ]:
        with pytest.raises(DerainError, match=match):
            Derainer(model, device="cpu", **kwargs)
    official = OfficialESTINet()
    with pytest.raises(DerainError, match="motion"):
        Derainer(official, device="cpu", motion=True)
    assert Derainer(model, device="cpu", motion=False).motion is False


def test_derain_main(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "rainy.mp4"
    write_pyav_video(src, to_uint8(moving(3, 32, 32)), fps=12)
    model = tiny_model()
    monkeypatch.setattr("estinet.checkpoint.load_model", lambda spec, device="cpu": (model, model.config))
    assert derain_main(src, tmp_path / "clean.mkv", weights="tiny", device="cpu", lossless=True, progress=False) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_all(tmp_path / "clean.mkv").shape == (3, 32, 32, 3)


# ---------------------------------------------------------------------------------------------------------------------
# CUDA (runs only where a GPU is present)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_streaming_half_precision_and_tiles() -> None:
    torch.backends.cudnn.allow_tf32 = False
    model = tiny_model()
    clip = moving(6, 96, 128, shift=2.0)
    fp32 = Derainer(model, device="cuda", half=False, tile=0)
    out = fp32.derain_clip(clip.cuda())
    assert out.is_cuda
    assert (out - fp32.derain_per_window(clip)).abs().max() < 1e-5
    cpu = Derainer(model, device="cpu").derain_clip(clip)
    assert (out.cpu() - cpu).abs().max() < 1e-4
    half = Derainer(model, device="cuda", tile=0)
    assert half.amp_dtype == torch.float16 and half.channels_last
    assert (half.derain_clip(clip).cpu() - cpu).abs().max() < 2e-2
    tiled = Derainer(model, device="cuda", half=False, tile=32).derain_clip(clip)
    assert (tiled.cpu() - cpu).abs().max() < 1e-3
    assert Derainer(model, device="cuda").plan_for(480, 640).batch > 1
