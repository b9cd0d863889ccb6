"""Test-suite settings: one torch thread, so timings and results do not depend on other load on the machine."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
