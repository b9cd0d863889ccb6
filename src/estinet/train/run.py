"""Entry points: :func:`train` runs a config, :func:`resolve_config` finds the config a command means.

``estinet train`` (:mod:`estinet.cli`) and ``python -m estinet.train`` / ``torchrun ... -m estinet.train``
(:mod:`estinet.train.__main__`) call these directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from estinet.config import ConfigError, ExperimentConfig, experiment_from_dict, load_experiment
from estinet.train.distributed import is_main_process
from estinet.train.state import load_training_checkpoint
from estinet.train.trainer import Trainer

__all__ = ["finished_message", "resolve_config", "run_folder", "train", "train_main"]


def train(
    config: ExperimentConfig,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    stop_at: int | None = None,
) -> Path:
    """Train (or resume) the run a config describes.

    Args:
        config: the experiment.
        out_dir: run folder (default ``config.run_dir``).
        resume: checkpoint to continue from.
        stop_at: stop after this global step (a resumable ``last.pt`` is written), e.g. to split a long run.

    Returns:
        The run folder (``model.safetensors`` holds the final weights once the schedule is complete).
    """
    trainer = Trainer(config, out_dir=out_dir, resume=resume)
    try:
        return trainer.fit(stop_at=stop_at)
    finally:
        trainer.close()


def resolve_config(config_path: str | None, overrides: Sequence[str], resume: str | None) -> ExperimentConfig:
    """The experiment to run: the YAML file (or, when resuming without one, the checkpoint's config) + overrides.

    Raises:
        ConfigError: neither a config nor a checkpoint is given, or a key is unknown.
        CheckpointError: the checkpoint cannot be read.
    """
    if config_path is not None:
        return load_experiment(config_path, list(overrides))
    if resume is not None:
        return experiment_from_dict(load_training_checkpoint(resume)["config"], list(overrides))
    raise ConfigError("give a training config (--config configs/tiny-synthetic.yaml) or a checkpoint to --resume")


def run_folder(out_dir: str | Path | None, resume: str | Path | None) -> Path | None:
    """The run folder a command means: ``out_dir`` if given, else the resumed checkpoint's folder, else None.

    None leaves the choice to :func:`train` (the config's ``out_dir``, ``runs/<name>`` by default).
    """
    if out_dir is not None:
        return Path(out_dir)
    return Path(resume).parent if resume is not None else None


def finished_message(run_dir: Path) -> str | None:
    """The line that tells where a finished run's weights are (None on ranks other than 0, which stay quiet)."""
    if not is_main_process():
        return None
    weights = run_dir / "model.safetensors"
    return f"training finished: {weights if weights.is_file() else run_dir}"


def train_main(config_path: str | None, overrides: list[str], resume: str | None, out_dir: str | None = None) -> int:
    """What ``estinet train`` does, as one call (kept for scripts that used it; the CLI calls the parts itself).

    Returns:
        0 on success (errors propagate as exceptions).
    """
    run_dir = train(resolve_config(config_path, overrides, resume), out_dir=run_folder(out_dir, resume), resume=resume)
    message = finished_message(run_dir)
    if message is not None:
        print(message)
    return 0
