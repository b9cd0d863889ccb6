"""The options, reproducing command line and Markdown page shared by the CPU speed scripts."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def difference_line(frames: int, compared: str, largest: float, changed: int, total: int, levels: int) -> str:
    """The sentence on how far apart two runs' outputs on the benchmark's panning clip are."""
    return (
        f"Outputs on the benchmark's panning clip ({frames} frames): largest |{compared}| {largest:.1e}; "
        f"{changed} of the {total:,} 8-bit output values differ, by at most {levels} level(s)."
    )
