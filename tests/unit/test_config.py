from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from viewfinder import config
from viewfinder.config import (
    RunConfig,
    all_keys,
    build_config,
    canonical_key,
    load_yaml,
    parse_overrides,
)
from viewfinder.errors import UserError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def toy_preset(monkeypatch: pytest.MonkeyPatch) -> str:
    """A task whose preset changes three defaults, so each layer of precedence is visible."""
    preset = {"train": {"epochs": 5, "batch_size": 7, "learning_rate": 0.5}}
    monkeypatch.setitem(config.TASK_PRESETS, "toy", preset)
    return "toy"


# --- defaults and precedence ---------------------------------------------------------------------


def test_defaults() -> None:
    cfg = build_config("classify")
    assert cfg.task == "classify"
    assert cfg.name is None
    assert cfg.output_dir == "runs"
    assert cfg.image_size == 224
    assert cfg.data.path is None
    assert cfg.data.val_fraction == 0.2
    assert cfg.data.on_bad_image == "error"
    assert cfg.data.num_workers == "auto"
    assert cfg.model.name == "resnet18"
    assert cfg.model.pretrained is False
    assert cfg.model.weights is None
    assert cfg.train.epochs == 10
    assert cfg.train.batch_size == 32
    assert cfg.train.learning_rate == 1e-3
    assert cfg.train.optimizer == "adamw"
    assert cfg.train.scheduler == "cosine"
    assert cfg.train.precision == "auto"
    assert cfg.train.channels_last == "auto"
    assert cfg.train.clip_grad_norm is None
    assert cfg.train.monitor == "accuracy"
    assert cfg.train.monitor_mode == "max"


def test_task_preset_overrides_defaults(toy_preset: str) -> None:
    cfg = build_config(toy_preset)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (5, 7, 0.5)
    assert cfg.train.weight_decay == 0.05  # untouched by the preset: still the default


@pytest.mark.parametrize(
    "text",
    [
        "train:\n  batch_size: 8\n  learning_rate: 0.25\n",  # nested
        "train.batch_size: 8\nlearning_rate: 0.25\n",  # flat: dotted and short keys
    ],
    ids=["nested", "flat"],
)
def test_yaml_file_overrides_preset(tmp_path: Path, toy_preset: str, text: str) -> None:
    path = _write(tmp_path / "run.yaml", text)
    cfg = build_config(toy_preset, config_file=path)
    assert cfg.train.epochs == 5  # preset, not in the file
    assert cfg.train.batch_size == 8  # file beats preset
    assert cfg.train.learning_rate == 0.25


def test_overrides_beat_yaml_file(tmp_path: Path, toy_preset: str) -> None:
    path = _write(tmp_path / "run.yaml", "train:\n  batch_size: 8\n  learning_rate: 0.25\n")
    cfg = build_config(toy_preset, config_file=path, overrides={"batch_size": 2})
    assert cfg.train.epochs == 5  # preset
    assert cfg.train.learning_rate == 0.25  # file
    assert cfg.train.batch_size == 2  # override beats file


def test_yaml_file_with_sections_and_bare_values(tmp_path: Path) -> None:
    text = "name: exp\ndata: fruits/\nmodel:\n  name: cnn\n  drop_rate: 0.1\ntrain:\n  epochs: 3\n"
    cfg = build_config("classify", config_file=_write(tmp_path / "c.yaml", text))
    assert cfg.name == "exp"
    assert cfg.data.path == "fruits/"
    assert (cfg.model.name, cfg.model.drop_rate) == ("cnn", 0.1)
    assert cfg.train.epochs == 3


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    cfg = build_config("classify", config_file=_write(tmp_path / "empty.yaml", ""))
    assert cfg == build_config("classify")


# --- keys ----------------------------------------------------------------------------------------


def test_short_keys_find_their_section() -> None:
    cfg = build_config(
        "classify",
        overrides={"epochs": 3, "on_bad_image": "skip", "learning_rate": 0.01},
    )
    assert cfg.train.epochs == 3
    assert cfg.data.on_bad_image == "skip"
    assert cfg.train.learning_rate == 0.01


def test_dashes_in_keys_read_as_underscores() -> None:
    assert canonical_key("on-bad-image") == "data.on_bad_image"


def test_bare_section_values_set_the_main_field() -> None:
    cfg = build_config("classify", overrides={"data": "fruits/", "model": "resnet18+attn"})
    assert cfg.data.path == "fruits/"
    assert cfg.model.name == "resnet18+attn"


def test_section_given_a_mapping() -> None:
    cfg = build_config("classify", overrides={"model": {"name": "cnn", "attention_heads": 2}})
    assert cfg.model.name == "cnn"
    assert cfg.model.attention_heads == 2


def test_bare_value_for_section_without_main_field_is_refused() -> None:
    with pytest.raises(UserError, match="'train'"):
        build_config("classify", overrides={"train": 3})


def test_every_listed_key_is_accepted() -> None:
    for key in all_keys():
        assert canonical_key(key) == key


# --- parse_overrides -----------------------------------------------------------------------------


