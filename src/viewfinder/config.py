"""Typed run configuration.

Resolved once, in this order (later wins): defaults < task preset < ``--config file.yaml`` <
``key=value`` overrides. The result is frozen and written to the run folder as ``config.yaml``.

Keys are dotted (``train.learning_rate=3e-4``). A key found in exactly one section may be given
without its prefix (``epochs=10``, ``on_bad_image=skip``), and two sections take a bare value as
their main field: ``data=fruits/`` is ``data.path``, ``model=resnet50`` is ``model.name``.
Unknown keys and bad values fail before any work starts, naming the key and the nearest valid one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from viewfinder.errors import UserError, did_you_mean


class _Section(BaseModel):
    # coerce numbers: `name=2024` or `data=2024` (a folder) arrive from YAML parsing as ints
    model_config = ConfigDict(
        frozen=True, extra="forbid", protected_namespaces=(), coerce_numbers_to_str=True
    )


TTA_VIEWS = ("none", "hflip", "vflip", "scale")


class DataConfig(_Section):
    """Where the images are and how they are read."""

    path: str | None = None
    test_path: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    on_bad_image: Literal["error", "skip"] = "error"
    num_workers: int | Literal["auto"] = "auto"
    augment: Literal["none", "flip", "light", "medium", "strong"] = "light"
    augment_exclude: str = ""  # per-sample ops to leave out, "+"-joined: rotate+shear+color
    hflip: bool = True  # random horizontal flips (off for orientation-bound classes)
    vflip: bool = False  # random vertical flips (on for top-down images: cells, wafers, fabric)
    cache: bool = True  # decode each image once into the on-disk cache (see data/cache.py)
    cache_dir: str | None = None  # default: $VIEWFINDER_CACHE_DIR or ~/.cache/viewfinder
    cache_max_gb: float = Field(20.0, gt=0.0)
    sampler: Literal["uniform", "inverse", "sqrt", "effective", "repeat_factor"] = "uniform"
    folds: int | None = Field(None, ge=2)  # stratified k-fold: train every fold (see api.train)
    fold: int | None = Field(None, ge=0)  # which fold is validation (set per fold by k-fold runs)
    label_map: str | None = None  # CSV fine,coarse: a coarse task derived from fine labels
    label_level: Literal["coarse", "fine"] = "coarse"  # with label_map: which level to train
    tta: str = "none"  # test-time views joined by "+": hflip, vflip, scale (e.g. hflip+scale)
    mixup: float = Field(0.0, ge=0.0)  # mixup alpha (0 = off); soft targets
    cutmix: float = Field(0.0, ge=0.0)  # cutmix alpha (0 = off); with mixup, one per batch
    mos_column: str | None = None  # iqa: the MOS column (detected: mos, score, quality ...)
    comments_column: str | None = None  # iqa/caption: the comments column (comments, caption ..)
    mos_range: str | None = None  # iqa: "LOW,HIGH" (e.g. 0,10); default: the training MOS range
    # caption/vqa: the folder of images that CSV rows name by id (image_id -> DIR/<id>.<any ext>);
    # default: the CSV's folder, its images/ folder, then ../images
    images: str | None = None
    grayscale: bool = False  # feed grayscale images (3 equal channels): the study's variant
    # vqa: column names (detected: question; answer/answers) and which questions to train on
    question_column: str | None = None
    answer_column: str | None = None
    answer_type: Literal["yes/no", "number", "other"] | None = None  # of the most common answer
    question_type: str | None = None  # questions starting with these words ("what color")
    max_questions: int | None = Field(None, ge=1)  # the first N (after the filters)

    @field_validator("augment_exclude")
    @classmethod
    def _check_exclude(cls, value: str) -> str:
        if not value.strip():
            return ""
        from viewfinder.data.transforms import AUGMENT_OPS  # imports torch: only when set

        ops = [v.strip() for v in value.split("+") if v.strip()]
        unknown = [v for v in ops if v not in AUGMENT_OPS]
        if unknown:
            raise ValueError(f"unknown op {unknown[0]!r}; choose from {', '.join(AUGMENT_OPS)}")
        return "+".join(ops)

    @field_validator("tta")
    @classmethod
    def _check_tta(cls, value: str) -> str:
        views = [v.strip() for v in value.split("+") if v.strip()]
        unknown = [v for v in views if v not in TTA_VIEWS]
        if unknown or not views or ("none" in views and len(views) > 1):
            raise ValueError(f"tta views are none or a '+'-list of {', '.join(TTA_VIEWS[1:])}")
        return "+".join(views)


DECODERS = ("lstm", "gru", "transformer")
HF_DECODERS = ("gpt2", "distilgpt2")  # more Hugging Face causal LMs by hf:NAME_OR_FOLDER
QUESTION_ENCODERS = ("gru", "lstm", "transformer")  # or a Hugging Face encoder: hf:NAME_OR_FOLDER


class ModelConfig(_Section):
    """Which network: any timm name, ``cnn``, or ``NAME+attn`` for an attention head."""

    name: str = "resnet18"
    pretrained: bool = False
    weights: str | None = None
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    attention_heads: int = Field(4, ge=1)
    freeze_backbone: bool = False  # train the head only, on features extracted once and cached
    feature_flip: bool = False  # frozen mode: also cache flipped-image features (augment + TTA)
    reinit_head: bool = False  # re-initialise the classifier after loading weights= (cRT)
    zero_shot: bool = False  # clip:ARCH models: classify by class-name prompts, no training
    mlp_hidden: int = Field(512, ge=1)  # NAME+mlp: width of the MLP head's hidden layer
    # NAME+ridge (frozen features, iqa): the ridge penalty on standardised features; default:
    # chosen on the validation split from a log grid (models/ridge.py)
    ridge_alpha: float | None = Field(None, gt=0.0)
    # caption / iqa+caption: lstm | gru (show-and-tell; decoder_attention=true attends over the
    # grid: show-attend-tell) | transformer (cross-attention over the grid) | a Hugging Face
    # causal LM (gpt2, distilgpt2, hf:NAME_OR_FOLDER) fed image prefix tokens (decoder_dim ignored)
    decoder: str = "lstm"
    decoder_attention: bool = False
    decoder_dim: int = Field(256, ge=8)
    decoder_layers: int = Field(1, ge=1)
    decoder_heads: int = Field(4, ge=1)
    decoder_dropout: float = Field(0.1, ge=0.0, lt=1.0)

    # vqa: classifier (top-K answers; question_encoder + fusion) | generative (decoder= writes
    # the answer); see models/vqa.py
    answerer: Literal["classifier", "generative"] = "classifier"
    # gru | lstm | transformer over a word vocabulary of the training questions, or a pretrained
    # Hugging Face text encoder, hf:NAME_OR_FOLDER (its own tokenizer; models/hf_encoder.py),
    # frozen unless freeze_question_encoder=false (then lower learning_rate)
    question_encoder: str = "gru"
    freeze_question_encoder: bool = True
    fusion: Literal["concat", "product", "attention", "film"] = "film"
    fusion_layers: int = Field(2, ge=1)  # film: question-modulated residual blocks per cell
    answer_vocab: int = Field(1000, ge=2)  # the classifier's answers: the K most frequent

    @field_validator("decoder")
    @classmethod
    def _check_decoder(cls, value: str) -> str:
        name = value.strip()
        if name.lower() in DECODERS + HF_DECODERS or (name.startswith("hf:") and len(name) > 3):
            return name.lower() if ":" not in name else name
        raise ValueError(f"choose {', '.join(DECODERS + HF_DECODERS)} or hf:NAME_OR_FOLDER")

    @field_validator("question_encoder")
    @classmethod
    def _check_question_encoder(cls, value: str) -> str:
        name = value.strip()
        if name.startswith("hf:") and len(name) > 3:
            return name
        if name.lower() in QUESTION_ENCODERS:
            return name.lower()
        hint = did_you_mean(name.lower(), QUESTION_ENCODERS)
        if not hint and ("/" in name or "-" in name) and not name.startswith("hf:"):
            hint = f" (a Hugging Face encoder: hf:{name})"
        raise ValueError(f"choose {', '.join(QUESTION_ENCODERS)} or hf:NAME_OR_FOLDER{hint}")


class TrainConfig(_Section):
    """The optimisation recipe; every knob of the loop in ``training/loop.py``."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    scheduler: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # classify: ce | focal | balanced_softmax | logit_adjusted; iqa: mse | l1 | smooth_l1 | plcc
    # | rank, "+"-combined (mse+plcc); checked against the task in RunConfig
    loss: str = "ce"
    class_weights: Literal["none", "inverse", "sqrt", "effective"] = "none"
    focal_gamma: float = Field(2.0, ge=0.0)
    logit_tau: float = Field(1.0, ge=0.0)  # tau of the logit-adjusted loss
    # tuned on val after training: logit_adjust / tau_norm (one tau) or class_bias (per class)
    posthoc: Literal["none", "logit_adjust", "tau_norm", "class_bias"] = "none"
    grad_accum_steps: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    precision_probe: bool = True  # auto on CPU: time fp32 vs bf16 steps once (training/precision)
    channels_last: bool | Literal["auto"] = "auto"
    # validate every N epochs (the last epoch always): best weights, early stopping and the
    # monitor only move on validated epochs; patience counts validations
    eval_every: int = Field(1, ge=1)
    # validation / evaluate / predict batch: auto = batch_size on CPU (larger batches measured no
    # faster there, docs/benchmarks.md), 2 x batch_size on CUDA (no activations are kept)
    eval_batch_size: int | Literal["auto"] = "auto"
    early_stopping_patience: int | None = Field(None, ge=1)
    monitor: str = "accuracy"
    monitor_mode: Literal["max", "min"] = "max"
    seed: int = 0
    deterministic: bool = False
    max_steps_per_epoch: int | None = Field(None, ge=1)
    checkpoint_every_steps: int | None = Field(None, ge=1)
    max_rss_gb: float | None = Field(None, gt=0.0)  # stop (resumably) past this resident memory
    compile: bool = False  # torch.compile the model (see docs/benchmarks.md for when it wins)
    # iqa+caption: the weights of the MOS and caption losses in the one loss (two keys, not one
    # "1,0.5" list: a sweep splits values on commas)
    mos_weight: float = Field(1.0, ge=0.0)
    caption_weight: float = Field(1.0, ge=0.0)
    # experiment trackers (training/trackers.py): none | tensorboard | mlflow | wandb, "+"-combined
    # ("+", not ",": a sweep splits values on commas); tracker_dir: where their files go
    log_with: str = "none"
    tracker_dir: str | None = None

    @field_validator("log_with")
    @classmethod
    def _check_log_with(cls, value: str) -> str:
        from viewfinder.training.trackers import parse_trackers  # no heavy imports

        return "+".join(parse_trackers(value.strip())) or "none"


