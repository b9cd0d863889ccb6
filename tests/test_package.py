"""The package's public API: lazy names resolve, importing stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import estinet


def test_lazy_public_names() -> None:
    from estinet.inference import Derainer

    assert estinet.Derainer is Derainer
    assert callable(estinet.build_model) and callable(estinet.preset_config) and callable(estinet.load_model)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = estinet.nope


def test_import_does_not_load_torch() -> None:
    code = "import sys, estinet; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
