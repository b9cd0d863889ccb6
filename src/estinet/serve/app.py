"""The web application of ``estinet serve``: a Starlette app with a JSON API and one static page.

API (every answer is JSON except the files; errors are ``{"error": "message"}`` with a 4xx status):

==========================================  ====================================================================
``GET /``                                   the page (``static/index.html``, ``page.js``, ``page.css``)
``GET /api/config``                         models, default model, devices, limits, keep time
``POST /api/jobs?name=&model=&motion=...``  the raw file as the request body (not a form): a video, or a zip of
                                            frames; answers 201 and the job, or 400/413/422/429 and why not
``GET /api/jobs``                           ``{"jobs": [...]}``, oldest first
``GET /api/jobs/{id}``                      one job: state, queue position, frames done of total, frames/s, ETA
``DELETE /api/jobs/{id}``                   cancel an active job (queued: off the queue; running: stops at its
                                            next frame); remove an ended one with its files
``GET /api/jobs/{id}/rainy.mp4``            the browser-playable previews (H.264, yuv420p, even size)
``GET /api/jobs/{id}/derained.mp4``
``GET /api/jobs/{id}/result``               the result with the input's audio, as an attachment
==========================================  ====================================================================

``POST`` and ``DELETE`` need the header ``X-Estinet: 1``: a page of another site cannot send it without the browser
asking first (and this server never says yes), so other sites cannot start or cancel jobs from a visitor's browser.
While the server listens on a loopback address it answers only requests addressed to a loopback name (``Host``
header), which stops DNS-rebinding pages. The body is written straight into the job's folder, counted against the
upload limit as it arrives; nothing is written outside the manager's work folder.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from estinet.serve.jobs import JobManager, JobOptions
from estinet.serve.uploads import (
    Limits,
    ServeError,
    UploadError,
    display_name,
    extract_frames,
    is_zip,
    probe,
    stored_suffix,
)

__all__ = ["create_app", "host_warning", "is_loopback"]

CSRF_HEADER = "x-estinet"
"""The header ``POST`` and ``DELETE`` requests must carry (value ``1``)."""

_JOB_ID = re.compile(r"[0-9a-f]{16}")

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) reaches only this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_warning(host: str, port: int) -> str | None:
    """The warning ``estinet serve`` prints when it listens beyond this machine, or None on a loopback address."""
    if is_loopback(host):
        return None
    return (
        f"listening on {host}:{port}, not only on this machine: anyone who can reach it can upload videos, keep its "
        "devices busy, and see and download every job's results (there is no login); use it only on a network you "
        "trust, or omit --host (default 127.0.0.1)"
    )


def _host_name(value: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8000`` -> ``::1``, ``localhost:8000`` -> ``localhost``)."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _Guard:
    """ASGI middleware: loopback ``Host`` names only (when listening on loopback), and safe response headers."""

    def __init__(self, app: ASGIApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_only:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not is_loopback(_host_name(host)):
                response = JSONResponse({"error": "this server answers only requests to 127.0.0.1 or localhost"}, 421)
                await response(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", PAGE_POLICY.encode()),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status)


def _static_folder() -> Path:
    return Path(str(resources.files("estinet.serve") / "static"))


def _parse_options(query: Any, models: Sequence[str], default_model: str) -> JobOptions:
    """The job options from the upload's query string: ``model``, ``motion`` (auto, on, off), ``lossless`` (0, 1),
    ``crf`` (0-51), ``tile`` (auto, 0, pixels), ``keep_partial`` (0, 1)."""
    model = query.get("model") or default_model
    if model not in models:
        raise UploadError(f"unknown model {model!r}; this server has {', '.join(models)}", status=400)
    motion_text = query.get("motion", "auto")
    motions = {"auto": None, "on": True, "off": False}
    if motion_text not in motions:
        raise UploadError(f"motion must be auto, on or off, got {motion_text!r}", status=400)
    crf_text = query.get("crf", "18")
    if not crf_text.isdigit() or not 0 <= int(crf_text) <= 51:
        raise UploadError(f"crf must be an integer from 0 (best) to 51, got {crf_text!r}", status=400)
    tile_text = query.get("tile", "auto") or "auto"
    if tile_text != "auto" and (not tile_text.isdigit() or int(tile_text) > 8192):
        raise UploadError(f"tile must be auto, 0 (whole frames) or a size in pixels, got {tile_text!r}", status=400)
    tile = None if tile_text == "auto" else int(tile_text)
    flags = {}
    for flag in ("lossless", "keep_partial"):
        text = query.get(flag, "0")
        if text not in ("0", "1"):
            raise UploadError(f"{flag} must be 0 or 1, got {text!r}", status=400)
        flags[flag] = text == "1"
    return JobOptions(model, motions[motion_text], flags["lossless"], int(crf_text), tile, flags["keep_partial"])


def _prepare(raw: Path, folder: Path, name: str, limits: Limits) -> Path:
    """Turn the received file into a job's source: a zip becomes a frames folder, anything else keeps a safe
    suffix; then :func:`~estinet.serve.uploads.probe` it. Runs on a worker thread."""
    if raw.stat().st_size == 0:
        raise UploadError(f"{name} is empty; choose a video file or a zip of frames")
    if is_zip(raw):
        frames = folder / "frames"
        frames.mkdir()
        try:
            extract_frames(raw, frames, limits, name)
        finally:
            raw.unlink()
        source = frames
    else:
        source = raw.rename(folder / f"upload{stored_suffix(name)}")
    probe(source, limits, name)
    return source


def create_app(
    *,
    devices: Sequence[str] = ("auto",),
    work_dir: str | Path | None = None,
    max_upload_mb: float = 1024.0,
    max_frames: int = 3000,
    keep_minutes: float = 60.0,
    host: str = "127.0.0.1",
    max_pending: int = 16,
    models: Sequence[str] | None = None,
) -> Starlette:
    """The ``estinet serve`` application (run it with uvicorn, or test it with Starlette's ``TestClient``).

    The work folder is created when the application starts (its lifespan) and removed when it stops.

    Args:
        devices: torch devices, one job at a time on each (``auto``: CUDA when available, else the CPU).
        work_dir: where the server's own folder ``estinet-serve-XXXX`` is made (default: the system's temporary
            folder); only that folder is ever written or removed.
        max_upload_mb: the largest upload in MiB; a zip may unpack to 4x this.
        max_frames: the most frames a video (or images a zip) may have.
        keep_minutes: how long results (and the status of ended jobs) are kept after a job ends.
        host: the address the server listens on; on a loopback address only loopback ``Host`` names are answered.
        max_pending: uploads being received, checked or queued at most.
        models: the shipped weights names offered (default: all of :func:`estinet.checkpoint.shipped_weights`).

    Returns:
        The Starlette application; ``app.state.jobs`` is its :class:`~estinet.serve.jobs.JobManager`.

    Raises:
        DeviceError: a device that is not available.
        ServeError: invalid limits, or a device named twice.
        WeightsError: no shipped weights, or an unknown model name.
    """
    from estinet.checkpoint import WeightsError, default_weights, shipped_weights
    from estinet.runtime import resolve_device

    shipped = list(shipped_weights())
    names = list(models) if models is not None else shipped
    unknown = [name for name in names if name not in shipped]
    if unknown or not names:
        raise WeightsError(f"unknown model(s) {', '.join(unknown) or '(none)'}; shipped: {', '.join(shipped)}")
    default_model = default_weights() if default_weights() in names else names[0]
    resolved = [str(resolve_device(device)) for device in devices]
    if len(set(resolved)) != len(resolved):
        raise ServeError(f"each device once, please: {', '.join(resolved)}")
    if not keep_minutes >= 0:
        raise ServeError(f"keep_minutes must be 0 or more, got {keep_minutes!r}")
    limits = Limits.from_megabytes(max_upload_mb, max_frames)
    manager = JobManager(resolved, limits, keep_seconds=60.0 * keep_minutes, work_dir=work_dir, max_pending=max_pending)
    static = _static_folder()

    async def page(request: Request) -> Response:
        return FileResponse(static / "index.html", media_type="text/html")

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "models": names,
                "default_model": default_model,
                "devices": resolved,
                "max_upload_bytes": limits.max_upload_bytes,
                "max_frames": limits.max_frames,
                "keep_minutes": keep_minutes,
            }
        )

    def _job(request: Request) -> Any:
        job_id = request.path_params["job_id"]
        job = manager.get(job_id) if _JOB_ID.fullmatch(job_id) else None
        if job is None:
            return _error(
                f"no job {job_id!r}: it never existed, was removed, or ended more than {keep_minutes:g} minutes ago",
                404,
            )
        return job

    async def list_jobs(request: Request) -> Response:
        return JSONResponse({"jobs": [manager.snapshot(job) for job in manager.jobs()]})

    async def upload(request: Request) -> Response:
        if request.headers.get(CSRF_HEADER) != "1":
            return _error(f"uploads need the header {CSRF_HEADER}: 1 (the page sends it)", 403)
        name = display_name(request.query_params.get("name"))
        try:
            options = _parse_options(request.query_params, names, default_model)
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limits.max_upload_bytes:
                raise UploadError(_too_large(name, limits), status=413)
            job_id, folder = manager.reserve()
        except UploadError as error:
            return _error(str(error), error.status)
        raw = folder / "upload.part"
        try:
            size = 0
            with raw.open("wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_upload_bytes:
                        raise UploadError(_too_large(name, limits), status=413)
                    fh.write(chunk)
            source = await run_in_threadpool(_prepare, raw, folder, name, limits)
        except UploadError as error:
            manager.discard(folder)
            return _error(str(error), error.status)
        except ClientDisconnect:
            manager.discard(folder)
            return _error("the upload was interrupted", 400)
        except OSError as error:  # a full or read-only disk on the server: say so, keep running
            manager.discard(folder)
            return _error(f"the server cannot store {name}: {error.strerror or type(error).__name__}", 507)
        except BaseException:
            manager.discard(folder)
            raise
        job = manager.submit(job_id, folder, name, source, options)
        return JSONResponse(manager.snapshot(job), 201)

    async def job_status(request: Request) -> Response:
        job = _job(request)
        return job if isinstance(job, Response) else JSONResponse(manager.snapshot(job))

    async def cancel(request: Request) -> Response:
        if request.headers.get(CSRF_HEADER) != "1":
            return _error(f"cancelling needs the header {CSRF_HEADER}: 1 (the page sends it)", 403)
        job = _job(request)
        if isinstance(job, Response):
            return job
        manager.cancel(job.id)
        if manager.get(job.id) is None:
            return JSONResponse({"id": job.id, "state": "removed"})
        return JSONResponse(manager.snapshot(job), 202 if job.state not in ("cancelled", "done", "failed") else 200)

    async def job_file(request: Request) -> Response:
        job = _job(request)
        if isinstance(job, Response):
            return job
        kind = request.path_params["kind"]
        path = {"rainy.mp4": job.rainy_preview, "derained.mp4": job.derained_preview, "result": job.result}.get(kind)
        if kind not in ("rainy.mp4", "derained.mp4", "result"):
            return _error(f"no file {kind!r}; a job has rainy.mp4, derained.mp4 and result", 404)
        if path is None or (kind != "rainy.mp4" and job.state != "done") or not path.is_file():
            return _error(f"{kind} of {job.name} is not ready (the job is {job.state})", 404)
        if kind == "result":
            media = "video/x-matroska" if path.suffix == ".mkv" else "video/mp4"
            return FileResponse(path, media_type=media, filename=job.download_name)
        return FileResponse(path, media_type="video/mp4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            await run_in_threadpool(manager.stop)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/config", config),
            Route("/api/jobs", list_jobs, methods=["GET"]),
            Route("/api/jobs", upload, methods=["POST"]),
            Route("/api/jobs/{job_id}", job_status, methods=["GET"]),
            Route("/api/jobs/{job_id}", cancel, methods=["DELETE"]),
            Route("/api/jobs/{job_id}/{kind}", job_file, methods=["GET"]),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.jobs = manager
    app.add_middleware(_Guard, loopback_only=is_loopback(host))
    return app


def _too_large(name: str, limits: Limits) -> str:
    return (
        f"{name} is larger than {limits.max_upload_bytes / 2**20:.4g} MiB, this server's upload limit (--max-upload-mb)"
    )
