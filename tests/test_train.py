"""Two-stage training: falling loss, exact resume, checkpoint refusal, atomic saves, stage switch, DDP, precision."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from estinet.checkpoint import load_model, save_weights
from estinet.config import ConfigError, ExperimentConfig, load_experiment, preset_config
from estinet.data.datasets import SyntheticRain
from estinet.losses import derain_loss
from estinet.models import build_model
from estinet.train import (
    BatchPlan,
    CheckpointError,
    StageSchedule,
    Trainer,
    load_training_checkpoint,
    save_training_checkpoint,
    stage_plan,
    train,
    train_main,
)
from tests.helpers import textured_clip

ROOT = Path(__file__).resolve().parents[1]


def _save_png(x: torch.Tensor, path: Path) -> None:
    """Save a (3, H, W) tensor in [0, 1] as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Paired folders: 2 sequences x 6 frames of 40x40, content moving 1 px per frame, bright sparse 'rain'."""
    root = tmp_path_factory.mktemp("pairs")
    for s in range(2):
        clip = textured_clip(6, 40, 40, seed=s, shift=1.0)[0]  # (6, 3, 40, 40)
        g = torch.Generator().manual_seed(100 + s)
        drops = (torch.rand(6, 1, 40, 40, generator=g) > 0.95).float()
        rainy = (clip + 0.5 * drops).clamp(0, 1)
        for t in range(6):
            _save_png(clip[t], root / "clean" / f"s{s}" / f"{t:03d}.png")
            _save_png(rainy[t], root / "rainy" / f"s{s}" / f"{t:03d}.png")
    return root


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two clean stills: one to train on, one held out for validation."""
    root = tmp_path_factory.mktemp("stills")
    paths = []
    for k in range(2):
        path = root / f"still{k}.png"
        _save_png(textured_clip(1, 96, 96, seed=10 + k)[0, 0], path)
        paths.append(path)
    return paths[0], paths[1]


QUIET_CPU = (
    "train.progress=false",
    "train.log_every=1",
    "train.val_every=0",
    "train.ckpt_every=0",
    "train.threads=1",
    "train.device=cpu",
)
"""Overrides of every short test run: on the CPU, one thread, a metrics line per step, no validation or checkpoints."""


def _config(pairs: Path, *extra: str) -> ExperimentConfig:
    return load_experiment(
        None,
        [
            f"data.train=folders:{pairs}",
            "data.val=null",
            "data.crop=32",
            "data.batch_size=2",
            "data.workers=0",
            "train.stage1_steps=2",
            "train.stage2_steps=2",
            "train.lr=1e-3",
            *QUIET_CPU,
            *extra,
        ],
    )


