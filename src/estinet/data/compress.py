"""Lossy compression of training clips, as real footage has been compressed before anyone derains it.

Real rainy footage reaches a derainer as H.264 video or JPEG frames; rendered training pairs are exact. A model that
never saw compression treats its blocks and ringing as structure to keep or, around streaks, as rain it half-removes.
:func:`compress_clip` passes a clip through one of the two codecs in memory:

* ``jpeg``: every frame through Pillow's JPEG encoder at ``quality`` (4:2:0 chroma, as cameras and phones write);
* ``h264``: the clip through libx264 (PyAV) at constant rate factor ``quality`` (``crf``; lower is better),
  ``yuv420p``, the ``veryfast`` preset, every frame kept; odd sizes are padded by edge replication for the codec
  and cropped back.

Which target a compressed input trains towards is decided in ``docs/data.md`` from
``benchmarks/compression_target.py``: the clean clip compressed the same way (same codec, same quality), so that
a pixel the rain left alone is the same in input and target and the model can leave it alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image

__all__ = ["CODECS", "Compression", "compress_clip", "random_compression"]

CODECS: tuple[str, ...] = ("jpeg", "h264")
JPEG_QUALITY = (40, 95)  # range drawn by random_compression, Pillow's quality scale
H264_CRF = (18, 36)  # range drawn by random_compression, x264's constant rate factor


@dataclass(frozen=True)
class Compression:
    """One lossy compression setting.

    Attributes:
        codec: ``jpeg`` or ``h264``.
        quality: JPEG quality 1..95, or x264 CRF 0..51 (lower is better).
    """

    codec: str
    quality: int

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; use one of {', '.join(CODECS)}")
        low, high = (1, 95) if self.codec == "jpeg" else (0, 51)
        if not low <= int(self.quality) <= high:
            raise ValueError(f"{self.codec} quality must be in {low}..{high}, got {self.quality!r}")


def random_compression(rng: np.random.Generator) -> Compression:
    """Draw a codec (JPEG or H.264, equally likely) and a quality uniformly in its range.

    Args:
        rng: The generator to draw from.

    Returns:
        The drawn setting.
    """
    if rng.random() < 0.5:
        return Compression("jpeg", int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return Compression("h264", int(rng.integers(H264_CRF[0], H264_CRF[1] + 1)))


def _jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality), subsampling=2)
        buf.seek(0)
        with Image.open(buf) as im:
            out[t] = np.asarray(im.convert("RGB"))
    return out


def _h264(frames: np.ndarray, crf: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1"}
        stream.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    decoded = []
    with av.open(buf, mode="r") as container:
        for frame in container.decode(video=0):
            decoded.append(frame.to_ndarray(format="rgb24"))
    if len(decoded) != t:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {t} frames")
    return np.stack(decoded)[:, :h, :w]


def compress_clip(frames: np.ndarray, setting: Compression) -> np.ndarray:
    """Pass a clip through a lossy codec and back.

    Args:
        frames: uint8 (T, H, W, 3) RGB.
        setting: The codec and quality.

    Returns:
        uint8 (T, H, W, 3), the decoded clip.

    Raises:
        ValueError: If ``frames`` is not uint8 (T, H, W, 3).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if setting.codec == "jpeg":
        return _jpeg(frames, setting.quality)
    return _h264(frames, setting.quality)
