"""The GPU fast path: batched motion, batched alignment, CUDA graphs, the memory cap (CPU checks + CUDA checks)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from estinet.errors import DerainError
from estinet.inference import Derainer
from estinet.inference.plan import DEFAULT_CUDA_CAP_GIB
from estinet.models.motion import StreamingMotion, translate_batch_into, translate_into
from tests.test_inference import moving, tiny_model

SHIFTS = [(0.0, 0.0), (1.0, -2.0), (0.3, -0.7), (-5.25, 3.5), (20.0, -30.2), (-12.9, 16.99), (0.0, 0.5), (0.999, 0.0)]


def test_translate_batch_equals_per_image_loop() -> None:
    x = torch.rand(len(SHIFTS), 4, 13, 17, generator=torch.Generator().manual_seed(0))
    ref = torch.empty_like(x)
    for i, (dy, dx) in enumerate(SHIFTS):
        translate_into(ref[i], x[i], dy, dx)
    out = torch.full_like(x, float("nan"))
    translate_batch_into(out, x, SHIFTS)
    assert torch.equal(out, ref)  # exact in float32: zero fractions, integer shifts and clamped edges alike
    assert torch.equal(out[0], x[0])


def test_translate_batch_checks_shift_count() -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="one \\(dy, dx\\) per image"):
        translate_batch_into(torch.empty_like(x), x, [(0.0, 0.0)])


def test_push_sequence_equals_frame_by_frame_push() -> None:
    clip = moving(9, 64, 80, shift=1.7)
    single = StreamingMotion()
    one_by_one = torch.cat([single.push(frame[None]) for frame in clip])  # (9, 2)
    batched = StreamingMotion()
    parts = [batched.push_sequence(clip[:4]), batched.push_sequence(clip[4:5]), batched.push_sequence(clip[5:])]
    together = torch.cat(parts)
    assert torch.equal(together[0], torch.zeros(2))
    assert (together - one_by_one).abs().max() < 1e-4
    assert together[1:, 1].abs().min() > 0.5  # the clip pans along x: a wrong pairing would not give these
    assert torch.allclose(batched.last_confidence, single.last_confidence, atol=1e-5)


def test_push_sequence_refuses_another_size() -> None:
    motion = StreamingMotion()
    motion.push_sequence(moving(3, 64, 80))
    with pytest.raises(ValueError, match="call reset"):
        motion.push_sequence(moving(3, 48, 80))


@pytest.mark.parametrize("motion", [True, False])
def test_batched_alignment_streams_like_per_frame_alignment(motion: bool) -> None:
    clip = moving(7, 40, 56, shift=2.3)
    derainer = Derainer(tiny_model(), device="cpu", batch=3, motion=motion)
    reference = derainer.derain_clip(clip)
    derainer.tiler = dataclasses.replace(derainer.tiler, batched_align=True)
    assert torch.equal(derainer.derain_clip(clip), reference)
    assert (reference - derainer.derain_per_window(clip)).abs().max() < 1e-5


def test_max_memory_caps_the_plan() -> None:
    derainer = Derainer(tiny_model(), device="cpu", batch=8, max_memory=0.8)
    plan = derainer.plan_for(1080, 1920, available=64 << 30)
    assert plan.estimated_bytes <= 0.8 * 2**30
    assert plan.tile is not None and plan.batch == 1  # whole 1080p frames do not fit in 0.8 GiB
    free = Derainer(tiny_model(), device="cpu", batch=8).plan_for(1080, 1920, available=64 << 30)
    assert free.tile is None and free.batch == 8
    with pytest.raises(DerainError, match="memory cap"):
        Derainer(tiny_model(), device="cpu", max_memory=0.1).plan_for(1080, 1920, available=64 << 30)


@pytest.mark.parametrize("value", [0, -1.0, True])
def test_max_memory_must_be_positive(value: float) -> None:
    with pytest.raises(DerainError, match="max_memory"):
        Derainer(tiny_model(), device="cpu", max_memory=value)


def test_cuda_graphs_need_cuda() -> None:
    assert not Derainer(tiny_model(), device="cpu").cuda_graphs
    with pytest.raises(DerainError, match="needs a CUDA device"):
        Derainer(tiny_model(), device="cpu", cuda_graphs=True)


def test_default_cuda_caps() -> None:
    assert DEFAULT_CUDA_CAP_GIB == {"tiny": 4.0, "small": 8.0}
    assert Derainer(tiny_model(), device="cpu").max_memory is None


# ---------------------------------------------------------------------------------------------------------------------
# CUDA (runs only where a GPU is present)
# ---------------------------------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("motion", [True, False])
def test_cuda_graphs_equal_eager(motion: bool) -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    clip = moving(11, 96, 128, shift=2.0).cuda()  # 11 frames in batches of 4: a short last batch is padded
    eager = Derainer(tiny_model(), device="cuda", half=False, tile=0, batch=4, motion=motion, cuda_graphs=False)
    graphed = Derainer(tiny_model(), device="cuda", half=False, tile=0, batch=4, motion=motion)
    assert graphed.cuda_graphs and graphed.tiler.batched_align
    out = graphed.derain_clip(clip)
    assert len(graphed.tiler.graphs) == 2  # one per-frame and one per-window graph
    assert (out - eager.derain_clip(clip)).abs().max() < 1e-5
    assert (out - eager.derain_per_window(clip)).abs().max() < 1e-5
    again = graphed.derain_clip(clip)  # replayed, not captured again
    assert len(graphed.tiler.graphs) == 2 and torch.equal(again, out)


@needs_cuda
def test_cuda_fast_path_half_precision_matches_reference() -> None:
    clip = moving(9, 96, 128, shift=1.5).cuda()
    fast = Derainer(tiny_model(), device="cuda", tile=0)
    reference = Derainer(tiny_model(), device="cpu").derain_per_window(clip.cpu())
    assert (fast.derain_clip(clip).cpu() - reference).abs().max() < 2e-2


@needs_cuda
def test_cuda_default_cap_at_1080p() -> None:
    derainer = Derainer("tiny", device="cuda")
    assert derainer.max_memory == 4.0
    plan = derainer.plan_for(1080, 1920)
    assert plan.estimated_bytes <= 4 * 2**30
    torch.cuda.reset_peak_memory_stats()
    frames = torch.rand(6, 3, 1080, 1920, device="cuda")
    for _ in derainer.derain_tensors(iter(frames)):
        pass
    assert torch.cuda.max_memory_allocated() <= 4 * 2**30


def test_background_reader_keeps_order_and_raises_in_place() -> None:
    import numpy as np

    from estinet.inference.video import BackgroundReader

    def source():
        for i in range(5):
            yield np.full((2, 2, 3), i, np.uint8)
        raise OSError("corrupt packet after frame 4")

    reader = BackgroundReader(source(), depth=2)
    seen = []
    with pytest.raises(OSError, match="corrupt packet"):
        for frame in reader:
            seen.append(int(frame[0, 0, 0]))
    assert seen == [0, 1, 2, 3, 4]


def test_background_reader_stops_a_blocked_worker() -> None:
    import itertools

    import numpy as np

    from estinet.inference.video import BackgroundReader

    reader = BackgroundReader((np.zeros((1, 1, 3), np.uint8) for _ in itertools.count()), depth=2)
    first = next(iter(reader))
    assert first.shape == (1, 1, 3)
    reader.stop()  # the worker waits on a full queue: it must notice and end
    assert not reader._thread.is_alive()


class EagerGraph:
    """A CPU stand-in for :class:`~estinet.inference.graphs.GraphedCall`: static buffers, eager replays."""

    captured = 0
    whole_warmups = 0

    def __init__(
        self, fn: Any, example: list[torch.Tensor], amp_dtype: Any, pool: Any = None, warmup_whole: bool = False
    ) -> None:
        self.fn = fn
        EagerGraph.whole_warmups += warmup_whole
        self.inputs = [t.clone() for t in example]
        self.pool = "pool"
        self.seconds = 0.0
        self.outputs = None
        EagerGraph.captured += 1

    def replay(self) -> Any:
        out = self.fn(*self.inputs)
        if self.outputs is None:
            self.outputs = out
        elif isinstance(out, tuple):  # later results land in the first replay's buffers, as a graph's do
            for static, value in zip(self.outputs, out, strict=True):
                static.copy_(value)
        else:
            self.outputs.copy_(out)
        return self.outputs

    def __call__(self, *inputs: torch.Tensor) -> Any:
        for static, given in zip(self.inputs, inputs, strict=True):
            if given is not static:
                static.copy_(given)
        return self.replay()


@pytest.mark.parametrize("motion", [True, False])
def test_graph_buffers_stream_like_plain_calls(monkeypatch: pytest.MonkeyPatch, motion: bool) -> None:
    """The static-buffer logic of the CUDA-graph path (inputs gathered into the graph's buffers, a short last batch
    padded, per-frame terms copied out of the buffers) checked on CPU with an eager stand-in for the graph."""
    import estinet.inference.tiles as tiles

    monkeypatch.setattr(tiles, "GraphedCall", EagerGraph)
    clip = moving(11, 40, 56, shift=2.3)  # 11 frames in batches of 4: the last batch is short
    derainer = Derainer(tiny_model(), device="cpu", batch=4, motion=motion, tile=0)
    reference = derainer.derain_clip(clip)
    derainer.tiler = dataclasses.replace(derainer.tiler, cuda_graphs=True, batched_align=True)
    EagerGraph.captured = EagerGraph.whole_warmups = 0
    out = derainer.derain_clip(clip)
    assert EagerGraph.captured == 2 and len(derainer.tiler.graphs) == 2
    assert EagerGraph.whole_warmups == 0  # plain calls warm up on one item; compiled ones on the captured batch
    assert (out - reference).abs().max() < 1e-6
    assert torch.equal(derainer.derain_clip(clip), out) and EagerGraph.captured == 2  # replayed, not captured


def test_graphs_of_compiled_calls_warm_up_on_the_captured_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a compiled model the graph stand-in is warmed up on whole batches (compilation before capture); the
    output is the plain calls' (``backend="eager"``: traced by the compiler, not code-generated, to stay fast)."""
    import estinet.inference.tiles as tiles
    from estinet.inference.compiled import CompiledSeam

    monkeypatch.setattr(tiles, "GraphedCall", EagerGraph)
    clip = moving(7, 40, 56, shift=2.3)
    derainer = Derainer(tiny_model(), device="cpu", batch=4, tile=0, workers=1)
    reference = derainer.derain_clip(clip)
    seam = CompiledSeam(derainer.model, mode=None, backend="eager")
    derainer.tiler = dataclasses.replace(derainer.tiler, model=seam, cuda_graphs=True, batched_align=True)
    EagerGraph.captured = EagerGraph.whole_warmups = 0
    out = derainer.derain_clip(clip)
    assert EagerGraph.captured == 2 and EagerGraph.whole_warmups == 2
    assert (out - reference).abs().max() < 1e-5
    assert derainer.setup_seconds() > 0.0


