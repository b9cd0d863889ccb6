"""Regenerate tests/data/golden_tiny.npz: `python -m tests.data.make_golden` from the repository root.

Run it only when a deliberate change alters the tiny model's function, and say so in the commit message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from estinet.config import preset_config
from estinet.models import build_model
from tests.helpers import textured_clip


def main() -> None:
    torch.manual_seed(0)
    model = build_model(preset_config("estinet", "tiny")).eval()
    with torch.no_grad():
        coarse, refined = model(textured_clip(5, 24, 40, seed=7, shift=1.5))
    out = Path(__file__).with_name("golden_tiny.npz")
    np.savez_compressed(out, coarse=coarse.numpy(), refined=refined.numpy())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
