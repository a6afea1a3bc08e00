"""Run assembly: from a ``TrainConfig`` to what the loop trains. Data (a GLUE task, DSE pairs with
cached cross-encoder scores, the long STS-B variant, transfer sets, general distillation's packed corpus),
the model (a teacher to fine-tune, or a student built from a frozen teacher), the objective and the
teacher-output cache.

The config has checked its own cross-field rules when it was built (``retort.config.check_train_config``);
the rules checked here need more than the config: the machine (fp16 needs a GPU), the task's spec, the
method preset's weights, the model files or the data."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from retort.cachedir import cache_dir
from retort.config import TrainConfig
from retort.data import corpus as corpus_data
from retort.data.batching import Encoded, collate, encode, encode_pairs
from retort.data.glue import Task
from retort.data.long_sts import build_long
from retort.data.spec import load_task
from retort.data.tasks import carve, get_task, load_split
from retort.data.transfer import with_transfer
from retort.distill.objective import Distillation, FineTune, Objective, trainable_parameters
from retort.distill.presets import resolve as resolve_preset
from retort.distill.teacher_cache import TeacherOutputCache, open_output_cache, teacher_logits
from retort.errors import ConfigError
from retort.models.biencoder import BiEncoder
from retort.models.check import inspect_model_folder
from retort.models.families import family_of
from retort.models.hf import load_classifier, load_tokenizer, resolve_model_path
from retort.models.outputs import Needs
from retort.models.student import StudentShape, build_student, student_from_model
from retort.training.distributed import rank_zero_first, world
from retort.training.foreign import attach_teacher_logits, foreign_start
from retort.training.runtime import on_gpu, plain_device

ATTENTION = "sdpa"  # attention terms read Q, K, V through hooks (models/outputs.py), so no eager needed


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's RNGs (the model's initialisation and anything drawn before training)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def earlier_stage(cfg: TrainConfig) -> bool:
    """A stage that trains no task output (intermediate, progressive, attention transfer): its last step is kept,
    and it is not scored on the dev set (only the stage after it is)."""
    return cfg.kind == "distill" and cfg.objective.stage in ("intermediate", "progressive", "attention")


def make_objective(cfg: TrainConfig, task: Task, student: nn.Module, teacher: nn.Module | None) -> Objective:
    """The run's objective: the task loss for a teacher's fine-tuning, else the distillation objective of
    the method preset with the config's overrides, sized to the student's and teacher's configs."""
    if cfg.kind == "teacher":
        return FineTune(task.is_regression, task.multi_label)
    return Distillation(resolve_preset(cfg.objective), task.is_regression, student.config, teacher.config,
                        task.multi_label)  # fmt: skip


def resolved_config(cfg: TrainConfig) -> TrainConfig:
    """The config with the method preset's weights filled in (what a run folder records)."""
    cfg = _fit_max_length(cfg, cfg.base if cfg.kind == "teacher" else cfg.teacher, quiet=True)
    if cfg.kind != "distill":
        return cfg
    return dataclasses.replace(cfg, objective=resolve_preset(cfg.objective))


@dataclass
class TrainingSetup:
    """What ``prepare`` builds: data, models and objective, ready for ``fit``."""

    cfg: TrainConfig
    task: Task
    tokenizer: object
    train: Encoded
    dev: dict[str, Encoded]
    model: nn.Module  # the model being trained
    teacher: nn.Module | None
    objective: Objective
    info: dict
    teacher_cache: TeacherOutputCache | None = None
    final_dev: dict[str, Encoded] | None = None  # with --val-split: the GLUE dev set, scored once at the end
    val_cache: TeacherOutputCache | None = None  # the teacher on the --val-split rows (held-out losses)


