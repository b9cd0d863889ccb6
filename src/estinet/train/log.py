"""The run's metrics log: ``metrics.jsonl``, and TensorBoard events when ``torch.utils.tensorboard`` imports.

One JSON object per line: ``{"kind": "train", ...}`` every ``train.log_every`` steps, ``{"kind": "val", ...}`` per
validation. Only rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog"]


class MetricsLog:
    """``metrics.jsonl`` (and TensorBoard events when ``torch.utils.tensorboard`` imports); rank 0 only.

    Args:
        folder: the run folder.
        enabled: whether this process writes (rank 0); a disabled log ignores every record.
        resume_step: the step a resumed run continues from (records after it are dropped, they will be written
            again), or None for a new run (an earlier log is removed).
    """

    def __init__(self, folder: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = folder / "metrics.jsonl"
        self.enabled = enabled
        self.writer: Any = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            # drop lines written after the checkpoint we resume from (they will be written again)
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= resume_step:
                        kept.append(line)
                except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                    continue  # a line cut short by a crash
            self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:
            self.writer = None

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with ``kind`` and ``step``) as one JSON line, and its numbers as TensorBoard scalars."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=False) + "\n")
        if self.writer is not None:
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key not in ("step", "stage"):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
