"""The command line that reproduces a benchmark run, for the results it writes."""

from __future__ import annotations

from pathlib import Path


def command_line(prefix: str, options: list[tuple[str, object, object]]) -> str:
    """``prefix`` followed by ``--name value`` for each (name, value, default) whose value is not the default."""
    return prefix + "".join(f" --{name} {value}" for name, value, default in options if value != default)


def report_head(title: str, setup: str, machine: str, note: str = "") -> list[str]:
    """The first lines of a Markdown results page: a title, what was run (``setup``), the machine, the conditions."""
    lines = [f"# {title}", "", setup, "", machine]
    return lines + (["", f"**Conditions.** {note}"] if note else [])


def write_report(lines: list[str], out: str | Path) -> None:
    """Print the Markdown ``lines`` and write them to ``out``."""
    text = "\n".join(lines)
    print(text)
    Path(out).write_text(text, encoding="utf-8")