class TextConfig(_Section):
    """Text sides (captions, questions): tokenizer and decoding (``data/text.py``,
    ``models/decoding.py``)."""

    tokenizer: Literal["auto", "word", "bpe"] = "auto"  # auto: word, or a Hugging Face LM's BPE
    min_count: int = Field(2, ge=1)  # word tokenizer: rarer training words become <unk>
    vocab_size: int | None = Field(None, ge=8)  # word tokenizer: keep the most frequent words
    max_length: int = Field(24, ge=3)  # tokens with <bos>/<eos>; longer captions are truncated
    answer_length: int = Field(10, ge=3)  # vqa generative: answer tokens with <bos>/<eos>
    decoding: Literal["greedy", "beam"] = "beam"
    beam_size: int = Field(3, ge=1)
    length_penalty: float = Field(0.6, ge=0.0)  # beam: score / length ** length_penalty
    no_repeat_ngram: int = Field(3, ge=0)  # never repeat an n-gram in one caption (0 = off)
    # caption metrics: auto = pycocoevalcap's exact ones (PTB tokenizer and METEOR on Java) when
    # Java is there; python = Java-free always (no METEOR/caption score; java_free=1), e.g. for
    # quick experiments where the JVM's start (~10 s, once per process) matters
    scorer: Literal["auto", "python"] = "auto"


