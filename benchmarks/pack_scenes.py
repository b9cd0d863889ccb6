"""Pack the ``make data`` training photographs into a small folder tree for a machine without the Debian packages.

A GPU machine lent for a training run has no network: the photographs that ``make data`` installs under
``/usr/share`` travel with the working tree instead (the device tool carries at most 64 MiB). This copies every
photograph that :func:`estinet.data.sources.debian_photo_sources` uses and the frames used of the opencv-doc clips,
downscaled to ``--max-side`` pixels on the long side (JPEG for photographs, PNG kept for PNG files), into the same
relative paths under ``--out``; point ``ESTINET_DATA_ROOT`` at that folder and the training sources find them there
(a plasma wallpaper keeps one image, named by its new ``WxH`` as the package names them). Training loads stills at
most 1280 pixels long anyway (``MAX_STILL_SIDE``), so an 800-pixel copy loses a little detail at most.

    python benchmarks/pack_scenes.py --out .scenes            # then: ESTINET_DATA_ROOT=.scenes estinet train ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from estinet.data import sources


def pack(out: Path, max_side: int, quality: int, root: str | Path = "/") -> tuple[int, int]:
    """Copy the used photographs found under ``root`` into ``out``; returns (files, bytes)."""
    files = total = 0
    for source in sources.debian_photo_sources(root):
        path = Path(source.path)
        relative = path.relative_to(root)
        if source.origin == "plasma-workspace-wallpapers":
            relative = relative.parent  # .../contents/images/<WxH>.<ext>: renamed below to the new size
        image = Image.open(path).convert("RGB")
        scale = min(1.0, max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        if source.origin == "plasma-workspace-wallpapers":
            target = out / relative / f"{image.width}x{image.height}.jpg"
        else:
            target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix.lower() == ".png":
            image.save(target, optimize=True)
        else:
            image.save(target, format="JPEG", quality=quality)
        files += 1
        total += target.stat().st_size
    return files, total


def pack_clips(out: Path, root: str | Path = "/") -> tuple[int, int]:
    """Copy the first frames that training uses of each opencv-doc clip (MPEG-4, the writer's ``.avi``) into ``out``
    under its first sample folder; returns (files, bytes)."""
    from estinet.data.video_io import open_frames, open_writer

    files = total = 0
    folder = sources._OPENCV_DIRS[0].lstrip("/")
    for name in sources._OPENCV_CLIPS:
        path = Path(root, folder, name)
        if not path.is_file():
            continue
        target = out / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_frames(path, keep_partial=True) as frames:  # tree.avi decodes 68 of the frames it announces
            sink = None
            for index, frame in enumerate(frames):
                if index == sources._OPENCV_MAX_FRAMES:
                    break
                if sink is None:
                    sink = open_writer(target, frames.fps, frame.shape[1], frame.shape[0], overwrite=True)
                sink.write(frame)
            if sink is not None:
                sink.close()
        files += 1
        total += target.stat().st_size
    return files, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".scenes", help="output folder (default .scenes, ignored by git)")
    parser.add_argument("--max-side", type=int, default=800, help="longest side in pixels (default 800)")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    args = parser.parse_args()
    files, total = pack(Path(args.out), args.max_side, args.quality)
    clips, clip_bytes = pack_clips(Path(args.out))
    if not files:
        print("no photographs found: run `make data` first")
        return 1
    print(
        f"packed {files} photographs and {clips} clips, {(total + clip_bytes) / 2**20:.1f} MiB, into {args.out}; "
        f"use ESTINET_DATA_ROOT={args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
