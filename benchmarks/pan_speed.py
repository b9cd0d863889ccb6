"""PSNR-Y of derainers as the camera pans faster: the held-out clips filmed by a pan of a fixed speed.

The held-out benchmark's ``pan`` column draws 0.5-6 px/frame (``estinet.data.camera.CAMERA_PRESETS["pan"]``), as
does training; real footage is often panned faster. This script films the clips with that preset's motion at one
speed at a time (the other pan parameters unchanged) and scores the rainy input and each model on 6 held-out clips x
9 frames at 224x224 (docs/metric_protocol.md: PSNR-Y sequence mean; background PSNR-Y on the pixels the renderer
left rain-free).

    python benchmarks/pan_speed.py --weights tiny,small --rain light,heavy,ntu --speeds 0,4,12,24
    python benchmarks/pan_speed.py --weights tiny --speeds 4,12,24 --parallax 1.6 --no-veil

``--parallax GAIN`` gives every clip two depth layers (``estinet.data.parallax``): the lower part of the frame moves
``GAIN`` times as fast as the rest, as near things do when a camera pans past them, so that one global shift aligns
only one layer (the clips are stills and static-camera videos, which is what the held-out sources are). ``--no-veil``
renders the rain without its veil (haze 0), so that the numbers are about the streaks.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from estinet.data.camera import get_camera_preset
from estinet.data.parallax import SceneMotion
from estinet.evaluate import evaluate, input_predictor, open_eval_dataset
from estinet.inference import Derainer
from heldout import CROP, FRAMES, SEED


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="tiny,small", help="comma-separated shipped names or weights files")
    parser.add_argument("--rain", default="light,heavy,ntu", help="rain presets, drawn per clip")
    parser.add_argument("--speeds", default="0,4,12,24", help="comma-separated pan speeds, px/frame")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallax", type=float, default=0.0, help="near-layer speed gain (> 1; 0: no parallax)")
    parser.add_argument("--no-veil", action="store_true", help="render the rain without its veil")
    args = parser.parse_args()
    if args.parallax and args.parallax <= 1:
        parser.error(f"--parallax is the near layer's speed relative to the rest, > 1, got {args.parallax}")
    scene = 0.0
    if args.parallax:
        gain = (args.parallax, args.parallax)
        scene = SceneMotion(fraction=1.0, parallax=1.0, layers=(2, 2), near_gain=gain, objects=0.0)
    try:
        speeds = [float(s) for s in args.speeds.split(",")]
    except ValueError:
        parser.error(f"--speeds must be comma-separated numbers (px/frame), got {args.speeds!r}")
    if any(not 0 <= s < float("inf") for s in speeds):
        parser.error(f"--speeds must be finite and >= 0 px/frame, got {args.speeds!r}")
    torch.set_num_threads(args.threads)
    predictors = {"input": input_predictor}
    for name in args.weights.split(","):
        predictors[name] = Derainer(weights=name, device="cpu").derain_frames
    pan = get_camera_preset("pan")
    print("| pan speed (px/frame) | " + " | ".join(predictors) + " |")
    print("|---:|" + "---:|" * len(predictors))
    for speed in speeds:
        motion = dataclasses.replace(pan, pan_speed=(speed, speed))
        data = open_eval_dataset(
            f"synthetic:{args.rain}",
            clips=args.clips,
            clip_frames=FRAMES,
            crop=CROP,
            seed=SEED,
            camera=motion,
            veil=0.0 if args.no_veil else 1.0,
            scene_motion=scene,
        )
        cells = []
        for name, predict in predictors.items():
            report = evaluate(predict, data, progress=False, method=name).to_dict()
            cell = f"{report['sequence_mean']['psnr_y']:.2f} (bg {report['background_psnr_y']:.2f}"
            if report.get("streaks_removed") is not None:
                cell += f", streaks {report['streaks_removed']:.1f} %"
            cells.append(cell + ")")
        print(f"| {speed:g} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
