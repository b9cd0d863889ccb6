"""Issue 14: what a new user meets with bad inputs, full disks and pasted advice. Each test names its item.

Every command runs in-process through :func:`estinet.cli.main` on clips of a few 32x48 frames, so the file takes
seconds. Faults are injected by monkeypatching (the suite runs as root, where read-only permissions stop nothing).
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from estinet import checkpoint, runtime
from estinet.cli import build_parser, main
from estinet.config import ExperimentConfig, apply_overrides, preset_config
from estinet.data.video_io import read_all
from estinet.inference import Derainer
from estinet.models import build_model
from tests.data.test_video_io import write_cut_video
from tests.helpers import write_pyav_video

ROOT = Path(__file__).resolve().parents[1]
FRAME_FOLDER_MARKER = ".estinet-frames"  # estinet.data.video_io.FRAME_FOLDER_MARKER
H, W = 32, 48


def _clip(frames: int = 4, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((frames, H, W, 3)) * 255).astype(np.uint8)


def _video(path: Path, frames: int = 4) -> Path:
    write_pyav_video(path, _clip(frames))
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("estinet: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != FRAME_FOLDER_MARKER)


# ---------------------------------------------------------------------------------------------------------------------
# 1. a video cut short
# ---------------------------------------------------------------------------------------------------------------------


def test_item1_truncated_video_ends_with_counts_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cut = write_cut_video(tmp_path / "cut.mp4")  # faststart: the index says 60 frames, about half decode
    code, out, err = _run(capsys, "derain", cut, "-o", tmp_path / "out.mp4", "--quiet")
    assert code == 2
    _one_line_error(err, "cut.mp4", "of the 60 frames", "--keep-partial-input")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]
    code, out, err = _run(capsys, "derain", cut, "-o", tmp_path / "out.mp4", "--quiet", "--keep-partial-input")
    assert code == 0 and re.search(r"^estinet: warning: .*truncated or damaged.*of the 60 frames", err, re.M)
    kept = len(read_all(tmp_path / "out.mp4"))
    assert 10 < kept < 60 and f"({kept} frames" in out


# ---------------------------------------------------------------------------------------------------------------------
# 2. one error path: EACCES, EROFS, ENOSPC against every writer
# ---------------------------------------------------------------------------------------------------------------------

ERRNOS = {errno.EACCES: "permission denied", errno.EROFS: "read-only", errno.ENOSPC: "no space left"}


def _fail_replace(monkeypatch: pytest.MonkeyPatch, code: int, target: str) -> None:
    """Make ``os.replace`` onto a path whose name contains ``target`` fail with ``code``, as the kernel would."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if target in Path(dst).name:
            raise OSError(code, os.strerror(code), str(src), None, str(dst))
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("code", list(ERRNOS))
@pytest.mark.parametrize(
    ("writer", "output", "options", "target"),
    [
        ("video", "out.mp4", [], "out.mp4"),
        ("lossless video", "out.mkv", ["--lossless"], "out.mkv"),
        ("PNG folder", "out", [], "out"),
        ("compare output", "out.mp4", ["--compare"], "out_compare.mp4"),
    ],
)
def test_item2_derain_writers_fail_as_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    writer: str,
    output: str,
    options: list[str],
    target: str,
) -> None:
    src = _video(tmp_path / "in.mp4", frames=3)
    out_dir = tmp_path / "o"
    _fail_replace(monkeypatch, code, target)
    rc, _, err = _run(capsys, "derain", src, "-o", out_dir / output, "--quiet", *options)
    assert rc == 2, writer
    _one_line_error(err, target, ERRNOS[code])
    assert not [p for p in out_dir.iterdir() if not p.name.startswith(".")]  # nothing under a final name
    assert _hidden(out_dir) == []  # and no partial file or folder


