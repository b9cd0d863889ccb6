"""``estinet serve``: a local web page to derain videos (needs the ``serve`` extra: ``pip install 'estinet[serve]'``).

- :mod:`estinet.serve.app`: the Starlette application, :func:`create_app` (its API is listed there);
- :mod:`estinet.serve.jobs`: the job queue, one worker thread per device;
- :mod:`estinet.serve.uploads`: names, zips, limits, checks and browser-playable previews;
- :mod:`estinet.serve.server`: :func:`serve_main`, uvicorn on a checked address;
- ``static/``: the page (plain HTML, CSS and JavaScript, no build step).

Importing this package loads neither the web stack nor torch; :func:`create_app` and :func:`serve_main` do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "serve_main"]

if TYPE_CHECKING:
    from estinet.serve.app import create_app
    from estinet.serve.server import serve_main


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from estinet.serve.app import create_app

        return create_app
    if name == "serve_main":
        from estinet.serve.server import serve_main

        return serve_main
    raise AttributeError(f"module 'estinet.serve' has no attribute {name!r}")
