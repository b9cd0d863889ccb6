"""Run ``estinet serve``: check the extra and the address, print where the page is, run uvicorn until Ctrl+C."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from estinet.serve.uploads import ServeError

__all__ = ["BackgroundServer", "require_extra", "serve_main"]

EXTRA_MODULES = ("starlette", "uvicorn")
"""What the ``serve`` extra installs that estinet itself does not."""


def require_extra() -> None:
    """Raise :class:`ServeError` naming the extra when its packages are missing."""
    import importlib

    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ServeError(
            f"estinet serve needs the serve extra ({', '.join(missing)} missing): pip install 'estinet[serve]'"
        )


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), so that a busy port fails with a one-line error."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port") from None
    sock.set_inheritable(True)
    return sock


def serve_main(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    work_dir: str | Path | None = None,
    max_upload_mb: float = 1024.0,
    max_frames: int = 3000,
    keep_minutes: float = 60.0,
    devices: Sequence[str] = ("auto",),
) -> int:
    """Serve the page until interrupted; the work folder is removed on the way out.

    Args:
        host: address to listen on (default loopback only; any other prints a warning).
        port: TCP port (0: any free port).
        work_dir: where the server's own folder is made (default: the system's temporary folder).
        max_upload_mb: the largest upload in MiB.
        max_frames: the most frames a video may have.
        keep_minutes: how long results are kept after a job ends.
        devices: torch devices, one job at a time on each.

    Returns:
        0 once the server has stopped.

    Raises:
        ServeError: the extra is missing, the address cannot be used, or the options are invalid.
    """
    require_extra()
    import uvicorn

    from estinet.serve.app import create_app, host_warning

    app = create_app(
        devices=devices,
        work_dir=work_dir,
        max_upload_mb=max_upload_mb,
        max_frames=max_frames,
        keep_minutes=keep_minutes,
        host=host,
    )
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    warning = host_warning(host, port)
    if warning is not None:
        print(f"estinet: warning: {warning}", file=sys.stderr)
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    manager = app.state.jobs
    print(
        f"estinet serve: open http://{shown}:{port}/ ({', '.join(manager.devices)}; uploads up to "
        f"{max_upload_mb:g} MiB and {max_frames} frames; results kept {keep_minutes:g} min; Ctrl+C stops)",
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


class BackgroundServer:
    """The application served by uvicorn on a thread, for tests, scripts and notebooks.

    Use it as a context manager: entering starts the server and waits until it accepts connections, leaving stops it
    (running the application's shutdown, which removes its work folder).

    Args:
        app: an ASGI application (:func:`~estinet.serve.app.create_app`).
        host: address to listen on.
        port: TCP port (0: a free one; :attr:`url` says which).
    """

    def __init__(self, app: object, host: str = "127.0.0.1", port: int = 0) -> None:
        require_extra()
        import threading

        import uvicorn

        self._socket = _listen(host, port)
        self.port: int = self._socket.getsockname()[1]
        shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
        self.url = f"http://{shown}:{self.port}"
        """The server's address, e.g. ``http://127.0.0.1:43123``."""
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="estinet-serve-uvicorn", daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server and wait for its shutdown."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(60)
        self._socket.close()
