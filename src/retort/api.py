"""retort from Python: the commands as functions with keyword arguments, returning result objects.

    import retort

    teacher = retort.teacher(task="STS-B", out="runs/t", epochs=2, max_train_samples=2000)
    student = retort.student(teacher=teacher.model, out="runs/s", shape="3x384", method="multilevel")
    print(student.best["dev"]["pearson"])
    exported = retort.export(student.model, out="runs/s-int8", quantize="int8-dynamic")
    scores = retort.evaluate(exported.out, task="STS-B")
    speed = retort.bench([teacher.model, exported.out], threads=[1], batch_sizes=[1])

Each function does what its command does, through the same code: ``teacher`` and ``student`` build a
``TrainConfig`` from their keyword arguments (any field of ``TrainConfig``; the objective's fields, such as
``alpha`` or ``temperature``, may be given flat or as ``objective={...}``) with the same validation as the
command line (types, ranges, choices, cross-field rules: one ``RetortError`` naming the field), guard the
run folder the same way (a second call on a finished run raises unless ``overwrite=True``; ``resume=True``
continues a stopped one) and draw the same plots. ``evaluate``, ``export`` and ``bench`` check their
options against the same declarations as the flags (``retort.options``). Errors are ``RetortError``
(``retort.errors``), never a traceback from deep inside.

The distillation function is ``retort.student`` (it makes a student), not ``retort.distill``: that name
is the subpackage of losses and objectives, and importing it would replace a function of the same name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retort.commands import bench as bench_command
from retort.commands import eval as eval_command
from retort.commands import export as export_command
from retort.commands import train as train_command
from retort.config import ObjectiveConfig, TrainConfig, from_dict
from retort.data.spec import load_task
from retort.errors import ConfigError, RetortError
from retort.options import OPTIONS, check_option


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: its folder, the trained model folder and ``metrics.json``'s contents."""

    out: Path
    model: Path
    metrics: dict = field(repr=False)

    @property
    def best(self) -> dict:
        """The selection splits' metrics at the kept step (``metrics.json``'s ``best``)."""
        return self.metrics["best"]

    @property
    def dev_once(self) -> dict | None:
        """With ``val_split``: the GLUE dev set scored once on the kept model; else None."""
        return self.metrics.get("dev_once")


@dataclass(frozen=True)
class EvalResult:
    """Scores of a model folder on a split: ``results`` is ``{split: {metric: value}}``."""

    task: str
    split: str
    results: dict
    path: Path | None
    record: dict = field(repr=False)


@dataclass(frozen=True)
class ExportResult:
    """An export folder and its ``retort_export.json`` record (fusions, quantisation, dev scores)."""

    out: Path
    record: dict = field(repr=False)


@dataclass(frozen=True)
class BenchResult:
    """What ``retort bench`` measured (``runs``: one per model and thread count) and where it was written."""

    runs: list = field(repr=False)
    path: Path | None
    record: dict = field(repr=False)


