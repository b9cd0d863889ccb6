"""The model table printed by ``estinet info`` and shown in the README."""

from __future__ import annotations

from collections.abc import Sequence

from estinet.config import preset_config
from estinet.models.complexity import measure_complexity


def complexity_table(variants: Sequence[str], presets: Sequence[str], height: int = 480, width: int = 640) -> str:
    """A Markdown table of parameters and GFLOPs per output frame.

    Args:
        variants: variant names.
        presets: width presets (``official`` has one fixed architecture and is listed once).
        height: frame height.
        width: frame width.

    Returns:
        The table, one row per (variant, preset).
    """
    lines = [
        f"| variant | preset | params | GFLOPs/frame streaming ({height}x{width}) | GFLOPs/frame per-window |",
        "|---|---|---:|---:|---:|",
    ]
    for variant in variants:
        for preset in presets:
            if variant == "official" and preset != presets[0]:
                continue  # one fixed architecture, whatever the preset
            c = measure_complexity(preset_config(variant, preset), height, width)
            stream = f"{c.streaming_gflops:.2f}" if variant != "official" else "n/a"
            lines.append(
                f"| {variant} | {preset if variant != 'official' else 'authors'} | {c.params / 1e6:.3f} M "
                f"| {stream} | {c.window_gflops:.2f} |"
            )
    return "\n".join(lines)
