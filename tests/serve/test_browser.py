"""End to end in a real headless Chromium: the page uploads a clip, shows the job finish, plays the previews in step,
and downloads a result equal to the library's; a bad upload shows its message in the page.

Chromium comes from the system (``make test`` installs Debian's ``chromium`` package when it is missing) and is
driven by Playwright for Python; Playwright's own browser download is never used. Without Chromium or Playwright the
test is skipped with the reason, unless ``ESTINET_REQUIRE_BROWSER=1`` (set by ``make test``) makes that a failure.
``ESTINET_CHROMIUM`` names another Chromium or Chrome executable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from estinet.data.video_io import read_all
from estinet.inference import Derainer
from tests.serve.common import write_clip

REQUIRED = os.environ.get("ESTINET_REQUIRE_BROWSER") == "1"


def chromium_path() -> str | None:
    """``ESTINET_CHROMIUM``, or the first Chromium or Chrome on the PATH."""
    if os.environ.get("ESTINET_CHROMIUM"):
        return os.environ["ESTINET_CHROMIUM"] if Path(os.environ["ESTINET_CHROMIUM"]).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (ESTINET_REQUIRE_BROWSER=1; make test installs both)")
    pytest.skip(f"{reason}; install it (make test does: apt-get install chromium) to run the browser test")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install playwright, in the dev extra)")
    pytest.importorskip("uvicorn")
    executable = chromium_path()
    if executable is None:
        _missing("no Chromium found (chromium, chromium-browser, google-chrome or ESTINET_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            # root (CI) cannot use Chromium's sandbox; containers often have a small /dev/shm
            args=["--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"],
        )
        yield browser
        browser.close()


def test_page_uploads_shows_progress_plays_and_downloads(tmp_path: Path, browser: Any) -> None:
    from estinet.serve import create_app
    from estinet.serve.server import BackgroundServer

    clip = write_clip(tmp_path / "rainy.mp4")
    reference = Derainer("tiny", device="cpu").derain_video(clip, tmp_path / "reference.mp4", progress=False)
    app = create_app(devices=["cpu"], work_dir=tmp_path / "work", keep_minutes=5)
    with BackgroundServer(app) as server:
        page = browser.new_page(accept_downloads=True)
        page.goto(server.url)
        page.wait_for_selector("#model option[value=tiny]", state="attached")
        assert "3000 frames" in page.text_content("#limits")
        page.select_option("#model", "tiny")
        page.set_input_files("#file", str(clip))
        page.click("#start")
        page.wait_for_selector(".job[data-state=done] a.download:not([hidden])", timeout=60_000)
        assert "6 frames derained" in page.text_content(".job .progress-text")
        # both previews decode in the browser at the clip's size
        page.wait_for_function(
            "() => [...document.querySelectorAll('.job video')].every(v => v.readyState >= 2 && v.videoWidth === 64)",
            timeout=20_000,
        )
        page.evaluate("document.querySelector('.job video.derained').play()")
        page.wait_for_function("() => document.querySelector('.job video.rainy').currentTime > 0", timeout=20_000)

        with page.expect_download() as info:
            page.click(".job a.download")
        download = info.value
        assert download.suggested_filename == "rainy_derained.mp4"
        downloaded = tmp_path / "downloaded.mp4"
        download.save_as(downloaded)

        page.set_input_files("#file", files=[{"name": "notes.mp4", "mimeType": "video/mp4", "buffer": b"notes " * 99}])
        page.click("#start")
        page.wait_for_function("() => document.querySelector('#message').textContent.includes('notes.mp4')")
        assert "cannot read notes.mp4 as a video" in page.text_content("#message")
        assert page.locator(".job").count() == 1
        page.close()
    got, want = read_all(downloaded), read_all(reference)
    assert got.shape == (6, 48, 64, 3)
    diff = np.abs(got.astype(int) - want.astype(int))
    # the same frames as the library's derain_video; H.264 turns a 1-level model difference into several levels, so
    # a failure here says how much differs (a thread count or batch that differs between the two sides did this once)
    assert diff.max() <= 1, f"{int((diff > 1).sum())} of {diff.size} values differ by > 1, mean {diff.mean():.3f}"
    assert list((tmp_path / "work").iterdir()) == []
