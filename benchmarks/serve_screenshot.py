"""Screenshot of the ``estinet serve`` page with a finished job, for the README (docs/images/serve.png).

Renders ``realistic-heavy`` rain over the held-out street clip ``bikes#3`` (640x272, never used in training), serves
the page on a free local port, uploads the clip through the page's file input in headless Chromium (Debian's
``chromium`` package, driven by Playwright for Python), waits for the job to finish, pauses both players on the same
frame and saves the page (without the leader's media controls, which headless Chromium draws as 0:00 / 0:00).

Usage:
    python benchmarks/serve_screenshot.py [--out docs/images/serve.png] [--frames 24] [--seed 3] [--device cpu]
        [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from estinet.data.rain import RainRenderer, frames_to_float, frames_to_uint8, get_preset
from estinet.data.sources import heldout_sources, make_clip
from estinet.data.video_io import write_video

SOURCE = "bikes#3"


def rainy_clip(path: Path, frames: int, seed: int) -> Path:
    """The held-out street clip with seeded ``realistic-heavy`` rain, written as H.264."""
    source = {s.name: s for s in heldout_sources()}[SOURCE]
    size = (source.height - source.height % 2, source.width - source.width % 2)
    clean, _ = make_clip(source, min(frames, source.frames), size, seed, camera="static")
    renderer = RainRenderer(get_preset("realistic-heavy", seed=seed), *size, seed=seed)
    rainy, _ = renderer.render_clip(frames_to_float(clean))
    return write_video(path, frames_to_uint8(rainy), 25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/serve.png", help="PNG to write")
    parser.add_argument("--frames", type=int, default=24, help="frames of the clip (default 24)")
    parser.add_argument("--seed", type=int, default=3, help="rain seed (default 3)")
    parser.add_argument("--device", default="cpu", help="device of the server (default cpu)")
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="Chromium executable")
    args = parser.parse_args()
    if not args.chromium:
        parser.error("no chromium on the PATH; install it (apt-get install chromium) or pass --chromium")

    from playwright.sync_api import sync_playwright

    from estinet.serve import create_app
    from estinet.serve.server import BackgroundServer

    with tempfile.TemporaryDirectory(prefix="estinet-shot-") as tmp:
        clip = rainy_clip(Path(tmp) / "street in the rain.mp4", args.frames, args.seed)
        app = create_app(devices=[args.device], work_dir=Path(tmp) / "work", keep_minutes=60)
        with BackgroundServer(app) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
            page.goto(server.url)
            page.wait_for_selector("#model option[value=tiny]", state="attached")
            page.select_option("#model", "tiny")
            page.set_input_files("#file", str(clip))
            page.click("#start")
            page.wait_for_selector(".job[data-state=done] a.download:not([hidden])", timeout=600_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.job video')].every(v => v.readyState >= 2)", timeout=60_000
            )
            # both players on the same frame (the follower follows the leader's seek)
            page.evaluate(
                """async () => {
                    const leader = document.querySelector('.job video.derained');
                    const follower = document.querySelector('.job video.rainy');
                    const seeked = (v) => new Promise((done) => v.addEventListener('seeked', done, {once: true}));
                    const both = Promise.all([seeked(leader), seeked(follower)]);
                    leader.currentTime = 0.5;
                    await both;
                }"""
            )
            # headless Chromium's media controls always read 0:00 / 0:00; leave them out of the picture
            page.evaluate("document.querySelector('.job video.derained').controls = false")
            page.mouse.move(0, 0)
            page.wait_for_timeout(500)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