@pytest.mark.parametrize(
    "shifts",
    [[(0.0, 0.0)] * 3, [(0.0, 1.5), (0.0, -2.0), (0.0, 0.0)], [(2.0, 0.0), (-1.0, 0.0), (0.0, 0.0)]],
    ids=["static", "x only", "whole pixels in y"],
)
def test_translate_batch_shortcuts_equal_the_loop(shifts: list[tuple[float, float]]) -> None:
    x = torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(1))
    ref = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shifts):
        translate_into(ref[i], x[i], dy, dx)
    out = torch.full_like(x, float("nan"))
    translate_batch_into(out, x, shifts)
    assert torch.equal(out, ref)


def test_gated_shipped_model_in_bf16_autocast() -> None:
    """The rain gate's mask is cast to the frames' dtype (half-precision autocast made lerp refuse mixed dtypes)."""
    clip = moving(5, 32, 48)
    half = Derainer("tiny", device="cpu", half=True).derain_clip(clip)
    full = Derainer("tiny", device="cpu").derain_clip(clip)
    assert half.dtype == torch.float32 and (half - full).abs().max() < 0.05


def test_cuda_half_precision_plan_uses_its_measured_footprint() -> None:
    from estinet.config import preset_config
    from estinet.inference.plan import footprint, plan_frames

    cuda = torch.device("cuda")  # only the batch options depend on it: nothing runs there

    def plan(preset: str, on_cuda: bool, height: int, width: int, cap: float) -> tuple[int, int | None, float]:
        config = preset_config("estinet", preset)
        fp = footprint(config, window_size=5, official=False, half=True, cuda=on_cuda)
        p = plan_frames(
            height, width, fp, tile=None, margin=32, batch=None, device=cuda, available=140 << 30, cap=int(cap * 2**30)
        )
        return p.batch, p.tile, p.estimated_bytes

    assert plan("tiny", True, 480, 640, 4)[:2] == (16, None)
    assert plan("tiny", False, 480, 640, 4)[:2] == (8, None)  # the cross-device estimate
    batch, tile, estimate = plan("tiny", True, 1080, 1920, 4)
    # measured on an H200: a batch-4 graph's capture peaked at 6.06 GB (above the cap), so the plan takes 2
    assert (batch, tile) == (2, None) and estimate <= 4 << 30
    assert plan("small", True, 480, 640, 8)[:2] == (16, None)
    assert plan("small", True, 1080, 1920, 8)[:2] == (2, None)
