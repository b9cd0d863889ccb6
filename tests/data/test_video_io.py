"""Tests for estinet.data.video_io: reading/writing videos, frame folders and images, with PyAV-made fixtures."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from estinet.data import video_io
from estinet.data.video_io import (
    FrameConversionWarning,
    VideoIOError,
    fps_to_fraction,
    natural_sort_key,
    open_frames,
    open_writer,
    read_all,
    read_image,
    write_video,
)
from tests.helpers import write_pyav_video

H, W = 36, 50


def _frames(n: int, height: int = H, width: int = W, seed: int = 0) -> np.ndarray:
    """Smooth, moving colour gradients with mild noise: (n, height, width, 3) uint8 (codec-friendly content)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        r = 128 + 100 * np.sin((xx + 2 * t) / width * 2 * np.pi)
        g = 128 + 100 * np.cos((yy - t) / height * 2 * np.pi)
        b = 40 + 170 * (xx + yy) / (width + height)
        frame = np.stack([r, g, b], axis=-1) + rng.normal(0, 2, (height, width, 1))
        out[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out


def _audio_info(path: Path) -> tuple[str, float] | None:
    """(codec name, decoded duration in seconds) of the first audio stream, or None when there is none."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.codec_context.name, samples / stream.codec_context.sample_rate


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (25, Fraction(25)),
        (30.0, Fraction(30)),
        (29.97, Fraction(30000, 1001)),
        (23.976, Fraction(24000, 1001)),
        (59.94, Fraction(60000, 1001)),
        (30000 / 1001, Fraction(30000, 1001)),
        (12.5, Fraction(25, 2)),
        (Fraction(7, 3), Fraction(7, 3)),
    ],
)
def test_fps_to_fraction_exact(fps: float, expected: Fraction) -> None:
    assert fps_to_fraction(fps) == expected


@pytest.mark.parametrize("bad", [0, -25, float("nan"), float("inf"), "fast", Fraction(0)])
def test_fps_to_fraction_rejects(bad: object) -> None:
    with pytest.raises(VideoIOError, match="frame rate"):
        fps_to_fraction(bad)  # type: ignore[arg-type]


def test_natural_sort_key_orders_numbers_by_value() -> None:
    names = ["10.png", "2.png", "frame_100.png", "1.png", "frame_9.png", "B.png", "a.png"]
    assert sorted(names, key=natural_sort_key) == [
        "1.png",
        "2.png",
        "10.png",
        "a.png",
        "B.png",
        "frame_9.png",
        "frame_100.png",
    ]


# ---------------------------------------------------------------------------------------------------------------------
# video round trips
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "kind", "codec", "frames_known", "lossless"),
    [
        (".mp4", None, "h264", True, False),
        (".mov", None, "h264", True, False),
        (".mkv", None, "h264", False, False),
        (".avi", None, "mpeg4", True, False),
        (".mkv", "lossless", "ffv1", False, True),
        (".avi", "lossless", "ffv1", True, True),
        (".mp4", "lossless", "h264", True, True),
    ],
)
def test_video_round_trip(
    tmp_path: Path, suffix: str, kind: str | None, codec: str, frames_known: bool, lossless: bool
) -> None:
    clip = _frames(6)
    out = tmp_path / f"clip{suffix}"
    with open_writer(out, 25, W, H, kind=kind) as sink:
        for frame in clip:
            sink.write(frame)
        assert sink.frames_written == 6
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == codec
    with open_frames(out) as source:
        assert (source.kind, source.width, source.height, source.fps, source.has_audio) == ("video", W, H, 25.0, False)
        assert source.num_frames == (6 if frames_known else None)
        back = np.stack(list(source))
    assert back.shape == clip.shape and back.dtype == np.uint8
    if lossless:
        np.testing.assert_array_equal(back, clip)
    else:
        assert _mae(back, clip) < 3.5
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
@pytest.mark.parametrize(("fps", "exact"), [(29.97, Fraction(30000, 1001)), (23.976, Fraction(24000, 1001))])
def test_ntsc_rates_are_exact(tmp_path: Path, suffix: str, fps: float, exact: Fraction) -> None:
    out = write_video(tmp_path / f"ntsc{suffix}", _frames(3), fps)
    with open_frames(out) as source:
        assert source.fps_fraction == exact
        assert source.fps == pytest.approx(float(exact))


@pytest.mark.parametrize(
    ("suffix", "kind"), [(".mp4", None), (".avi", None), (".mkv", "lossless"), (".mov", "lossless")]
)
def test_odd_size_survives_round_trip(tmp_path: Path, suffix: str, kind: str | None) -> None:
    clip = _frames(3, height=37, width=53)
    out = write_video(tmp_path / f"odd{suffix}", clip, 25, kind=kind)
    with av.open(str(out)) as container:
        coded = (container.streams.video[0].codec_context.width, container.streams.video[0].codec_context.height)
    assert coded == ((53, 37) if kind == "lossless" else (54, 38))  # padded only where yuv420p needs it
    with open_frames(out) as source:
        assert (source.width, source.height) == (53, 37)
        back = np.stack(list(source))
    assert back.shape == (3, 37, 53, 3)
    if kind == "lossless":
        np.testing.assert_array_equal(back, clip)
    else:
        assert _mae(back, clip) < 4.0


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_h264_colour_conversion_is_unbiased(tmp_path: Path, suffix: str) -> None:
    """At CRF 0 (lossless YUV) only the RGB <-> YUV 4:2:0 conversion remains: accurate and without brightness bias."""
    clip = _frames(3)
    back = read_all(write_video(tmp_path / f"crf0{suffix}", clip, 25, crf=0))
    assert _mae(back, clip) < 1.0
    bias = (back.astype(np.float64) - clip).mean(axis=(0, 1, 2))
    assert np.abs(bias).max() < 0.1


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    coded = np.zeros((2, H, W, 3), np.uint8)
    coded[:, :6, :10] = 255  # white block in the stored top-left corner
    # players turn it 90 degrees clockwise, as for an upright phone recording
    write_pyav_video(path, coded, fps=25, rotation=-90)
    with open_frames(path) as source:
        assert (source.width, source.height) == (H, W)
        upright = next(iter(source))
    assert upright.shape == (W, H, 3)
    assert upright[:10, -6:].min() > 200 and upright[:10, :6].max() < 50  # the block moved to the top-right


def test_size_tag_ignored_when_it_does_not_fit_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "tagged.mp4"
    write_pyav_video(path, _frames(2), comment="estinet_size=20x10")
    with open_frames(path) as source:
        assert (source.width, source.height) == (W, H)
        assert next(iter(source)).shape == (H, W, 3)


@pytest.mark.parametrize(("codec", "pix_fmt"), [("mpeg4", "yuv420p"), ("mjpeg", "yuvj420p")])
def test_reads_avi_written_by_other_tools(tmp_path: Path, codec: str, pix_fmt: str) -> None:
    clip = _frames(5)
    path = tmp_path / f"{codec}.avi"
    write_pyav_video(path, clip, fps=Fraction(30000, 1001), codec=codec, pix_fmt=pix_fmt)
    with open_frames(path) as source:
        assert (source.num_frames, source.width, source.height) == (5, W, H)
        assert source.fps_fraction == Fraction(30000, 1001)
        back = np.stack(list(source))
    assert back.shape == clip.shape
    assert _mae(back, clip) < 6.0


def test_high_bit_depth_video_warns_once(tmp_path: Path) -> None:
    path = tmp_path / "ten_bit.mkv"
    write_pyav_video(path, _frames(3), codec="libx264", pix_fmt="yuv420p10le")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = read_all(path)
    conversions = [w for w in caught if issubclass(w.category, FrameConversionWarning)]
    assert len(conversions) == 1 and "yuv420p10le" in str(conversions[0].message)
    assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8


def test_video_source_iterates_again_from_the_start(tmp_path: Path) -> None:
    out = write_video(tmp_path / "again.mkv", _frames(4), 25, kind="lossless")
    with open_frames(out) as source:
        first = np.stack(list(source))
        second = np.stack(list(source))
    np.testing.assert_array_equal(first, second)
    with pytest.raises(VideoIOError, match="closed"):
        next(iter(source))


def test_streaming_decodes_only_what_is_consumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "long.mp4"
    write_pyav_video(path, _frames(100, height=16, width=16), codec="libx264")
    decoded = 0
    original = video_io.VideoFileSource._decode

    def counting_decode(self: video_io.VideoFileSource, container: object) -> Iterator[object]:
        nonlocal decoded
        for frame in original(self, container):
            decoded += 1
            yield frame

    monkeypatch.setattr(video_io.VideoFileSource, "_decode", counting_decode)
    with open_frames(path) as source:
        assert source.num_frames == 100
        assert decoded == 1  # the first frame is decoded at open to validate the file
        taken = list(itertools.islice(source, 2))
        assert len(taken) == 2 and decoded == 2


# ---------------------------------------------------------------------------------------------------------------------
# frame folders and images
# ---------------------------------------------------------------------------------------------------------------------


def test_frame_folder_round_trip_is_exact(tmp_path: Path) -> None:
    clip = _frames(4, height=37, width=53)
    out = tmp_path / "frames"
    with open_writer(out, 25, 53, 37) as sink:
        assert isinstance(sink, video_io.FrameFolderWriter)
        for frame in clip:
            sink.write(frame)
        assert not out.exists()  # only the hidden temporary folder exists while writing
    assert sorted(p.name for p in out.iterdir()) == [video_io.FRAME_FOLDER_MARKER] + [
        f"{i:08d}.png" for i in range(1, 5)
    ]
    with open_frames(out, fps=12.5) as source:
        assert (source.kind, source.num_frames, source.fps, source.has_audio) == ("folder", 4, 12.5, False)
        np.testing.assert_array_equal(np.stack(list(source)), clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_folder_uses_natural_order_and_skips_non_images(tmp_path: Path) -> None:
    for value, name in [(10, "10.png"), (2, "2.png"), (1, "1.jpg"), (99, ".hidden.png")]:
        Image.fromarray(np.full((H, W, 3), value, np.uint8)).save(tmp_path / name, quality=100)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    with open_frames(tmp_path) as source:
        assert source.fps == video_io.DEFAULT_FPS
        assert [p.name for p in source.frame_paths] == ["1.jpg", "2.png", "10.png"]
        means = [float(frame.mean()) for frame in source]
    assert means == pytest.approx([1, 2, 10], abs=1.0)


def test_single_image_is_a_one_frame_source(tmp_path: Path) -> None:
    path = tmp_path / "still.png"
    Image.fromarray(_frames(1)[0]).save(path)
    with open_frames(path) as source:
        assert (source.kind, source.num_frames, source.width, source.height) == ("image", 1, W, H)
    np.testing.assert_array_equal(read_all(path), _frames(1))


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def _no_conversion_warning(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrameConversionWarning)
        return read_image(path)


def test_lossless_modes_convert_without_warning(tmp_path: Path) -> None:
    gray = _no_conversion_warning(_save(Image.new("L", (W, H), 77), tmp_path / "gray.png"))
    assert gray.shape == (H, W, 3) and (gray == 77).all()

    bilevel = np.zeros((H, W), bool)
    bilevel[:, : W // 2] = True
    one = _no_conversion_warning(_save(Image.fromarray(bilevel), tmp_path / "one.png"))
    assert (one[:, : W // 2] == 255).all() and (one[:, W // 2 :] == 0).all()

    palette = Image.new("P", (W, H), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert (_no_conversion_warning(_save(palette, tmp_path / "palette.png")) == [200, 100, 50]).all()


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (W, H), (10, 20, 30, 0))
    with pytest.warns(FrameConversionWarning, match="alpha"):
        assert (read_image(_save(rgba, tmp_path / "rgba.png")) == [10, 20, 30]).all()
    la = Image.new("LA", (W, H), (100, 128))
    with pytest.warns(FrameConversionWarning, match="alpha"):
        assert (read_image(_save(la, tmp_path / "la.png")) == 100).all()
    palette = Image.new("P", (W, H), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.info["transparency"] = 1
    with pytest.warns(FrameConversionWarning, match="alpha"):
        assert (read_image(_save(palette, tmp_path / "ptrans.png")) == [200, 100, 50]).all()


def test_16bit_gray_png_is_rounded_and_warns_once_per_folder(tmp_path: Path) -> None:
    values = np.array([0, 128, 129, 257, 450, 40000, 65535], np.uint16)  # round: 0 0 1 1 2 156 255
    for index in range(3):
        Image.fromarray(np.tile(values, (4, 1))).save(tmp_path / f"{index}.png")
    assert Image.open(tmp_path / "0.png").mode.startswith("I")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = read_all(tmp_path)
    assert sum(issubclass(w.category, FrameConversionWarning) for w in caught) == 1
    assert "16-bit" in str(caught[0].message)
    np.testing.assert_array_equal(frames[:, 0, :, 0], np.tile([0, 0, 1, 1, 2, 156, 255], (3, 1)))
    assert (frames[..., 0] == frames[..., 2]).all()


def test_16bit_rgb_png_is_rounded_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "rgb48.png"
    data = np.zeros((2, 3, 3), np.uint16)
    data[0, 0] = [450, 40000, 65535]  # truncation (v >> 8) would give 1, 156, 255; rounding gives 2, 156, 255
    container = av.open(str(path), "w", format="image2")
    stream = container.add_stream("png", rate=1)
    stream.width, stream.height, stream.pix_fmt = 3, 2, "rgb48be"
    for packet in stream.encode(av.VideoFrame.from_ndarray(data, format="rgb48le")):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    with pytest.warns(FrameConversionWarning, match="16-bit"):
        rgb = read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [2, 156, 255]


def test_int32_float_and_cmyk_images(tmp_path: Path) -> None:
    ints = Image.fromarray(np.full((H, W), 40000, np.int32))
    assert ints.mode == "I"
    with pytest.warns(FrameConversionWarning, match="16-bit"):
        assert (read_image(_save(ints, tmp_path / "int.tif")) == 156).all()

    floats = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], np.float32)
    with pytest.warns(FrameConversionWarning, match=r"\[0, 1\]"):
        rgb = read_image(_save(Image.fromarray(floats), tmp_path / "float.tif"))
    assert rgb[0, :, 1].tolist() == [0, 128, 255, 255, 0]

    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))
    with pytest.warns(FrameConversionWarning, match="CMYK"):
        assert (read_image(_save(cmyk, tmp_path / "cmyk.tif")) == [255, 0, 0]).all()


# ---------------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"nope\.mp4 does not exist"):
        open_frames(tmp_path / "nope.mp4")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoIOError, match="contains no images"):
        open_frames(tmp_path)


def test_mixed_sizes_name_the_offending_file(tmp_path: Path) -> None:
    for name, size in [("1.png", (W, H)), ("2.png", (W, H)), ("3.png", (W, H + 4))]:
        Image.new("RGB", size).save(tmp_path / name)
    with pytest.raises(VideoIOError, match=r"3\.png is 50x40 but .*1\.png is 50x36"):
        open_frames(tmp_path)


def test_corrupt_images(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    Image.new("RGB", (W, H)).save(folder / "1.png")
    (folder / "2.png").write_bytes(b"definitely not a png")
    with pytest.raises(VideoIOError, match=r"cannot read image .*2\.png"):
        open_frames(folder)

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    Image.fromarray(_frames(1)[0]).save(truncated / "1.png")
    data = (truncated / "1.png").read_bytes()
    (truncated / "2.png").write_bytes(data[: len(data) // 2])  # valid header, missing pixel data
    with open_frames(truncated) as source, pytest.raises(VideoIOError, match=r"2\.png"):
        list(source)


def test_corrupt_video(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoIOError, match=r"cannot read .*garbage\.mp4 as a video"):
        open_frames(garbage)
    good = write_video(tmp_path / "good.mp4", _frames(5), 25)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoIOError, match=r"cut\.mp4"):
        read_all(cut)


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=44100)
    stream.layout = "mono"
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 4410), np.float32), format="fltp", layout="mono")
    frame.sample_rate, frame.pts = 44100, 0
    for packet in [*stream.encode(frame), *stream.encode(None)]:
        container.mux(packet)
    container.close()
    with pytest.raises(VideoIOError, match=r"sound\.m4a has no video stream"):
        open_frames(path)


def test_zero_frame_video(tmp_path: Path) -> None:
    path = tmp_path / "empty.avi"
    write_pyav_video(path, np.zeros((0, H, W, 3), np.uint8), codec="mpeg4")
    with pytest.raises(VideoIOError, match=r"empty\.avi contains no decodable video frames"):
        open_frames(path)


# ---------------------------------------------------------------------------------------------------------------------
# writer safety
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.mp4", "out"])
def test_existing_output_is_refused_and_untouched(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    if out.suffix:
        out.write_bytes(b"keep me")
    else:
        write_video(out, _frames(3), 25)  # an earlier estinet output
    with pytest.raises(VideoIOError, match=r"already exists.*--overwrite"):
        open_writer(out, 25, W, H)
    if out.suffix:
        assert out.read_bytes() == b"keep me"
    else:
        assert read_all(out).shape == (3, H, W, 3)
    write_video(out, _frames(2), 25, overwrite=True)
    assert read_all(out).shape == (2, H, W, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_overwrite_refuses_folder_with_other_content(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(VideoIOError, match=r"refusing to overwrite .*thesis\.tex"):
        open_writer(out, 25, W, H, overwrite=True)
    assert (out / "thesis.tex").read_text() == "do not delete"


def test_overwrite_never_deletes_images_estinet_did_not_write(tmp_path: Path) -> None:
    """Issue 14 item 6: a folder of the user's own images is not an estinet output; --overwrite refuses it, and an
    estinet output folder into which the user copied another image is refused too."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (2, 2)).save(photos / "holiday.png")
    with pytest.raises(VideoIOError, match=r"refusing to overwrite .*not a frame folder estinet wrote.*holiday\.png"):
        write_video(photos, _frames(2), 25, overwrite=True)
    assert [p.name for p in photos.iterdir()] == ["holiday.png"]
    out = tmp_path / "out"
    write_video(out, _frames(2), 25)
    Image.new("RGB", (2, 2)).save(out / "mine.png")
    with pytest.raises(VideoIOError, match=r"estinet did not write \(mine\.png\)"):
        write_video(out, _frames(2), 25, overwrite=True)
    (out / "mine.png").unlink()
    write_video(out, _frames(1), 25, overwrite=True)  # only estinet's own frames: replaced
    assert read_all(out).shape == (1, H, W, 3)


def test_frame_folder_keeps_given_names_and_odd_video_sizes_warn(tmp_path: Path) -> None:
    """Issue 14 item 6: frame folders keep the names they are given; an odd size padded for yuv420p says how."""
    out = tmp_path / "named"
    with open_writer(out, 25, W, H, names=["a.png", "b.png"]) as sink:
        for frame in _frames(3):
            sink.write(frame)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["00000003.png", "a.png", "b.png"]
    assert video_io.frame_names([Path("x/f1.jpg"), Path("x/f2.jpg")]) == ["f1.png", "f2.png"]
    assert video_io.frame_names([Path("x/f.jpg"), Path("x/f.png")]) == ["f.jpg.png", "f.png"]
    with pytest.warns(video_io.OddSizeWarning, match=r"53x37 frames are stored as 54x38.*--lossless"):
        write_video(tmp_path / "odd.mp4", _frames(2, height=37, width=53), 25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_video(tmp_path / "odd.mkv", _frames(2, height=37, width=53), 25, kind="lossless")


def test_stale_partials_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """Issue 14 item 6: partial outputs a SIGKILLed run left behind are removed by the next run; a live one's stay."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = [tmp_path / f".out.partial-{pid}.mp4", tmp_path / f".frames.partial-{pid}", tmp_path / f".w.partial-{pid}"]
    stale[0].write_bytes(b"half a video")
    stale[1].mkdir()
    (stale[1] / "00000001.png").write_bytes(b"x")
    stale[2].write_bytes(b"other output")
    live = tmp_path / f".out.partial-{os.getppid()}.mp4"  # a running process (pytest's parent)
    live.write_bytes(b"still being written")
    unrelated = tmp_path / ".out.partial-notapid.mp4"
    unrelated.write_bytes(b"not ours")
    write_video(tmp_path / "out.mp4", _frames(2), 25)
    write_video(tmp_path / "frames", _frames(2), 25)
    assert not stale[0].exists() and not stale[1].exists()
    assert stale[2].exists() and live.exists() and unrelated.exists()  # other outputs, live processes, other names


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "out"])
@pytest.mark.parametrize("existing", [False, True])
def test_exception_mid_write_leaves_no_partial_output(tmp_path: Path, name: str, existing: bool) -> None:
    out = tmp_path / name
    if existing:
        out.write_bytes(b"old result")
    with pytest.raises(RuntimeError, match="boom"), open_writer(out, 25, W, H, overwrite=True) as sink:
        for frame in _frames(50):  # enough to get past the encoder's look-ahead, so data reaches the disk
            sink.write(frame)
        partial = [p.name for p in tmp_path.iterdir() if p.name != name]
        assert len(partial) == 1 and partial[0].startswith(".out") and ".partial-" in partial[0]
        if not existing:
            assert not out.exists()
        raise RuntimeError("boom")
    if existing:
        assert out.read_bytes() == b"old result"
        assert [p.name for p in tmp_path.iterdir()] == [name]
    else:
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["none.mp4", "none"])
def test_closing_without_frames_saves_nothing(tmp_path: Path, name: str) -> None:
    sink = open_writer(tmp_path / name, 25, W, H)
    with pytest.raises(VideoIOError, match="no frames were written"):
        sink.close()
    assert list(tmp_path.iterdir()) == []


def test_writer_validates_arguments_and_frames(tmp_path: Path) -> None:
    with pytest.raises(VideoIOError, match=r"\.webm"):
        open_writer(tmp_path / "x.webm", 25, W, H)
    with pytest.raises(VideoIOError, match="unknown writer kind 'prores'"):
        open_writer(tmp_path / "x.mp4", 25, W, H, kind="prores")
    with pytest.raises(VideoIOError, match="add a suffix"):
        open_writer(tmp_path / "x", 25, W, H, kind="h264")
    with pytest.raises(VideoIOError, match="frame rate"):
        open_writer(tmp_path / "x.mp4", 0, W, H)
    with pytest.raises(VideoIOError, match="width"):
        open_writer(tmp_path / "x.mp4", 25, 0, H)
    with pytest.raises(VideoIOError, match="crf"):
        open_writer(tmp_path / "x.mp4", 25, W, H, crf=70)
    with pytest.raises(VideoIOError, match="is a folder"):
        open_writer(_dir(tmp_path / "d.mp4"), 25, W, H)
    with pytest.raises(VideoIOError, match=r"\(36, 50, 3\)"), open_writer(tmp_path / "y.mp4", 25, W, H) as sink:
        sink.write(np.zeros((H, W + 1, 3), np.uint8))
    with pytest.raises(VideoIOError, match="uint8"), open_writer(tmp_path / "z.mkv", 25, W, H) as sink:
        sink.write(np.zeros((H, W, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mp4"]


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


# ---------------------------------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source_suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("out_suffix", [".mp4", ".mkv"])
def test_audio_is_copied_without_reencoding(tmp_path: Path, source_suffix: str, out_suffix: str) -> None:
    source_path = tmp_path / f"rainy{source_suffix}"
    write_pyav_video(source_path, _frames(25), audio_codec="aac")
    source_audio = _audio_info(source_path)
    assert source_audio is not None and source_audio[1] == pytest.approx(1.0, abs=0.1)
    out = tmp_path / f"derained{out_suffix}"
    with open_frames(source_path) as source:
        assert source.has_audio
        with open_writer(out, source.fps_fraction, source.width, source.height, audio_from=source_path) as sink:
            for frame in source:
                sink.write(frame)
    out_audio = _audio_info(out)
    assert out_audio is not None and out_audio[0] == "aac"
    assert out_audio[1] == pytest.approx(source_audio[1], abs=0.05)
    with open_frames(out) as result:
        assert result.has_audio
        assert sum(1 for _ in result) == 25
    with av.open(str(source_path)) as a, av.open(str(out)) as b:  # remuxed: identical compressed audio payloads
        packets_a = [bytes(p) for p in a.demux(audio=0) if p.size]
        packets_b = [bytes(p) for p in b.demux(audio=0) if p.size]
    assert packets_a == packets_b


def _click_after_first_frame(path: Path) -> float:
    """Seconds from the first video frame's presentation to the start of the audio burst (see ``_pyav_video``)."""
    with av.open(str(path)) as container:
        video_start = next(container.decode(video=0)).time
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    rate = frames[0].sample_rate
    samples = np.concatenate([frame.to_ndarray()[0] for frame in frames])
    onset = int(np.argmax(np.abs(samples) > 0.2))
    return frames[0].time + onset / rate - video_start


@pytest.mark.parametrize("out_suffix", [".mp4", ".mkv"])
def test_audio_stays_in_sync_when_timestamps_do_not_start_at_zero(tmp_path: Path, out_suffix: str) -> None:
    source_path = tmp_path / "broadcast.ts"  # MPEG-TS: timestamps do not start at 0
    write_pyav_video(source_path, _frames(25), audio_codec="aac", click_at=0.5)
    with av.open(str(source_path)) as container:
        assert container.streams.video[0].start_time > 0
    expected = _click_after_first_frame(source_path)
    assert expected == pytest.approx(0.5, abs=0.002)
    out = write_video(tmp_path / f"out{out_suffix}", read_all(source_path), 25, audio_from=source_path)
    assert _click_after_first_frame(out) == pytest.approx(expected, abs=0.002)


def test_incompatible_audio_is_transcoded_to_aac(tmp_path: Path) -> None:
    source_path = tmp_path / "pcm.avi"
    write_pyav_video(source_path, _frames(25), codec="mpeg4", audio_codec="pcm_s16le")
    out = write_video(tmp_path / "out.mp4", _frames(25), 25, audio_from=source_path)
    out_audio = _audio_info(out)
    assert out_audio is not None and out_audio[0] == "aac"
    assert out_audio[1] == pytest.approx(1.0, abs=0.1)


def test_source_without_audio_adds_none(tmp_path: Path) -> None:
    silent = write_video(tmp_path / "silent.mp4", _frames(2), 25)
    out = write_video(tmp_path / "out.mkv", _frames(2), 25, audio_from=silent)
    assert _audio_info(out) is None
    with pytest.warns(UserWarning, match="cannot hold audio"):
        write_video(tmp_path / "frames", _frames(2), 25, audio_from=silent)
    folder = write_video(tmp_path / "input_frames", _frames(2), 25)
    assert _audio_info(write_video(tmp_path / "from_folder.mp4", _frames(2), 25, audio_from=folder)) is None
    with pytest.raises(VideoIOError, match="audio source"):
        open_writer(tmp_path / "x.mp4", 25, W, H, audio_from=tmp_path / "missing.mp4")


# ---------------------------------------------------------------------------------------------------------------------
# truncated and damaged videos (issue 14 item 1)
# ---------------------------------------------------------------------------------------------------------------------


def write_cut_video(path: Path, frames: int = 60, fraction: float = 0.5) -> Path:
    """A video cut short like an interrupted download: faststart .mp4 (index first) or .mkv, first ``fraction``."""
    clip = (np.random.default_rng(1).random((frames, 48, 64, 3)) * 255).astype(np.uint8)
    full = path.with_name(f"full{path.suffix}")
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    container = av.open(str(full), "w", options=options)
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for index, array in enumerate(clip):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_video_is_refused_with_counts_unless_kept(tmp_path: Path, suffix: str) -> None:
    cut = write_cut_video(tmp_path / f"cut{suffix}")
    with open_frames(cut) as source:
        assert source.announced_frames == 60
        with pytest.raises(VideoIOError, match=r"truncated or damaged: \d+ of the 60 frames .*--keep-partial-input"):
            list(source)
    with open_frames(cut, keep_partial=True) as source, pytest.warns(video_io.IncompleteVideoWarning, match="60"):
        kept = list(source)
    assert 10 < len(kept) < 60 and source.frames_decoded == len(kept)


def test_complete_mkv_and_mp4_pass_the_frame_count_check(tmp_path: Path) -> None:
    for suffix in (".mp4", ".mkv"):
        path = write_cut_video(tmp_path / f"whole{suffix}", frames=12, fraction=1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(read_all(path)) == 12
