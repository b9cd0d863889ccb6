"""The ``estinet`` command line: thin subcommands over the library.

Library code raises specific exceptions (all :class:`~estinet.errors.EstinetError`); only this module turns them,
and the operating-system errors a user can cause or meet (permissions, read-only media, a full disk:
:func:`estinet.runtime.describe_os_error`), into a one-line error and exit code 2. Any other exception is a bug and
keeps its traceback. Warnings print as one ``estinet: warning: ...`` line each.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from estinet import __version__
from estinet.errors import EstinetError

Subcommands = argparse._SubParsersAction  # the object add_subparsers returns; argparse gives it no public name


def _parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``480x640``) into (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HxW, e.g. 480x640") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


def cmd_info(args: argparse.Namespace) -> int:
    """Print parameters and GFLOPs per output frame for the selected variants and presets."""
    from estinet.config import PRESETS, VARIANTS
    from estinet.models.info import complexity_table

    variants = [args.variant] if args.variant else list(VARIANTS)
    presets = [args.preset] if args.preset else list(PRESETS)
    print(f"estinet {__version__}")
    print(complexity_table(variants, presets, *args.size))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Render seeded synthetic rain over clean footage into a paired dataset (NTURain layout)."""
    from estinet.data.synth import write_synthetic_dataset

    out = write_synthetic_dataset(
        args.clean or None,
        args.output,
        preset=args.preset,
        seed=args.seed,
        frames=args.frames,
        camera=args.camera,
        overwrite=args.overwrite,
        size=args.size,
        versions=args.versions,
        progress=not args.quiet,
    )
    print(f"wrote {out}; score a model on it with: estinet eval --dataset {shlex.quote(f'ntu:{out}')}")
    return 0


DERAINER_OPTIONS = (
    "device",
    "tile",
    "tile_margin",
    "half",
    "batch",
    "threads",
    "workers",
    "motion",
    "official_windows",
    "max_memory",
    "cuda_graphs",
    "backend",
    "onnx_dir",
    "compile",
    "lift_veil",
)
"""``derain`` options that are :class:`~estinet.inference.Derainer` arguments of the same name."""

BENCH_OPTIONS = ("half", "batch", "workers", "max_memory", "cuda_graphs", "compile", "lift_veil")
"""``bench`` options passed to :class:`~estinet.inference.Derainer` (when given)."""

VIDEO_OPTIONS = ("compare", "overwrite", "lossless", "crf", "x264_preset", "keep_partial_input")
"""``derain`` options that are :meth:`~estinet.inference.Derainer.derain_video` arguments of the same name."""