def test_parse_overrides_reads_yaml_scalars() -> None:
    parsed = parse_overrides(
        ["deterministic=true", "epochs=3", "learning_rate=1e-3", "clip_grad_norm=null", "name="]
    )
    assert parsed["deterministic"] is True
    assert parsed["epochs"] == 3 and isinstance(parsed["epochs"], int)
    assert parsed["clip_grad_norm"] is None
    assert parsed["name"] is None
    # YAML 1.1 reads "1e-3" as text; validation turns it into the float.
    cfg = build_config("classify", overrides=parsed)
    assert isinstance(cfg.train.learning_rate, float)
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    assert cfg.train.deterministic is True
    assert cfg.train.epochs == 3
    assert cfg.train.clip_grad_norm is None


def test_parse_overrides_keeps_text_and_later_equals_signs() -> None:
    parsed = parse_overrides(["data=fruits/", "name=a=b", "output_dir=[oops"])
    assert parsed == {"data": "fruits/", "name": "a=b", "output_dir": "[oops"}


@pytest.mark.parametrize("item", ["epochs", "=3"])
def test_parse_overrides_needs_key_and_value(item: str) -> None:
    with pytest.raises(UserError, match="key=value"):
        parse_overrides([item])


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("learning_rat", "learning_rate"),
        ("epoch", "epochs"),
        ("train.epochz", "train.epochs"),
        ("model.nam", "model.name"),
    ],
)
def test_unknown_key_names_it_and_the_nearest(key: str, suggestion: str) -> None:
    with pytest.raises(UserError) as info:
        build_config("classify", overrides={key: 1})
    message = str(info.value)
    assert repr(key) in message
    assert f"did you mean {suggestion!r}" in message
    assert "\n" not in message


def test_unknown_key_without_a_near_match() -> None:
    with pytest.raises(UserError, match="unknown config key 'zzzzzz'") as info:
        build_config("classify", overrides={"zzzzzz": 1})
    assert "did you mean" not in str(info.value)


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "train:\n  learning_rat: 0.1\n")
    with pytest.raises(UserError, match="learning_rate"):
        build_config("classify", config_file=path)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("epochs=0", "train.epochs"),
        ("train.optimizer=adam", "train.optimizer"),
        ("val_fraction=1.5", "data.val_fraction"),
        ("batch_size=abc", "train.batch_size"),
        ("model.drop_rate=-0.5", "model.drop_rate"),
    ],
)
def test_bad_value_names_the_key(override: str, key: str) -> None:
    with pytest.raises(UserError) as info:
        build_config("classify", overrides=parse_overrides([override]))
    message = str(info.value)
    assert message.startswith(f"config value {key}=")
    assert "is invalid" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("GRU", "gru"), ("hf:bert-base-uncased", "hf:bert-base-uncased"), ("hf:./enc", "hf:./enc")],
)
def test_question_encoder_takes_builtins_and_hf_names(value: str, expected: str) -> None:
    cfg = build_config("vqa", overrides={"question_encoder": value})
    assert cfg.model.question_encoder == expected and cfg.model.freeze_question_encoder


@pytest.mark.parametrize(
    ("value", "hint"),
    [("lstn", "did you mean 'lstm'"), ("bert-base-uncased", "hf:bert-base-uncased"), ("hf:", "")],
)
def test_question_encoder_typos_are_refused(value: str, hint: str) -> None:
    with pytest.raises(UserError, match="choose gru, lstm, transformer or hf:NAME") as info:
        build_config("vqa", overrides={"question_encoder": value})
    assert hint in str(info.value)


def test_missing_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserError, match="not found") as info:
        build_config("classify", config_file=path)
    assert str(path) in str(info.value)


def test_malformed_yaml_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "train: [1, 2\nepochs: 3\n")
    with pytest.raises(UserError, match="not valid YAML") as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.yaml", "- epochs\n- 3\n")
    with pytest.raises(UserError, match="mapping") as info:
        build_config("classify", config_file=path)
    assert str(path) in str(info.value)


# --- the resolved object -------------------------------------------------------------------------


def test_config_is_frozen() -> None:
    cfg = build_config("classify")
    with pytest.raises(ValidationError):
        cfg.train.epochs = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.name = "other"  # type: ignore[misc]
    assert cfg.train.epochs == 10


def test_sections_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"task": "classify", "train": {"lr0": 0.1}})


def test_to_yaml_round_trips() -> None:
    cfg = build_config(
        "classify",
        overrides={
            "data": "fruits/",
            "model": "resnet18+attn",
            "learning_rate": 3e-4,
            "clip_grad_norm": 1.0,
            "channels_last": False,
            "num_workers": 2,
            "name": "exp",
        },
    )
    restored = RunConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert restored == cfg


def test_with_overrides_returns_a_new_config() -> None:
    cfg = build_config("classify", overrides={"data": "fruits/", "epochs": 3})
    more = cfg.with_overrides({"epochs": 7, "model.name": "cnn"})
    assert (more.train.epochs, more.model.name, more.data.path) == (7, "cnn", "fruits/")
    assert (cfg.train.epochs, cfg.model.name) == (3, "resnet18")  # original untouched
    assert more.task == "classify"
    with pytest.raises(UserError, match="epochs"):
        cfg.with_overrides({"epoch": 7})
