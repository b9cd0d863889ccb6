"""Tests for estinet.data.windows."""

from __future__ import annotations

import itertools

import pytest

from estinet.data.windows import PADDING_MODES, all_windows, frames_needed, window_indices

SIZES = (1, 3, 5, 7)
LENGTHS = range(1, 13)


@pytest.mark.parametrize(
    ("num_frames", "centre", "size", "expected"),
    [
        (12, 0, 5, [2, 1, 0, 1, 2]),
        (12, 1, 5, [1, 0, 1, 2, 3]),
        (12, 5, 5, [3, 4, 5, 6, 7]),
        (12, 10, 5, [8, 9, 10, 11, 10]),
        (12, 11, 5, [9, 10, 11, 10, 9]),
        (3, 0, 7, [1, 2, 1, 0, 1, 2, 1]),
        (3, 1, 5, [1, 0, 1, 2, 1]),
        (2, 0, 5, [0, 1, 0, 1, 0]),
        (2, 1, 5, [1, 0, 1, 0, 1]),
        (1, 0, 5, [0, 0, 0, 0, 0]),
        (1, 0, 1, [0]),
        (4, 3, 3, [2, 3, 2]),
    ],
)
def test_reflect_examples(num_frames: int, centre: int, size: int, expected: list[int]) -> None:
    assert window_indices(num_frames, centre, size) == expected
    assert window_indices(num_frames, centre, size, mode="reflect") == expected


@pytest.mark.parametrize(
    ("num_frames", "centre", "size", "expected"),
    [
        (12, 0, 5, [0, 0, 0, 1, 2]),
        (12, 11, 5, [9, 10, 11, 11, 11]),
        (12, 6, 3, [5, 6, 7]),
        (2, 0, 5, [0, 0, 0, 1, 1]),
        (1, 0, 3, [0, 0, 0]),
    ],
)
def test_replicate_examples(num_frames: int, centre: int, size: int, expected: list[int]) -> None:
    assert window_indices(num_frames, centre, size, mode="replicate") == expected


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("num_frames", LENGTHS)
def test_every_window_is_valid(num_frames: int, size: int, mode: str) -> None:
    windows = all_windows(num_frames, size, mode)
    assert len(windows) == num_frames
    for centre, window in enumerate(windows):
        assert window == window_indices(num_frames, centre, size, mode)
        assert len(window) == size, "a window never drops frames"
        assert all(isinstance(i, int) and 0 <= i < num_frames for i in window)
        assert window[size // 2] == centre, "the frame being restored sits in the middle"
        # Neighbouring entries are consecutive frames or the same frame (replicate / one-frame video).
        assert all(abs(a - b) <= 1 for a, b in itertools.pairwise(window))
        # The window uses exactly the contiguous range reported for streaming buffers.
        needed = frames_needed(num_frames, centre, size, mode)
        assert set(window) == set(needed)
        radius = size // 2
        assert needed == range(max(0, centre - radius), min(num_frames - 1, centre + radius) + 1)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("num_frames", LENGTHS)
def test_reflect_never_repeats_a_frame_in_a_row(num_frames: int, size: int) -> None:
    for window in all_windows(num_frames, size):
        if num_frames == 1:
            assert window == [0] * size
        else:
            assert all(a != b for a, b in itertools.pairwise(window))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("num_frames", LENGTHS)
def test_reflect_is_symmetric(num_frames: int, size: int) -> None:
    radius = size // 2
    for centre in range(num_frames):
        window = window_indices(num_frames, centre, size)
        # Mirrored about the centre while the window is inside the video ...
        if radius <= centre <= num_frames - 1 - radius:
            assert window == list(range(centre - radius, centre + radius + 1))
        # ... and reflection at the start mirrors the window at the end (time reversal).
        mirrored = window_indices(num_frames, num_frames - 1 - centre, size)
        assert window == [num_frames - 1 - i for i in reversed(mirrored)]
        # A position before frame 0 (or after frame n-1) takes the frame mirrored about that end frame.
        if num_frames > size:
            for position, raw in enumerate(range(centre - radius, centre + radius + 1)):
                if raw < 0:
                    assert window[position] == -raw
                elif raw > num_frames - 1:
                    assert window[position] == 2 * (num_frames - 1) - raw


def test_reflect_matches_periodic_mirror_definition() -> None:
    # Independent definition: index into the sequence 0..n-1, n-2..1 repeated forever.
    for num_frames in range(2, 9):
        tape = list(range(num_frames)) + list(range(num_frames - 2, 0, -1))
        for centre in range(num_frames):
            expected = [tape[i % len(tape)] for i in range(centre - 6, centre + 7)]
            assert window_indices(num_frames, centre, 13) == expected


def test_frames_needed_examples() -> None:
    assert frames_needed(12, 0) == range(0, 3)
    assert frames_needed(12, 5) == range(3, 8)
    assert frames_needed(12, 11) == range(9, 12)
    assert frames_needed(2, 0) == range(0, 2)
    assert frames_needed(1, 0, 7) == range(0, 1)
    assert frames_needed(12, 0, mode="replicate") == range(0, 3)


@pytest.mark.parametrize("size", [0, -1])
def test_bad_size(size: int) -> None:
    with pytest.raises(ValueError, match=f"size must be an integer >= 1, got {size}"):
        window_indices(10, 0, size)
    with pytest.raises(ValueError, match="size must be an integer"):
        all_windows(10, size)


def test_even_sizes_lean_into_the_past() -> None:
    assert window_indices(12, 5, 2) == [4, 5]
    assert window_indices(12, 5, 4) == [3, 4, 5, 6]
    assert window_indices(12, 0, 2) == [1, 0]
    assert window_indices(12, 0, 4) == [2, 1, 0, 1]
    assert window_indices(12, 11, 4) == [9, 10, 11, 10]
    assert frames_needed(12, 0, 4) == range(0, 3)
    for n in range(1, 8):
        for size in (2, 4, 6):
            for w, centre in zip(all_windows(n, size), range(n), strict=True):
                assert len(w) == size and w[size // 2] == centre and all(0 <= i < n for i in w)


@pytest.mark.parametrize("num_frames", [0, -3])
def test_bad_num_frames(num_frames: int) -> None:
    with pytest.raises(ValueError, match=f"num_frames must be >= 1, got {num_frames}"):
        window_indices(num_frames, 0)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        all_windows(num_frames)


@pytest.mark.parametrize("centre", [-1, 5, 100])
def test_bad_centre(centre: int) -> None:
    with pytest.raises(IndexError, match=rf"centre {centre} is outside the video; it must be in \[0, 4\]"):
        window_indices(5, centre)
    with pytest.raises(IndexError, match="outside the video"):
        frames_needed(5, centre)


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="unknown padding mode 'symmetric'; use one of 'reflect', 'replicate'"):
        window_indices(5, 0, mode="symmetric")
    with pytest.raises(ValueError, match="unknown padding mode 'official'"):
        all_windows(5, mode="official")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_frames": 5.0, "centre": 0}, "num_frames"),
        ({"num_frames": 5, "centre": 1.0}, "centre"),
        ({"num_frames": 5, "centre": 0, "size": 5.0}, "size"),
        ({"num_frames": 5, "centre": True}, "centre"),
    ],
)
def test_bad_types(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(TypeError, match=f"{name} must be an int"):
        window_indices(**kwargs)  # type: ignore[arg-type]