def prepare(cfg: TrainConfig) -> TrainingSetup:
    """Build everything a run of ``cfg`` trains with: the seeded RNGs, the tokenizer, the data, the model
    being trained (and its frozen teacher), the objective and the teacher-output cache. The returned
    setup's config is the resolved one (fitted ``max_length``, the preset's weights filled in); a problem
    with the machine, the data or the models is one ``ConfigError`` line."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device = cuda (--device cuda): this machine has no CUDA GPU that torch can use "
            f"(torch {torch.__version__}); use --device cpu, or auto to take a GPU where there is one"
        )
    if cfg.precision == "fp16" and not on_gpu(cfg):
        raise ConfigError("--precision fp16 needs a GPU (on a CPU use bf16, where the processor has it)")
    task = load_task(cfg.data) if cfg.data else get_task(cfg.task)  # --data: a task of the user's, registered
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    source, option, kind = (
        (cfg.base, "--base", "base") if cfg.kind == "teacher" else (cfg.teacher, "--teacher", "teacher")
    )
    found = inspect_model_folder(source, option, kind)  # checked before any data loads; a run folder: its model
    tokenizer = found.tokenizer or load_tokenizer(found.path, option)
    cfg = _fit_max_length(cfg, source)
    foreign = foreign_start(cfg, tokenizer)
    if cfg.general:
        return _prepare_general(cfg, tokenizer)
    teacher_tokenizer, tokenizer = (tokenizer, foreign.tokenizer) if foreign else (None, tokenizer)
    train, dev, final_dev, info = _task_data(cfg, task, tokenizer)
    splits = info.pop("splits")
    if cfg.kind == "teacher":
        model, teacher = load_classifier(cfg.base, task, ATTENTION, option="--base", kind="base"), None
    else:
        cfg, model, teacher = _student_and_teacher(cfg, task, train, tokenizer, info, foreign)
    if foreign:  # the student is built (its shape checked) first: the teacher's pass over every row comes last
        attach_teacher_logits(cfg, splits, train, dev, teacher_tokenizer)
    info["parameters"] = count_parameters(model)
    info["family"] = family_of(model.config).name
    objective = make_objective(cfg, task, model, teacher)
    if cfg.kind == "distill":
        trainable_parameters(cfg.objective.stage, model, cfg.objective.progressive_layer)
    cfg = resolved_config(cfg)  # the run folder records every resolved weight
    cache = _shared_teacher_cache(cfg, task, train, teacher, objective)
    if cache is not None:
        info["teacher_cache"] = {"dir": str(cache.root), "what": cache.what, "bytes": cache.nbytes()}
    val_cache = _shared_teacher_cache(cfg, task, dev["val"], teacher, objective) if "val" in dev else None
    return TrainingSetup(cfg, task, tokenizer, train, dev, model, teacher, objective, info, cache, final_dev, val_cache)


def _task_data(cfg: TrainConfig, task: Task, tokenizer):
    """The task's rows, tokenised: (train, dev splits, the GLUE dev set scored once with --val-split or
    None, the run's data record for ``metrics.json``, which holds the untokenised splits under "splits")."""
    train_split = load_split(task, "train", cfg.glue_dir, cfg.skip_bad_rows, cfg.max_train_samples)
    dev_splits = {
        s: load_split(task, s, cfg.glue_dir, cfg.skip_bad_rows, cfg.max_eval_samples) for s in task.dev_splits
    }
    if not train_split.examples:
        raise ConfigError(f"{train_split.source}: no training examples")
    val_rows = None
    if cfg.val_split:  # selection on rows of the training set; the dev set is scored once, at the end
        train_split, val_split, val_rows = carve(train_split, cfg.val_split, cfg.seed)
        dev_splits = {"val": val_split, **dev_splits}
    transfer_examples, dropped = 0, {}
    if cfg.transfer:
        train_split, transfer_examples, dropped = with_transfer(
            train_split, list(cfg.transfer), cfg.glue_dir, cfg.seed, cfg.skip_bad_rows, list(dev_splits.values())
        )
        for spec, n in dropped.items():
            print(f"transfer set {spec}: {n} rows left out, the texts of held-out or dev rows", flush=True)
    skipped = {s.source: len(s.skipped) for s in (train_split, *dev_splits.values()) if s.skipped}
    _report_skipped([train_split, *dev_splits.values()])
    if cfg.long_sts_tokens:
        train, dev = _long_sts(cfg, task, train_split, dev_splits, tokenizer)
    elif cfg.dse:
        train, dev = _dse_data(cfg, task, train_split, dev_splits, tokenizer)
    else:
        train = encode(train_split, tokenizer, cfg.max_length)
        dev = {name: encode(s, tokenizer, cfg.max_length) for name, s in dev_splits.items()}
    final_dev = None
    if val_rows is not None:  # every evaluation on the held-out rows only; the dev set once at the end, if asked
        final_dev = {k: v for k, v in dev.items() if k != "val"} if cfg.score_dev and not earlier_stage(cfg) else None
        dev = {"val": dev["val"]}
    info = {
        "train_source": train_split.source,
        "train_examples": len(train),
        "transfer_examples": transfer_examples,
        "transfer_dropped": dropped,  # by spec: rows with the texts of held-out or dev rows, left out
        "dev_examples": {k: len(v) for k, v in dev.items()},
        "skipped_rows": skipped,
        "val_rows": val_rows,  # positions in the training file's rows (after --max-train-samples)
        "splits": {"train": train_split, **dev_splits},
    }
    return train, dev, final_dev, info


