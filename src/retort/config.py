"""Run configuration as frozen dataclasses. Config is data: YAML is read with ``yaml.safe_load``,
unknown keys are an error, and ``--set a.b=c`` overrides any field. Every run folder keeps its
resolved config (``config.yaml``), which is enough to reproduce the run.

A config checks itself when it is built (flags, YAML, ``--set``, a resumed run's ``config.yaml`` or
``TrainConfig(**kwargs)`` in Python alike): every field's range and choices (``check_fields``) and the
cross-field rules that need nothing but its fields (``check_train_config``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retort.errors import ConfigError
from retort.machine import MAX_THREADS, memory_bytes
from retort.paths import is_dir, write_atomic

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds alike
STUDENT_INITS = ("teacher", "random", "prune")


def opt(
    default: Any = None,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    choices: tuple[str, ...] | None = None,
    cli: str | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    pattern: tuple[str, str] | None = None,
    factory: Any = None,
) -> Any:
    """A config field and everything about it, declared once: its default, its help, its allowed range
    (checked wherever a config is built) and, through ``cli``, the commands that get it as a flag
    (``train``: every training command; ``teacher``; ``student``: distill and dse train; ``dse``).
    ``pattern``: (regular expression a text value must match in full, what it allows in words)."""
    meta = {"help": help, "range": (low, high, open_low) if low is not None or high is not None else None}
    meta.update(choices=choices, cli=cli, flag=flag, metavar=metavar, pattern=pattern)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ObjectiveConfig:
    """The distillation objective. ``method`` picks a preset (retort/distill/presets.py); a field left
    as None takes the preset's value, a field that is set overrides it.

    L = alpha * L_soft + hard_weight * L_hard + beta * L_hidden + gamma * L_attn
        + value_weight * L_value + cosine_weight * L_cos
    """

    method: str = opt("kd", "distillation preset", cli="student",
                      choices=("kd", "distilbert", "tinybert", "minilm", "mobilebert", "multilevel",
                               "dse"))  # fmt: skip
    stage: str = opt("all", "all; intermediate or prediction (TinyBERT's two steps); progressive (MobileBERT: one "
                     "student layer at a time, --progressive-layer); attention (a linear student's learned "
                     "feature maps alone, see objective.py)", cli="student",
                     choices=("all", "intermediate", "prediction", "progressive", "attention"))  # fmt: skip
    progressive_layer: int | None = opt(None, "stage progressive: the student layer (1-based) trained now, on "
                                        "the hidden and attention terms at that layer only, every other layer "
                                        "frozen (the embeddings train with layer 1)", low=1, cli="student")  # fmt: skip
    temperature: float = opt(2.0, "softmax temperature of the soft term (ignored for regression)", low=0,
                             open_low=True, cli="student")  # fmt: skip
    alpha: float | None = opt(None, "weight of the soft term: KL to temperature-softened teacher logits (MSE to "
                              "its score for STS-B)", low=0, cli="student")  # fmt: skip
    hard_weight: float | None = opt(None, "weight of the gold-label term (cross-entropy / MSE)", low=0, cli="student")
    soft_loss: str | None = opt(None, "kl (temperature-softened distributions) | mse (on logits, as DSE)",
                                choices=("kl", "mse"), cli="student")  # fmt: skip
    beta: float | None = opt(None, "weight of the hidden term: per-layer MSE, student projected to the teacher's "
                             "width", low=0, cli="student")  # fmt: skip
    gamma: float | None = opt(None, "weight of the attention term, per mapped layer", low=0, cli="student")
    gamma_schedule: str = opt("constant", "the attention term's weight over training: constant, or decay (linear "
                              "from --gamma at the first step to 0 at the end of the schedule)",
                              choices=("constant", "decay"), cli="student")  # fmt: skip
    value_weight: float | None = opt(None, "weight of MiniLM's value relation, last layer", low=0, cli="student")
    cosine_weight: float | None = opt(None, "weight of DistilBERT's cosine between last hidden states", low=0,
                                      cli="student")  # fmt: skip
    attention_loss: str | None = opt(None, "mse (TinyBERT, pre-softmax scores) | kl (MiniLM, distributions)",
                                     choices=("mse", "kl"), cli="student")  # fmt: skip
    attention_layers: str | None = opt(None, "attention term on every mapped layer or the last",
                                       choices=("mapped", "last"), cli="student")  # fmt: skip
    embeddings: bool | None = opt(None, "the hidden term includes the embedding output (layer 0)", cli="student")
    layer_map: str = opt("uniform", "student-to-teacher layer map", choices=("uniform", "last", "list"),
                         cli="student")  # fmt: skip
    layer_list: list[int] | None = opt(None, "with --layer-map list: teacher layer (1-based) per student layer",
                                       cli="student", metavar="L")  # fmt: skip
    layer_weights: str | None = opt(None, "per-layer weights (retort/distill/layer_weights.py)",
                                    choices=("static", "loss", "learned"), cli="student")  # fmt: skip
    weight_temperature: float = opt(0.5, "softmax temperature of the loss-based weights", low=0, open_low=True,
                                    cli="student")  # fmt: skip
    weight_window: int = opt(50, "loss-based weights: steps between the two loss averages compared", low=1,
                             cli="student")  # fmt: skip
    weight_floor: float = opt(0.2, "learned weights: share of the uniform weight every layer keeps", low=0, high=1,
                              cli="student")  # fmt: skip
    weight_entropy: float = opt(0.1, "learned weights: weight of KL(w || uniform)", low=0, cli="student")
    relation_heads: int | None = opt(None, "value relation heads (default: the teacher's head count)", low=1,
                                     high=4096, cli="student")  # fmt: skip
    head_average: bool = opt(False, "compare head-averaged attention when head counts differ", cli="student")
    teacher_forced: bool = opt(False, "stage attention: fit each student layer's map alone, on the teacher hidden "
                               "state it will read (objective.py)", cli="student")  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the teacher's fine-tuning or a student's distillation."""

    task: str = opt("STS-B", "GLUE task: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI", cli="train")
    data: str | None = opt(None, "your own data instead of --task: a task spec (YAML/JSON), a data file or folder, "
                           "or hf:NAME[:CONFIG] (data/spec.py)", cli="train", metavar="SPEC")  # fmt: skip
    out: str = opt("runs/run", "run folder (required)", cli="train", metavar="DIR")
    kind: str = opt("teacher", "teacher (fine-tune a cross-encoder) | distill (train a student); set by the command")
    glue_dir: str | None = opt(None, "GLUE folder in the official TSV layout (default: $GLUE_DIR, else the hub)",
                               cli="train", metavar="DIR")  # fmt: skip
    skip_bad_rows: bool = opt(False, "count, report and skip malformed rows instead of stopping", cli="train")
    base: str = opt("all-MiniLM-L6-v2", "base model to fine-tune: a folder or a hub id", cli="teacher")
    teacher: str | None = opt(None, "fine-tuned teacher folder (OUT/model of 'retort teacher')", cli="student",
                              metavar="DIR")  # fmt: skip
    student: str = opt("3x384", "student shape LAYERSxHIDDEN", cli="student", metavar="LxH",
                       pattern=(r"\s*([1-9]\d{0,2})\s*x\s*([1-9]\d{0,4})\s*", "LAYERSxHIDDEN, e.g. 3x384"))  # fmt: skip
    student_heads: int | None = opt(None, "default: the teacher's when widths match, else hidden/64", low=1,
                                    high=4096, cli="student")  # fmt: skip
    student_intermediate: int | None = opt(None, "default: the teacher's when widths match, else 4*hidden", low=1,
                                           high=65536, cli="student")  # fmt: skip
    student_init: str = opt(
        "teacher",
        "teacher | random | prune (the teacher's layers cut to the student's width by "
        "measured importance, models/prune.py) | a checkpoint folder | a model folder with its own tokenizer "
        "(another vocabulary or family: pruned to --student, taught the teacher's logits only, --method kd)",
        cli="student",
    )
    prune_samples: int = opt(256, "training examples the pruning importance is measured on", low=1, cli="student")
    attention: str = opt("softmax", "student attention: softmax (BERT) | linear (retort/models/linear.py)",
                         choices=("softmax", "linear"), cli="student")  # fmt: skip
    feature_map: str = opt("elu", "linear attention feature map (hedgehog: learned)",
                           choices=("elu", "relu", "favor", "hedgehog"), cli="student")  # fmt: skip
    hedgehog_act: str = opt("softmax", "hedgehog feature map: softmax (LoLCATs) | exp (the Hedgehog paper)",
                            choices=("softmax", "exp"), cli="student")  # fmt: skip
    hedgehog_qk: str = opt("shared", "hedgehog: one map for queries and keys (shared) | one each (separate)",
                           choices=("shared", "separate"), cli="student")  # fmt: skip
    max_positions: int | None = opt(None, "student position table; past the teacher's the rows are extended",
                                    low=2, high=65536, cli="student")  # fmt: skip
    position_mode: str = opt("copy", "how positions past the teacher's are made", choices=("copy", "interpolate"),
                             cli="student")  # fmt: skip
    dse: bool = opt(False, "a siamese bi-encoder on cached cross-encoder scores (models/biencoder.py); set by "
                    "'retort dse train'")  # fmt: skip
    pooling: str = opt("mean", "bi-encoder pooling: mean | cls | mean-top-K", cli="dse",
                       pattern=(r"mean|cls|mean-top-[1-9][0-9]*", "mean, cls or mean-top-K with K >= 1"))  # fmt: skip
    general: bool = opt(False, "general (task-agnostic) distillation on --corpus: the teacher's layers only, no "
                        "labels, the intermediate terms of the objective (TinyBERT's first stage; --method "
                        "multilevel unless given); the student folder it writes is a --student-init for task "
                        "distillation", cli="student")  # fmt: skip
    corpus: str | None = opt(None, "--general: a text file or folder (plain text or WikiExtractor output, "
                             "data/corpus.py), tokenised once into memory-mapped shards in $RETORT_CACHE",
                             cli="student", metavar="PATH")  # fmt: skip
    corpus_sequences: int | None = opt(None, "--general: the first N packed sequences of the corpus only (a "
                                       "budget); default all", low=2, cli="student")  # fmt: skip
    heldout_sequences: int = opt(256, "--general: packed sequences kept out of training; the held-out loss at "
                                 "each evaluation is measured on them", low=1, cli="student")  # fmt: skip
    cache_teacher: str = opt("logits", "teacher outputs computed once (epoch 1) and read back after, on disk in "
                             "$RETORT_CACHE: none | logits | all (every hidden state and attention map the "
                             "objective reads)", choices=("none", "logits", "all"), cli="student")  # fmt: skip
    cache_dtype: str = opt("float32", "how --cache-teacher all stores hidden states and attention maps",
                           choices=("float32", "float16"), cli="student")  # fmt: skip
    long_sts_tokens: int | None = opt(None, "train and evaluate on the long STS-B variant of this many tokens "
                                      "(data/long_sts.py)", low=8, high=65536, cli="student",
                                      flag="--long-sts")  # fmt: skip
    long_sts_train: int = opt(2000, "long examples built from the training pairs", low=1, high=10**6,
                         cli="student")  # fmt: skip
    long_sts_dev: int = opt(500, "long examples built from the dev pairs", low=1, high=10**6, cli="student")
    transfer: list[str] = opt(None, "unlabelled inputs the teacher labels, added to the training set: TASK[:N] "
                              "(a GLUE task's texts; the task's own rows after --max-train-samples), aug:TASK[:N] "
                              "(word-edited copies of its training texts) or FILE[:N] (one example per line, a "
                              "pair tab-separated); see data/transfer.py", cli="student", metavar="SPEC",
                              factory=list)  # fmt: skip
    objective: ObjectiveConfig = opt(None, "the distillation objective", factory=ObjectiveConfig)
    epochs: int = opt(3, "passes over the training set", low=1, cli="train")
    schedule_epochs: int | None = opt(None, "epochs the learning-rate schedule spans (default: --epochs); with "
                                      "fewer --epochs the run stops early on that schedule, and its first epochs "
                                      "are those of the longer run", low=1, cli="train")  # fmt: skip
    batch_size: int = opt(16, "training batch size, per process and micro-batch", low=1, cli="train")
    grad_accum: int = opt(1, "micro-batches per optimizer step, gradients summed: each update sees batch_size x "
                          "grad_accum x processes examples", low=1, cli="train")  # fmt: skip
    eval_batch_size: int = opt(128, "evaluation batch size", low=1, cli="train")
    lr: float = opt(5e-5, "peak learning rate (AdamW, linear warm-up and decay)", low=0, high=1, open_low=True,
                    cli="train")  # fmt: skip
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases and norms)", low=0, cli="train")
    warmup_ratio: float = opt(0.1, "share of the steps spent warming up", low=0, high=1, cli="train")
    max_grad_norm: float = opt(1.0, "gradient clipping (model and objective); 0 = none", low=0, cli="train")
    max_length: int = opt(128, "truncation in tokens (at most the model's position table)", low=2, cli="train")
    max_train_samples: int | None = opt(None, "the first N training rows (file order)", low=1, cli="train")
    max_eval_samples: int | None = opt(None, "the first N rows of each dev split", low=1, cli="train")
    val_split: float | None = opt(None, "rows carved from the training set to pick the best epoch on: N rows (a "
                                  "whole number) or a fraction below 1; seeded by --seed, stratified by label for "
                                  "classification, listed in metrics.json; the GLUE dev set is then scored once, "
                                  "on the kept model", low=0, open_low=True, cli="train")  # fmt: skip
    score_dev: bool = opt(True, "with val_split: score the kept model once on the dev set at the end (retort "
                          "compress's candidate stages do not: only the shipped model is scored)")  # fmt: skip
    group_by_length: bool = opt(True, "length-grouped batches (dynamic padding is always on)", cli="train")
    eval_every: int = opt(0, "steps between evaluations; 0 = once an epoch", low=0, cli="train")
    save_every: int = opt(100, "steps between resume checkpoints (also saved after every evaluation)", low=1,
                          cli="train")  # fmt: skip
    keep_checkpoint: bool = opt(False, "keep OUT/checkpoint (the resume state: optimizer, scheduler, RNG; about 3x the "
                                "model's size) once the run has finished; by default it is removed after metrics.json "
                                "is written, since a finished run is not resumed", cli="train")  # fmt: skip
    save_dtype: str = opt("float32", "kept weights on disk (float16 halves them; scored, exported, distilled from as "
                          "saved)", choices=("float32", "float16", "bfloat16"), cli="train")  # fmt: skip
    log_every: int = opt(10, "steps between log records", low=1, cli="train")
    seed: int = opt(42, "seed of initialisation and batch order", low=0, high=MAX_SEED, cli="train")
    tag: str | None = opt(None, "this run's name in 'retort report' tables (default: its method; a variant of a "
                          "method, say)", cli="train", metavar="NAME")  # fmt: skip
    device: str = opt("auto", "where to train", choices=("auto", "cpu", "cuda"), cli="train")
    precision: str = opt("fp32", "forward passes in bf16 or fp16 autocast (losses and the update in fp32); fp16 on "
                         "a GPU only", choices=("fp32", "bf16", "fp16"), cli="train")  # fmt: skip
    threads: int | None = opt(None, "torch CPU threads (default: torch's)", low=1, high=MAX_THREADS,
                               cli="train")  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)
        check_train_config(self)


