"""Every command-line option, declared once: its flag, type, default, allowed range or choices, and help.

Two kinds of declaration, one mechanism:

- the run config's fields (``config.TrainConfig``, ``config.ObjectiveConfig``) are declared in ``config.py`` with
  ``opt(...)``; ``add_config_flags`` makes flags of those tagged for a command, ``from_field`` an ``Option`` of a
  field set under another flag or default (the demo's ``--teacher-epochs``);
- every other option is an ``Option`` below, in ``OPTIONS``, asked for by key: ``add(parser, "threads", ...)``. A
  flag with two meanings (``--batch-size``: inference here, training in the config) is declared once per meaning.

A value is checked where it is declared: the ``type`` argparse calls is ``Option.parse``, which converts the text
and checks the range (finite numbers, low/high bounds, choices), so a bad value is one line and exit 2 from the
parser (``--threads 0: must be >= 1``), before any work. A command never re-checks a range by hand; the Python API
checks its keyword arguments with ``check_option``. Use sites may say only ``required`` and ``many`` (one value or
several); everything else comes from the declaration, so two parsers cannot disagree about one option
(``tests/test_options.py`` walks every parser to hold that).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from retort.cachedir import KINDS
from retort.config import MAX_SEED, MAX_THREADS, ObjectiveConfig, TrainConfig, flag_name, type_hints
from retort.errors import ConfigError

DECLARATION = "_retort_declaration"  # the attribute each argparse action carries: where it was declared
POSITIVE = {"type": float, "low": 0, "open_low": True}  # a number > 0


@dataclass(frozen=True)
class Option:
    """One command-line option. ``type`` None means an on/off flag (``store_true``); ``positional`` a
    positional argument (``flag`` is then its name); ``repeat`` a flag given once per value (``--set``);
    ``key`` names it in ``OPTIONS`` when one flag has several meanings (default: its ``name``)."""

    flag: str
    help: str
    type: Callable[[str], Any] | None = str
    default: Any = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    positional: bool = False
    dest: str | None = None
    repeat: bool = False
    key: str | None = None

    @property
    def name(self) -> str:
        """The attribute argparse stores the value under."""
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    def allowed(self) -> str:
        """The rule in words, for help and errors: ``>= 1, <= 1024`` or ``one of a, b``."""
        return rule_words(self.low, self.high, self.open_low, self.choices)

    def parse(self, text: str) -> Any:
        """Text to value, the range checked; ``argparse.ArgumentTypeError`` naming the flag otherwise."""
        kind = self.type or str
        try:
            value = kind(text)
        except (TypeError, ValueError):
            noun = {int: "a whole number", float: "a number", whole_numbers: "whole numbers, e.g. 1 8 32",
                    points_or_percent: "a number or a percentage, e.g. 0.01 or 3%"}  # fmt: skip
            raise argparse.ArgumentTypeError(f"{self.flag} {text}: not {noun.get(kind, 'a value')}") from None
        wrong = problem(value, self.low, self.high, self.open_low, self.choices)
        if wrong:
            raise argparse.ArgumentTypeError(f"{self.flag} {text}: {wrong}")
        return value

    def add(self, parser: argparse.ArgumentParser, *, required: bool = False, many: bool = False) -> argparse.Action:
        """Add this option to ``parser``; ``many``: one or more values (a list). Returns the action."""
        default = self.default
        if many and not isinstance(default, list):
            default = [default]
        kw: dict[str, Any] = {"help": self._help_text()}
        if self.type is None:
            kw.update(action="store_true")
        else:
            kw["type"] = self.parse
            metavar = self.metavar or {int: "N", float: "X"}.get(self.type)
            if metavar and not self.positional:
                kw["metavar"] = metavar
            if many:
                kw["nargs"] = "+"
            if self.repeat:
                kw.update(action="append", default=[])
        if not self.positional and self.type is not None and not self.repeat:
            kw["default"] = default
        action = (parser.add_argument(self.flag, **kw) if self.positional else
                  parser.add_argument(self.flag, dest=self.name, required=required, **kw))  # fmt: skip
        setattr(action, DECLARATION, self)
        return action

    def _help_text(self) -> str:
        extra = [f"default {_shown(self.default)}"] if self.default not in (None, False, []) else []
        rule = self.allowed()
        text = self.help + (f" ({'; '.join(extra + ([rule] if rule else []))})" if extra or rule else "")
        return text.replace("%", "%%")


def _shown(default: Any) -> str:
    """A default as the user would type it: ``1 32`` for a list (of lists)."""
    return " ".join(_shown(d) for d in default) if isinstance(default, list) else str(default)


class Percent(float):
    """A number given with ``%`` (``--max-drop 3%``): a share, in percent, of a reference score."""


def points_or_percent(text: str) -> float:
    """``"0.01"`` to 0.01 (the metric's own units), ``"3%"`` to ``Percent(3.0)``."""
    return Percent(float(text.strip()[:-1])) if text.strip().endswith("%") else float(text)


def whole_numbers(text: str) -> list[int]:
    """``"1,8,32"`` to ``[1, 8, 32]``: one value of a flag that takes sizes space- or comma-separated."""
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values:
        raise ValueError(text)
    return values


def rule_words(low, high, open_low: bool = False, choices=None) -> str:
    """A range or choice rule in words: ``>= 1, <= 1024``, ``> 0`` or ``one of a, b``."""
    parts = []
    if low is not None:
        parts.append(f"> {low}" if open_low else f">= {low}")
    if high is not None:
        parts.append(f"<= {high}")
    if choices:
        parts.append("one of " + ", ".join(choices))
    return ", ".join(parts)


def problem(value, low, high, open_low=False, choices=None) -> str | None:
    """What is wrong with ``value`` (or with each item of a list) under a rule, in words; None if nothing.
    The one range rule of options: finite, within [low, high] (or (low, high]), one of ``choices``."""
    for v in value if isinstance(value, list) else [value]:
        rule = rule_words(low, high, open_low)
        if isinstance(v, float) and not math.isfinite(v):
            return f"must be a finite number ({rule})" if rule else "must be a finite number"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            below = low is not None and (v <= low if open_low else v < low)
            if below or (high is not None and v > high):
                return f"must be {rule}"
        if choices and v not in choices:
            return f"choose from {', '.join(choices)}"
    return None


def check_option(option: Option, value: Any, where: str | None = None) -> None:
    """``value`` (already of the option's type) within the option's rule: for the Python API, which
    takes the same options as keyword arguments. ``ConfigError`` ``WHERE VALUE: what is wrong`` otherwise
    (``where`` default: the flag and a space)."""
    wrong = problem(value, option.low, option.high, option.open_low, option.choices)
    if wrong:
        raise ConfigError(f"{option.flag + ' ' if where is None else where}{value}: {wrong}")


OPTIONS: dict[str, Option] = {}


def declare(*options: Option, into: dict[str, Option] | None = None) -> None:
    """Put options into ``OPTIONS`` (or the registry ``into``: the experiment scripts keep their own)
    under their keys; a key declared twice is an error at import."""
    registry = OPTIONS if into is None else into
    for o in options:
        key = o.key or o.name
        if key in registry:
            raise ValueError(f"option {key} declared twice")
        registry[key] = o


def add(parser: argparse.ArgumentParser, *keys: str, required: tuple[str, ...] = (), many: tuple[str, ...] = ()):
    """Add the declared options ``keys`` to ``parser`` (``required``/``many``: keys among them)."""
    for key in keys:
        OPTIONS[key].add(parser, required=key in required, many=key in many)


def from_field(cls: type, field_name: str, *, key: str, flag: str | None = None, default: Any = None,
               help: str | None = None) -> Option:  # fmt: skip
    """An ``Option`` that sets the config field ``cls.field_name`` under another flag or default (the
    demo's ``--teacher-epochs`` is ``TrainConfig.epochs``): type, range and choices come from the field."""
    f = next(f for f in dataclasses.fields(cls) if f.name == field_name)
    kind, low, high, open_low, choices = rule_of(f)
    return Option(flag or flag_name(f), help or f.metadata["help"], kind, default, low, high, open_low,
                  choices or None, f.metadata.get("metavar"), key=key, dest=key)  # fmt: skip


def _base_type(cls: type, f: dataclasses.Field, item: bool = True) -> Any:
    """A field's type without ``| None``, and (``item``) the item type of a list."""
    hint = type_hints(cls)[f.name]
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint  # X | None: X
    return typing.get_args(base)[0] if item and typing.get_origin(base) is list else base


def rule_of(declaration: Option | dataclasses.Field) -> tuple:
    """(type, low, high, open_low, choices) of an option or a config field, an on/off switch as type
    None: what two declarations of one flag must agree on."""
    if isinstance(declaration, Option):
        d = declaration
        return (d.type, d.low, d.high, d.open_low, tuple(d.choices or ()))
    cls = next(c for c in (TrainConfig, ObjectiveConfig) if declaration in dataclasses.fields(c))
    base = _base_type(cls, declaration)
    low, high, open_low = declaration.metadata.get("range") or (None, None, False)
    return (None if base is bool else base, low, high, open_low, tuple(declaration.metadata.get("choices") or ()))


def all_cores(threads: int | None) -> int:
    """``threads``, or every core of this machine when None (the default of ``--threads``)."""
    return threads or os.cpu_count() or 1


# ----------------------------------------------------------------------------------------------
# the declarations shared by commands (and experiment scripts)

DATA_HELP = ("your own data instead of a GLUE --task: a task spec (YAML/JSON), a CSV/TSV/JSONL/Parquet file, a "
             "folder of train/dev/test files, or hf:NAME[:CONFIG] (data/spec.py)")  # fmt: skip
MODEL_FOLDER = "model folder: a teacher's, a student's or a 'retort dse train' OUT/model, or an export folder"

declare(
    # what to read
    Option("--glue-dir", "GLUE folder in the official TSV layout (default: $GLUE_DIR, else the hub)", metavar="DIR"),
    Option("--skip-bad-rows", "count, report and skip malformed rows instead of stopping", type=None),
    Option("--task", "GLUE task: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI"),
    Option("--task", "the model's GLUE task (default: the one the folder was trained for)", key="source_task"),
    Option("--data", DATA_HELP, metavar="SPEC"), Option("--model", MODEL_FOLDER),
    Option("--task", "task whose dev sentences are timed (default: the first model's own, else STS-B)",
           key="bench_task"),
    Option("--model", "model folder (default: the one the index was built with)", key="index_model"),
    Option("--model", "the neighbours' embedding model (a folder or hub id)", default="all-MiniLM-L6-v2",
           key="embedder"),
    Option("--split", "dev (both dev sets for MNLI) or a split name", default="dev"),
    Option("--split", "the split to predict (GLUE: test; MNLI: test_matched or test_mismatched)", default="test",
           key="test_split"),
    # how to run
    Option("--threads", f"CPU threads, by default all {os.cpu_count()} cores", type=int, low=1, high=MAX_THREADS),
    Option("--batch-size", "inference batch size (sentences or pairs at once)", type=int, default=128, low=1),
    Option("--max-length", "truncation in tokens (default 128; an export folder: the length it was exported with)",
           type=int, low=1),
    Option("--max-eval-samples", "the first N rows of each dev split", type=int, low=1),
    # where results go
    Option("--json", "also write the results as JSON", dest="json_out", key="json_out"),
    Option("--force", "replace a non-empty --out folder", type=None),
)  # fmt: skip

# the training commands (teacher, distill, dse train); their config fields are flags of their own
declare(
    Option("--config", "YAML file with TrainConfig fields (flags override it)"),
    Option("--set", "override any config field, e.g. --set objective.temperature=4 (repeatable)", repeat=True,
           metavar="KEY=VALUE"),
    Option("--resume", "continue from OUT/checkpoint", type=None),
    Option("--overwrite", "replace the run that OUT already holds", type=None),
    Option("--no-progress", "no progress bar or progress lines", type=None),
    Option("--c", "weight c of MSE(student, teacher logits); the task loss gets 1 - c", type=float, low=0, high=1),
)  # fmt: skip

# dse index / search / export
declare(
    Option("--candidates", "text file, one candidate sentence per line"),
    Option("--out", "index folder", key="index_out"),
    Option("--faiss", "also write a FAISS cosine index: flat, hnsw or ivfpq", choices=("flat", "hnsw", "ivfpq")),
    Option("--score", "cosine (as exports rank) or pair (the pair head)", default="cosine", choices=("cosine", "pair")),
    Option("--index", "index folder ('retort dse index')"),
    Option("--query", "query sentence (repeatable)", repeat=True),
    Option("-k", "candidates listed per query", type=int, default=10, low=1),
    Option("--out", "folder for the sentence-transformers model", key="st_out"),
)

# mine-pairs
declare(
    Option("--corpus", "text files or folders (WikiExtractor output works)"),
    Option("--out", "TSV file of pairs (two texts a line); OUT.json says how", key="pairs_out"),
    Option("--pairs", "how many pairs (at most 20 per pool sentence)", type=int, low=1, high=10**7),
    Option("--pool", "sentences drawn from the corpus to pair up (default: --pairs)", type=int, low=1, high=10**6),
    Option("--mix", "KIND=WEIGHT,... of neighbour, near, document, random, edited"),
    Option("--seed", "seed of the pool and the pairing", type=int, default=0, low=0, high=MAX_SEED, key="mining_seed"),
    Option("--min-words", "shortest sentence kept, in words", type=int, default=6, low=1),
    Option("--max-words", "longest sentence kept, in words", type=int, default=40, low=1),
)

# embed distill
declare(
    Option("--teacher", "sentence-transformers folder (default: the packaged MiniLM)", key="embed_teacher"),
    Option("--student", "LAYERSxHIDDEN from the teacher, or an encoder folder of any family (its own tokenizer)",
           default="3x384", key="embed_student"),
    Option("--student-init", "LxH from: prune, teacher, random, FOLDER (pruned)", default="prune", key="embed_init"),
    Option("--sentences", "corpus sentences to train on (besides --data's texts)", type=int, default=50000, low=10),
    Option("--held-out", "training sentences kept out to choose the epoch on", type=int, default=1000, low=10),
    Option("--epochs", "epochs over the sentences", type=int, default=1, low=1, key="embed_epochs"),
    Option("--lr", "peak learning rate (AdamW, warm-up, decay)", default=1e-4, key="embed_lr", **POSITIVE, high=1),
    Option("--batch-size", "sentences per step", type=int, default=64, low=1, key="embed_batch"),
    Option("--pair-weight", "weight of the in-batch cosine-matrix term", type=float, default=0.0, low=0),
    Option("--seed", "seed of the draw, carve and order", type=int, default=0, low=0, high=MAX_SEED, key="embed_seed"),
)  # fmt: skip

# models get, cache list / clear, report
declare(
    Option("name", "all-mpnet-base-v2", positional=True),
    Option("--out", "model folder (written under a temporary name, then renamed)", key="model_out"),
    Option("--json", "also write the list as JSON", dest="json_out", key="cache_json"),
    Option("--kind", "only entries of this kind (default: all)", choices=KINDS),
    Option("--older-than", "only entries unused for more than DAYS days", type=float, low=0, metavar="DAYS"),
    Option("--dry-run", "say what would be removed, remove nothing", type=None),
    Option("runs", "run folders (each with a metrics.json), or folders that hold them", positional=True),
    Option("--markdown", "without --out: the table as Markdown", type=None),
    Option("--out", "write the page here: index.html, report.md, report.json, img/, configs/", key="report_out"),
    Option("--bench", "'retort bench --json' files (latency)", default=[], metavar="JSON"),
    Option("--reference", "the method every other is tested against", default="multilevel"),
    Option("--curves-task", "the task of the loss-curve figure (default: the one most methods ran)"),
    Option("--resamples", "permutation and bootstrap resamples", type=int, default=2000, low=1),
    Option("--title", "the page's title", default="retort: distillation evidence"),
    Option("--note", "a paragraph under the title (the protocol, the caps)", default=""),
    Option("--force", "replace a non-empty --out that holds no earlier report", type=None, key="report_force"),
)

# eval, predict, export
declare(
    Option("--json", "where to write the metrics (default: beside the run, RUN/eval_SPLIT.json, or in an export "
           "folder; never into a model folder of yours)", dest="json_out", key="eval_json"),
    Option("--out", "a folder (the file gets the leaderboard's name, e.g. SST-2.tsv) or a file path",
           key="predictions_out"),
    Option("--out", "export folder (written under a temporary name, then renamed)", key="export_out"),
    Option("--format", "export format", default="onnx", choices=("onnx",)),
    Option("--quantize", "int8 weights: dynamic, or static with calibration on training rows", default="none",
           choices=("none", "int8-dynamic", "int8-static")),
    Option("--calibration-rows", "training rows for int8-static and checks", type=int, default=256, low=1),
    Option("--opset", "ONNX opset", type=int, default=17, low=7, high=21),
    Option("--no-optimize", "skip onnxruntime's transformer fusions", type=None),
    Option("--no-eval", "skip the dev-set evaluation of source and export", type=None),
    Option("--max-drop", "fail (exit 2, nothing written) if the dev score drops more", type=float, low=0),
)  # fmt: skip

# bench
declare(
    Option("--batch-sizes", "e.g. 1 8 32 (or 1,8,32)", type=whole_numbers, default=[[1], [32]], low=1, metavar="N"),
    Option("--samples", "dev examples to time at each batch size", type=int, default=256, low=1),
    Option("--warmup", "untimed batches first", type=int, default=5, low=0),
    Option("--fill", "pack dev texts into inputs of exactly --max-length tokens", type=None),
    Option("--memory-cap", "also find each model's smallest memory cap", type=None),
    Option("--rounds", "time the whole sequence of models this many times: medians, and ratios within each round",
           type=int, default=1, low=1),
    Option("--json", "result file (default MODEL/bench.json for one model, else bench.json)", dest="json_out",
           key="bench_json"),
    Option("--png", "bar chart of ms/sample (default: beside the JSON, for several models)"),
)  # fmt: skip

# compress
declare(
    from_field(TrainConfig, "teacher", key="compress_teacher",
               help="the teacher: a fine-tuned model folder (or a run folder holding one); none: one is fine-tuned"),
    from_field(TrainConfig, "base", key="compress_base", default=TrainConfig.base, help="no --teacher: tuned first"),
    Option("--out", "the search's folder: plan.json, probes/", key="compress_out"),
    Option("--speedup", "at least this many times the teacher's speed (PyTorch fp32, b1, this CPU)", **POSITIVE),
    Option("--speedup-backend", "at least this many times the teacher's own --backend export", **POSITIVE),
    Option("--latency-ms", "at most this many ms a call (batch 1, p50, this CPU)", **POSITIVE),
    Option("--max-params", "at most this many parameters", type=int, low=1),
    Option("--headroom", "plan for shapes this % under the latency target (timing noise)", type=float, low=0, high=50),
    Option("--backend", "what the student ships as", default="onnx-int8", choices=("onnx-int8", "onnx", "torch")),
    Option("--probe-samples", "dev rows timed for each model", type=int, default=64, low=8),
    Option("--max-drop", "the floor on held-out rows: the teacher's score less X (0.01 = one point) or less X%",
           type=points_or_percent, low=0, high=100, metavar="X|X%", key="compress_max_drop"),
    Option("--max-drop-percent", "the same floor as a share: --max-drop X%", type=float, low=0, high=100),
    from_field(TrainConfig, "epochs", key="compress_epochs", flag="--epochs", default=3,
               help="epochs of a task stage over its rows and transfer set (compress_stages.TRANSFER)"),
    Option("--rounds", "bench rounds (medians, ratios in a round)", type=int, default=3, low=1, key="compress_rounds"),
    Option("--rounds", "timing rounds (the least of their medians)", type=int, default=3, low=1, key="embed_rounds"),
    Option("--shapes", "shapes trained: the widest that meet the budget, deepest first", type=int, default=3, low=1),
    from_field(TrainConfig, "corpus", key="compress_corpus", help="text (file or folder): pairs mined from it join a "
               "pair task's transfer sets; else a general stage before a pruned candidate's task stage"),
    from_field(TrainConfig, "corpus_sequences", key="compress_sequences", default=8000, help="--corpus: the general "
               "stage's packed sequences of 128 tokens (not a pair task's)"),
    Option("--vocab", "students' word embeddings: the teacher's (full), the training rows' tokens and every character "
           "(task; WordPiece), task with --max-params (auto)", default="auto", choices=("auto", "full", "task")),
    Option("--hours", "the search's training time (no stage begun that cannot end in it)", type=float, low=0.01),
    Option("--dry-run", "stop after the plan", type=None, key="plan_only"),
)  # fmt: skip

# demo: the config fields it sets, under its own flags and defaults
declare(
    Option("--out", "the demo's folder: teacher/, student-SHAPE/, demo.json", default="runs/demo", key="demo_out"),
    from_field(TrainConfig, "epochs", key="teacher_epochs", flag="--teacher-epochs", default=2,
               help="epochs the teacher trains"),
    from_field(TrainConfig, "epochs", key="student_epochs", flag="--student-epochs", default=2,
               help="epochs the student trains"),
    from_field(TrainConfig, "schedule_epochs", key="schedule_epochs", default=3,
               help="epochs each learning-rate schedule spans (3: both runs stop after 2 of 3 epochs, where the "
               "3-epoch runs peaked on dev)"),
    from_field(TrainConfig, "cache_teacher", key="cache_teacher", default="all",
               help="the student's teacher-output cache"),
    from_field(TrainConfig, "student", key="student", default="3x384"),
    from_field(ObjectiveConfig, "method", key="method", default="multilevel", help="distillation method preset"),
    from_field(TrainConfig, "max_train_samples", key="max_train_samples"),
    from_field(TrainConfig, "base", key="base", help="base model of the teacher (default all-MiniLM-L6-v2)"),
    Option("--bench-samples", "dev examples timed at each batch size", type=int, default=256, low=1),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the run config's fields as flags


def config_fields(groups: set[str]):
    """(dataclass, field) of every config field whose ``cli`` tag is in ``groups``."""
    for cls in (TrainConfig, ObjectiveConfig):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli") in groups:
                yield cls, f


def add_config_flags(p: argparse.ArgumentParser, groups: set[str]) -> None:
    """One flag per config field tagged for ``groups``, generated from its declaration in config.py.
    Flags default to None, meaning "not given", so that --config and a resumed run's config.yaml keep
    their values; ranges are checked when the config is built."""
    for cls, f in config_fields(groups):
        base, meta = _base_type(cls, f, item=False), f.metadata
        extra = []
        if f.default is not dataclasses.MISSING and f.default is not None and f.name != "out":
            extra.append(f"default {f.default}")
        elif cls.__name__ == "ObjectiveConfig":
            extra.append("default: the method's")
        if meta.get("range"):
            extra.append(rule_words(*meta["range"]))
        if meta.get("choices"):
            extra.append("one of " + ", ".join(meta["choices"]))
        text = (meta["help"] + (f" ({'; '.join(extra)})" if extra else "")).replace("%", "%%")
        kw: dict = {"dest": f.name, "default": None, "help": text}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            item = typing.get_args(base)[0] if typing.get_origin(base) is list else base
            kw.update(type=item, metavar=meta.get("metavar") or {int: "N", float: "X"}.get(item, "NAME"))
            if typing.get_origin(base) is list:
                kw["nargs"] = "+"
        action = p.add_argument(flag_name(f), **kw)
        setattr(action, DECLARATION, f)
