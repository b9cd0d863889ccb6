"""CPU frame-parallel workers: the same frames as one at a time, the caller's threads untouched, errors propagate."""

from __future__ import annotations

import threading

import pytest
import torch

from estinet.config import preset_config
from estinet.errors import DerainError
from estinet.inference import Derainer
from estinet.inference.tiles import FrameWorkers
from estinet.models import build_model
from estinet.models.estinet import ESTINet
from tests.helpers import textured_clip


def _model(gate: bool) -> ESTINet:
    torch.manual_seed(0)
    model = build_model(preset_config("estinet", "tiny", rain_gate=gate))
    assert isinstance(model, ESTINet)
    if gate:  # a gate that is not uniformly open
        torch.nn.init.normal_(model.estm.gate[-1].weight, std=0.5)
    return model


@pytest.mark.filterwarnings("ignore::estinet.inference.derainer.TileSizeWarning")
@pytest.mark.parametrize("tile", [0, 32])
def test_workers_equal_one_frame_at_a_time(tile: int) -> None:
    """Two workers (batch 2, frames and windows split among threads), whole frames and tiles, motion on and a gated
    model: the frames of ``workers=1``."""
    model = _model(gate=True)
    clip = textured_clip(7, 48, 160, seed=1, shift=1.5)[0]
    margin = 16 if tile else None  # real tiles: crops smaller than the frame (and different from untiled output)
    one = Derainer(model, device="cpu", workers=1, tile=tile, tile_margin=margin)
    two = Derainer(model, device="cpu", workers=2, tile=tile, tile_margin=margin)
    want, got = one.derain_clip(clip), two.derain_clip(clip)
    assert one.last_stats.plan is not None and one.last_stats.plan.batch == 1
    assert two.last_stats.plan is not None and two.last_stats.plan.batch == 2
    assert two.tiler.workers is not None and two.workers == 2
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_workers_keep_the_callers_threads_and_run_without_autograd() -> None:
    seen: list[tuple[int, int, bool, str]] = []
    after: dict[str, int] = {}

    def caller() -> None:  # a thread of its own: the suite's one-thread setting would hide a change
        torch.set_num_threads(2)
        workers = FrameWorkers(2, threads=1)
        try:
            seen.extend(
                workers.map(
                    lambda i: (
                        i,
                        torch.get_num_threads(),
                        torch.is_inference_mode_enabled(),
                        threading.current_thread().name,
                    ),
                    range(4),
                )
            )
        finally:
            workers.close()
        after["caller"] = torch.get_num_threads()
        later = threading.Thread(target=lambda: after.update(later=torch.get_num_threads()))
        later.start()  # a thread that starts after the workers takes torch's process-wide default
        later.join()

    before = torch.get_num_threads()
    thread = threading.Thread(target=caller)
    try:
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(before)
    assert [s[0] for s in seen] == [0, 1, 2, 3]  # in order
    assert all(s[1] == 1 and s[2] for s in seen)
    assert all(s[3].startswith("estinet-frame") for s in seen)
    assert after == {"caller": 2, "later": 2}


def test_worker_errors_propagate() -> None:
    workers = FrameWorkers(2)

    def fail(i: int) -> int:
        if i == 1:
            raise ValueError("frame 1 is broken")
        return i

    try:
        with pytest.raises(ValueError, match="frame 1 is broken"):
            workers.map(fail, range(3))
    finally:
        workers.close()


def test_workers_option_is_checked() -> None:
    with pytest.raises(DerainError, match="workers must be a positive integer"):
        Derainer(_model(gate=False), device="cpu", workers=0)
    assert Derainer(_model(gate=False), device="cpu", workers=1).tiler.workers is None


def test_workers_take_small_frames_only() -> None:
    """By default two threads make two workers for short operations (tiny at 640x480: a batch of 2) and one frame at
    a time for long ones (tiny at 1920x1080, small at 640x480, where two frames at once measured slower); workers
    given explicitly are used at every size."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tiny = Derainer(_model(gate=False), device="cpu")
        assert tiny.workers == 2 and tiny.tiler.workers is not None
        assert tiny.plan_for(480, 640).batch == 2
        assert tiny.plan_for(1080, 1920).batch == 1
        torch.manual_seed(0)
        small = Derainer(build_model(preset_config("estinet", "small")), device="cpu")
        assert small.plan_for(480, 640).batch == 1
        assert Derainer(_model(gate=False), device="cpu", workers=2).plan_for(1080, 1920).batch == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_workers_end_with_their_derainer() -> None:
    """A dropped Derainer's worker threads end (a server that builds one per job does not collect idle threads)."""
    import gc
    import time

    def workers_alive() -> int:
        return sum(t.name.startswith("estinet-frame") for t in threading.enumerate())

    def collected(left: int) -> int:
        """Collect garbage, then wait (10 s at most) until at most ``left`` worker threads are alive."""
        gc.collect()
        deadline = time.monotonic() + 10
        while workers_alive() > left and time.monotonic() < deadline:
            time.sleep(0.05)
        return workers_alive()

    before = collected(0)  # earlier tests' Derainers (and their threads) go first
    derainer = Derainer(_model(gate=False), device="cpu", workers=2)
    derainer.derain_clip(textured_clip(4, 32, 48)[0])
    assert workers_alive() == before + 2
    del derainer
    assert collected(before) == before