def check_train_config(cfg: TrainConfig) -> None:
    """The cross-field rules of a run config, those that need nothing but its fields: one ``ConfigError``
    line for the first rule broken. Rules that need the machine (fp16 needs a GPU), the task's spec (DSE
    needs a sentence-pair task), the method preset's weights or the data are checked when the run is
    assembled (``retort.training.assembly``)."""
    if cfg.val_split is not None and cfg.val_split >= 1 and cfg.val_split != int(cfg.val_split):
        raise ConfigError(f"val_split = {cfg.val_split} (--val-split): a number of rows (whole) or a fraction < 1")
    if cfg.schedule_epochs is not None and cfg.schedule_epochs < cfg.epochs:
        raise ConfigError(
            f"schedule_epochs = {cfg.schedule_epochs} (--schedule-epochs): must be at least epochs ({cfg.epochs})"
        )
    if cfg.kind not in ("teacher", "distill"):
        raise ConfigError(f"kind {cfg.kind!r}: expected teacher or distill")
    if cfg.kind == "distill" and not cfg.teacher:
        raise ConfigError("distillation needs --teacher DIR (a fine-tuned teacher, see 'retort teacher')")
    if cfg.general:
        _check_general(cfg)
    _check_student(cfg)
    if cfg.student_init not in STUDENT_INITS and not is_dir(cfg.student_init):
        raise ConfigError(f"student_init = {cfg.student_init!r} (--student-init): teacher, random, prune or a folder")
    own = [t for t in cfg.transfer or [] if task_key(t.split(":")[0]) == task_key(cfg.task or "")]
    if cfg.val_split and own:  # the rows after the trained ones may be carved ones; aug: copies trained rows only
        raise ConfigError(
            f"--val-split with --transfer {own[0]}: the task's own rows beyond the trained ones "
            "may hold the carved rows' texts; use aug:TASK (trained rows edited) or other data"
        )
    if cfg.transfer and (cfg.kind != "distill" or cfg.dse or cfg.long_sts_tokens):
        raise ConfigError("--transfer: inputs for the teacher to label, retort distill only (no dse, long STS-B)")
    if cfg.long_sts_tokens and cfg.kind != "distill":
        raise ConfigError("long_sts_tokens works with 'retort distill --task STS-B' only")
    if cfg.dse and cfg.kind != "distill":  # (the task's half, a sentence-pair task, is checked at assembly)
        raise ConfigError(f"DSE distils a cross-encoder on a sentence-pair task; {cfg.task} is not one")


