"""Two-stage ESTINet training with checkpoints that survive interruption, and DDP from torchrun's environment.

One module per job; each module's docstring states its rules:

- :mod:`~estinet.train.distributed`: torchrun's environment, the process group, devices, collectives.
- :mod:`~estinet.train.schedule`: the two stages (what each trains) and their learning-rate schedules.
- :mod:`~estinet.train.state`: RNG streams, the resumable checkpoint (one format, also a weights file), ``init_from``.
- :mod:`~estinet.train.sampling`: the training dataset, the seeded and resumable sample order, the DataLoader.
- :mod:`~estinet.train.validation`: validation windows and their scores; the metric that selects ``best.pt``.
- :mod:`~estinet.train.log`: ``metrics.jsonl`` and TensorBoard events.
- :mod:`~estinet.train.trainer`: :class:`Trainer`, the step, the fit loop and the run folder.
- :mod:`~estinet.train.run`: :func:`train` and the config a command means.

``python -m estinet.train`` (and ``torchrun ... -m estinet.train``) is the ``estinet train`` command.
"""

from __future__ import annotations

from estinet.train.distributed import DistInfo, local_rank_from_env, resolve_device, setup_distributed
from estinet.train.run import resolve_config, run_folder, train, train_main
from estinet.train.sampling import BatchPlan, build_train_dataset
from estinet.train.schedule import Stage, StageSchedule, stage_plan
from estinet.train.state import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEYS,
    CheckpointError,
    init_from_weights,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
)
from estinet.train.trainer import Trainer
from estinet.train.validation import BEST_METRIC, evaluate_windows

__all__ = [
    "BEST_METRIC",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEYS",
    "BatchPlan",
    "CheckpointError",
    "DistInfo",
    "Stage",
    "StageSchedule",
    "Trainer",
    "build_train_dataset",
    "evaluate_windows",
    "init_from_weights",
    "load_training_checkpoint",
    "local_rank_from_env",
    "resolve_config",
    "resolve_device",
    "rng_state",
    "run_folder",
    "save_training_checkpoint",
    "seed_everything",
    "set_rng_state",
    "setup_distributed",
    "stage_plan",
    "train",
    "train_main",
]
