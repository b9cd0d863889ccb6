"""Configs: model presets, experiment YAML round trip, dotted overrides, unknown keys and invalid values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from estinet.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    experiment_from_dict,
    from_dict,
    load_experiment,
    model_from_dict,
    preset_config,
    save_experiment,
    to_dict,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_model_section_starts_from_its_preset() -> None:
    assert model_from_dict({}) == preset_config("estinet", "tiny")
    assert model_from_dict({"preset": "small"}) == preset_config("estinet", "small")
    cfg = model_from_dict({"variant": "sicm-stim-3", "preset": "small", "base_channels": 16})
    assert cfg.variant == "sicm-stim-3" and cfg.base_channels == 16
    assert cfg.hidden_channels == preset_config("estinet", "small").hidden_channels
    assert model_from_dict({"variant": "official"}).motion_compensation is False
    with pytest.raises(ConfigError, match=r"unknown ModelConfig key\(s\) \['widht'\]; valid keys: .*base_channels"):
        model_from_dict({"widht": 3})
    with pytest.raises(ConfigError, match=r"model\.variant must be one of"):
        model_from_dict({"variant": "resnet"})


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = load_experiment(
        None,
        [
            "name=rt",
            "model.preset=small",
            "model.motion_compensation=false",
            "data.train=ntu:/data/NTURain",
            "data.val=null",
            "train.lr=3e-4",
            "train.schedule=exponential",
        ],
    )
    path = tmp_path / "c.yaml"
    save_experiment(config, path)
    again = load_experiment(path)
    assert again == config
    assert experiment_from_dict(to_dict(config)) == config
    assert again.model.base_channels == 24 and not again.model.motion_compensation
    assert again.data.val is None and again.train.lr == pytest.approx(3e-4)
    assert again.run_dir == Path("runs/rt")
    assert not list(tmp_path.glob(".*tmp"))


def test_committed_configs_load() -> None:
    files = sorted(CONFIGS.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {
        "tiny-synthetic",
        "small-synthetic",
        "paper-synthetic",
        "small-ntu",
        "small-rainsyn-light",
        "small-rainsyn-complex",
    } <= names
    for f in files:
        config = load_experiment(f)
        assert config.name == f.stem
        assert config.model.preset == f.stem.split("-")[0]
        assert isinstance(config.train.lr, float) and config.train.min_lr < config.train.lr
    tiny = load_experiment(CONFIGS / "tiny-synthetic.yaml")
    assert tiny.data.camera == "mixed" and set(tiny.data.train.split(":")[1].split(",")) == {"light", "heavy", "ntu"}
    assert 96 <= tiny.data.crop <= 128 and 4 <= tiny.data.batch_size <= 8
    ntu = load_experiment(CONFIGS / "small-ntu.yaml", ["data.train=ntu:/mnt/x"])
    assert ntu.data.train == "ntu:/mnt/x" and ntu.data.val is not None and ntu.data.val.startswith("ntu:")


def test_overrides_apply_before_presets_expand(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"preset": "tiny", "hidden_channels": 5}, "train": {"lr": 1e-3}}))
    config = load_experiment(path, ["model.preset=small", "train.stage1_steps=7", "data.clean=[a.png, b.mp4]"])
    small = preset_config("estinet", "small")
    assert config.model.base_channels == small.base_channels  # the preset switched ...
    assert config.model.hidden_channels == 5  # ... but the file's explicit value stays
    assert config.train.stage1_steps == 7 and config.data.clean == ["a.png", "b.mp4"]
    assert config.train.lr == pytest.approx(1e-3)
    # the dataclass-level helper still works on experiment configs
    assert apply_overrides(config, ["train.alpha=0.5"]).train.alpha == 0.5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trian.lr=1", r"no key 'trian' in ExperimentConfig; valid: \['data', 'model', 'name', 'out_dir', 'train'\]"),
        ("train.learning_rate=1", r"no key 'learning_rate' in TrainConfig; valid: \[.*'lr'"),
        ("data.crop_size=3", r"no key 'crop_size' in DataConfig"),
        ("model.width=3", r"no key 'width' in ModelConfig"),
        ("train=3", r"'train' is a section"),
        ("train.lr.x=3", r"'lr' is a value, not a section"),
        ("train.lr", r"must look like key=value"),
    ],
)
def test_unknown_override_keys(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment(None, [override])


def test_unknown_yaml_keys(tmp_path: Path) -> None:
    for data, message in [
        ({"nmae": "x"}, r"unknown ExperimentConfig key\(s\) \['nmae'\]"),
        ({"train": {"steps": 3}}, r"unknown TrainConfig key\(s\) \['steps'\]; valid keys: alpha, amp"),
        ({"data": {"bach_size": 3}}, r"unknown DataConfig key\(s\) \['bach_size'\]"),
        ({"model": {"base": 3}}, r"unknown ModelConfig key\(s\) \['base'\]"),
        ({"train": [1, 2]}, "the train section must be a mapping"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=message):
            load_experiment(path)
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_experiment(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")


def test_yaml_numbers_are_coerced() -> None:
    # PyYAML reads 1e-4 (no dot) as a string; the config turns numeric strings into floats
    config = from_dict(TrainConfig, {"lr": "1e-4", "min_lr": "1e-6", "alpha": 1})
    assert config.lr == 1e-4 and config.min_lr == 1e-6 and isinstance(config.alpha, float)


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (TrainConfig, {"amp": "fp8"}, r"train.amp must be one of none, bf16, fp16, got 'fp8'"),
        (TrainConfig, {"schedule": "step"}, "train.schedule must be one of cosine, exponential"),
        (TrainConfig, {"stage1_steps": -1}, "train.stage1_steps must be an integer >= 0"),
        (TrainConfig, {"stage1_steps": 0, "stage2_steps": 0}, "at least 1"),
        (TrainConfig, {"lr": "fast"}, "train.lr must be a number > 0"),
        (TrainConfig, {"lr": 1e-5, "min_lr": 1e-4}, r"train.min_lr \(0.0001\) must not exceed train.lr"),
        (TrainConfig, {"log_every": 0}, "train.log_every must be a positive integer"),
        (TrainConfig, {"channels_last": "yes"}, "train.channels_last must be true or false"),
        (DataConfig, {"train": "/data/ntu"}, "data.train must be a dataset spec KIND:PATH"),
        (DataConfig, {"batch_size": 0}, "data.batch_size must be a positive integer"),
        (DataConfig, {"workers": -1}, "data.workers must be an integer >= 0"),
        (DataConfig, {"clean": []}, "data.clean must be null or a non-empty list of paths"),
        (DataConfig, {"val": "somewhere"}, "data.val must be null or a dataset spec"),
        (DataConfig, {"veil": 1.5}, r"data.veil must be a probability in \[0, 1\]"),
    ],
)
def test_invalid_values(cls: type, values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**values)


def test_defaults_are_the_paper_recipe() -> None:
    config = ExperimentConfig()
    assert config.train.lr == 1e-4 and config.train.min_lr == 1e-6 and config.train.alpha == 1.0
    assert config.model == ModelConfig() and config.data.val is not None and config.data.val.startswith("heldout:")
    assert DataConfig(clean="a.mp4").clean == ["a.mp4"]  # a single path is accepted as a list of one


def test_rain_gate_needs_estm_and_the_new_data_options_are_probabilities() -> None:
    assert preset_config("estinet", "tiny", rain_gate=True).rain_gate
    assert not preset_config("estinet", "paper").rain_gate  # the paper's model stays as it was
    with pytest.raises(ConfigError, match="rain_gate needs ESTM"):
        preset_config("sicm-stim-5", "tiny", rain_gate=True)
    for key in (
        "data.compression=1.5",
        "data.scene_motion=-1",
        "data.still=1.5",
        "train.background_weight=-2",
        "train.detail_weight=-1",
    ):
        with pytest.raises(ConfigError):
            apply_overrides(ExperimentConfig(), [key])
