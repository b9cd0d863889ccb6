"""Many videos in one run (estinet.inference.batch): inputs, names, broken files, resuming, workers, Ray.

Clips are 6 frames of 48x64; the shipped ``tiny`` (through the CLI) or a random-weight tiny model derains them in a
fraction of a second. The Ray tests share one local cluster of 2 CPUs and skip where Ray is not installed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from estinet.cli import main
from estinet.config import preset_config
from estinet.data.video_io import read_all
from estinet.errors import DerainError
from estinet.inference import Derainer
from estinet.inference.batch import (
    BatchWarning,
    derain_many,
    expand_inputs,
    is_many,
    plan_jobs,
    read_input_list,
)
from estinet.models import build_model
from estinet.models.estinet import ESTINet
from tests.helpers import textured_clip, write_pyav_video

ROOT = Path(__file__).resolve().parents[2]
DEAD_PID = 999_999_999  # above any kernel's pid_max: no process has it


def _video(path: Path, seed: int = 0, frames: int = 6) -> Path:
    clip = textured_clip(frames, 48, 64, seed=seed, shift=1.0)[0]  # (T, 3, 48, 64) in [0, 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pyav_video(path, (clip.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
    return path


def _broken(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a video" * 10)
    return path


def tiny_model(seed: int = 0) -> ESTINet:
    torch.manual_seed(seed)
    model = build_model(preset_config("estinet", "tiny"))
    assert isinstance(model, ESTINet)
    return model


def _single(weights: Any, src: Path, dst: Path) -> np.ndarray:
    """The frames a single-input run writes (PNG folder: lossless)."""
    Derainer(weights, device="cpu").derain_video(src, dst, progress=False)
    return read_all(dst)


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _by_input(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(entry["input"]).name: entry for entry in report["files"]}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------------------------------
# inputs and names (no deraining)
# ---------------------------------------------------------------------------------------------------------------------


def test_expand_inputs_folders_globs_and_list_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("clips/b10.mp4", "clips/b2.mkv", "clips/notes.txt", "clips/.hidden.mp4", "more/c.mp4", "d.avi"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.png").write_bytes(b"x")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "todo.txt").write_text("# to do\n\n../more/c.mp4\n../d.*\n  ../clips/b2.mkv  \n", encoding="utf-8")
    assert read_input_list(lists / "todo.txt") == [
        str(lists / "../more/c.mp4"),
        str(lists / "../d.*"),
        str(lists / "../clips/b2.mkv"),
    ]

    found = expand_inputs(["clips", "fr*", "missing.mp4"], inputs_from=lists / "todo.txt")
    names = [p.name for p in found]
    # the folder's videos in natural order (b2 before b10), the frame folder as one input, a missing file kept (it
    # fails on its own), the list's entries relative to the list; clips/b2.mkv is not repeated
    assert names == ["b2.mkv", "b10.mp4", "frames", "missing.mp4", "c.mp4", "d.avi"]
    with pytest.warns(BatchWarning, match="nope/\\*.mp4 matches no file"):
        assert [p.name for p in expand_inputs(["nope/*.mp4", "d.avi"])] == ["d.avi"]
    with pytest.raises(DerainError, match="nothing to derain"), pytest.warns(BatchWarning):
        expand_inputs(["nope/*.mp4"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("d.avi\n# done\nclips/b10.mp4\n"))
    assert expand_inputs([], inputs_from="-") == [Path("d.avi"), Path("clips/b10.mp4")]  # relative to the cwd
    with pytest.raises(DerainError, match="cannot read the input list"):
        expand_inputs([], inputs_from=tmp_path / "no-list.txt")

    assert not is_many(["d.avi"]) and not is_many(["frames"]) and not is_many(["missing.mp4"])
    assert is_many(["clips"]) and is_many(["*.avi"]) and is_many(["d.avi", "d.avi"]) and is_many([])
    assert is_many(["d.avi"], inputs_from="todo.txt")


def test_plan_jobs_names_outputs_and_tells_apart_shared_stems(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [Path(p) for p in ("x/a/clip.mp4", "y/a/clip.mp4", "b/clip.mp4", "one.mkv", "c/Two.mp4", "d/two.mp4")]
    names = [job.output.name for job in plan_jobs(inputs, out)]
    assert names == ["x__a__clip.mp4", "y__a__clip.mp4", "b__clip.mp4", "one.mp4", "c__Two.mp4", "d__two.mp4"]
    assert plan_jobs(inputs, out) == plan_jobs(inputs, out)  # deterministic: a rerun finds the same outputs
    same_folder = [job.output.name for job in plan_jobs([Path("v/clip.mp4"), Path("v/clip.mkv")], out, "mkv")]
    assert same_folder == ["clip_mp4.mkv", "clip_mkv.mkv"]
    frames = plan_jobs([Path("v/take.2.mp4")], out, "frames")
    assert frames[0].output == out / "take_2"  # no dot: it would read as a video suffix

    with pytest.raises(DerainError, match=r"would both write .*a__clip\.mp4; rename one"):
        plan_jobs([Path("a/clip.mp4"), Path("b/clip.mp4"), Path("a__clip.mp4")], out)
    with pytest.raises(DerainError, match="would replace the input"):
        plan_jobs([out / "clip.mp4"], out)
    with pytest.raises(DerainError, match="unknown output format 'webm'; use one of mp4, mkv, frames"):
        plan_jobs(inputs, out, "webm")


def test_local_workers_one_per_gpu_or_jobs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from estinet.inference import batch

    monkeypatch.setattr(batch, "_cpu_count", lambda: 16)
    assert batch._local_workers("cpu", None, None) == [("cpu", None)]  # one in-process worker, torch's threads
    assert batch._local_workers("cpu", 4, None) == [("cpu", 4)] * 4
    assert batch._local_workers("cpu", 2, 3) == [("cpu", 3)] * 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert batch._local_workers("auto", None, None) == [("cuda:0", 8), ("cuda:1", 8)]
    assert batch._local_workers("cuda:1", None, None) == [("cuda:1", None)]
    assert batch._local_workers("cuda:0,cuda:0", None, None) == [("cuda:0", 8), ("cuda:0", 8)]
    with pytest.raises(DerainError, match="sets the number of CPU workers"):
        batch._local_workers("cuda", 2, None)
    with pytest.raises(DerainError, match="mixes cpu and cuda workers"):
        batch._local_workers("cuda:0,cpu", None, None)


# ---------------------------------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------------------------------


def test_cli_folder_glob_and_list_go_on_past_broken_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _video(tmp_path / "clips" / "a.mp4", seed=0)
    _broken(tmp_path / "clips" / "broken.mp4")
    _video(tmp_path / "more" / "b.mp4", seed=1)
    _video(tmp_path / "other" / "a.mp4", seed=2)  # same stem as clips/a.mp4
    (tmp_path / "list.txt").write_text("other/a.mp4\ngone.mp4\n", encoding="utf-8")

    args = ["derain", "clips", "more/*.mp4", "--inputs-from", "list.txt", "-o", "out", "--format", "frames"]
    assert main([*args, "--quiet"]) == 1  # non-zero: two inputs failed
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("estinet: error: ") for line in errors)
    assert "clips/broken.mp4 failed: cannot read" in errors[0] and "gone.mp4 failed: " in errors[1]
    assert "does not exist" in errors[1] and "Traceback" not in err
    assert "3 derained, 0 skipped, 2 failed of 5 inputs" in out

    report = _report(tmp_path / "out" / "estinet-report.json")
    assert report["counts"] == {"ok": 3, "skipped": 0, "failed": 2, "pending": 0}
    assert [(e["input"], e["output"], e["status"]) for e in report["files"]] == [
        ("clips/a.mp4", "out/clips__a", "ok"),
        ("clips/broken.mp4", "out/broken", "failed"),
        ("more/b.mp4", "out/b", "ok"),
        ("other/a.mp4", "out/other__a", "ok"),
        ("gone.mp4", "out/gone", "failed"),
    ]
    for entry in report["files"]:
        assert (entry["frames"] == 6) == (entry["status"] == "ok")
        assert (entry["error"] is None) == (entry["status"] == "ok") and entry["seconds"] >= 0
    assert "cannot read" in report["files"][1]["error"] and report["files"][1]["traceback"] is None
    single = _single("tiny", tmp_path / "other" / "a.mp4", tmp_path / "single")
    assert np.array_equal(read_all(tmp_path / "out" / "other__a"), single)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b", "clips__a", "estinet-report.json", "other__a"]


def test_cli_single_input_keeps_its_meaning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _video(tmp_path / "in.mp4")
    assert main(["derain", str(src), "-o", str(tmp_path / "frames"), "--quiet"]) == 0
    assert read_all(tmp_path / "frames").shape == (6, 48, 64, 3)  # a PNG folder named by -o, as before
    assert not (tmp_path / "frames" / "estinet-report.json").exists()
    assert main(["derain", str(src), "-o", str(tmp_path / "folder"), "--report", str(tmp_path / "r.json")]) == 0
    assert len(read_all(tmp_path / "folder" / "in.mp4")) == 6  # an option of many videos makes -o a folder
    assert _report(tmp_path / "r.json")["counts"]["ok"] == 1
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["-o", "{tmp}/taken.mp4"], "is a file; many inputs derain into a folder"),
        (["-o", "{tmp}/new.mp4"], "looks like a file"),
        (["-o", "{tmp}/o", "--compare"], "--compare works with one input"),
        (["-o", "{tmp}/o", "--jobs", "2", "--ray", "auto"], "jobs sets local CPU workers"),
        (["-o", "{tmp}/o", "--jobs", "0"], "jobs must be an integer >= 1"),
    ],
)
def test_cli_refusals_are_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    args = ["derain", str(tmp_path / "x.mp4"), str(tmp_path / "y.mp4")] + [a.format(tmp=tmp_path) for a in extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("estinet: error: ") and len(err.strip().splitlines()) == 1 and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4"]


def test_ray_missing_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    src = _video(tmp_path / "in.mp4", frames=3)
    assert main(["derain", str(src), "-o", str(tmp_path / "out"), "--ray", "auto", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "estinet: error: --ray needs Ray, which is not installed here; install it with: pip install 'estinet[ray]'"
    )
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# resuming and workers
# ---------------------------------------------------------------------------------------------------------------------


def test_rerun_after_an_interruption_skips_complete_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = [_video(tmp_path / "in" / f"v{k}.mp4", seed=k) for k in range(3)]
    out = tmp_path / "out"
    model = tiny_model()
    real = Derainer.derain_frames
    calls = {"n": 0}

    def interrupted(self: Derainer, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        calls["n"] += 1
        for index, frame in enumerate(real(self, frames)):
            if calls["n"] == 2 and index == 3:
                raise KeyboardInterrupt  # Ctrl-C half-way through the second video
            yield frame

    monkeypatch.setattr(Derainer, "derain_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        derain_many(inputs, out, weights=model, device="cpu", output_format="mkv", lossless=True)
    monkeypatch.undo()
    report = _report(out / "estinet-report.json")  # written on the way out
    assert [e["status"] for e in report["files"]] == ["ok", "pending", "pending"]
    assert sorted(p.name for p in out.iterdir()) == ["estinet-report.json", "v0.mkv"]
    stale = out / f".v1.partial-{DEAD_PID}.mkv"  # what a killed process leaves: not a complete output
    stale.write_bytes(b"half a video")
    before = (out / "v0.mkv").stat().st_mtime_ns

    seen: list[tuple[str, str]] = []
    again = derain_many(
        inputs,
        out,
        weights=model,
        device="cpu",
        output_format="mkv",
        lossless=True,
        on_result=lambda r: seen.append((Path(r.input).name, r.status)),
    )
    assert [r.status for r in again.files] == ["skipped", "ok", "ok"]
    assert seen == [("v0.mp4", "skipped"), ("v1.mp4", "ok"), ("v2.mp4", "ok")]
    assert (out / "v0.mkv").stat().st_mtime_ns == before and not stale.exists() and _hidden(out) == []
    for k, path in enumerate(inputs):
        assert np.array_equal(read_all(out / f"v{k}.mkv"), _single(model, path, tmp_path / f"ref{k}")), k
    redo = derain_many(inputs[:1], out, weights=model, device="cpu", output_format="mkv", lossless=True, overwrite=True)
    assert [r.status for r in redo.files] == ["ok"] and (out / "v0.mkv").stat().st_mtime_ns != before


def test_worker_processes_write_what_one_process_writes(tmp_path: Path) -> None:
    inputs = [_video(tmp_path / "in" / f"v{k}.mp4", seed=k) for k in range(3)]
    inputs.insert(1, _broken(tmp_path / "in" / "bad.mp4"))
    model = tiny_model(seed=3)
    report = derain_many(
        inputs, tmp_path / "out", weights=model, device="cpu", jobs=2, threads=1, output_format="frames"
    )
    assert report.workers == ["cpu", "cpu"]
    assert [r.status for r in report.files] == ["ok", "failed", "ok", "ok"]
    assert {r.worker for r in report.files} <= {"cpu worker 1", "cpu worker 2"}
    assert "cannot read" in (report.files[1].error or "")
    for k in range(3):
        expected = _single(model, inputs[[0, 2, 3][k]], tmp_path / f"ref{k}")
        assert np.array_equal(read_all(tmp_path / "out" / f"v{k}"), expected), k


# ---------------------------------------------------------------------------------------------------------------------
# Ray: one local cluster of 2 CPUs for the module
# ---------------------------------------------------------------------------------------------------------------------


class KillOnce(ESTINet):
    """A tiny ESTINet whose process kills itself at its third window, once per marker file (across processes)."""

    def __init__(self, marker: Path) -> None:
        super().__init__(preset_config("estinet", "tiny"))
        self.marker = str(marker)
        self.calls = 0

    def window_forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 3:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass  # a retry, or another task was the one killed
            else:
                os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-video, its partial output left behind
        return super().window_forward(*args, **kwargs)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", exc_type=ImportError)  # missing, or installed but broken
    saved = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "PYTHONPATH", "RAY_USAGE_STATS_ENABLED")}
    # workers inherit these: one thread each, and the tests package importable (KillOnce is pickled by reference)
    os.environ.update(
        OMP_NUM_THREADS="1",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), str(ROOT / "src"), saved["PYTHONPATH"]) if p),
    )
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024**2)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield ray
    ray.shutdown()


def test_ray_retries_a_killed_worker_and_writes_what_one_process_writes(tmp_path: Path, ray_cluster: Any) -> None:
    inputs = [_video(tmp_path / "in" / f"v{k}.mp4", seed=k) for k in range(3)]
    inputs.append(_broken(tmp_path / "in" / "bad.mp4"))
    marker = tmp_path / "killed"
    killer = KillOnce(marker)
    killer.load_state_dict(tiny_model(seed=5).state_dict())
    out = tmp_path / "out"
    report = derain_many(
        inputs, out, weights=killer, ray="auto", device="cpu", threads=1, output_format="frames", max_retries=2
    )
    assert marker.exists()  # one worker was killed mid-video ...
    assert [r.status for r in report.files] == ["ok", "ok", "ok", "failed"]  # ... and its task ran again
    assert report.workers == ["ray"] and all(r.worker and r.worker.endswith(" cpu") for r in report.files)
    assert "cannot read" in (report.files[3].error or "")  # a broken input is a result, not a retried crash
    assert _hidden(out) == []  # the killed attempt's partial folder was removed by the retry
    plain = tiny_model(seed=5)
    for k in range(3):
        assert np.array_equal(read_all(out / f"v{k}"), _single(plain, inputs[k], tmp_path / f"ref{k}")), k
    assert ray_cluster.is_initialized()  # a cluster the caller connected to is left running