def _report_skipped(splits: list) -> None:
    """Print the first five malformed rows skipped in each split (--skip-bad-rows) and how many more."""
    for s in splits:
        for msg in s.skipped[:5]:
            print(f"skipped: {msg}")
        if len(s.skipped) > 5:
            print(f"skipped: ... {len(s.skipped) - 5} more in {s.source}")


def _student_and_teacher(cfg: TrainConfig, task: Task, train: Encoded, tokenizer, info: dict, foreign=None):
    """The frozen teacher and the student built from it (a bi-encoder for DSE), or from ``foreign`` (a start
    with its own tokenizer); returns (config, student, teacher), the config recording what a checkpoint
    ``--student-init`` holds. Fills ``info``."""
    teacher = load_classifier(cfg.teacher, task, ATTENTION, option="--teacher", kind="teacher")
    teacher.eval().requires_grad_(False)
    cfg, shape = _student_shape(cfg, teacher.config)
    positions = cfg.max_positions
    if cfg.long_sts_tokens and cfg.long_sts_tokens > teacher.config.max_position_embeddings and not positions:
        positions = cfg.long_sts_tokens  # extend the student's position table to the long inputs
    hedgehog = {"hedgehog_act": cfg.hedgehog_act, "hedgehog_qk": cfg.hedgehog_qk}
    samples = _prune_samples(cfg, train, tokenizer, bool(foreign))
    if foreign:
        model = student_from_model(foreign.path, teacher.config, shape, samples)
        info["student_tokenizer"] = f"{foreign.path}'s own; the teacher's logits computed once with the teacher's"
    else:
        model = build_student(
            teacher, shape, cfg.student_init, cfg.attention, cfg.feature_map, positions, cfg.position_mode,
            hedgehog, samples,
        )  # fmt: skip
    cfg = _head_average(cfg, model.config, teacher.config)
    if cfg.student_init not in ("teacher", "random", "prune") and not foreign:  # what the checkpoint holds
        is_linear = family_of(model.config).kernel == "linear"
        cfg = dataclasses.replace(
            cfg,
            attention="linear" if is_linear else "softmax",
            **({k: getattr(model.config, k) for k in ("feature_map", *hedgehog)} if is_linear else {}),
        )
    info["copied_from_teacher"] = getattr(model, "retort_copied", None)
    info["teacher_family"] = family_of(teacher.config).name
    if cfg.dse:
        model = BiEncoder(model, task.num_labels, task.is_regression, cfg.pooling)
    info["teacher_parameters"] = count_parameters(teacher)
    return cfg, model, teacher


def _shared_teacher_cache(cfg: TrainConfig, task: Task, train: Encoded, teacher, objective):
    """The run's teacher-output cache; with several processes rank 0 creates it and the others then open it."""
    return rank_zero_first(lambda: _teacher_cache(cfg, task, train, teacher, objective), plain_device(cfg))


def _kept_logits(cfg: TrainConfig, split, tokenizer, max_length: int):
    """The teacher's logits on ``split`` (``teacher_logits``); with several processes rank 0 computes and keeps
    them, the others then read them."""
    return rank_zero_first(lambda: teacher_logits(cfg.teacher, split, tokenizer, max_length), plain_device(cfg))


