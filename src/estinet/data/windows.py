"""Frame-window indices for sliding-window video models (SPEC §2).

ESTINet restores the centre frame of a window of ``size`` consecutive frames (5 in the paper). Near the ends of a
video the window runs past the first or last frame; this module decides which real frame stands in for each missing
one. Two padding modes are offered:

``"reflect"`` (default)
    Mirror about the end frame *without* repeating it, i.e. the index sequence continues as if the video were played
    forwards and backwards forever: ``0 1 2 ... n-1 n-2 ... 1 0 1 2 ...``. This is the rule of SPEC §2: for centre 0
    and size 5 the window is ``[2, 1, 0, 1, 2]``. The mirror is applied repeatedly (a periodic mirror with period
    ``2 * (n - 1)``), so a window wider than the video still gets valid indices and never shows the same frame twice
    in a row (for ``n >= 2``). Examples::

        n=12, centre=0,  size=5 -> [2, 1, 0, 1, 2]
        n=12, centre=1,  size=5 -> [1, 0, 1, 2, 3]
        n=12, centre=11, size=5 -> [9, 10, 11, 10, 9]
        n=3,  centre=0,  size=7 -> [1, 2, 1, 0, 1, 2, 1]
        n=2,  centre=0,  size=5 -> [0, 1, 0, 1, 0]
        n=2,  centre=1,  size=5 -> [1, 0, 1, 0, 1]
        n=1,  centre=0,  size=5 -> [0, 0, 0, 0, 0]   (a single frame can only repeat itself)

``"replicate"``
    Clamp to the nearest end frame (BasicSR's ``"replicate"``): ``n=12, centre=0, size=5 -> [0, 0, 0, 1, 2]``.

Every window has exactly ``size`` entries (nothing is dropped) and entry ``size // 2`` is always ``centre``. Odd sizes
are centred; an even size (the paper's ablation uses 2 and 4 frames) reaches one frame further into the past than into
the future: offsets ``-(size // 2) .. size - 1 - size // 2``, e.g. size 2 -> ``[t-1, t]``, size 4 -> ``[t-2 .. t+1]``.
"""

from __future__ import annotations

__all__ = ["PADDING_MODES", "all_windows", "frames_needed", "window_indices"]

PADDING_MODES: tuple[str, ...] = ("reflect", "replicate")


def _check_int(name: str, value: object) -> int:
    """Return ``value`` if it is a plain integer (not a bool), else raise ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    return value


def _validate(num_frames: int, size: int, mode: str) -> None:
    """Validate the arguments shared by every function of this module."""
    _check_int("num_frames", num_frames)
    _check_int("size", size)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}; a video needs at least one frame")
    if size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size}")
    if mode not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; use one of {', '.join(repr(m) for m in PADDING_MODES)}")


def _reflect(index: int, num_frames: int) -> int:
    """Map any integer onto ``[0, num_frames)`` by periodic mirroring without repeating the end frames."""
    if num_frames == 1:
        return 0
    period = 2 * (num_frames - 1)
    folded = index % period  # Python's % is non-negative for a positive period
    return folded if folded < num_frames else period - folded


def window_indices(num_frames: int, centre: int, size: int = 5, mode: str = "reflect") -> list[int]:
    """Frame indices of the window centred on ``centre``.

    Args:
        num_frames: Number of frames in the video, >= 1.
        centre: Index of the frame to restore, in ``[0, num_frames)``.
        size: Window length >= 1 (5 for ESTINet); even sizes lean one frame into the past.
        mode: ``"reflect"`` (mirror without repeating the end frame, SPEC §2) or ``"replicate"`` (clamp).

    Returns:
        ``size`` frame indices, each in ``[0, num_frames)``, in temporal order; entry ``size // 2`` is ``centre``.

    Raises:
        TypeError: If ``num_frames``, ``centre`` or ``size`` is not an int.
        ValueError: If ``num_frames < 1``, ``size`` < 1, or ``mode`` is unknown.
        IndexError: If ``centre`` is outside ``[0, num_frames)``.

    Examples:
        >>> window_indices(12, 0)
        [2, 1, 0, 1, 2]
        >>> window_indices(12, 0, mode="replicate")
        [0, 0, 0, 1, 2]
        >>> window_indices(2, 0)
        [0, 1, 0, 1, 0]
    """
    _validate(num_frames, size, mode)
    _check_int("centre", centre)
    if not 0 <= centre < num_frames:
        raise IndexError(f"centre {centre} is outside the video; it must be in [0, {num_frames - 1}]")
    start = centre - size // 2
    raw = range(start, start + size)
    if mode == "reflect":
        return [_reflect(i, num_frames) for i in raw]
    return [min(max(i, 0), num_frames - 1) for i in raw]


def all_windows(num_frames: int, size: int = 5, mode: str = "reflect") -> list[list[int]]:
    """The windows of every frame of a video, in frame order.

    Args:
        num_frames: Number of frames in the video, >= 1.
        size: Window length >= 1.
        mode: Padding mode, see :func:`window_indices`.

    Returns:
        ``num_frames`` lists; list ``t`` is ``window_indices(num_frames, t, size, mode)``.

    Raises:
        TypeError: If ``num_frames`` or ``size`` is not an int.
        ValueError: If ``num_frames < 1``, ``size`` < 1, or ``mode`` is unknown.
    """
    _validate(num_frames, size, mode)
    return [window_indices(num_frames, t, size, mode) for t in range(num_frames)]


def frames_needed(num_frames: int, centre: int, size: int = 5, mode: str = "reflect") -> range:
    """The contiguous range of frames that the window of ``centre`` reads.

    Intended for streaming buffers: output frame ``centre`` can be produced once frame ``range.stop - 1`` has been
    read, and frames before ``range.start`` are no longer needed by it. In both padding modes the set of indices a
    window touches is exactly this range (no gaps), namely
    ``[max(0, centre - size // 2), min(num_frames - 1, centre + size // 2)]``.

    Args:
        num_frames: Number of frames in the video, >= 1.
        centre: Index of the frame to restore, in ``[0, num_frames)``.
        size: Window length >= 1.
        mode: Padding mode, see :func:`window_indices`.

    Returns:
        ``range(first, last + 1)`` of the frame indices the window uses.

    Raises:
        TypeError: If ``num_frames``, ``centre`` or ``size`` is not an int.
        ValueError: If ``num_frames < 1``, ``size`` < 1, or ``mode`` is unknown.
        IndexError: If ``centre`` is outside ``[0, num_frames)``.
    """
    indices = window_indices(num_frames, centre, size, mode)
    return range(min(indices), max(indices) + 1)
