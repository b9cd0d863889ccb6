"""CUDA graphs for the streaming calls: one captured graph per call and shape, replayed on static buffers.

On a GPU the small convolutions of ``tiny`` and ``small`` take microseconds each, so a window's forward costs more
in kernel launches from Python than in arithmetic. A CUDA graph records the whole call once and replays it with a
single launch. Shapes are fixed per graph, so the streaming code pads a short last batch to the captured batch
(:class:`~estinet.inference.tiles.Tiler`) and writes its inputs straight into the graph's static input buffers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from estinet import runtime

__all__ = ["GraphedCall"]

WARMUP_CALLS = 2
"""Eager calls on a side stream before capture (lazy state is created), on the inputs' first item: every input's
first dimension is the batch."""


class GraphedCall:
    """A function of tensors captured as a CUDA graph (inputs and outputs are static buffers).

    Args:
        fn: the function; it must not synchronise with the host nor branch on tensor values.
        example: its inputs, batch first; copied into the static input buffers (shapes, dtypes, layouts kept).
        amp_dtype: autocast dtype during capture (the weight-cast cache off, as graphs require), or None.
        pool: a memory pool shared with other graphs (``torch.cuda.graph_pool_handle()``), or None for a new one.
        warmup_whole: warm up on the whole batch instead of its first item: a compiled ``fn``
            (:mod:`estinet.inference.compiled`) must be compiled for the captured shapes before the capture.

    Attributes:
        inputs: the static input buffers: write the next inputs into them (or pass them to :meth:`__call__`).
        outputs: the static outputs of the last replay; overwritten by the next one.
        seconds: wall time of the warm-up and capture.
        pool: the graph's memory pool (pass it to the next graph to share memory).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        example: Sequence[Tensor],
        amp_dtype: torch.dtype | None,
        pool: Any = None,
        warmup_whole: bool = False,
    ) -> None:
        start = time.perf_counter()
        self.inputs = [t.clone(memory_format=torch.preserve_format) for t in example]
        device = self.inputs[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), runtime.autocast(device, amp_dtype, cache=False):
            # on the first item only (an eager call of the whole batch would peak at the eager footprint, several
            # times the graph's: bench-gpu.md), unless a compiled fn has to see the captured shapes first
            for _ in range(WARMUP_CALLS):
                fn(*(self.inputs if warmup_whole else [t[:1] for t in self.inputs]))
        torch.cuda.current_stream(device).wait_stream(side)
        self.pool = torch.cuda.graph_pool_handle() if pool is None else pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=self.pool), runtime.autocast(device, amp_dtype, cache=False):
            self.outputs = fn(*self.inputs)
        torch.cuda.synchronize(device)
        self.seconds = time.perf_counter() - start

    def replay(self) -> Any:
        """Run the graph on the current contents of :attr:`inputs`; returns :attr:`outputs`."""
        self.graph.replay()
        return self.outputs

    def __call__(self, *inputs: Tensor) -> Any:
        """Copy ``inputs`` into the static buffers (skipping any that already are them) and replay."""
        for static, given in zip(self.inputs, inputs, strict=True):
            if given is not static:
                static.copy_(given)
        return self.replay()