def task_key(name: str) -> str:
    """A task name in the spelling-blind form ``data.tasks`` compares (``sts-b``, ``STS_B``, ``stsb`` alike)."""
    return name.lower().replace("-", "").replace("_", "")


def _check_student(cfg: TrainConfig) -> None:
    """The student's head count dividing its width, and its training state within this machine's memory."""
    layers, hidden = (int(x) for x in re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", cfg.student).groups())
    if cfg.student_heads and hidden % cfg.student_heads:
        raise ConfigError(f"student_heads = {cfg.student_heads} (--student-heads): must divide the width {hidden}")
    inter = cfg.student_intermediate or 4 * hidden
    params = layers * (4 * hidden * hidden + 2 * hidden * inter) + (30522 + (cfg.max_positions or 512)) * hidden
    need, have = 16 * params, memory_bytes()  # fp32 weights, gradients and Adam's two moments
    if cfg.kind == "distill" and need > have:
        raise ConfigError(f"student = {cfg.student!r} (--student): about {params / 1e6:.0f}M parameters need about "
                          f"{need / 2**30:.0f} GiB to train; this machine has {have / 2**30:.0f} GiB")  # fmt: skip


def _check_general(cfg: TrainConfig) -> None:
    """General distillation's rules (``--general``): a student on a corpus, the intermediate terms only."""
    if cfg.kind != "distill" or cfg.dse or cfg.long_sts_tokens or cfg.transfer:
        raise ConfigError("--general is for 'retort distill' alone (no --dse, --long-sts or --transfer)")
    if not cfg.corpus:
        raise ConfigError("--general needs --corpus PATH (a text file or folder)")
    if cfg.objective.stage not in ("all", "intermediate"):
        raise ConfigError(f"--general trains the intermediate terms; --stage {cfg.objective.stage} has none")


def _ranges(cls: type) -> dict[str, tuple[float | None, float | None, bool]]:
    return {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if f.metadata.get("range")}


# The allowed range of every numeric field, from the field declarations above, checked wherever a config
# is built (flags, --config YAML, --set, a resumed run's config.yaml, a config made in Python):
# (lowest, highest, lowest excluded?).
RANGES: dict[str, dict[str, tuple[float | None, float | None, bool]]] = {
    c.__name__: _ranges(c) for c in (TrainConfig, ObjectiveConfig)
}


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class (each call compiles every annotation)."""
    return typing.get_type_hints(cls)


def flag_name(f: dataclasses.Field) -> str:
    """The command-line flag of a config field: its declared ``flag``, else ``--`` and the name with dashes."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def check_range(cls_name: str, name: str, value: Any, where: str, flag: str | None = None) -> None:
    """Raise a one-line ``ConfigError`` when ``value`` is outside the declared range of field ``name`` of
    ``cls_name`` (NaN included); ``where`` names the source (a flag, or ``config.FIELD``) in the message."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high, open_low = RANGES.get(cls_name, {}).get(name) or (None, None, False)
    finite = not isinstance(value, float) or math.isfinite(value)  # NaN compares false with everything
    below = low is not None and (value <= low if open_low else value < low)
    if finite and not below and not (high is not None and value > high):
        return
    parts = [f"> {low}" if open_low else f">= {low}"] if low is not None else []
    parts += [f"<= {high}"] if high is not None else []
    allowed = " and ".join(parts) if finite else " ".join(["a finite number", " and ".join(parts)]).strip()
    if where.startswith("--"):  # a flag of its own (the demo's --teacher-epochs, say)
        raise ConfigError(f"{where} {value!r}: must be {allowed}")
    flag = flag or "--" + name.replace("_", "-")
    raise ConfigError(f"{where.removeprefix('config.')} = {value!r} ({flag}): must be {allowed}")


def check_fields(cfg: Any) -> None:
    """Every ranged field of a config instance within its range (a config made in Python included)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float)):
            check_range(type(cfg).__name__, f.name, value, f"config.{f.name}", flag_name(f))
        if f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
            raise ConfigError(f"{f.name} = {value!r} ({flag_name(f)}): choose from {', '.join(f.metadata['choices'])}")
        if f.metadata.get("pattern") and isinstance(value, str) and not re.fullmatch(f.metadata["pattern"][0], value):
            raise ConfigError(f"{f.name} = {value!r} ({flag_name(f)}): {f.metadata['pattern'][1]}")


def to_dict(cfg: Any) -> dict:
    """A config as plain nested data (what ``config.yaml`` and ``metrics.json`` record)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict, where: str = "config") -> Any:
    """Build a (nested) dataclass from plain data; unknown keys and wrong types raise ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = type_hints(cls)
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
    data = copy.deepcopy(data)
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
    """The plain data of a config YAML file (``yaml.safe_load``: no code runs): a mapping, its ``objective``
    section a mapping too; one-line ``ConfigError`` when it cannot be read or parsed or is not."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields (key: value), got a {type(data).__name__}")
    section = data.get("objective")  # the one section: its own fields
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"{path}: objective: expected a mapping of the objective's fields, got {section!r}")
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML, field order kept, under a temporary name first and then renamed."""
    write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