def _pick(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The parsed options ``names`` as keyword arguments (each option's ``dest`` is the library's argument name)."""
    return {name: getattr(args, name) for name in names}


MANY_OPTIONS = ("output_format", "report", "jobs", "ray")
"""``derain`` options that only many-video runs take: any of them asks for one (an output folder)."""

MANY_VIDEO_OPTIONS = ("overwrite", "lossless", "crf", "x264_preset", "keep_partial_input", "max_retries")
"""``derain`` options that are :func:`~estinet.inference.batch.derain_many` arguments of the same name."""


def cmd_derain(args: argparse.Namespace) -> int:
    """Derain a video, frame folder or image (streaming, tiled when large); or many into a folder."""
    from estinet.checkpoint import default_weights
    from estinet.inference.batch import is_many

    if is_many(args.inputs, inputs_from=args.inputs_from) or any(getattr(args, n) is not None for n in MANY_OPTIONS):
        return _derain_many(args)
    from estinet.inference import Derainer
    from estinet.inference.video import report

    derainer = Derainer(args.weights or default_weights(), **_pick(args, DERAINER_OPTIONS))
    report(derainer, args.inputs[0], args.output, progress=not args.quiet, **_pick(args, VIDEO_OPTIONS))
    return 0


def _print_result(result: Any) -> None:
    """One line per input of a many-video run: stdout for done and skipped ones, stderr for failures."""
    if result.status == "failed":
        print(f"estinet: error: {result.input} failed: {result.error}", file=sys.stderr, flush=True)
    elif result.status == "skipped":
        print(f"skipped {result.output} (already there; --overwrite redoes it)", flush=True)
    else:
        fps = result.frames / result.seconds if result.seconds else float("inf")
        print(
            f"wrote {result.output} ({result.frames} frames in {result.seconds:.1f} s, {fps:.2f} frames/s, "
            f"{result.worker})",
            flush=True,
        )


def _derain_many(args: argparse.Namespace) -> int:
    """Many inputs into the folder ``-o``; exit code 1 when any input failed."""
    from estinet.checkpoint import default_weights
    from estinet.errors import DerainError
    from estinet.inference.batch import derain_many

    if args.compare:
        raise DerainError("--compare works with one input; derain the video you want to compare on its own")
    outcome = derain_many(
        args.inputs,
        args.output,
        inputs_from=args.inputs_from,
        weights=args.weights or default_weights(),
        output_format=args.output_format or "mp4",
        report=args.report,
        jobs=args.jobs,
        ray=args.ray,
        progress=not args.quiet,
        on_result=_print_result,
        **_pick(args, DERAINER_OPTIONS),
        **_pick(args, MANY_VIDEO_OPTIONS),
    )
    counts = outcome.counts()
    print(
        f"{counts['ok']} derained, {counts['skipped']} skipped, {counts['failed']} failed of {len(outcome.files)} "
        f"inputs in {outcome.seconds:.1f} s; report: {outcome.path}"
    )
    return 1 if outcome.failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Render rain onto a held-out clip, derain it, print the scores and write the outputs."""
    from estinet.demo import run_demo

    lift = {"auto": None, "keep": False, "lift": True}[args.veil]
    run_demo(args.output, args.weights, args.frames, args.preset, args.seed, args.device, args.overwrite, lift)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a model's streaming graphs and the vs-mlrt window graph to ONNX (checked against PyTorch)."""
    from estinet.checkpoint import default_weights
    from estinet.export import export_onnx

    manifest = export_onnx(
        args.weights or default_weights(),
        args.output,
        opset=args.opset,
        precision=args.precision,
        graphs=tuple(args.graphs),
        overwrite=args.overwrite,
        check=args.check,
    )

    def shapes(named: dict[str, list[int | str]]) -> str:
        return ", ".join(f"{name} ({' x '.join(str(d) for d in shape)})" for name, shape in named.items())

    print(f"wrote {args.output}: {manifest.weights}, {manifest.precision}, opset {manifest.opset}")
    for spec in manifest.graphs.values():
        check = "" if spec.max_abs_diff is None else f"; max |ONNX Runtime - PyTorch| {spec.max_abs_diff:.2g}"
        print(f"  {spec.file}: {shapes(spec.inputs)} -> {shapes(spec.outputs)}{check}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Frames/s and peak memory of each model at several sizes, streaming vs per-window."""
    import json

    from estinet.benchmark import (
        BenchmarkError,
        format_results,
        machine_description,
        results_as_dicts,
        run_benchmark,
    )
    from estinet.checkpoint import shipped_weights

    models = args.models or list(shipped_weights())
    if not models:
        raise BenchmarkError("no shipped weights to benchmark; pass models, e.g. estinet/tiny or a weights file")
    modes = ("streaming",) if args.streaming_only else tuple(args.modes)
    options = {k: v for k, v in _pick(args, BENCH_OPTIONS).items() if v is not None}
    results, peak = run_benchmark(
        models,
        tuple(args.sizes),
        args.device,
        args.frames,
        args.warmup,
        modes,
        backends=tuple(args.backend),
        options=options,
    )
    print(format_results(results, peak, machine_description(args.device)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "machine": machine_description(args.device),
                    "matmul_gflops": peak,
                    "results": results_as_dicts(results),
                },
                fh,
                indent=1,
            )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Two-stage training from a YAML config (also under torchrun for DDP)."""
    from estinet.train import resolve_config, run_folder, train
    from estinet.train.run import finished_message

    config = resolve_config(args.config, args.overrides, args.resume)
    run_dir = train(config, out_dir=run_folder(args.out, args.resume), resume=args.resume)
    message = finished_message(run_dir)  # None on ranks other than 0 under torchrun
    if message is not None:
        print(message)
    return 0


EVAL_OPTIONS = (
    "dataset",
    "weights",
    "variant",
    "method",
    "json_out",
    "csv_out",
    "save_frames",
    "skip_ends",
    "device",
    "split",
    "overwrite",
    "progress",
    "clips",
    "clip_frames",
    "crop",
    "seed",
)
"""``eval`` options, each an :func:`~estinet.evaluate.evaluate_dataset` argument of the same name."""


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a method on a dataset under the metric protocol (SPEC §3)."""
    from estinet.evaluate import evaluate_dataset

    options = _pick(args, EVAL_OPTIONS)
    if options["weights"] is None and options["method"] == "model" and options["variant"] is None:
        from estinet.checkpoint import default_weights

        options["weights"] = default_weights()
    print(evaluate_dataset(**options).to_markdown(), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """A local web page: upload a rainy video, watch the progress, compare, download the result."""
    from estinet.serve.server import serve_main

    return serve_main(
        args.host,
        args.port,
        work_dir=args.work_dir,
        max_upload_mb=args.max_upload_mb,
        max_frames=args.max_frames,
        keep_minutes=args.keep_minutes,
        devices=args.device or ["auto"],
    )


def _add_info(sub: Subcommands) -> None:
    """The ``info`` command's arguments."""
    from estinet.config import PRESETS, VARIANTS

    p = sub.add_parser("info", help="parameters and GFLOPs per output frame of every variant and preset")
    p.add_argument("--variant", choices=VARIANTS, help="only this variant (default: all)")
    p.add_argument("--preset", choices=PRESETS, help="only this width preset (default: all)")
    p.add_argument("--size", type=_parse_size, default=(480, 640), help="frame size HxW (default 480x640)")
    p.set_defaults(func=cmd_info)


def _add_workers(p: argparse.ArgumentParser) -> None:
    """``--workers`` (a Derainer argument)."""
    p.add_argument(
        "--workers",
        type=int,
        help="CPU: frames computed at once, each on its own thread (default: one per CPU thread; 1: one frame at a "
        "time, every operation on all threads)",
    )


def _add_precision_and_memory(p: argparse.ArgumentParser) -> None:
    """``--half/--no-half``, ``--max-memory`` and ``--cuda-graphs/--no-cuda-graphs`` (Derainer arguments)."""
    half = p.add_mutually_exclusive_group()
    half.add_argument("--half", dest="half", action="store_true", default=None, help="half precision (GPU default)")
    half.add_argument("--no-half", dest="half", action="store_false", help="full precision")
    p.add_argument(
        "--max-memory",
        type=float,
        help="memory cap in GiB for the tile/batch plan (default on CUDA: 4 for tiny, 8 for small; else none)",
    )
    graphs = p.add_mutually_exclusive_group()
    graphs.add_argument(
        "--cuda-graphs", dest="cuda_graphs", action="store_true", default=None, help="CUDA graphs (CUDA default)"
    )
    graphs.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", help="plain CUDA launches")
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="compile the model's calls with torch.compile for the frame size (seconds to a minute, cached on disk; "
        "torch backend, one CPU worker)",
    )


def _add_derain(sub: Subcommands) -> None:
    """The ``derain`` command's arguments."""
    from estinet.data.video_io import X264_PRESETS

    p = sub.add_parser(
        "derain",
        help="remove rain from a video, frame folder or image, or from many videos into a folder",
        description="Remove rain from one video, frame folder or image (-o names the output), or from many videos "
        "into the folder -o: several inputs, a folder of videos, a quoted glob or --inputs-from FILE. A many-video "
        "run skips outputs that exist (a rerun resumes), goes on past broken inputs (exit code 1 at the end), writes "
        "a JSON report, and uses every local GPU, or a Ray cluster with --ray.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="video file, folder of frames, or image; several of them, folders of videos or quoted globs "
        "('clips/*.mp4') derain many videos",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output: .mp4/.mkv video, or a folder for PNG frames; the output folder for many videos",
    )
    p.add_argument("--weights", help="shipped name (default tiny), weights file, checkpoint, or COARSE,FINE")
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N or auto (default); many videos: auto and cuda use every GPU, or list cuda:0,cuda:1",
    )
    p.add_argument("--tile", type=int, help="tile size in pixels (default: from free memory; 0 = whole frames)")
    p.add_argument(
        "--tile-margin", type=int, help="tile overlap per side in pixels (default: model's receptive radius)"
    )
    p.add_argument("--threads", type=int, help="CPU threads (many videos: per worker, and CPUs per Ray task)")
    _add_workers(p)
    p.add_argument("--batch", type=int, help="windows per forward pass (default: automatic)")
    _add_precision_and_memory(p)
    motion = p.add_mutually_exclusive_group()
    motion.add_argument("--motion", dest="motion", action="store_true", default=None, help="force motion compensation")
    motion.add_argument("--no-motion", dest="motion", action="store_false", help="disable motion compensation")
    p.add_argument("--official-windows", action="store_true", help="the authors' window padding (official weights)")
    p.add_argument(
        "--lift-veil",
        action="store_true",
        help="also lift the veil of haze that dense rain leaves (weights with a veil head; default: keep it, and "
        "leave the tones of the footage alone)",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="what runs the network: torch (default) or onnxruntime (CPU; pip install 'estinet[onnx]')",
    )
    p.add_argument("--onnx-dir", help="onnxruntime: graphs from estinet export (default: exported to a cache once)")
    p.add_argument("--compare", action="store_true", help="also write a side-by-side (rainy | derained) video")
    p.add_argument("--lossless", action="store_true", help="lossless video output (FFV1/x264rgb)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    p.add_argument(
        "--x264-preset",
        choices=X264_PRESETS,
        default="veryfast",
        help="H.264 encoder speed (default veryfast; medium: smaller files, slower)",
    )
    p.add_argument(
        "--keep-partial-input",
        action="store_true",
        help="derain the frames of a truncated or damaged input video that decode (default: refuse it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (only estinet's own files)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    many = p.add_argument_group("many videos")
    many.add_argument(
        "--inputs-from",
        metavar="FILE",
        help="more inputs, one path or glob a line (# comments; relative to FILE's folder); - reads standard input",
    )
    many.add_argument(
        "--format",
        dest="output_format",
        choices=("mp4", "mkv", "frames"),
        help="output of each video: OUTPUT/<stem>.mp4 (default), .mkv, or a PNG folder OUTPUT/<stem>",
    )
    many.add_argument("--report", metavar="JSON", help="JSON report path (default OUTPUT/estinet-report.json)")
    many.add_argument(
        "--jobs", type=int, metavar="N", help="CPU worker processes sharing the cores (default 1; GPUs: one per GPU)"
    )
    many.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run one Ray task per video: auto (RAY_ADDRESS, the local `ray start` cluster, or a new local one) or a "
        "cluster address; needs pip install 'estinet[ray]'",
    )
    many.add_argument("--max-retries", type=int, default=3, help="Ray retries of a video whose worker died (default 3)")
    p.set_defaults(func=cmd_derain)


def _add_demo(sub: Subcommands) -> None:
    """The ``demo`` command's arguments."""
    p = sub.add_parser("demo", help="derain a held-out clip with synthetic rain and show the scores")
    p.add_argument("-o", "--output", default="estinet-demo", help="output folder (default ./estinet-demo)")
    p.add_argument("--weights", help="weights (default: the fastest shipped model)")
    p.add_argument("--frames", type=int, default=48, help="frames of the demo clip (default 48)")
    p.add_argument(
        "--preset",
        default="heavy",
        help="rain preset: light, heavy (default), ntu, realistic-light, realistic-heavy, storm, random",
    )
    p.add_argument("--seed", type=int, default=0, help="rain seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    p.add_argument(
        "--veil",
        choices=("auto", "keep", "lift"),
        default="auto",
        help="the rain's veil of haze, for weights with a veil head: auto (default) lifts it when the preset draws one "
        "(the clean frames have none), keep, or lift",
    )
    p.set_defaults(func=cmd_demo)


def _add_bench(sub: Subcommands) -> None:
    """The ``bench`` command's arguments."""
    p = sub.add_parser("bench", help="frames/s and peak memory, streaming vs per-window, at several frame sizes")
    p.add_argument("models", nargs="*", help="weights or variant/preset (default: every shipped model)")
    p.add_argument(
        "--sizes", nargs="+", type=_parse_size, default=[(480, 640), (720, 1280), (1080, 1920)], help="HxW sizes"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--frames", type=int, default=8, help="timed frames per measurement (default 8)")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    p.add_argument(
        "--modes",
        nargs="+",
        choices=("streaming", "per-window", "end-to-end"),
        default=["streaming", "per-window", "end-to-end"],
        help="what to time (default all: streaming, per-window recomputation, end to end from H.264 to H.264)",
    )
    p.add_argument("--streaming-only", action="store_true", help="only the streaming mode (same as --modes streaming)")
    p.add_argument("--batch", type=int, help="frames/windows per call (default: the automatic plan's)")
    _add_workers(p)
    _add_precision_and_memory(p)
    p.add_argument(
        "--backend",
        nargs="+",
        choices=("torch", "onnxruntime"),
        default=["torch"],
        help="backends to time side by side (default torch; onnxruntime runs on the CPU, per-window is torch's only)",
    )
    p.add_argument(
        "--lift-veil",
        action="store_true",
        default=None,
        help="also lift the veil (weights with a veil head), as estinet derain --lift-veil",
    )
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=cmd_bench)


