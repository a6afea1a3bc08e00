"""Run configuration as frozen dataclasses. Config is data: YAML is read with ``yaml.safe_load``,
unknown keys are an error, and ``--set a.b=c`` overrides any field. Every run folder keeps its
resolved config (``config.yaml``), which is enough to reproduce the run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retort.errors import ConfigError


@dataclass(frozen=True)
class ObjectiveConfig:
    """The distillation objective. ``method`` picks a preset (retort/distill/presets.py); a field left
    as None takes the preset's value, a field that is set overrides it.

    L = alpha * L_soft + hard_weight * L_hard + beta * L_hidden + gamma * L_attn
        + value_weight * L_value + cosine_weight * L_cos
    """

    method: str = "kd"  # kd | distilbert | tinybert | minilm | multilevel
    stage: str = "all"  # all | intermediate | prediction (TinyBERT's two steps) | attention (see objective.py)
    temperature: float = 2.0  # softmax temperature of the soft term (ignored for regression)
    alpha: float | None = None  # soft: KL to temperature-softened teacher logits (MSE to its score for STS-B)
    hard_weight: float | None = None  # hard: cross-entropy / MSE to the gold label
    soft_loss: str | None = None  # kl (temperature-softened distributions) | mse (on logits, as DSE)
    beta: float | None = None  # hidden: per-layer MSE, student projected to the teacher's width
    gamma: float | None = None  # attention: per mapped layer
    value_weight: float | None = None  # MiniLM value relation, last layer
    cosine_weight: float | None = None  # DistilBERT cosine between last hidden states
    attention_loss: str | None = None  # mse (TinyBERT, pre-softmax scores) | kl (MiniLM, distributions)
    attention_layers: str | None = None  # mapped (every mapped layer) | last
    embeddings: bool | None = None  # the hidden term includes the embedding output (layer 0)
    layer_map: str = "uniform"  # uniform | last | list
    layer_list: list[int] | None = None  # with layer_map=list: teacher layer (1-based) per student layer
    layer_weights: str | None = None  # static | loss | learned (see retort/distill/layer_weights.py)
    weight_temperature: float = 0.5  # softmax temperature of the loss-based weights
    weight_window: int = 50  # loss-based weights: steps between the two loss averages compared
    weight_floor: float = 0.2  # learned weights: share of the uniform weight every layer keeps
    weight_entropy: float = 0.1  # learned weights: weight of KL(w || uniform)
    relation_heads: int | None = None  # value relation heads (default: the teacher's head count)
    head_average: bool = False  # compare head-averaged attention when head counts differ
    teacher_forced: bool = False  # stage attention: layer l reads the teacher state layer l-1 learns (objective.py)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the teacher's fine-tuning or a student's distillation."""

    task: str = "STS-B"
    out: str = "runs/run"
    kind: str = "teacher"  # teacher (fine-tune a cross-encoder) | distill (train a student)
    glue_dir: str | None = None  # else $GLUE_DIR, else the nyu-mll/glue dataset on the hub
    skip_bad_rows: bool = False
    base: str = "all-MiniLM-L6-v2"  # model to fine-tune (kind=teacher)
    teacher: str | None = None  # fine-tuned teacher folder (kind=distill)
    student: str = "3x384"  # LAYERSxHIDDEN (kind=distill)
    student_heads: int | None = None  # default: the teacher's when widths match, else hidden/64
    student_intermediate: int | None = None  # default: the teacher's when widths match, else 4*hidden
    student_init: str = "teacher"  # teacher | random | a checkpoint folder
    attention: str = "softmax"  # softmax (BERT) | linear (retort/models/linear.py)
    feature_map: str = "elu"  # linear attention: elu | relu | favor | hedgehog (learned)
    hedgehog_act: str = "softmax"  # hedgehog feature map: softmax (LoLCATs) | exp (the Hedgehog paper)
    hedgehog_qk: str = "shared"  # hedgehog: one map for queries and keys (shared) | one each (separate)
    max_positions: int | None = None  # student position table; past the teacher's 512 rows are extended
    position_mode: str = "copy"  # how positions past the teacher's are made: copy | interpolate
    dse: bool = False  # train a siamese bi-encoder on cached cross-encoder teacher scores (models/biencoder.py)
    pooling: str = "mean"  # bi-encoder pooling: mean | cls | mean-top-K
    long_sts_tokens: int | None = None  # train and evaluate on the long STS-B variant of this length (data/long_sts.py)
    long_sts_train: int = 2000  # long examples built from the training pairs
    long_sts_dev: int = 500  # long examples built from the dev pairs
    # unlabelled inputs the teacher labels, added to the training set: TASK[:N] | FILE[:N] (data/transfer.py)
    transfer: list[str] = field(default_factory=list)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 128
    max_train_samples: int | None = None  # the first N training rows (file order)
    max_eval_samples: int | None = None
    group_by_length: bool = True  # length-grouped batches (with dynamic padding always on)
    eval_every: int = 0  # steps between evaluations; 0 = once an epoch
    save_every: int = 100  # steps between resume checkpoints (also saved after every evaluation)
    log_every: int = 10
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads; None leaves torch's default


# The allowed range of every numeric field, declared once and checked wherever a config is built
# (flags, --config YAML, --set, a resumed run's config.yaml): (lowest, highest, lowest excluded?).
RANGES: dict[str, dict[str, tuple[float | None, float | None, bool]]] = {
    "TrainConfig": {
        "epochs": (1, None, False),
        "batch_size": (1, None, False),
        "eval_batch_size": (1, None, False),
        "lr": (0, 1, True),
        "weight_decay": (0, None, False),
        "warmup_ratio": (0, 1, False),
        "max_grad_norm": (0, None, False),
        "max_length": (2, None, False),
        "max_train_samples": (1, None, False),
        "max_eval_samples": (1, None, False),
        "eval_every": (0, None, False),
        "save_every": (1, None, False),
        "log_every": (1, None, False),
        "threads": (1, 1024, False),
        "student_heads": (1, None, False),
        "student_intermediate": (1, None, False),
        "max_positions": (2, None, False),
        "long_sts_tokens": (8, None, False),
        "long_sts_train": (1, None, False),
        "long_sts_dev": (1, None, False),
    },
    "ObjectiveConfig": {
        "temperature": (0, None, True),
        "alpha": (0, None, False),
        "hard_weight": (0, None, False),
        "beta": (0, None, False),
        "gamma": (0, None, False),
        "value_weight": (0, None, False),
        "cosine_weight": (0, None, False),
        "weight_temperature": (0, None, True),
        "weight_window": (1, None, False),
        "weight_floor": (0, 1, False),
        "weight_entropy": (0, None, False),
        "relation_heads": (1, None, False),
    },
}


def check_range(cls_name: str, name: str, value: Any, where: str) -> None:
    rule = RANGES.get(cls_name, {}).get(name)
    if rule is None or value is None:
        return
    low, high, open_low = rule
    bad = (low is not None and (value <= low if open_low else value < low)) or (high is not None and value > high)
    if bad or value != value:  # NaN compares false with everything
        allowed = (f"> {low}" if open_low else f">= {low}") + (f" and <= {high}" if high is not None else "")
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{where.removeprefix('config.')} = {value!r} ({flag}): must be {allowed}")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict, where: str = "config") -> Any:
    """Build a (nested) dataclass from plain data; unknown keys and wrong types raise ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
        check_range(cls.__name__, name, kwargs[name], f"{where}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value or {}, where)
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return out
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(typing.get_args(hint)[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` strings (values parsed as YAML scalars) to nested plain data."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example objective.temperature=4")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def load_yaml(path: str | Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)
