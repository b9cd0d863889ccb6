"""When the CPU inference forms apply (docs/architecture.md, "On CPUs").

SICM's fusion upsampling, :func:`~estinet.models.sicm.conv_concat`, ESTM's gate and input volume have forms for CPU
inference that compute the plain calls' function to float rounding with fewer memory passes. Training (autograd),
tracing and ONNX export, ``torch.compile`` (whose compiler fuses the plain calls itself) and GPUs keep the plain
calls; this is the one test of which applies.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cpu_inference"]


def cpu_inference(x: Tensor) -> bool:
    """Whether ``x`` goes through the CPU inference forms: a CPU tensor, autograd off, not traced, exported or
    compiled."""
    if x.device.type != "cpu" or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    return not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()