def _prepare_general(cfg: TrainConfig, tokenizer) -> TrainingSetup:
    """General distillation (TinyBERT's first stage): packed corpus sequences, no labels, the objective's
    intermediate terms only; the held-out sequences measure the loss at each evaluation."""
    cfg = dataclasses.replace(
        cfg, cache_teacher="none", objective=dataclasses.replace(cfg.objective, stage="intermediate")
    )
    o = resolve_preset(cfg.objective)
    if not (o.beta or o.gamma or o.value_weight or o.cosine_weight):
        raise ConfigError(
            f"--general trains the teacher's layers only; --method {o.method} has no intermediate term "
            "(use multilevel, tinybert or minilm, or set --beta / --gamma)"
        )
    task = _teacher_task(cfg.teacher)
    teacher = load_classifier(cfg.teacher, task, option="--teacher", kind="teacher")
    teacher.eval().requires_grad_(False)
    cfg = dataclasses.replace(cfg, task=task.name)
    want = cfg.corpus_sequences + cfg.heldout_sequences if cfg.corpus_sequences else None
    packed = corpus_data.build(cfg.corpus, tokenizer, cfg.max_length, cache_dir() / "corpus", max_sequences=want)
    n = min(len(packed), want) if want else len(packed)
    if n <= cfg.heldout_sequences:
        raise ConfigError(
            f"--corpus {cfg.corpus}: {n} packed sequences, not more than --heldout-sequences {cfg.heldout_sequences}"
        )
    dev = {"heldout": packed.encoded(0, cfg.heldout_sequences)}  # the first sequences, never trained on
    train = packed.encoded(cfg.heldout_sequences, n)
    cfg, shape = _student_shape(cfg, teacher.config)
    samples = _prune_samples(cfg, train, tokenizer)
    model = build_student(teacher, shape, cfg.student_init, cfg.attention, cfg.feature_map,
                          position_mode=cfg.position_mode, sample_batches=samples)  # fmt: skip
    cfg = _head_average(cfg, model.config, teacher.config)
    objective = make_objective(cfg, task, model, teacher)
    info = {
        "train_source": f"{cfg.corpus} ({packed.tokens_total:,} tokens in {len(packed):,} packed sequences)",
        "train_examples": len(train),
        "train_tokens": int(sum(train.lengths)),
        "transfer_examples": 0,
        "dev_examples": {"heldout": len(dev["heldout"])},
        "skipped_rows": {},
        "copied_from_teacher": getattr(model, "retort_copied", None),
        "teacher_family": family_of(teacher.config).name,
        "teacher_parameters": count_parameters(teacher),
        "parameters": count_parameters(model),
        "family": family_of(model.config).name,
    }
    return TrainingSetup(resolved_config(cfg), task, tokenizer, train, dev, model, teacher, objective, info, None)


def _compares_attention(cfg: TrainConfig) -> bool:
    """Whether the run's objective has an attention term comparing maps head by head."""
    o = resolve_preset(cfg.objective)
    return bool(o.gamma) and o.stage != "prediction" and not o.head_average


def _student_shape(cfg: TrainConfig, teacher_config) -> tuple[TrainConfig, StudentShape]:
    """The student's shape from ``--student``; where the attention term compares heads and no
    ``--student-heads`` was given, a student narrower or wider than its teacher gets the teacher's head count
    when its width divides by it (the usual ``hidden/64`` would differ), said in one line and recorded in
    the config."""
    shape = StudentShape.parse(cfg.student, cfg.student_heads, cfg.student_intermediate)
    if cfg.student_init not in ("teacher", "random") or shape.heads or not _compares_attention(cfg):
        return cfg, shape  # prune picks the teacher's count itself; a checkpoint has its own
    t_heads = teacher_config.num_attention_heads
    if shape.resolve(teacher_config).heads == t_heads or shape.hidden % t_heads:
        return cfg, shape
    print(
        f"student heads: {t_heads}, the teacher's count ({shape.hidden // t_heads} dimensions each), so that the "
        "attention term compares head by head (--student-heads sets another)"
    )
    return dataclasses.replace(cfg, student_heads=t_heads), dataclasses.replace(shape, heads=t_heads)


def _head_average(cfg: TrainConfig, student_config, teacher_config) -> TrainConfig:
    """Where the attention term compares heads and the student's head count is not the teacher's: compare
    head-averaged maps (``objective.head_average``), said in one line and recorded in the config."""
    s_heads, t_heads = student_config.num_attention_heads, teacher_config.num_attention_heads
    if s_heads == t_heads or not _compares_attention(cfg):
        return cfg
    print(
        f"attention term: the student has {s_heads} heads and the teacher {t_heads}; comparing head-averaged "
        "maps (objective.head_average)"
    )
    return dataclasses.replace(cfg, objective=dataclasses.replace(cfg.objective, head_average=True))


def _prune_samples(cfg: TrainConfig, train: Encoded, tokenizer, foreign: bool = False) -> list[dict] | None:
    """For ``--student-init prune`` (or a start with its own tokenizer, pruned to the shape): the first
    ``--prune-samples`` training rows, as the model reads them."""
    if cfg.student_init != "prune" and not foreign:
        return None
    first = list(range(min(cfg.prune_samples, len(train))))
    return [collate(train, first[i : i + 32], tokenizer.pad_token_id or 0) for i in range(0, len(first), 32)]


def _teacher_task(teacher_dir: str) -> Task:
    """The task a fine-tuned teacher was trained for (its config's ``retort_task``)."""
    path = Path(resolve_model_path(teacher_dir)) / "config.json"
    trained_for = json.loads(path.read_text()).get("retort_task") if path.is_file() else None
    if not trained_for:
        raise ConfigError(f"{teacher_dir}: not a retort teacher (no retort_task in its config.json)")
    return get_task(trained_for)


