"""Shared pieces of the ``estinet serve`` tests: tiny clips, a served app, uploads, waiting for a state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from estinet.data.video_io import write_video
from tests.helpers import textured_clip

BASE_URL = "http://127.0.0.1:8000"
CSRF = {"X-Estinet": "1"}


def frames(t: int = 6, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """(t, h, w, 3) uint8 textured frames panning one pixel per frame."""
    clip = textured_clip(t, h, w, seed=seed, shift=1.0)[0]  # (t, 3, h, w) in [0, 1]
    return (clip.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy()


def write_clip(path: Path, t: int = 6, h: int = 48, w: int = 64) -> Path:
    """A tiny H.264 clip written with the project's own writer."""
    return write_video(path, frames(t, h, w), 25)


@contextmanager
def serving(tmp_path: Path, **options: Any) -> Iterator[Any]:
    """A started app on the CPU (work folder under ``tmp_path/work``) and a test client addressed to 127.0.0.1."""
    from starlette.testclient import TestClient

    from estinet.serve import create_app

    options.setdefault("devices", ["cpu"])
    app = create_app(work_dir=tmp_path / "work", **options)
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


def upload(client: Any, content: bytes | Path, name: str = "rainy.mp4", **options: str) -> Any:
    """POST an upload the way the page does (raw body, options in the query string)."""
    body = content.read_bytes() if isinstance(content, Path) else content
    return client.post("/api/jobs", params={"name": name, **options}, content=body, headers=CSRF)


def wait_for(client: Any, job_id: str, states: tuple[str, ...], timeout: float = 60.0, **fields: Any) -> dict:
    """Poll the job until its state is one of ``states`` (and ``fields`` match); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job.get("state") in states and all(job.get(k) == v for k, v in fields.items()):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach {states} {fields or ''} in {timeout} s: {job}")


def job_folders(tmp_path: Path) -> list[str]:
    """The job folders inside the server's work folder."""
    return sorted(p.name for p in (tmp_path / "work").glob("estinet-serve-*/*"))