EXPORT_GRAPHS = ("frame_features", "window", "vsmlrt")
"""``estinet.export.GRAPHS``, written out so that building the parser does not import torch (a test compares them)."""


def _add_export(sub: Subcommands) -> None:
    """The ``export`` command's arguments (:func:`estinet.export.export_onnx`)."""
    p = sub.add_parser(
        "export", help="export to ONNX: the streaming graphs (onnxruntime backend) and a vs-mlrt window graph"
    )
    p.add_argument("-o", "--output", required=True, help="output folder (graphs and an estinet-onnx.json sidecar)")
    p.add_argument("--weights", help="shipped name (default tiny), weights file, checkpoint, or COARSE,FINE")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default 17)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="fp32 (default) or fp16 graphs")
    p.add_argument(
        "--graphs",
        nargs="+",
        choices=EXPORT_GRAPHS,
        default=list(EXPORT_GRAPHS),
        help="graphs to write (default all three)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in the folder")
    p.add_argument(
        "--no-check", dest="check", action="store_false", help="skip running each graph in ONNX Runtime once"
    )
    p.set_defaults(func=cmd_export)


def _add_synth(sub: Subcommands) -> None:
    """The ``synth`` command's arguments."""
    p = sub.add_parser("synth", help="render synthetic rain over clean videos into a paired dataset")
    p.add_argument(
        "clean", nargs="*", help="clean videos, frame folders or images (default: the package training clips)"
    )
    p.add_argument("-o", "--output", required=True, help="output folder (NTURain layout)")
    p.add_argument(
        "--preset",
        default="ntu",
        help="rain preset (light, heavy, ntu, realistic-light, realistic-heavy, storm, random) or a comma list "
        "(default ntu)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--frames", type=int, help="frames per sequence (default: 100 per video shot, 30 per still)")
    p.add_argument("--camera", default="mixed", help="camera motion: mixed, static, pan, handheld (default mixed)")
    p.add_argument("--size", type=_parse_size, help="frame size HxW (default: per source, at most 480x640)")
    p.add_argument("--versions", type=int, default=1, help="rain versions per clean sequence (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def _add_train(sub: Subcommands) -> None:
    """The ``train`` command's arguments."""
    p = sub.add_parser("train", help="train a model (two-stage schedule; torchrun for several processes)")
    p.add_argument("--config", help="YAML config, e.g. configs/tiny-synthetic.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. data.batch_size=4")
    p.add_argument("--resume", help="continue exactly from this checkpoint (last.pt)")
    p.add_argument("--out", help="output folder (default from the config)")
    p.set_defaults(func=cmd_train)


def _add_eval(sub: Subcommands) -> None:
    """The ``eval`` command's arguments."""
    from estinet.config import VARIANTS

    p = sub.add_parser("eval", help="PSNR/SSIM (Y and RGB) of a model or a baseline on a dataset")
    p.add_argument("--dataset", required=True, help="KIND:PATH, e.g. ntu:/data/NTURain, folders:DIR, synthetic:light")
    p.add_argument(
        "--weights", help="shipped name (default tiny), .safetensors, training checkpoint, or COARSE,FINE (authors')"
    )
    p.add_argument("--variant", choices=VARIANTS, help="variant override for the model")
    p.add_argument("--method", choices=("model", "input", "median"), default="model", help="what to score")
    p.add_argument("--json", dest="json_out", metavar="JSON", help="write the JSON report here")
    p.add_argument("--csv", dest="csv_out", metavar="CSV", help="write the CSV report here")
    p.add_argument("--save-frames", help="save every output frame under this folder")
    p.add_argument("--skip-ends", type=int, default=0, help="drop K frames at each sequence end (2 = S2VD protocol)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--split", help="dataset split (default test; train for a folder estinet synth wrote)")
    p.add_argument("--overwrite", action="store_true", help="replace existing report files or frame folders")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--clips", type=int, default=12, help="synthetic: held-out clips to render (default 12)")
    p.add_argument("--clip-frames", type=int, default=9, help="synthetic: frames per clip (default 9)")
    p.add_argument("--crop", type=int, default=224, help="synthetic: clip size in pixels (default 224)")
    p.add_argument("--seed", type=int, default=2021, help="synthetic: seed (default 2021, the README's benchmark)")
    p.set_defaults(func=cmd_eval)


def _add_serve(sub: Subcommands) -> None:
    """The ``serve`` command's arguments (the web stack is imported only when it runs)."""
    p = sub.add_parser("serve", help="a local web page to derain videos (needs: pip install 'estinet[serve]')")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; another, e.g. 0.0.0.0, prints a warning)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port)")
    p.add_argument("--work-dir", help="where the server's own temporary folder is made (default: the system's)")
    p.add_argument("--max-upload-mb", type=float, default=1024.0, help="largest upload in MiB (default 1024)")
    p.add_argument("--max-frames", type=int, default=3000, help="most frames a video may have (default 3000)")
    p.add_argument(
        "--keep-minutes", type=float, default=60.0, help="minutes results are kept after a job ends (default 60)"
    )
    p.add_argument(
        "--device",
        action="append",
        metavar="DEVICE",
        help="cpu, cuda, cuda:N or auto (default); repeat for one job at a time on each of several devices",
    )
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="estinet", description="Remove rain from videos with ESTINet.")
    parser.add_argument("--version", action="version", version=f"estinet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info(sub)
    _add_derain(sub)
    _add_demo(sub)
    _add_bench(sub)
    _add_export(sub)
    _add_synth(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_serve(sub)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the command line: one ``estinet: warning: ...`` line, no source location."""
    text = " ".join(str(message).split())
    if not (category.__module__ or "").startswith("estinet") and category is not UserWarning:
        text = f"{text} ({category.__name__})"
    print(f"estinet: warning: {text}", file=file if file is not None else sys.stderr)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Print every warning raised inside as one ``estinet: warning: ...`` line (restored afterwards)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


def error_message(exc: BaseException) -> str | None:
    """The one-line error for an exception a user can cause or meet, or None for a bug (which keeps its traceback)."""
    from estinet.runtime import describe_os_error

    if isinstance(exc, EstinetError):
        return str(exc)
    if isinstance(exc, OSError):
        described = describe_os_error(exc)
        if described is not None:
            return described
        if isinstance(exc, FileNotFoundError | NotADirectoryError | FileExistsError | PermissionError):
            return str(exc)
    return None


def cpu_defaults() -> None:
    """Make torch's OpenMP threads sleep, not spin, while they wait (``OMP_WAIT_POLICY=PASSIVE``).

    libgomp's default lets waiting threads spin for a while; on a machine where another process keeps a core busy
    (a laptop is never idle) the threads then spin against it, and one busy process cost 90% of the speed (measured in
    ``benchmarks/bench_cpu_load.py``, docs/results/cpu-load.md). The variable is read when torch loads, so this runs
    before the first torch import and only then, and never overrides a value the user set.
    """
    import os

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``estinet`` console script."""
    cpu_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    with one_line_warnings():
        try:
            return int(args.func(args))
        except KeyboardInterrupt:
            print("estinet: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            # refused inputs and missing, protected or full media; anything else is a bug and keeps its traceback
            message = error_message(exc)
            if message is None:
                raise
            print(f"estinet: error: {' '.join(message.split())}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
