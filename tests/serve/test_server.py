"""``estinet serve`` on the command line: the address warning, a busy port, the missing extra, lazy imports."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from estinet.cli import main

pytest.importorskip("starlette")

from estinet.serve.app import host_warning, is_loopback


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True)])
def test_loopback_addresses_need_no_warning(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert host_warning(host, 8000) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "my-laptop.local"])
def test_other_addresses_warn(host: str) -> None:
    assert not is_loopback(host)
    warning = host_warning(host, 8000)
    assert warning is not None and "there is no login" in warning and "default 127.0.0.1" in warning


def test_serve_prints_the_address_and_warns_beyond_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    ran: list[list[socket.socket]] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(sockets))
    args = ["serve", "--port", "0", "--work-dir", str(tmp_path), "--device", "cpu", "--keep-minutes", "5"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("estinet serve: open http://127.0.0.1:") and "results kept 5 min" in out
    assert err == ""
    assert main([*args, "--host", "0.0.0.0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("estinet serve: open http://0.0.0.0:")
    assert err.startswith("estinet: warning: listening on 0.0.0.0:") and "anyone who can reach it" in err
    assert len(ran) == 2 and all(len(sockets) == 1 for sockets in ran)


def test_busy_port_and_bad_options_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--work-dir", str(tmp_path), "--device", "cpu"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", "--max-frames", "0", "--device", "cpu"]) == 2
    assert "max_frames must be a positive integer" in capsys.readouterr().err
    assert main(["serve", "--device", "cuda:7"]) == 2
    assert capsys.readouterr().err.startswith("estinet: error: device=cuda:7")
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "estinet: error: estinet serve needs the serve extra (uvicorn missing): pip install 'estinet[serve]'\n"
    )


def test_other_commands_do_not_import_the_web_stack() -> None:
    code = (
        "import sys; from estinet.cli import build_parser; build_parser().parse_args(['serve', '--port', '1']); "
        "import estinet.serve; print(sorted(m for m in ('starlette', 'uvicorn', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    version = subprocess.run(
        [sys.executable, "-c", "from estinet.cli import main; main(['--version'])"], capture_output=True, text=True
    )
    assert version.stdout.startswith("estinet ")
