"""The options, reproducing command line and Markdown page shared by the CPU speed scripts."""

from __future__ import annotations

import argparse
import statistics
import subprocess
from pathlib import Path
from typing import Any

SHOWN = ("frames", "rounds", "size", "threads")
"""Options the reproducing command line names when they differ from their defaults."""


def add_speed_options(parser: argparse.ArgumentParser, *, frames: int, threads_help: str, out: Path) -> None:
    """``--frames --warmup --rounds --size --modes --threads --note --out`` of a speed script."""
    parser.add_argument("--frames", type=int, default=frames, help=f"timed frames per measurement (default {frames})")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement; the best counts")
    parser.add_argument("--size", default="480x640", help="HxW (default 480x640)")
    parser.add_argument("--modes", nargs="+", default=["streaming", "end-to-end"], help="benchmark modes")
    parser.add_argument("--threads", type=int, help=threads_help)
    parser.add_argument("--note", default="", help="conditions to state in the results (e.g. other jobs running)")
    parser.add_argument("--out", default=str(out), help="Markdown output")


def command_line(prefix: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``prefix`` followed by ``--name value`` for each of :data:`SHOWN` whose value is not the parser's default."""
    values = [(name, getattr(args, name)) for name in SHOWN]
    return prefix + "".join(f" --{name} {value}" for name, value in values if value != parser.get_default(name))


def report_head(title: str, setup: str, machine: str, note: str = "") -> list[str]:
    """The first lines of a Markdown results page: a title, what was run (``setup``), the machine, the conditions."""
    lines = [f"# {title}", "", setup, "", machine]
    return lines + (["", f"**Conditions.** {note}"] if note else [])


def write_report(lines: list[str], out: str | Path) -> None:
    """Print the Markdown ``lines`` and write them to ``out``."""
    text = "\n".join(lines)
    print(text)
    Path(out).write_text(text, encoding="utf-8")


def tree_name(root: Path) -> str:
    """This working tree's short commit, with ``+ uncommitted changes`` when ``src`` differs from it."""
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def comparison_table(
    modes: list[str],
    best: dict[tuple[str, str], dict[str, Any]],
    rates: dict[tuple[str, str], list[float]],
    names: tuple[str, str],
    labels: tuple[str, str],
    frames: int,
) -> list[str]:
    """Markdown table of alternating rounds of two measured sides ``names = (reference, candidate)``.

    Args:
        modes: benchmark modes, one row each.
        best: the best round of each (side, mode): ``{"fps": ..., "stages": {stage: seconds}}``.
        rates: frames/s of every round of each (side, mode), the rounds in order.
        names: the keys of the reference and the candidate in ``best`` and ``rates``.
        labels: how the header names them (e.g. ``("baseline", "this tree")``).
        frames: timed frames per round (the stages are per frame).
    """
    ref, new = names
    lines = [
        f"| mode | {labels[0]}: best (median) frames/s | {labels[1]}: best (median) | ratio of bests (of medians) "
        f"| rounds {labels[1]} was faster | stages of {labels[1]} (ms per frame) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for mode in modes:
        b, t = best[ref, mode], best[new, mode]
        b_med, t_med = statistics.median(rates[ref, mode]), statistics.median(rates[new, mode])
        won = sum(x > y for x, y in zip(rates[new, mode], rates[ref, mode], strict=True))
        stages = ", ".join(f"{k} {v / frames * 1000:.0f}" for k, v in (t.get("stages") or {}).items())
        lines.append(
            f"| {mode} | {b['fps']:.2f} ({b_med:.2f}) | {t['fps']:.2f} ({t_med:.2f}) | {t['fps'] / b['fps']:.2f} "
            f"({t_med / b_med:.2f}) | {won} of {len(rates[new, mode])} | {stages} |"
        )
    return lines


def difference_line(frames: int, compared: str, largest: float, changed: int, total: int, levels: int) -> str:
    """The sentence on how far apart two runs' outputs on the benchmark's panning clip are."""
    return (
        f"Outputs on the benchmark's panning clip ({frames} frames): largest |{compared}| {largest:.1e}; "
        f"{changed} of the {total:,} 8-bit output values differ, by at most {levels} level(s)."
    )


LIFT_SUFFIX = "+lift"
"""Appended to a weights name in a benchmark's ``--weights`` list: derain with ``lift_veil=True``."""


def derainer_for(spec: str, **options: Any) -> Any:
    """A CPU :class:`~estinet.inference.Derainer` for one entry of a ``--weights`` list (``NAME`` or ``NAME+lift``).

    Args:
        spec: a shipped name or weights file, with :data:`LIFT_SUFFIX` to lift the veil as well.
        **options: further Derainer arguments.

    Returns:
        The Derainer.
    """
    from estinet.inference import Derainer

    name = spec.removesuffix(LIFT_SUFFIX)
    return Derainer(name, device="cpu", lift_veil=spec.endswith(LIFT_SUFFIX), **options)


def weights_label(spec: str) -> str:
    """A short label of a ``--weights`` entry: the file's stem (or the shipped name), and ``+lift`` when lifting."""
    name = spec.removesuffix(LIFT_SUFFIX)
    stem = Path(name).stem if name.endswith((".safetensors", ".pt")) else name
    if stem in ("model", "best", "last"):  # a run folder's weights: name the run
        stem = Path(name).parent.name
    return stem + (LIFT_SUFFIX if spec.endswith(LIFT_SUFFIX) else "")
