"""Uploads: shown names, stored suffixes, zips of frames (traversal, links, bombs, limits), checks and previews."""

from __future__ import annotations

import io
import stat
import threading
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from estinet.data.video_io import read_all
from estinet.serve.uploads import (
    JobCancelledError,
    Limits,
    UploadError,
    check_frames,
    display_name,
    extract_frames,
    is_zip,
    probe,
    stored_suffix,
)
from tests.serve.common import frames, write_clip

LIMITS = Limits(max_upload_bytes=1 << 20, max_frames=8, max_unzip_bytes=1 << 20, max_zip_entries=20)


def png(value: int, size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, entries: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\rain clip.MP4", "rain clip.MP4"),
        ("", "upload"),
        (None, "upload"),
        ("..", "upload"),
        ("\x00evil<script>.mp4", "evil_script_.mp4"),
        ("a" * 200 + ".mp4", "a" * 76 + ".mp4"),
    ],
)
def test_display_name_is_a_safe_label(name: str | None, shown: str) -> None:
    assert display_name(name) == shown


def test_stored_suffix_comes_from_a_fixed_list() -> None:
    assert stored_suffix("clip.MP4") == ".mp4"
    assert stored_suffix("frame.png") == ".png"
    assert stored_suffix("x.exe") == ".bin"
    assert stored_suffix("noext") == ".bin"
    assert stored_suffix("../../x.mkv") == ".mkv"


def test_zip_of_frames_is_numbered_in_natural_order_and_junk_is_ignored(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "f.zip",
        [
            ("clip/10.png", png(30)),
            ("clip/2.png", png(20)),
            ("clip/.DS_Store", b"junk"),
            ("clip/notes.txt", b"junk"),
            ("__MACOSX/clip/._2.png", b"junk"),
        ],
    )
    assert is_zip(archive)
    out = tmp_path / "frames"
    out.mkdir()
    assert extract_frames(archive, out, LIMITS, "f.zip") == 2
    assert sorted(p.name for p in out.iterdir()) == ["00000001.png", "00000002.png"]
    assert [int(frame[0, 0, 0]) for frame in read_all(out)] == [20, 30]


@pytest.mark.parametrize(
    ("entries", "links", "match"),
    [
        ([("../evil.png", png(1))], (), "points outside the archive"),
        ([("/tmp/evil.png", png(1))], (), "points outside the archive"),
        ([("C:/evil.png", png(1))], (), "points outside the archive"),
        ([("frames/1.png", png(1))], ("frames/2.png",), "symbolic link"),
        ([], (), "holds no images"),
        ([("readme.txt", b"hello")], (), "holds no images"),
        ([("a/1.png", png(1)), ("b/1.png", png(2))], (), "images in 2 folders"),
    ],
)
def test_unsafe_or_unusable_zips_are_refused_before_extracting(
    tmp_path: Path, entries: list[tuple[str, bytes]], links: tuple[str, ...], match: str
) -> None:
    archive = make_zip(tmp_path / "f.zip", entries, links)
    out = tmp_path / "job" / "frames"
    out.mkdir(parents=True)
    with pytest.raises(UploadError, match=match) as error:
        extract_frames(archive, out, LIMITS, "f.zip")
    assert error.value.status == 422
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.zip", "frames", "job"]