class RunConfig(_Section):
    """One run: a task, its data, model and recipe, and where the run folder goes."""

    task: str
    name: str | None = None
    output_dir: str = "runs"
    image_size: int = Field(224, ge=16, le=2048)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    text: TextConfig = TextConfig()

    @model_validator(mode="after")
    def _check_task_keys(self) -> RunConfig:
        losses = TASK_LOSSES.get(self.task)
        parts = self.train.loss.split("+")
        if losses is not None and (any(p not in losses for p in parts) or len(parts) > 1
                                   and self.task == "classify"):  # fmt: skip
            raise ValueError(
                f"train.loss={self.train.loss!r} is not a loss of task {self.task}; choose from "
                f"{', '.join(losses)}" + (" ('+' combines them)" if self.task != "classify" else "")
            )
        if self.task != "classify" and self.train.posthoc != "none":
            raise ValueError(f"train.posthoc re-balances classifiers; task {self.task} has none")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def with_overrides(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A new config with ``overrides`` (dotted or short keys) applied on top of this one."""
        return build_config(self.task, base=self.model_dump(mode="json"), overrides=overrides)


SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "text": TextConfig,
}
# A bare value given to a section key means this field (``model=resnet50``).
MAIN_FIELD = {"data": "path", "model": "name"}
TOP_LEVEL = [k for k in RunConfig.model_fields if k not in SECTIONS]

# Task presets: the defaults a task changes (filled by tasks when they register).
TASK_PRESETS: dict[str, dict[str, Any]] = {
    "classify": {"train": {"monitor": "accuracy", "monitor_mode": "max"}},
    # quality labels: flips only (crops rescale, colour/blur/JPEG ops change the quality itself)
    "iqa": {"train": {"monitor": "mos_score", "monitor_mode": "max", "loss": "mse"},
            "data": {"augment": "flip"}},
    # captions name what is where and how it looks: flips only by default (a crop can cut out
    # what a caption names); a flipped image's caption swaps "left" and "right" (data/text.py)
    "caption": {"train": {"monitor": "cider_d", "monitor_mode": "max", "loss": "ce"},
                "data": {"augment": "flip"}},
    "iqa+caption": {"train": {"monitor": "mos_score", "monitor_mode": "max", "loss": "mse"},
                    "data": {"augment": "flip"}},
    # questions name colours and sides: flips only (colour jitter changes colour answers, a crop
    # can cut out what is counted); a flipped image's question and answers swap "left" and
    # "right" (data/text.py). Frozen, the flipped view is cached too. hflip=false and
    # feature_flip=false turn flips off (text or digits in the images, say)
    "vqa": {"train": {"monitor": "accuracy", "monitor_mode": "max", "loss": "ce"},
            "data": {"augment": "flip", "hflip": True},
            "text": {"max_length": 32, "decoding": "greedy", "no_repeat_ngram": 0},
            "model": {"decoder": "transformer", "feature_flip": True}},
}  # fmt: skip
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "classify": ("ce", "focal", "balanced_softmax", "logit_adjusted"),
    "iqa": ("mse", "l1", "smooth_l1", "plcc", "rank"),
    "caption": ("ce",),  # token cross-entropy (label_smoothing= applies)
    "iqa+caption": ("mse", "l1", "smooth_l1", "plcc", "rank"),  # the MOS head's; captions: ce
    "vqa": ("ce",),  # soft-target cross-entropy over answers, or answer-token cross-entropy
}


def all_keys() -> list[str]:
    """Every valid dotted key, for error messages and ``--help``."""
    keys = list(TOP_LEVEL)
    for section, model in SECTIONS.items():
        keys += [f"{section}.{field}" for field in model.model_fields]
    return keys


def _short_key_index() -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for section, model in SECTIONS.items():
        for field in model.model_fields:
            index.setdefault(field, []).append(f"{section}.{field}")
    return index


def canonical_key(key: str) -> str:
    """Map a user key (dotted or short) to its dotted form, or fail naming the nearest key."""
    key = key.strip().replace("-", "_")
    if key in TOP_LEVEL or key in SECTIONS:
        return key
    if "." in key:
        section, _, field = key.partition(".")
        if section in SECTIONS and field in SECTIONS[section].model_fields:
            return key
    else:
        homes = _short_key_index().get(key, [])
        if len(homes) == 1:
            return homes[0]
        if len(homes) > 1:
            raise UserError(f"config key {key!r} is ambiguous; write one of: {', '.join(homes)}")
    choices = all_keys() + list(_short_key_index())
    hint = did_you_mean(key, choices) or did_you_mean(key.rpartition(".")[2], choices)
    raise UserError(f"unknown config key {key!r}{hint}; see `viewfinder config keys`")


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    if dotted in SECTIONS:
        if isinstance(value, Mapping):
            for field, sub in value.items():
                _set(tree, canonical_key(f"{dotted}.{field}"), sub)
            return
        dotted = f"{dotted}.{MAIN_FIELD.get(dotted, '')}"
        if dotted.endswith("."):
            raise UserError(f"config key {dotted[:-1]!r} needs a mapping of its keys")
    section, _, field = dotted.partition(".")
    if field:
        tree.setdefault(section, {})[field] = value
    else:
        tree[section] = value


def normalise(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a user mapping (nested YAML or flat dotted/short keys) into a nested tree."""
    tree: dict[str, Any] = {}
    for key, value in mapping.items():
        _set(tree, canonical_key(str(key)), value)
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``true``, ``3``, ``null``)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not key=value (e.g. epochs=10)")
        try:
            parsed[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            parsed[key] = raw
    return parsed


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or malformed file is one clear line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "invalid YAML"
        raise UserError(f"{p}: not valid YAML ({first})") from err
    if not isinstance(data, dict):
        raise UserError(f"{p}: a config file must be a mapping of keys to values")
    return data


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    if not first["loc"]:  # a check across keys (RunConfig's model validator)
        return "config " + str(first["msg"]).removeprefix("Value error, ")
    key = ".".join(str(part) for part in first["loc"])
    value = first.get("input")
    return f"config value {key}={value!r} is invalid: {first['msg']}"


def build_config(
    task: str,
    *,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve defaults < task preset < config file < overrides into one frozen ``RunConfig``."""
    tree: dict[str, Any] = _merge({}, TASK_PRESETS.get(task, {}))
    if base is not None:
        tree = _merge(tree, normalise(base))
    if config_file is not None:
        tree = _merge(tree, normalise(load_yaml(config_file)))
    if overrides:
        tree = _merge(tree, normalise(overrides))
    tree["task"] = task
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise UserError(_validation_message(err)) from None