def _teacher_cache(cfg: TrainConfig, task: Task, train: Encoded, teacher, objective) -> TeacherOutputCache | None:
    """The teacher-output cache of this run (--cache-teacher), or None where it would not save a teacher run:
    no teacher, precomputed logits (DSE, long inputs), or logits only while the objective reads more."""
    if cfg.cache_teacher == "none" or teacher is None or not objective.uses_teacher or train.teacher_logits:
        return None
    if cfg.cache_teacher == "logits" and objective.teacher_needs != Needs():
        return None
    layers = objective.teacher_layers()
    return open_output_cache(cfg.teacher, teacher.config, train, cfg.cache_teacher, layers, cfg.cache_dtype,
                             task.num_labels, make=world()[0] == 0)  # other ranks: only what rank 0 made  # fmt: skip


def _fit_max_length(cfg: TrainConfig, source: str | None, quiet: bool = False) -> TrainConfig:
    """``max_length`` within the position table of the model that reads the inputs (the teacher, or the
    base being fine-tuned): an explicit value above it is an error; the default 128 is lowered to fit."""
    if cfg.long_sts_tokens or not source:  # the long variant sizes its own inputs and the student's positions
        return cfg
    path = Path(resolve_model_path(source)) / "config.json"
    try:
        limit = int(json.loads(path.read_text()).get("max_position_embeddings", 0)) if path.is_file() else 0
    except (OSError, ValueError):
        return cfg  # a broken config is reported by the model loader, with its file name
    if not limit or cfg.max_length <= limit:
        return cfg
    if cfg.max_length != TrainConfig.max_length:
        raise ConfigError(
            f"max_length = {cfg.max_length} (--max-length): above {source}'s position table, at most {limit}"
        )
    if not quiet:
        print(f"max_length {cfg.max_length} is above {source}'s {limit} positions: using {limit}")
    return dataclasses.replace(cfg, max_length=limit)


def _dse_data(cfg: TrainConfig, task: Task, train_split, dev_splits, tokenizer):
    """Bi-encoder data: sentences tokenised alone, the cross-encoder teacher's pair logits from the cache."""
    if not task.is_pair:  # (DSE with a teacher's fine-tuning: the config's rule)
        raise ConfigError(f"DSE distils a cross-encoder on a sentence-pair task; {task.name} is not one")
    o = resolve_preset(cfg.objective)
    if o.beta or o.gamma or o.value_weight or o.cosine_weight:
        raise ConfigError("DSE trains on the teacher's cached pair scores: use soft and hard terms only")
    train = encode_pairs(train_split, tokenizer, cfg.max_length)
    train.teacher_logits = _kept_logits(cfg, train_split, tokenizer, cfg.max_length).tolist()
    dev = {name: encode_pairs(s, tokenizer, cfg.max_length) for name, s in dev_splits.items()}
    if "val" in dev:  # the held-out loss compares with the cross-encoder's pair scores too (it reads pairs)
        dev["val"].teacher_logits = _kept_logits(cfg, dev_splits["val"], tokenizer, cfg.max_length).tolist()
    return train, dev


def _long_sts(cfg: TrainConfig, task: Task, train_split, dev_splits, tokenizer):
    """The long STS-B variant: teacher targets from the cached short-pair scores (data/long_sts.py)."""
    if task.name != "STS-B":
        raise ConfigError("long_sts_tokens works with 'retort distill --task STS-B' only")
    if resolve_preset(cfg.objective).beta or resolve_preset(cfg.objective).gamma:
        raise ConfigError(
            "the long STS-B variant trains on cached teacher scores: use soft and hard terms only "
            "(the teacher cannot read inputs past 512 tokens)"
        )
    n = cfg.long_sts_tokens
    train = build_long(
        train_split, _kept_logits(cfg, train_split, tokenizer, 128), tokenizer, n, cfg.long_sts_train, cfg.seed
    )
    dev = {s: build_long(d, _kept_logits(cfg, d, tokenizer, 128) if s == "val" else None, tokenizer, n,
                         cfg.long_sts_dev, cfg.seed + 1) for s, d in dev_splits.items()}  # fmt: skip
    return train, dev  # the held-out rows carry the teacher's scores: it cannot read them at their length


def count_parameters(model: nn.Module) -> int:
    """Every parameter of ``model``, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