def test_zip_limits_entries_frames_and_uncompressed_size(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    many = make_zip(tmp_path / "many.zip", [(f"x{i}.txt", b"") for i in range(21)])
    with pytest.raises(UploadError, match="lists 21 entries") as error:
        extract_frames(many, out, LIMITS, "many.zip")
    assert error.value.status == 413
    frames_zip = make_zip(tmp_path / "nine.zip", [(f"{i}.png", png(i)) for i in range(9)])
    with pytest.raises(UploadError, match="holds 9 images; this server accepts at most 8"):
        extract_frames(frames_zip, out, LIMITS, "nine.zip")
    bomb = make_zip(tmp_path / "bomb.zip", [("1.png", bytes(2 << 20))])  # 2 MiB of zeros deflate to ~2 KiB
    assert bomb.stat().st_size < 10_000
    with pytest.raises(UploadError, match="unpacks to 2 MiB") as error:
        extract_frames(bomb, out, LIMITS, "bomb.zip")
    assert error.value.status == 413
    assert list(out.iterdir()) == []


def test_zip_whose_sizes_lie_stops_at_the_limit(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", [("1.png", bytes(2 << 20))])
    data = bytearray(archive.read_bytes())
    real = (2 << 20).to_bytes(4, "little")
    assert data.count(real) == 2  # uncompressed size in the local header and in the central directory
    archive.write_bytes(bytes(data).replace(real, (1000).to_bytes(4, "little")))
    out = tmp_path / "frames"
    out.mkdir()
    with pytest.raises(UploadError):  # the size check of zipfile or ours, before 2 MiB are written
        extract_frames(archive, out, LIMITS, "liar.zip")
    assert sum(p.stat().st_size for p in out.iterdir()) <= LIMITS.max_unzip_bytes


def test_not_a_zip_and_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "upload.mp4"
    text.write_text("this is not a video\n" * 50)
    assert not is_zip(text)
    with pytest.raises(UploadError, match=r"cannot read notes\.mp4 as a video") as error:
        probe(text, LIMITS, "notes.mp4")
    assert str(tmp_path) not in str(error.value)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UploadError, match="not a readable zip"):
        extract_frames(broken, tmp_path, LIMITS, "broken.zip")


def test_probe_limits_frames_and_pixels(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", t=9)
    with pytest.raises(UploadError, match="has 9 frames; this server accepts at most 8") as error:
        probe(clip, LIMITS, "c.mp4")
    assert error.value.status == 413
    small = Limits(1 << 20, 100, 1 << 20, 20, max_pixels=64 * 48 - 1)
    with pytest.raises(UploadError, match="64x48 frames"):
        probe(clip, small, "c.mp4")


def test_check_frames_counts_writes_a_browser_preview_and_can_be_cancelled(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="even sizes"):
        clip = write_clip(tmp_path / "odd.mp4", t=5, h=47, w=63)  # odd size: the preview is padded to even
    seen: list[int] = []
    with pytest.warns(UserWarning, match="even sizes"):
        info = check_frames(clip, tmp_path / "rainy.mp4", LIMITS, "odd.mp4", progress=seen.append)
    assert (info.frames, info.width, info.height) == (5, 63, 47)
    assert seen == [1, 2, 3, 4, 5]
    with av.open(str(tmp_path / "rainy.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelledError), pytest.warns(UserWarning, match="even sizes"):
        check_frames(clip, tmp_path / "cancelled.mp4", LIMITS, "odd.mp4", cancel=cancel)
    assert not (tmp_path / "cancelled.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4", "rainy.mp4"]


def test_check_frames_finds_truncated_videos_and_too_many_frames(tmp_path: Path) -> None:
    from estinet.data.video_io import write_video

    noise = np.random.default_rng(0).integers(0, 256, (12, 48, 64, 3), dtype=np.uint8)
    whole = write_video(tmp_path / "whole.mkv", noise, 25)  # mkv: the header survives a cut
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    limits = Limits(1 << 20, 100, 1 << 20, 20)
    assert probe(cut, limits, "cut.mkv").frames == 12
    with pytest.raises(UploadError, match=r"cut\.mkv is truncated or damaged: \d+ of the 12 frames"):
        check_frames(cut, tmp_path / "p.mp4", limits, "cut.mkv")
    with pytest.warns(UserWarning, match="truncated or damaged"):
        info = check_frames(cut, tmp_path / "p.mp4", limits, "cut.mkv", keep_partial=True)
    assert 0 < info.frames < 12
    over = Limits(1 << 20, 5, 1 << 20, 20)
    with pytest.raises(UploadError, match="more than 5 frames"):
        check_frames(tmp_path / "whole.mkv", tmp_path / "q.mp4", over, "whole.mkv")
    assert not (tmp_path / "q.mp4").exists()
    assert frames().shape == (6, 48, 64, 3)
