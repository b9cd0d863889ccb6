"""The ``estinet serve`` API through Starlette's test client: uploads, bad uploads, the queue, cancelling, cleanup."""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("starlette")

from estinet.data.video_io import read_all, write_video
from estinet.inference import Derainer
from tests.helpers import write_pyav_video
from tests.serve.common import CSRF, frames, job_folders, serving, upload, wait_for, write_clip


def streams(path: Path) -> dict[str, tuple[str, str | None]]:
    """``{kind: (codec, pixel format)}`` of a media file's first video and audio streams."""
    out: dict[str, tuple[str, str | None]] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type in ("video", "audio") and stream.type not in out:
                out[stream.type] = (stream.codec_context.name, getattr(stream.codec_context, "pix_fmt", None))
    return out


def test_upload_derains_keeps_audio_and_serves_previews_and_the_result(tmp_path: Path) -> None:
    clip = tmp_path / "rainy.mp4"
    write_pyav_video(clip, frames(), fps=25, audio_codec="aac")
    reference = Derainer("tiny", device="cpu").derain_video(clip, tmp_path / "reference.mp4", progress=False)
    with serving(tmp_path, keep_minutes=5) as client:
        config = client.get("/api/config").json()
        assert {"tiny", "small"} <= set(config["models"]) and config["default_model"] == "tiny"
        assert config["devices"] == ["cpu"]
        response = upload(client, clip, name="../../holiday/Rainy day.mp4", model="tiny")
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["name"] == "Rainy day.mp4" and job["state"] in ("checking", "queued", "running")
        job = wait_for(client, job["id"], ("done", "failed"))
        assert job["state"] == "done", job["message"]
        assert (job["frames_total"], job["frames_done"], job["width"], job["height"]) == (6, 6, 64, 48)
        assert job["has_audio"] and job["fps"] > 0 and 0 < job["expires_in_seconds"] <= 300
        assert [job["position"], job["eta_seconds"]] == [None, None]
        result = client.get(job["result_url"])
        assert result.status_code == 200
        assert result.headers["content-disposition"] == "attachment; filename*=utf-8''Rainy%20day_derained.mp4"
        downloaded = tmp_path / "downloaded.mp4"
        downloaded.write_bytes(result.content)
        for url in (job["rainy_url"], job["derained_url"]):
            preview = tmp_path / url.rsplit("/", 1)[1]
            response = client.get(url)
            assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
            preview.write_bytes(response.content)
            assert streams(preview)["video"] == ("h264", "yuv420p")  # what browsers play
            assert len(read_all(preview)) == 6
        assert client.get(job["rainy_url"].replace("rainy.mp4", "other")).status_code == 404
        listed = client.get("/api/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
    assert streams(downloaded) == {"video": ("h264", "yuv420p"), "audio": ("aac", None)}
    got, want = read_all(downloaded), read_all(reference)
    assert got.shape == (6, 48, 64, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # the same frames as the library's derain_video
    assert list((tmp_path / "work").iterdir()) == []  # the work folder is removed on shutdown


def test_zip_of_frames_with_lossless_output(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_video(folder, frames(t=5), 25)  # a PNG folder
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.glob("*.png")):
            zf.write(path, f"my frames/{path.name}")
        zf.writestr("__MACOSX/my frames/._00000001.png", b"junk")
    with serving(tmp_path) as client:
        response = upload(client, archive, name="frames.zip", lossless="1", motion="off", tile="0")
        assert response.status_code == 201, response.text
        job = wait_for(client, response.json()["id"], ("done", "failed"))
        assert job["state"] == "done", job["message"]
        assert job["options"] == {
            "model": "tiny",
            "motion": False,
            "lossless": True,
            "crf": 18,
            "tile": 0,
            "keep_partial": False,
        }
        assert job["download_name"] == "frames_derained.mkv"
        result = tmp_path / "result.mkv"
        result.write_bytes(client.get(job["result_url"]).content)
        preview = tmp_path / "derained.mp4"
        preview.write_bytes(client.get(job["derained_url"]).content)
    assert streams(result)["video"][0] == "ffv1" and streams(preview)["video"] == ("h264", "yuv420p")
    assert read_all(result).shape == (5, 48, 64, 3) and read_all(preview).shape == (5, 48, 64, 3)


@pytest.mark.filterwarnings("ignore:.*truncated or damaged")
def test_bad_uploads_get_a_clear_message_and_the_server_keeps_running(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    noise = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    mkv = write_video(tmp_path / "noise.mkv", noise, 25)
    cut = mkv.read_bytes()[: mkv.stat().st_size // 2]  # the header survives: it fails while being checked

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield bytes(4096)

    with serving(tmp_path, max_upload_mb=0.05, max_frames=5) as client:
        refused = {
            "text renamed": upload(client, b"just some notes\n" * 100, name="notes.mp4"),
            "empty": upload(client, b"", name="empty.mp4"),
            "truncated mp4": upload(client, clip.read_bytes()[:1500], name="cut.mp4"),
            "too many frames": upload(client, clip, name="long.mp4"),
            "too large": upload(client, bytes(60_000), name="big.mp4"),
            "too large, streamed": client.post("/api/jobs", params={"name": "big.mp4"}, content=chunks(), headers=CSRF),
            "zip traversal": upload(client, _zip([("../../evil.png", b"x")]), name="evil.zip"),
            "empty zip": upload(client, _zip([]), name="nothing.zip"),
            "bad option": upload(client, clip, name="clip.mp4", model="huge"),
            "no header": client.post("/api/jobs", params={"name": "clip.mp4"}, content=clip.read_bytes()),
        }
        expected = {
            "text renamed": (422, "cannot read notes.mp4 as a video"),
            "empty": (422, "empty.mp4 is empty"),
            "truncated mp4": (422, "cut.mp4"),
            "too many frames": (413, "long.mp4 has 6 frames; this server accepts at most 5 (--max-frames)"),
            "too large": (413, "big.mp4 is larger than 0.05 MiB, this server's upload limit (--max-upload-mb)"),
            "too large, streamed": (413, "big.mp4 is larger than 0.05 MiB"),
            "zip traversal": (422, "points outside the archive"),
            "empty zip": (422, "nothing.zip holds no images"),
            "bad option": (400, "unknown model 'huge'"),
            "no header": (403, "x-estinet: 1"),
        }
        for case, (status, text) in expected.items():
            response = refused[case]
            assert (case, response.status_code) == (case, status), response.text
            assert text in response.json()["error"], (case, response.json())
            assert str(tmp_path) not in response.json()["error"]
        assert job_folders(tmp_path) == []  # refused uploads leave nothing
        assert not any(p.name == "evil.png" for p in tmp_path.rglob("*"))

        damaged = upload(client, cut, name="cut.mkv")
        assert damaged.status_code == 201, damaged.text
        job = wait_for(client, damaged.json()["id"], ("failed",))
        assert "cut.mkv is truncated or damaged" in job["message"]
        assert "damaged video: derain the frames that decode" in job["message"]
        assert str(tmp_path) not in job["message"] and job["rainy_url"] is None
        assert job_folders(tmp_path) == []
        kept = upload(client, cut, name="cut.mkv", keep_partial="1")
        job = wait_for(client, kept.json()["id"], ("done", "failed"))
        assert job["state"] == "done" and 0 < job["frames_total"] < 5, job

        good = upload(client, write_clip(tmp_path / "short.mp4", t=4), name="short.mp4")
        assert good.status_code == 201
        assert wait_for(client, good.json()["id"], ("done", "failed"))["state"] == "done"


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Deraining holds after each job's first frame until the event is set."""
    event = threading.Event()
    real = Derainer.derain_frames

    def held(self: Derainer, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for index, frame in enumerate(real(self, frames)):
            if index >= 1:
                assert event.wait(30)
            yield frame

    monkeypatch.setattr(Derainer, "derain_frames", held)
    yield event
    event.set()


def test_one_job_per_device_queue_positions_and_cancelling(tmp_path: Path, gate: threading.Event) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    with serving(tmp_path) as client:
        manager = client.app.state.jobs
        a, b, c = (upload(client, clip, name=f"{n}.mp4").json()["id"] for n in "abc")
        running = wait_for(client, a, ("running",), frames_done=1)
        assert running["device"] == "cpu" and running["frames_total"] == 6 and running["eta_seconds"] is not None
        assert wait_for(client, b, ("queued",))["position"] == 1
        assert wait_for(client, c, ("queued",))["position"] == 2
        assert client.get(f"/api/jobs/{a}").json()["state"] == "running"  # one job per device

        response = client.delete(f"/api/jobs/{b}", headers=CSRF)  # queued: off the queue at once
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
        assert client.get(f"/api/jobs/{c}").json()["position"] == 1
        assert b not in job_folders(tmp_path)

        response = client.delete(f"/api/jobs/{a}", headers=CSRF)  # running: stops at its next frame
        assert response.status_code == 202 and response.json()["cancelling"]
        assert client.delete(f"/api/jobs/{a}").status_code == 403  # cancelling needs the header too
        gate.set()
        cancelled = wait_for(client, a, ("cancelled",))
        assert cancelled["frames_done"] < 6 and cancelled["result_url"] is None
        assert a not in job_folders(tmp_path)  # no partial output left
        assert not (manager.folder / a).exists()

        assert wait_for(client, c, ("done",))["frames_done"] == 6
        assert sorted(job_folders(tmp_path)) == [c]
        assert client.delete(f"/api/jobs/{c}", headers=CSRF).json() == {"id": c, "state": "removed"}
        assert client.get(f"/api/jobs/{c}").status_code == 404
        assert job_folders(tmp_path) == []


def test_each_device_runs_one_job_and_the_first_free_device_goes_first(tmp_path: Path, gate: threading.Event) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    with serving(tmp_path, devices=["cpu", "cpu:0"]) as client:  # two workers (sharing this CPU)
        a, b, c = (upload(client, clip, name=f"{n}.mp4").json()["id"] for n in "abc")
        assert wait_for(client, a, ("running",), frames_done=1)["device"] == "cpu"
        assert wait_for(client, b, ("running",), frames_done=1)["device"] == "cpu:0"
        assert wait_for(client, c, ("queued",))["position"] == 1
        gate.set()
        assert wait_for(client, c, ("done",))["state"] == "done"
        wait_for(client, b, ("done",))
        manager = client.app.state.jobs
        deadline = time.monotonic() + 10
        while manager._idle != {"cpu", "cpu:0"} and time.monotonic() < deadline:  # both workers back to waiting
            time.sleep(0.01)
        d = upload(client, clip, name="d.mp4").json()["id"]
        assert wait_for(client, d, ("done",))["device"] == "cpu"  # both free: the first one takes it


def test_results_are_removed_after_the_keep_time(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    with serving(tmp_path, keep_minutes=1) as client:
        manager = client.app.state.jobs
        job = wait_for(client, upload(client, clip).json()["id"], ("done",))
        assert manager.sweep(now=manager.clock() + 50) == []
        assert client.get(job["result_url"]).status_code == 200
        assert manager.sweep(now=manager.clock() + 61) == [job["id"]]
        response = client.get(job["result_url"])
        assert response.status_code == 404 and "ended more than 1 minutes ago" in response.json()["error"]
        assert client.get("/api/jobs").json() == {"jobs": []}
        assert job_folders(tmp_path) == []


def test_only_loopback_host_names_are_answered_on_loopback(tmp_path: Path) -> None:
    with serving(tmp_path) as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
        evil = client.get("/api/jobs", headers={"host": "evil.example:8000"})
        assert evil.status_code == 421 and "127.0.0.1" in evil.json()["error"]
        page = client.get("/")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert client.get("/static/page.js").status_code == 200
    with serving(tmp_path, host="0.0.0.0") as client:
        assert client.get("/", headers={"host": "192.168.1.20:8000"}).status_code == 200


def test_a_full_disk_is_a_message_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from estinet.serve import app as app_module

    def full(*args: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "work" / "x"))

    monkeypatch.setattr(app_module, "_prepare", full)
    with serving(tmp_path) as client:
        response = upload(client, write_clip(tmp_path / "clip.mp4"), name="clip.mp4")
        assert response.status_code == 507
        assert response.json()["error"] == "the server cannot store clip.mp4: No space left on device"
        assert job_folders(tmp_path) == []
        assert client.get("/api/config").status_code == 200