def _same_tensors(a: object, b: object) -> bool:
    """Bitwise equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


# ------------------------------------------------------------------------------------------------------------------
# real training
# ------------------------------------------------------------------------------------------------------------------


def test_training_reduces_loss_on_synthetic_rain(tmp_path: Path, stills: tuple[Path, Path]) -> None:
    train_still, val_still = stills
    config = load_experiment(
        None,
        [
            "data.train=synthetic:heavy",
            f"data.clean=[{train_still}]",
            f"data.val_clean=[{val_still}]",
            "data.crop=32",
            "data.val_crop=32",
            "data.val_samples=3",
            "data.batch_size=2",
            "data.workers=0",
            "data.epoch_samples=64",
            "train.stage1_steps=24",
            "train.stage2_steps=8",
            "train.lr=2e-3",
            "train.min_lr=1e-4",
            "train.progress=false",
            "train.log_every=4",
            "train.val_every=16",
            "train.ckpt_every=8",
            "train.threads=1",
            "train.device=cpu",
        ],
    )
    # a fixed batch the model never trains on, scored with the stage-1 loss before and after
    probe = SyntheticRain([train_still], preset="heavy", seed=999, crop=32, length=4, train=False)
    rainy = torch.stack([probe[i]["rainy"] for i in range(4)])
    clean = torch.stack([probe[i]["clean"] for i in range(4)])

    def probe_loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            disp = model.estimate_motion(rainy)
            coarse, refined = model(rainy, disp)
            from estinet.losses import border_mask
            from estinet.models.motion import align_to_centre

            target = align_to_centre(clean, disp)
            mask = border_mask(disp, 32, 32)
            return float(derain_loss(coarse, refined, target, mask, centre=2, refine=False).total)

    torch.manual_seed(config.train.seed)
    before = probe_loss(build_model(config.model).eval())
    run = train(config, out_dir=tmp_path / "run")
    trained, _ = load_model(run / "model.safetensors")
    after = probe_loss(trained)
    assert after < 0.7 * before, (before, after)

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train" and r["stage"] == 1]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    vals = [r for r in records if r["kind"] == "val"]
    assert [(r["step"], r["output"]) for r in vals] == [(16, "coarse"), (24, "coarse"), (32, "refined")]
    assert all(np.isfinite(r["psnr_y"]) and r["frames"] == 3 for r in vals)
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(4, 33, 4))
    assert {"lr", "it_per_s", "l_sti"} <= records[0].keys() and "l_est" in records[-2]
    for name in ("config.yaml", "last.pt", "best.pt", "model.safetensors", "best.safetensors"):
        assert (run / name).is_file(), name
    best = load_training_checkpoint(run / "best.pt")
    assert best["best"]["step"] == 32 and best["stage"] == 2
    assert load_experiment(run / "config.yaml") == config
    load_model(run / "best.pt")  # the checkpoint is a loadable weights file too


def test_val_on_a_dataset_and_lr_schedule_in_the_log(tmp_path: Path, pairs: Path) -> None:
    config = _config(
        pairs,
        f"data.val=folders:{pairs}",
        "data.val_samples=3",
        "train.val_every=2",
        "train.stage1_steps=3",
        "train.stage2_steps=3",
        "train.min_lr=1e-5",
    )
    run = train(config, out_dir=tmp_path / "run")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [2, 3, 4, 6] and all(r["frames"] == 3 for r in vals)
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    assert lrs == pytest.approx([1e-3, 5.05e-4, 1e-5] * 2)  # cosine from lr to min_lr within each stage


# ------------------------------------------------------------------------------------------------------------------
# stages, schedules, data order
# ------------------------------------------------------------------------------------------------------------------


def test_stage_plan_and_schedule() -> None:
    config = load_experiment(None, ["train.stage1_steps=5", "train.stage2_steps=3"])
    assert [(s.number, s.steps, s.refine) for s in stage_plan(config)] == [(1, 5, False), (2, 3, True)]
    ablation = load_experiment(None, ["model.variant=sicm-stim-3", "train.stage1_steps=5", "train.stage2_steps=3"])
    assert [(s.number, s.steps, s.refine) for s in stage_plan(ablation)] == [(1, 8, False)]
    only2 = load_experiment(None, ["train.stage1_steps=0", "train.stage2_steps=3"])
    assert [(s.number, s.steps) for s in stage_plan(only2)] == [(2, 3)]
    cos = StageSchedule("cosine", 5, 0.01)
    exp = StageSchedule("exponential", 5, 0.01)
    assert cos(0) == exp(0) == 1.0 and cos(4) == pytest.approx(0.01) and exp(4) == pytest.approx(0.01)
    assert exp(2) == pytest.approx(0.1) and cos(2) == pytest.approx(0.505)
    assert all(cos(k) > cos(k + 1) for k in range(4)) and cos(9) == pytest.approx(0.01)


def test_batch_plan_shards_like_one_big_batch_and_resumes() -> None:
    single = iter(BatchPlan(10, 4, 1, 0, seed=3))
    ranks = [iter(BatchPlan(10, 2, 2, r, seed=3)) for r in range(2)]
    for _ in range(5):  # 2 batches per epoch: crosses epochs
        whole = next(single)
        parts = [next(it) for it in ranks]
        assert sorted(whole) == sorted(parts[0] + parts[1]) and not set(parts[0]) & set(parts[1])
    # a plan started at (epoch 1, batch 1) continues the same stream
    stream = iter(BatchPlan(10, 4, 1, 0, seed=3))
    expected = [next(stream) for _ in range(5)][3:]
    resumed = iter(BatchPlan(10, 4, 1, 0, seed=3, epoch=1, batch=1))
    assert [next(resumed) for _ in range(2)] == expected
    assert {e for batch in expected for e, _ in batch} == {1, 2}
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchPlan(3, 2, 2, 0, seed=0)


def test_stage_switch_freezes_then_trains_estm(tmp_path: Path, pairs: Path) -> None:
    config = _config(pairs)
    torch.manual_seed(config.train.seed)
    initial = build_model(config.model).state_dict()
    trainer = Trainer(config, out_dir=tmp_path / "run")
    assert trainer.optimizer is not None
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    estm = {id(p) for p in trainer.core.estm.parameters()}
    assert not trained & estm and len(trained) == sum(1 for _ in trainer.core.parameters()) - len(estm)
    trainer.fit(stop_at=2)  # end of stage 1
    after1 = {k: v.clone() for k, v in trainer.core.state_dict().items()}
    for key in initial:
        changed = not torch.equal(initial[key], after1[key])
        assert changed != key.startswith("estm."), key  # everything but ESTM moved
    assert trainer.stage.number == 2
    assert all(p.requires_grad for p in trainer.core.parameters())
    trainer.fit()  # a second fit() continues the run: the same as one uninterrupted run
    after2 = trainer.core.state_dict()
    straight = load_training_checkpoint(train(config, out_dir=tmp_path / "straight") / "last.pt")
    assert _same_tensors(straight["model"], dict(after2.items()))
    assert all(not torch.equal(after1[k], after2[k]) for k in after2 if k.startswith("estm.") and "weight" in k)


# ------------------------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage1_steps", [3, 2])
def test_resume_is_bit_exact(tmp_path: Path, pairs: Path, stage1_steps: int) -> None:
    # 4 steps in one go versus 2 steps, a fresh process state, and 2 more from last.pt (mid stage 1, or exactly at
    # the stage switch); the resumed half loads its data in a worker process
    extra = [f"train.stage1_steps={stage1_steps}", f"train.stage2_steps={4 - stage1_steps}"]
    whole = train(_config(pairs, *extra), out_dir=tmp_path / "whole")
    split = train(_config(pairs, *extra, "data.workers=1"), out_dir=tmp_path / "split", stop_at=2)
    half = load_training_checkpoint(split / "last.pt")
    assert half["step"] == 2 and not (split / "model.safetensors").exists()
    torch.manual_seed(1234)  # the resumed run must not depend on the caller's RNG state
    assert train_main(None, [], str(split / "last.pt")) == 0  # config from the checkpoint, same folder
    a = load_training_checkpoint(whole / "last.pt")
    b = load_training_checkpoint(split / "last.pt")
    assert a["step"] == b["step"] == 4 and a["stage"] == b["stage"] == 2
    assert _same_tensors(a["model"], b["model"])
    assert _same_tensors(a["optimizer"], b["optimizer"])
    assert _same_tensors(a["scheduler"], b["scheduler"])
    assert a["data"] == b["data"] and _same_tensors(a["rng"], b["rng"])
    # and the run really trained (the comparison is not between two untouched models)
    torch.manual_seed(0)
    initial = build_model(_config(pairs).model).state_dict()
    assert not _same_tensors(initial, a["model"])
    log = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_resume_with_a_longer_stage_follows_the_new_schedule(tmp_path: Path, pairs: Path) -> None:
    run = train(_config(pairs, "train.min_lr=1e-5"), out_dir=tmp_path / "run", stop_at=3)  # mid stage 2
    assert train_main(None, ["train.stage2_steps=4"], str(run / "last.pt")) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    schedule = StageSchedule("cosine", 4, 1e-5 / 1e-3)
    assert [r["lr"] for r in records[2:]] == pytest.approx([1e-3 * schedule(k) for k in range(4)])
    assert load_training_checkpoint(run / "last.pt")["config"]["train"]["stage2_steps"] == 4


def test_checkpoint_refusal(tmp_path: Path, pairs: Path) -> None:
    run = train(_config(pairs, "train.stage1_steps=1", "train.stage2_steps=0"), out_dir=tmp_path / "run")
    good = run / "last.pt"
    data = good.read_bytes()
    cases = {
        "truncated.pt": (data[: len(data) // 2], "truncated, corrupt or not a torch file"),
        "garbage.pt": (b"\x00\x01 not a checkpoint" * 10, "truncated, corrupt or not a torch file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            load_training_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_training_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"not an estinet training checkpoint: missing keys \['format'"):
        load_training_checkpoint(tmp_path / "foreign.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="it holds a list"):
        load_training_checkpoint(tmp_path / "list.pt")
    torch.save({"model": {}, "config": {}}, tmp_path / "weights.pt")  # an exported-weights style dict
    with pytest.raises(CheckpointError, match="looks like exported weights"):
        load_training_checkpoint(tmp_path / "weights.pt")
    torch.save(StageSchedule("cosine", 3, 0.1), tmp_path / "pickled.pt")  # arbitrary objects are never unpickled
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_training_checkpoint(tmp_path / "pickled.pt")

    ckpt = torch.load(good, weights_only=True)
    for key, value, message in [
        ("format", "other-1", "checkpoint format 'other-1'"),
        ("step", -1, "'step' is not a non-negative integer"),
        ("model", {"a": 1}, "'model' is not a state dict of tensors"),
        ("config", {"train": {"bogus": 1}}, r"invalid experiment config .*unknown TrainConfig key"),
    ]:
        torch.save({**ckpt, key: value}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            load_training_checkpoint(tmp_path / "bad.pt")

    # weights of another architecture under this config's name
    small = preset_config("estinet", "small")
    wrong = {**ckpt, "config": {**ckpt["config"], "model": {**ckpt["config"]["model"], "base_channels": 16}}}
    torch.save(wrong, tmp_path / "wrong.pt")
    assert small.base_channels != 16
    with pytest.raises(CheckpointError, match="does not fit this architecture"):
        Trainer(_config(pairs, "model.base_channels=16"), out_dir=tmp_path / "w", resume=tmp_path / "wrong.pt")
    # a config whose model differs from the checkpoint's
    with pytest.raises(CheckpointError, match="was trained with model"):
        Trainer(_config(pairs, "model.preset=small"), out_dir=tmp_path / "w", resume=good)
    # a fresh run never overwrites an existing run folder
    with pytest.raises(FileExistsError, match="already holds a checkpoint; continue it with --resume"):
        train(_config(pairs), out_dir=run)


def test_init_from_loads_weights_of_the_same_architecture_only(tmp_path: Path, pairs: Path) -> None:
    # the shipped tiny has a rain gate and a veil head, carried along unchanged on paired data (no veil to learn from)
    tiny = ("model.variant=estinet", "model.preset=tiny", "model.rain_gate=true", "model.veil_head=true")
    tiny = (*tiny, "train.veil_weight=0")
    trainer = Trainer(_config(pairs, *tiny, "train.init_from=tiny"), out_dir=tmp_path / "ft")
    shipped, _ = load_model("tiny")
    assert _same_tensors(trainer.core.state_dict(), shipped.state_dict())
    fresh = Trainer(_config(pairs, *tiny), out_dir=tmp_path / "fresh")
    assert not _same_tensors(fresh.core.state_dict(), shipped.state_dict())
    run = train(
        _config(pairs, *tiny, "train.init_from=tiny", "train.stage1_steps=0", "train.stage2_steps=1"),
        out_dir=tmp_path / "run",
    )
    with safe_open(str(run / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata()["init_from"] == "tiny"  # the lineage travels with the weights
    with pytest.raises(ConfigError, match=r"differs from the config's model in base_channels=8 \(config: 16\)"):
        Trainer(_config(pairs, *tiny, "model.base_channels=16", "train.init_from=tiny"), out_dir=tmp_path / "w")
    with pytest.raises(ConfigError, match=r"train\.init_from: weights 'no-such-model' not found"):
        Trainer(_config(pairs, *tiny, "train.init_from=no-such-model"), out_dir=tmp_path / "w")


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    old = {"x": torch.arange(4)}
    save_training_checkpoint(old, path)

    def dying_save(obj: object, fh: object) -> None:
        fh.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # the process is interrupted mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_training_checkpoint({"x": torch.arange(8)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], old["x"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the partial temporary file was removed
    # a kill -9 cannot run cleanup: its partial temp file is ignored by loading and removed by the next run
    stale = tmp_path / ".last.pt.tmp-99999"
    stale.write_bytes(b"PK\x03\x04 partial")
    assert torch.equal(torch.load(path, weights_only=True)["x"], old["x"])


def test_kill_9_during_save_never_leaves_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    script = (
        "import sys, torch\n"
        "from estinet.train import save_training_checkpoint\n"
        "torch.set_num_threads(1)\n"
        "path = sys.argv[1]\n"
        "k = 0\n"
        "while True:\n"
        "    k += 1\n"
        "    save_training_checkpoint({'k': k, 'w': torch.full((4_000_000,), float(k))}, path)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(tmp_path.glob(".last.pt.tmp-*")):
            time.sleep(0.005)  # wait for a save in progress (after at least the start of the first one)
        while time.monotonic() < deadline and not path.exists():
            time.sleep(0.005)
        while time.monotonic() < deadline and not list(tmp_path.glob(".last.pt.tmp-*")):
            time.sleep(0.002)  # the next save is being written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert path.exists(), "the writer never completed a save within the deadline"
    ckpt = torch.load(path, weights_only=True)
    assert torch.equal(ckpt["w"], torch.full((4_000_000,), float(ckpt["k"])))


# ------------------------------------------------------------------------------------------------------------------
# distributed and precision
# ------------------------------------------------------------------------------------------------------------------


def test_ddp_two_processes_equal_one_process_with_the_combined_batch(tmp_path: Path, pairs: Path) -> None:
    # one step per stage, so the second step also checks the stage switch (new optimizer, DDP re-wrapped)
    overrides = ["train.stage1_steps=1", "train.stage2_steps=1", "train.log_every=1", "train.lr=1e-4"]
    single = train(_config(pairs, *overrides, "data.batch_size=4"), out_dir=tmp_path / "single")
    cfg_file = tmp_path / "ddp.yaml"
    from estinet.config import save_experiment

    save_experiment(_config(pairs, *overrides, "data.batch_size=2"), cfg_file)
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "estinet.train",
        "--config",
        str(cfg_file),
        "--out",
        str(tmp_path / "ddp"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a = load_training_checkpoint(single / "last.pt")
    b = load_training_checkpoint(tmp_path / "ddp" / "last.pt")
    assert b["step"] == 2 and b["stage"] == 2 and len(b["rng"]) == 2
    # gradients agree to float32 rounding (~1e-6 relative); Adam's first steps normalise each gradient element, so
    # elements whose gradient is ~0 can differ by a few percent of one step's update (lr = 1e-4): allow 5 %
    torch.manual_seed(0)
    initial = build_model(_config(pairs).model).state_dict()
    for key, value in a["model"].items():
        assert torch.allclose(value, b["model"][key], rtol=0, atol=5e-6), key
    assert max((a["model"][k] - initial[k]).abs().max().item() for k in initial) > 1.5e-4  # it did train
    la = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    # the same samples: equal losses (averaged over the ranks) before and after the first update
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-6)


def test_bf16_autocast_and_channels_last_on_cpu(tmp_path: Path, pairs: Path) -> None:
    config = _config(pairs, "train.amp=bf16", "train.channels_last=true", "train.threads=0")
    trainer = Trainer(config, out_dir=tmp_path / "run")
    assert trainer.cpu_threads() >= 1
    threads = torch.get_num_threads()
    run = trainer.fit()
    assert torch.get_num_threads() == threads  # the caller's thread count is restored
    ckpt = load_training_checkpoint(run / "last.pt")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in ckpt["model"].values())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)
    torch.manual_seed(0)
    initial = build_model(config.model).state_dict()
    assert not _same_tensors(initial, ckpt["model"])


def test_unusable_settings_are_refused(tmp_path: Path, pairs: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"train\.amp=fp16 needs a CUDA device"):
            Trainer(_config(pairs, "train.amp=fp16"), out_dir=tmp_path / "a")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            Trainer(_config(pairs, "train.device=cuda"), out_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="heldout: is a validation set"):
        Trainer(_config(pairs, "data.train=heldout:light"), out_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match=r"data\.clean is only used by synthetic"):
        Trainer(_config(pairs, "data.clean=[x.png]"), out_dir=tmp_path / "d")
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Trainer(_config(pairs, "data.batch_size=64"), out_dir=tmp_path / "e")
    with pytest.raises(ConfigError, match="give a training config"):
        train_main(None, [], None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_mixed_precision_channels_last_and_resume(tmp_path: Path, pairs: Path, amp: str) -> None:
    extra = ["train.device=cuda", f"train.amp={amp}", "train.channels_last=true", "train.lr=1e-4"]
    whole = train(_config(pairs, *extra), out_dir=tmp_path / "whole")
    split = train(_config(pairs, *extra), out_dir=tmp_path / "split", stop_at=1)
    train(_config(pairs, *extra), out_dir=tmp_path / "split", resume=split / "last.pt")
    a = load_training_checkpoint(whole / "last.pt")
    b = load_training_checkpoint(split / "last.pt")
    assert (a["scaler"] is not None) == (amp == "fp16") and len(a["rng"][0]["cuda"]) >= 1
    for key, value in a["model"].items():
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), key
        # cuDNN picks its algorithms freely, so GPU runs agree closely rather than bit for bit
        assert torch.allclose(value, b["model"][key], rtol=0, atol=2e-5), key
    loaded, _ = load_model(whole / "model.safetensors", device="cuda")
    assert next(loaded.parameters()).is_cuda


def test_init_from_adds_a_rain_gate_to_weights_trained_without_one(tmp_path: Path, pairs: Path) -> None:
    tiny = ("model.variant=estinet", "model.preset=tiny")
    torch.manual_seed(5)
    plain = preset_config("estinet", "tiny")
    ungated = save_weights(build_model(plain), plain, tmp_path / "ungated.safetensors")
    trainer = Trainer(
        _config(pairs, *tiny, "model.rain_gate=true", f"train.init_from={ungated}"), out_dir=tmp_path / "g"
    )
    shipped, _ = load_model(str(ungated))
    state = trainer.core.state_dict()
    assert {k for k in state if k not in shipped.state_dict()} == {
        f"estm.gate.{i}.{n}" for i in (0, 2) for n in ("weight", "bias")
    }
    assert _same_tensors({k: v for k, v in state.items() if not k.startswith("estm.gate.")}, shipped.state_dict())
    x = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        _, want = shipped.eval()(x)
        _, got = trainer.core.eval()(x)
    m = torch.sigmoid(torch.tensor(4.0))  # the new gate starts open: the shipped function, mixed 98% / 2%
    torch.testing.assert_close(got, x[:, 2] + m * (want - x[:, 2]), rtol=0, atol=1e-5)


def test_init_from_adds_a_temporal_rain_gate(tmp_path: Path, pairs: Path) -> None:
    torch.manual_seed(6)
    plain = preset_config("estinet", "tiny")
    ungated = save_weights(build_model(plain), plain, tmp_path / "ungated.safetensors")
    overrides = ("model.rain_gate=true", "model.rain_gate_evidence=temporal", f"train.init_from={ungated}")
    trainer = Trainer(_config(pairs, "model.variant=estinet", "model.preset=tiny", *overrides), out_dir=tmp_path / "t")
    assert trainer.core.estm.temporal_evidence and trainer.core.estm.gate[0].in_channels == plain.estm_channels + 9


def test_gate_weight_needs_a_gate_and_trains_it(tmp_path: Path, pairs: Path) -> None:
    tiny = ("model.variant=estinet", "model.preset=tiny", "train.stage1_steps=0", "train.stage2_steps=2")
    with pytest.raises(ConfigError, match="needs a rain gate"):
        Trainer(_config(pairs, *tiny, "train.gate_weight=1.0"), out_dir=tmp_path / "no-gate")
    trainer = Trainer(
        _config(pairs, *tiny, "model.rain_gate=true", "train.gate_weight=1.0", "train.background_weight=1.0"),
        out_dir=tmp_path / "gate",
    )
    before = trainer.core.estm.gate[-1].weight.detach().clone()
    trainer.fit()
    assert not torch.equal(trainer.core.estm.gate[-1].weight, before)  # the cross-entropy reached the gate


def test_gate_lr_scale_gives_the_gate_its_own_rate(tmp_path: Path, pairs: Path) -> None:
    tiny = ("model.variant=estinet", "model.preset=tiny", "train.stage1_steps=0", "train.stage2_steps=2")
    trainer = Trainer(
        _config(pairs, *tiny, "model.rain_gate=true", "train.gate_lr_scale=30", "train.lr=1e-4"),
        out_dir=tmp_path / "g",
    )
    rates = sorted(group["lr"] for group in trainer.optimizer.param_groups)
    assert len(rates) == 2 and rates[1] == pytest.approx(30 * rates[0])
    assert sum(p.numel() for p in trainer.optimizer.param_groups[1]["params"]) == sum(
        p.numel() for p in trainer.core.estm.gate.parameters()
    )
    plain = Trainer(_config(pairs, *tiny, "model.rain_gate=true"), out_dir=tmp_path / "p")
    assert len(plain.optimizer.param_groups) == 1  # scale 1: one group, as without a gate


def _veil_config(still: Path, *extra: str) -> ExperimentConfig:
    return load_experiment(
        None,
        [
            "data.train=synthetic:heavy,light",
            f"data.clean=[{still}]",
            "data.val=null",
            "data.crop=32",
            "data.batch_size=2",
            "data.workers=0",
            "data.epoch_samples=8",
            "model.variant=estinet",
            "model.preset=tiny",
            "model.veil_head=true",
            "train.stage1_steps=0",
            "train.stage2_steps=3",
            "train.gate_lr_scale=10",
            *QUIET_CPU,
            *extra,
        ],
    )


def test_epoch_view_keeps_the_rain_mask_and_veiled_target_of_synthetic_rain(stills: tuple[Path, Path]) -> None:
    from estinet.train.sampling import EpochView, collate

    data = SyntheticRain([stills[0]], preset="heavy", seed=1, crop=32, length=4, veiled=True)
    batch = collate([EpochView(data)[(0, i)] for i in range(2)])
    assert set(batch) == {"rainy", "clean", "rain_mask", "veiled"}
    assert batch["rain_mask"].shape == (2, 5, 32, 32) and batch["veiled"].shape == (2, 5, 3, 32, 32)
    assert torch.equal(batch["veiled"][1], data[1]["veiled"])
    assert torch.equal(batch["rain_mask"][0], data[0]["rain_mask"])


def test_veil_head_is_added_to_trained_weights_and_learns_from_the_veiled_targets(
    tmp_path: Path, stills: tuple[Path, Path], pairs: Path
) -> None:
    torch.manual_seed(7)
    plain = preset_config("estinet", "tiny")
    start = save_weights(build_model(plain), plain, tmp_path / "plain.safetensors")
    trainer = Trainer(_veil_config(stills[0], f"train.init_from={start}"), out_dir=tmp_path / "v")
    state = trainer.core.state_dict()
    shipped, _ = load_model(str(start))
    assert {k.split(".")[0] for k in state if k not in shipped.state_dict()} == {"veil"}
    assert _same_tensors({k: v for k, v in state.items() if not k.startswith("veil.")}, shipped.state_dict())
    rates = sorted(group["lr"] for group in trainer.optimizer.param_groups)  # the new head at its own rate
    assert len(rates) == 2 and rates[1] == pytest.approx(10 * rates[0])
    before = trainer.core.veil.out.weight.detach().clone()
    trainer.fit()
    assert not torch.equal(trainer.core.veil.out.weight, before)  # the veil loss reached the head
    lines = [json.loads(line) for line in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert all(line["l_veil"] >= 0 for line in lines if line["kind"] == "train")
    loaded, config = load_model(tmp_path / "v" / "model.safetensors")
    assert config.veil_head and torch.equal(loaded.veil.out.weight, trainer.core.veil.out.weight)
    folders = _config(pairs, "model.variant=estinet", "model.preset=tiny", "model.veil_head=true")
    with pytest.raises(ConfigError, match=r"model\.veil_head trains on rain whose veil is known"):
        Trainer(folders, out_dir=tmp_path / "f")


def test_a_veil_head_is_carried_along_unchanged_on_paired_data(tmp_path: Path, pairs: Path) -> None:
    torch.manual_seed(9)
    config = preset_config("estinet", "tiny")
    veiled = dataclasses.replace(config, veil_head=True)
    start = save_weights(build_model(veiled), veiled, tmp_path / "start.safetensors")
    opts = ("model.variant=estinet", "model.preset=tiny", "model.veil_head=true", f"train.init_from={start}")
    run = train(
        _config(pairs, *opts, "train.veil_weight=0", "train.stage1_steps=0", "train.stage2_steps=2"),
        out_dir=tmp_path / "run",
    )
    loaded, _ = load_model(run / "model.safetensors")
    before, _ = load_model(start)
    after, first = loaded.state_dict(), before.state_dict()
    head = [k for k in first if k.startswith("veil.")]
    assert head and all(torch.equal(after[k], first[k]) for k in head)  # the head as it was
    assert not all(torch.equal(after[k], first[k]) for k in first if k not in head)  # the derainer learned the pairs


def test_veil_only_trains_the_head_alone_on_one_frame_clips(tmp_path: Path, stills: tuple[Path, Path]) -> None:
    torch.manual_seed(8)
    plain = preset_config("estinet", "tiny")
    start = save_weights(build_model(plain), plain, tmp_path / "plain.safetensors")
    trainer = Trainer(
        _veil_config(stills[0], f"train.init_from={start}", "train.veil_only=true"), out_dir=tmp_path / "v"
    )
    assert trainer.dataset.num_frames == 1  # the head sees one frame: no five-frame clips to render
    assert len(trainer.optimizer.param_groups) == 1
    assert {id(p) for p in trainer.optimizer.param_groups[0]["params"]} == {
        id(p) for p in trainer.core.veil.parameters()
    }
    before = {k: v.clone() for k, v in trainer.core.state_dict().items()}
    trainer.fit()
    after = trainer.core.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"veil"}  # the derainer is left exactly as init_from gave it
    lines = [json.loads(line) for line in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert [line["l_veil"] > 0 for line in lines if line["kind"] == "train"] == [True] * 3
    with pytest.raises(ConfigError, match=r"train\.veil_only trains the veil head"):
        _veil_config(stills[0], "model.veil_head=false", "train.veil_only=true")