@pytest.mark.parametrize("code", list(ERRNOS))
def test_item2_png_written_to_a_full_disk_or_read_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """The fault while saving a frame (disk full mid-folder) and while creating a folder inside the output."""
    src = _video(tmp_path / "in.mp4", frames=3)
    real_save = Image.Image.save

    def save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        if str(fp).endswith("00000002.png"):
            raise OSError(code, os.strerror(code), str(fp))
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    rc, _, err = _run(capsys, "derain", src, "-o", tmp_path / "frames", "--quiet")
    assert rc == 2
    _one_line_error(err, "00000002.png", ERRNOS[code])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    monkeypatch.undo()

    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name == "ro":
            raise OSError(code, os.strerror(code), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    rc, _, err = _run(capsys, "derain", src, "-o", tmp_path / "ro" / "deeper" / "out.mp4", "--quiet")
    assert rc == 2
    _one_line_error(err, "ro", ERRNOS[code])


@pytest.mark.parametrize("code", list(ERRNOS))
def test_item2_checkpoints_and_reports_fail_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    from estinet.cli import error_message
    from estinet.train import save_training_checkpoint

    config = preset_config("estinet", "tiny")
    model = build_model(config)
    _fail_replace(monkeypatch, code, ".")
    for write, path in [
        (lambda p: checkpoint.save_weights(model, config, p), tmp_path / "w.safetensors"),
        (lambda p: save_training_checkpoint({"step": 1}, p), tmp_path / "last.pt"),
        (lambda p: runtime.write_text_atomic(p, "{}"), tmp_path / "report.json"),
    ]:
        with pytest.raises(OSError) as exc:
            write(path)
        message = error_message(exc.value)
        assert message is not None and path.name in message and ERRNOS[code] in message and "\n" not in message
        assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a report written by the command line (eval --json) through the same path
    root = tmp_path / "pairs"
    for kind in ("rainy", "clean"):
        (root / kind / "s").mkdir(parents=True)
        for t, frame in enumerate(_clip(3)):
            Image.fromarray(frame).save(root / kind / "s" / f"{t}.png")
    rc, _, err = _run(
        capsys,
        "eval",
        "--dataset",
        f"folders:{root}",
        "--method",
        "input",
        "--json",
        tmp_path / "r.json",
        "--no-progress",
    )
    assert rc == 2
    _one_line_error(err, "r.json", ERRNOS[code])
    assert not (tmp_path / "r.json").exists() and _hidden(tmp_path) == []


def test_item2_bad_yaml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  base_channels: [8\ndata: {\n")
    rc, _, err = _run(capsys, "train", "--config", bad)
    assert rc == 2
    _one_line_error(err, "bad.yaml", "not valid YAML", "line")
    rc, _, err = _run(capsys, "train", "--config", bad.with_name("missing.yaml"))
    assert rc == 2
    _one_line_error(err, "missing.yaml")


# ---------------------------------------------------------------------------------------------------------------------
# 3. printed advice works when pasted
# ---------------------------------------------------------------------------------------------------------------------


def test_item3_synth_hint_runs_as_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(_clip(1)[0]).save(tmp_path / "still.png")
    out = tmp_path / "my rain"  # a space: the printed command must quote it
    rc, stdout, _ = _run(capsys, "synth", tmp_path / "still.png", "-o", out, "--frames", "5", "--quiet")
    assert rc == 0
    command = stdout.strip().splitlines()[-1].split("with: ", 1)[1]
    words = shlex.split(command)
    assert words[0] == "estinet"
    rc, stdout, err = _run(capsys, *words[1:])
    assert rc == 0, err
    assert "PSNR" in stdout or "psnr" in stdout.lower()


def test_item3_help_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    examples = re.findall(r"e\.g\. ([a-z_.]+=\S+?)\)?(?:\s|$)", text)
    assert examples
    apply_overrides(ExperimentConfig(), examples)  # raises ConfigError for a key that does not exist


# ---------------------------------------------------------------------------------------------------------------------
# 4. tiny tiles
# ---------------------------------------------------------------------------------------------------------------------


def test_item4_tile_below_minimum_is_raised_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = build_model(preset_config("estinet", "tiny"))
    with pytest.warns(UserWarning, match=r"tile 3 raised to 32 pixels.*96-pixel margin"):
        derainer = Derainer(model, device="cpu", tile=3)
    assert derainer.tile == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Derainer(model, device="cpu", tile=256).tile == 256
    rc, _, err = _run(
        capsys, "derain", _video(tmp_path / "in.mp4", 2), "-o", tmp_path / "o.mp4", "--tile", "3", "--quiet"
    )
    assert rc == 0
    assert re.search(r"^estinet: warning: tile 3 raised to 32 pixels", err, re.M)


# ---------------------------------------------------------------------------------------------------------------------
# 5. messages that mislead, and docs that drift
# ---------------------------------------------------------------------------------------------------------------------


class Payload:
    """Stands for any object a pickle could construct (and run code while doing so)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("pwned",))


def test_item5_pickles_are_refused_without_torchs_advice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pickled = tmp_path / "model.pt"
    torch.save({"model": Payload()}, pickled)
    for args in (["derain", "x.mp4", "-o", "y.mp4", "--weights", pickled], ["train", "--resume", pickled]):
        rc, out, err = _run(capsys, *args)
        assert rc == 2 and "pwned" not in out
        _one_line_error(err, "model.pt", "never unpickles", "state_dict()")
        assert "weights_only" not in err
    garbage = tmp_path / "last.pt"
    garbage.write_text("model: tiny\n")
    rc, _, err = _run(capsys, "train", "--resume", garbage)
    assert rc == 2
    _one_line_error(err, "last.pt", "cannot be read")
    assert "weights_only" not in err


def test_item5_warnings_print_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, frame in enumerate(_clip(2)):
        Image.fromarray(np.dstack([frame, np.full((H, W), 128, np.uint8)]), mode="RGBA").save(frames / f"{t}.png")
    rc, _, err = _run(capsys, "derain", frames, "-o", tmp_path / "out", "--quiet")
    assert rc == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("estinet: warning: ") for line in lines), err
    assert "UserWarning" not in err and ".py:" not in err


def test_item5_readme_model_table_is_estinet_info(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- model-table:start -->\n", 1)[1].split("<!-- model-table:end -->", 1)[0]
    assert main(["info"]) == 0
    printed = capsys.readouterr().out.split("\n", 1)[1]  # after the version line
    assert table.strip() == printed.strip(), "README model table is stale: paste the output of `estinet info`"


def test_item5_compare_beside_a_folder_is_a_named_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, frame in enumerate(_clip(3)):
        Image.fromarray(frame).save(frames / f"shot_{t:02d}.jpg")
    rc, out, _ = _run(capsys, "derain", frames, "-o", tmp_path / "out", "--compare", "--quiet")
    assert rc == 0
    compare = tmp_path / "out_compare.mp4"
    assert read_all(compare).shape == (3, H, 2 * W, 3)
    assert f"wrote {compare}" in out
    # item 6: frame folders keep the input's names
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["shot_00.png", "shot_01.png", "shot_02.png"]


def test_item5_eval_default_seed_is_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    seeds = set(re.findall(r"held-out synthetic benchmark: .*?seed (\d+)", " ".join(readme.split())))
    assert seeds and {str(build_parser().parse_args(["eval", "--dataset", "synthetic:light"]).seed)} == seeds


# ---------------------------------------------------------------------------------------------------------------------
# 6. output safety
# ---------------------------------------------------------------------------------------------------------------------


def test_item6_output_through_dotdot_is_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _video(tmp_path / "in.mp4", 2)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    for output in ("./sub/../in.mp4", str(tmp_path / "x" / ".." / "in.mp4")):
        rc, _, err = _run(capsys, "derain", "in.mp4", "-o", output, "--overwrite", "--quiet")
        assert rc == 2
        _one_line_error(err, "is the input")
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


# ---------------------------------------------------------------------------------------------------------------------
# 8. Python API corners and the README's snippet
# ---------------------------------------------------------------------------------------------------------------------


def test_item8_read_only_arrays_need_no_copy_by_the_caller() -> None:
    frames = [np.asarray(Image.fromarray(frame)) for frame in _clip(3)]
    assert not frames[0].flags.writeable
    derainer = Derainer(build_model(preset_config("estinet", "tiny")), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = list(derainer.derain_frames(frames))
    assert len(out) == 3 and out[0].shape == (H, W, 3)


def test_item8_readme_python_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("torch.rand(1, 5, 3, 480, 640)", "torch.rand(1, 5, 3, 48, 64)")  # same code, small
    snippet = snippet.replace("    ...", "    pass")
    _video(tmp_path / "rainy.mp4", 3)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"frames": list(_clip(2))}  # the one name the snippet leaves to the reader
    exec(compile(snippet, "README.md", "exec"), namespace)  # the README's own code
    assert (tmp_path / "clean.mp4").is_file() and namespace["refined"].shape[-2:] == (48, 64)


# ---------------------------------------------------------------------------------------------------------------------
# 7. CPU threads under load
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_item7_openmp_threads_wait_passively_unless_the_user_says(preset: str | None, expected: str) -> None:
    """Spinning OpenMP threads lost 90% of the speed beside one busy process (docs/results/cpu-load.md, measured by
    benchmarks/bench_cpu_load.py); the CLI sets the wait policy before torch loads and respects the user's value."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os, sys; from estinet.cli import cpu_defaults; assert 'torch' not in sys.modules; cpu_defaults(); "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected


# ---------------------------------------------------------------------------------------------------------------------
# README commands (items 3 and 5): every one parses; the ones that take seconds run
# ---------------------------------------------------------------------------------------------------------------------


def _readme_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "estinet":
                commands.append(words[1:])
    return commands


def test_readme_commands_parse_and_the_fast_ones_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = _readme_commands()
    assert len(commands) >= 10
    parser = build_parser()
    for words in commands:
        parser.parse_args(words)  # a renamed or removed option fails here (SystemExit)
    monkeypatch.chdir(tmp_path)
    _video(tmp_path / "rainy.mp4", 3)
    (tmp_path / "frames").mkdir()
    for t, frame in enumerate(_clip(3)):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{t:04d}.png")
    fast = [words for words in commands if words[0] == "derain" and words[1] in ("rainy.mp4", "frames/")]
    assert len(fast) == 3
    for words in fast:
        assert main([*words, "--quiet"]) == 0, words
    assert len(read_all(tmp_path / "clean.mp4")) == 3 and len(read_all(tmp_path / "out")) == 3
    assert len(read_all(tmp_path / "clear.mp4")) == 3  # --lift-veil
    assert (tmp_path / "out_compare.mp4").is_file()
    capsys.readouterr()
