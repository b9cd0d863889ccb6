"""Shared test inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F


def textured_clip(t: int, h: int, w: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """A smooth seeded random texture whose content moves right by ``shift`` pixels per frame.

    Args:
        t: frames.
        h: height.
        w: width.
        seed: texture seed.
        shift: horizontal motion in pixels per frame (|t * shift| <= 16).

    Returns:
        (1, t, 3, h, w) in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, h // 4 + 4, w // 4 + 8, generator=g), scale_factor=4, mode="bicubic")
    hb, wb = base.shape[-2:]  # h + 16 (>=), w + 32 (>=)
    ys = torch.arange(h, dtype=torch.float32) + 8
    frames = []
    for k in range(t):
        xs = torch.arange(w, dtype=torch.float32) + 16 - k * shift  # out(x) = base(x + 16 - dx): content moves +dx
        gy, gx = torch.meshgrid(2 * ys / (hb - 1) - 1, 2 * xs / (wb - 1) - 1, indexing="ij")
        grid = torch.stack([gx, gy], -1)[None]  # (1, h, w, 2)
        frames.append(F.grid_sample(base, grid, mode="bicubic", align_corners=True))
    return torch.stack(frames, 1).clamp(0, 1)  # (1, t, 3, h, w)


def write_pyav_video(
    path: Path,
    frames: np.ndarray,
    *,
    fps: Fraction | int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_codec: str | None = None,
    audio_seconds: float | None = None,
    click_at: float | None = None,
    comment: str | None = None,
    rotation: int | None = None,
) -> None:
    """Write a fixture with PyAV directly (independent of the code under test).

    With ``audio_codec`` it adds 44.1 kHz mono audio: a 440 Hz sine, or with ``click_at`` silence with one 10 ms
    1 kHz burst starting ``click_at`` seconds into the audio (a sync marker). ``rotation`` sets the display-rotation
    metadata in degrees (as phones record).
    """
    container = av.open(str(path), "w")
    if comment is not None:
        container.metadata["comment"] = comment
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = pix_fmt
    if rotation is not None:
        stream.set_display_rotation(rotation)
    audio = None
    if audio_codec is not None:
        audio = container.add_stream(audio_codec, rate=44100)
        audio.layout = "mono"
    container.start_encoding()
    for index, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    if audio is not None:
        seconds = audio_seconds if audio_seconds is not None else len(frames) / float(fps)
        t = np.arange(round(44100 * seconds)) / 44100
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        if click_at is not None:
            burst = (t >= click_at) & (t < click_at + 0.01)
            wave = (0.8 * np.sin(2 * np.pi * 1000 * (t - click_at)) * burst).astype(np.float32)[None]
        sample_format = audio.codec_context.format.name
        data = (wave * 32767).astype(np.int16) if sample_format == "s16" else wave
        audio_frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout="mono")
        audio_frame.sample_rate = 44100
        audio_frame.pts = 0
        for packet in audio.encode(audio_frame):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    container.close()
