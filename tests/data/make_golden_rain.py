"""Write tests/data/golden_rain.npz: the first-generation presets rendered by the renderer before its second generation.

    python tests/data/make_golden_rain.py [RAIN_MODULE.py]

Run once with the old ``estinet/data/rain.py`` (``git show 6869f65:src/estinet/data/rain.py > old_rain.py``) as the
argument; ``tests/data/test_rain.py`` checks that today's renderer still gives the same frames, so that the numbers
measured with ``light``, ``heavy`` and ``ntu`` stay reproducible.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE, FRAMES, SEED = (24, 32), 3, 5
SHIFT = (0.7, -0.3)


def scene() -> np.ndarray:
    """The clean clip (T, H, W, 3) float32 the golden frames are rendered over."""
    rng = np.random.default_rng(0)
    return rng.random((FRAMES, *SIZE, 3)).astype(np.float32)


def main() -> None:
    """Render the three presets with the given module (default: the installed estinet) and save them."""
    if len(sys.argv) > 1:
        spec = importlib.util.spec_from_file_location("old_rain", sys.argv[1])
        assert spec is not None and spec.loader is not None
        rain = importlib.util.module_from_spec(spec)
        sys.modules["old_rain"] = rain  # dataclasses look their module up
        spec.loader.exec_module(rain)
    else:
        from estinet.data import rain
    out = {}
    for name in ("light", "heavy", "ntu"):
        renderer = rain.RainRenderer(rain.PRESETS[name], *SIZE, seed=SEED)
        rainy, alpha = renderer.render_clip(scene(), np.tile(np.array([SHIFT]), (FRAMES, 1)))
        out[f"{name}_rainy"], out[f"{name}_alpha"] = rainy, alpha
    np.savez_compressed(HERE / "golden_rain.npz", **out)


if __name__ == "__main__":
    main()