def _train_config(kind: str, options: dict[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from keyword arguments, through the same ``from_dict`` as YAML and flags."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"kind", "objective", "dse"}
    objective_fields = {f.name for f in dataclasses.fields(ObjectiveConfig)}
    data: dict[str, Any] = {"kind": kind}
    objective = dict(options.pop("objective", None) or {})
    for name, value in options.items():
        if name in train_fields:
            data[name] = value
        elif name in objective_fields:
            objective[name] = value
        else:
            known = ", ".join(sorted(train_fields | objective_fields))
            raise ConfigError(f"retort.{'teacher' if kind == 'teacher' else 'student'}: unknown option {name!r}; "
                              f"known: {known}")  # fmt: skip
    data["objective"] = objective
    return from_dict(TrainConfig, data, "options")


def _train(kind: str, out: str | Path, resume: bool, overwrite: bool, progress: bool, options: dict) -> TrainResult:
    cfg = _train_config(kind, {**options, "out": str(out)})
    metrics = train_command.train(cfg, resume=resume, overwrite=overwrite, progress=progress)
    return TrainResult(Path(cfg.out), Path(cfg.out) / "model", metrics)


def teacher(
    *, out: str | Path, task: str = "STS-B", base: str = "all-MiniLM-L6-v2", resume: bool = False,
    overwrite: bool = False, progress: bool = False, **options: Any,
) -> TrainResult:  # fmt: skip
    """Fine-tune a cross-encoder teacher (``retort teacher``); ``options`` are ``TrainConfig`` fields
    (``epochs``, ``lr``, ``batch_size``, ``max_train_samples``, ``val_split``, ``glue_dir``, ...)."""
    return _train("teacher", out, resume, overwrite, progress, {"task": task, "base": base, **options})


def student(
    *, teacher: str | Path, out: str | Path, shape: str = "3x384", method: str = "multilevel",
    resume: bool = False, overwrite: bool = False, progress: bool = False, **options: Any,
) -> TrainResult:  # fmt: skip
    """Distill ``teacher`` (a model folder) into a student of ``shape`` LAYERSxHIDDEN (``retort distill``).
    The task defaults to ``STS-B`` as on the command line; ``options`` are ``TrainConfig`` fields and
    objective fields (``alpha``, ``beta``, ``temperature``, ``layer_weights``, ``student_init``, ...)."""
    options = {"teacher": str(teacher), "student": shape, "method": method, **options}
    return _train("distill", out, resume, overwrite, progress, options)


def _checked(values: dict[str, Any]) -> None:
    """Each value within its declared option's rule (``retort.options``), one ``RetortError`` otherwise."""
    for name, value in values.items():
        if value is None or name not in OPTIONS:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            check_option(OPTIONS[name], item, f"{name}=")


def evaluate(
    model: str | Path, *, task: str | None = None, data: str | Path | None = None, split: str = "dev",
    glue_dir: str | None = None, batch_size: int = 128, max_length: int | None = None,
    max_samples: int | None = None, threads: int | None = None, json_out: str | Path | None = None,
) -> EvalResult:  # fmt: skip
    """Score a model or export folder on a split of its task (``retort eval``; ``task`` a GLUE task, ``data``
    your own, neither: the folder's own); the JSON goes where the command writes it (beside the run, in an
    export folder, or ``json_out``; never into a model folder of yours)."""
    _checked({"batch_size": batch_size, "max_length": max_length, "threads": threads})
    record = eval_command.evaluate(str(model), task, data=None if data is None else str(data), split=split,
                                   glue_dir=glue_dir, batch_size=batch_size,
                                   max_length=max_length, max_eval_samples=max_samples, threads=threads,
                                   json_out=None if json_out is None else str(json_out))  # fmt: skip
    path = record.get("_path")
    return EvalResult(record["task"], split, record["results"], Path(path) if path else None, record)


def export(
    model: str | Path, *, out: str | Path, quantize: str = "none", task: str | None = None,
    data: str | Path | None = None, glue_dir: str | None = None, max_drop: float | None = None,
    max_length: int | None = None, calibration_rows: int = 256, evaluate: bool = True, force: bool = False,
    threads: int | None = None,
) -> ExportResult:  # fmt: skip
    """Export a model folder to ONNX (``retort export``), optionally int8, checked and evaluated; with
    ``max_drop`` it raises, writing nothing, when the export's dev score drops more."""
    _checked({"quantize": quantize, "max_length": max_length, "calibration_rows": calibration_rows,
              "max_drop": max_drop, "threads": threads})  # fmt: skip
    record = export_command.export(str(model), str(out), quantize=quantize, task=task,
                                   data=None if data is None else str(data), glue_dir=glue_dir,
                                   max_drop=max_drop, max_length=max_length, calibration_rows=calibration_rows,
                                   evaluate=evaluate, force=force, threads=threads)  # fmt: skip
    return ExportResult(Path(out), record)


def bench(
    models: Sequence[str | Path], *, task: str | None = None, data: str | Path | None = None,
    threads: Sequence[int | None] = (None,), batch_sizes: Sequence[int] = (1, 32), samples: int = 256, warmup: int = 5,
    max_lengths: Sequence[int | None] = (None,), rounds: int = 1, glue_dir: str | None = None,
    json_out: str | Path | None = None, png: str | Path | None = None,
) -> BenchResult:  # fmt: skip
    """Latency, throughput and peak memory of model or export folders (``retort bench``), each in its own
    process; ratios against the first. Writes the JSON (and chart) where the command does."""
    if not models:
        raise RetortError("retort.bench: give at least one model folder")
    _checked({"threads": [n for n in threads if n is not None], "samples": samples, "warmup": warmup, "rounds": rounds,
              "max_length": [m for m in max_lengths if m is not None]})  # fmt: skip
    if task and data:
        raise RetortError("retort.bench: give task (a GLUE task) or data (your own), not both")
    task = load_task(str(data)).name if data else task  # None: the first model's own task
    record = bench_command.bench([str(m) for m in models], task=task, threads=list(threads),
                                 batch_sizes=list(batch_sizes), samples=samples, warmup=warmup,
                                 max_lengths=list(max_lengths), rounds=rounds, glue_dir=glue_dir,
                                 json_out=None if json_out is None else str(json_out),
                                 png=None if png is None else str(png))  # fmt: skip
    path = record.get("_path")
    return BenchResult(record.get("runs", []), Path(path) if path else None, record)


def predict(
    model: str | Path, inputs, *, task: str | None = None, data: str | Path | None = None, raw: bool = False,
    batch_size: int = 128, max_length: int | None = None, threads: int | None = None,
):  # fmt: skip
    """What a model or export folder says of plain inputs: texts, or pairs of texts as 2-tuples (a bare string
    is one text). One dict per input: ``{"label", "score", "probabilities"}`` for classification, ``{"labels",
    "probabilities"}`` for multi-label, ``{"score"}`` for regression; with ``raw`` the logits (N, C). The task
    is the folder's own unless ``task`` or ``data`` names one."""
    _checked({"batch_size": batch_size, "max_length": max_length, "threads": threads})
    from retort.evaluation.folder import predict_inputs  # noqa: PLC0415  (torch or onnxruntime)

    if task and data:
        raise RetortError("retort.predict: give task (a GLUE task) or data (your own), not both")
    task = load_task(str(data)).name if data else task
    return predict_inputs(str(model), inputs, task, raw, batch_size, max_length, threads)
