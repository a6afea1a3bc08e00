"""Run folders and bench files as records: the one reader of what training and ``retort bench`` wrote.

A run folder holds ``metrics.json`` (its task, kind, config, evaluations and dev scores), ``config.yaml``
and, when it was kept, ``model/``; a folder without ``metrics.json`` is searched for runs below it.
``load_run`` turns one into a ``RunRecord`` (the row the method comparison groups by label, task, seed and
temperature), or None for a run the comparison cannot use, ``left_out`` saying why in words (the summary
lists every run, those with the reason); ``temperature_sweep`` groups the runs of Figure 2.
``read_bench`` reads the model rows of ``retort bench --json`` files and ``bench_of`` gives a model
folder the batch-1 latency a PyTorch bench row measured of it.

Every file is checked as it is read, a fault one line naming the file and what is wrong: not a regular
file (a FIFO is never opened), not UTF-8, not valid JSON (cut short), or a field of the wrong type
(``check_metrics``). A folder given that holds no run, finished or not (an empty one), says so. Where
the search below a folder meets a ``metrics.json`` that is no retort run's (none of ``task``, ``kind``,
``best``, ``config``: another tool's file beside the runs), it is skipped with a note on stderr, since a
folder of runs may hold other things; the same file given as a run folder itself is an error. A
``metrics.json`` that is retort's but damaged is always an error: skipping it would drop a run unseen.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retort.config import ObjectiveConfig
from retort.data.files import describe, exists, refusal
from retort.data.spec import task_from_spec
from retort.data.tasks import get_task, is_task_name
from retort.errors import RetortError
from retort.outputs import RUN_FILES

METRICS_FILE = "metrics.json"
DEFAULT_T = ObjectiveConfig().temperature  # Table 1 and the loss curves compare runs at this temperature
SKIPPED_STAGES = ("intermediate", "progressive", "attention")  # earlier stages of two-stage methods: no task score
WEAK_TEACHER = 0.10  # a teacher within this many points of the majority baseline cannot rank methods


@dataclass
class RunRecord:
    """One finished run with a dev score: what it is (task, kind, method, label, temperature, seed), how its
    epoch was kept (``selection``), its dev scores, its raw metrics and config, and bench numbers of its model."""

    path: Path
    task: str
    kind: str  # teacher | distill
    label: str  # the row name: --tag, else the method; "teacher" for teachers
    method: str
    temperature: float | None  # the soft term's; None for a teacher (fine-tuned on labels, nothing softened)
    seed: int
    selection: str  # "val" (kept on held-out rows, dev scored once) or "dev" (best dev epoch)
    dev: dict[str, dict[str, float]]  # split -> metric -> value
    metrics: dict
    config: dict
    command: str = ""
    bench: dict = field(default_factory=dict)  # ms_b1 etc., from bench files that timed this model

    @property
    def model(self) -> Path:
        """The run's kept model folder (what ``retort bench`` times)."""
        return self.path / "model"

    def score(self) -> float:
        """The task's GLUE score (mean of its metrics, averaged over dev splits)."""
        return float(np.mean([r["score"] for r in self.dev.values()]))

    def primary(self) -> tuple[str, str, float]:
        """(split, metric, value) of the primary metric on the first dev split."""
        metric = self.metrics.get("primary_metric") or get_task(self.task).primary_metric
        split = next(iter(self.dev))
        return split, metric, self.dev[split][metric]

    def primary_label(self) -> str:
        """The primary metric's name, with its split where the run has more than one dev set (MNLI)."""
        split, metric, _ = self.primary()
        return metric if len(self.dev) == 1 else f"{metric} ({split})"


def read_json(path: Path):
    """The parsed JSON file ``path``: a fault (not a regular file, unreadable, not UTF-8, not valid JSON) is
    one ``RetortError`` line naming it, ``unreadable`` in it."""
    found = describe(path)
    if found is not None:  # a FIFO, a folder: named, never opened
        raise RetortError(f"{path}: unreadable ({refusal(found)})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RetortError(f"{path}: unreadable ({e.strerror})") from None
    except UnicodeDecodeError:
        raise RetortError(f"{path}: unreadable (not UTF-8 text)") from None
    except ValueError as e:
        raise RetortError(f"{path}: unreadable, not valid JSON (cut short?) ({e})") from None


def is_retort_metrics(data) -> bool:
    """Whether parsed JSON is a retort run's ``metrics.json`` (an object with one of its own keys)."""
    return isinstance(data, dict) and any(k in data for k in ("task", "kind", "best", "config"))


def read_metrics(run_dir: Path, missing_ok: bool = False) -> dict | None:
    """The parsed and checked ``metrics.json`` of a run folder (``check_metrics``); None when it has none and
    ``missing_ok`` (an unfinished run). Raises RetortError when the file cannot be read or parsed, is no
    retort run's, or holds a field of the wrong type."""
    path = Path(run_dir) / METRICS_FILE
    if missing_ok and not exists(path):
        return None
    data = read_json(path)
    if not is_retort_metrics(data):
        what = f"a JSON {type(data).__name__}" if not isinstance(data, dict) else "an object without task or best"
        raise RetortError(f"{path}: not a retort run's metrics.json ({what}; a file of another tool?)")
    problem = check_metrics(data)
    if problem:
        raise RetortError(f"{path}: {problem}")
    return data


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scores(value) -> bool:
    """split -> metric -> number, as ``best`` and ``dev_once`` hold."""
    return isinstance(value, dict) and all(
        isinstance(r, dict) and all(_is_number(v) for v in r.values()) for r in value.values()
    )


# each field the reports read: (where, the test, what it should be)
_FIELDS = (
    (("task",), lambda v: isinstance(v, str) and is_task_name(v), "a GLUE task name (or a task_spec beside it)"),
    (("kind",), lambda v: v in ("teacher", "distill"), "teacher or distill"),
    (("best",), _is_scores, "an object of split -> metric -> number"),
    (("dev_once",), _is_scores, "an object of split -> metric -> number"),
    (("evals",), lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
    (("primary_metric",), lambda v: isinstance(v, str), "a metric name"),
    (("wall_seconds",), _is_number, "a number"),
    (("train_samples_per_s",), _is_number, "a number"),
    (("config",), lambda v: isinstance(v, dict), "an object"),
    (("config", "objective"), lambda v: isinstance(v, dict), "an object"),
    (("config", "seed"), lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    (("config", "student"), lambda v: v is None or isinstance(v, str), "a text such as 3x384"),
    (("config", "objective", "temperature"), _is_number, "a number"),
    (("config", "objective", "method"), lambda v: isinstance(v, str), "a method name"),
)


_MISSING = object()
_NULLABLE = ("dev_once", "evals", "student", "primary_metric", "wall_seconds", "train_samples_per_s")  # null: absent


def check_metrics(m: dict) -> str | None:
    """What is wrong with a retort ``metrics.json``'s fields, in words (``field 'best' is a list, expected
    ...``); None when each field the reports read is there where needed and of its type."""
    if "task" not in m or "best" not in m:
        return f"no {'task' if 'task' not in m else 'best'} field (a run's metrics.json has task and best)"
    spec = m.get("task_spec")
    own = isinstance(spec, dict) and spec.get("name") == m["task"]  # a task of the user's, its spec beside it
    for keys, ok, want in _FIELDS:
        if own and keys == ("task",):
            continue
        value = m
        for k in keys:
            value = value.get(k, _MISSING) if isinstance(value, dict) else _MISSING
        if value is not _MISSING and not (value is None and keys[-1] in _NULLABLE) and not ok(value):
            shown = json.dumps(value)[:40] if not isinstance(value, (dict, list)) else _json_type(value)
            return f"field {'.'.join(keys)!r} is {shown}, expected {want}"
    return None


def holds_unfinished_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run's files but no ``metrics.json`` (a run still training, or stopped)."""
    return not (folder / METRICS_FILE).exists() and any(
        exists(folder / f"{n}{s}") for n in RUN_FILES for s in ("", ".tmp") if n != METRICS_FILE
    )


def find_runs(paths: list[str], note: bool = True, empty_ok: bool = False) -> list[Path]:
    """Run folders (holding ``metrics.json``) among ``paths`` and below them, in a stable order. Below a
    folder, a ``metrics.json`` that is no retort run's is skipped (with a note on stderr when ``note``); a
    folder that holds no run, finished or unfinished, is an error unless ``empty_ok``."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise RetortError(f"{p}: no such run folder")
        if not p.is_dir():
            raise RetortError(f"{p}: not a folder (give run folders, or folders that hold them)")
        if exists(p / METRICS_FILE):
            found.append(p)
            continue
        below = [m.parent for m in sorted(p.rglob(METRICS_FILE)) if m.parent.name != "model" and _is_run(m, note)]
        if not below and not empty_ok and not holds_unfinished_run(p):
            raise RetortError(f"{p}: holds no run (no finished run in it or below it: no {METRICS_FILE})")
        found += below
    return list(dict.fromkeys(found))


def _is_run(metrics_file: Path, note: bool) -> bool:
    """Whether a ``metrics.json`` met below a folder is a run's: one that parses and is no retort run's
    is skipped (said on stderr when ``note``); a damaged one is kept, to be refused when it is read."""
    if describe(metrics_file) is not None:  # a FIFO, a folder: refused when read
        return True
    try:
        data = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    if is_retort_metrics(data):
        return True
    if note:
        print(f"note: {metrics_file}: skipped, not a retort run's metrics.json", file=sys.stderr)
    return False


def left_out(m: dict) -> str | None:
    """Why the method comparison cannot use a run, from its checked ``metrics.json``, in words; None when it
    can (a teacher, or a cross-encoder student's final stage with a dev score)."""
    cfg = m.get("config") or {}
    obj = cfg.get("objective") or {}
    if cfg.get("general"):
        return "general distillation: no task score"
    if obj.get("stage") in SKIPPED_STAGES:
        return f"{obj['stage']} stage (its method's final stage is the row)"
    if cfg.get("dse"):  # the comparison holds the architecture fixed, so that only the loss differs
        return "a bi-encoder (dse train): another architecture than the students compared"
    if not m.get("dev_once") and not is_dev_selected(m):
        return f"no dev score (scored on {', '.join(m.get('best') or {}) or 'nothing'} only)"
    return None


def is_dev_selected(m: dict) -> bool:
    """Whether a run's ``metrics.json`` holds a best epoch chosen on dev splits alone (dev-selected)."""
    return bool(m.get("best")) and all(s.startswith("dev") for s in m["best"])


def load_run(path: Path) -> RunRecord | None:
    """A run of the method comparison, or None for one it cannot use (``left_out`` says why: general
    distillation, the earlier stages of two-stage methods, bi-encoders, runs without a dev score)."""
    m = read_metrics(path)
    predictions = path / "dev_predictions.json"  # the page's paired tests read it (report/stats.py)
    if exists(predictions) and not isinstance(read_json(predictions), dict):
        raise RetortError(f"{predictions}: not an object of split -> predictions")
    if left_out(m) is not None:
        return None
    cfg = m.get("config") or {}
    obj = cfg.get("objective") or {}
    kind = m.get("kind", cfg.get("kind", "distill"))
    if isinstance(m.get("task_spec"), dict):  # a task of the user's: registered from the run's resolved spec
        task_from_spec(m["task_spec"])
    dev, selection = (m["dev_once"], "val") if m.get("dev_once") else (m["best"], "dev")
    method = obj.get("method", "kd") if kind == "distill" else "teacher"
    label = "teacher" if kind == "teacher" else (cfg.get("tag") or method)
    temperature = float(obj.get("temperature", DEFAULT_T)) if kind == "distill" else None
    return RunRecord(
        path=path, task=m["task"], kind=kind, label=label, method=method, temperature=temperature,
        seed=int(cfg.get("seed", 42)), selection=selection, dev=dev, metrics=m, config=cfg,
        command=_remake_command(path, kind),
    )  # fmt: skip


def _remake_command(path: Path, kind: str) -> str:
    """The command line that remakes a run: its recorded words (``command.json``), else its saved config."""
    command_file = path / "command.json"
    if exists(command_file):
        words = read_json(command_file)
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise RetortError(f"{command_file}: holds {_json_type(words)}, expected a list of the command's words")
        return "retort " + " ".join(words) + f" --out {path}"
    return f"retort {kind} --config {path / 'config.yaml'}"


def load_runs(paths: list[str]) -> list[RunRecord]:
    """Every run of the method comparison among ``paths`` and below them (``find_runs``, which the page runs
    first, has said what it skipped), labelled by ``label_runs``."""
    return label_runs([load_run(p) for p in find_runs(paths, note=False)])


def label_runs(loaded: list[RunRecord | None]) -> list[RunRecord]:
    """The runs among ``loaded`` (None: one the comparison cannot use), labelled so that one row is one
    method: when students differ the student joins the label, and a label, task, seed and temperature met
    twice (not seeds of one method) gets its folder's name."""
    runs = [r for r in loaded if r is not None]
    if len({r.config.get("student") for r in runs if r.kind == "distill"}) > 1:  # students differ: say which
        for r in runs:
            if r.kind == "distill":
                r.label = f"{r.label} {r.config.get('student')}"
    seen: dict[tuple, int] = defaultdict(int)
    for r in runs:
        seen[(r.label, r.task, r.seed, r.temperature)] += 1
    for r in runs:  # one label, task, seed and temperature more than once: not seeds of one method, name each
        if seen[(r.label, r.task, r.seed, r.temperature)] > 1:
            r.label = f"{r.label} [{r.path.name}]"
    return runs


def temperature_sweep(runs: list[RunRecord]) -> dict[str, dict[str, dict[float, list[RunRecord]]]]:
    """Figure 2's runs: task -> method -> temperature -> runs, for methods run at two or more temperatures
    on a classification task (a regression task's teacher gives one number, nothing to soften)."""
    grid: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in runs:
        if r.kind == "distill" and not get_task(r.task).is_regression:
            grid[r.task][r.label][r.temperature].append(r)
    return {
        task: {m: dict(sorted(ts.items())) for m, ts in methods.items() if len(ts) > 1}
        for task, methods in sorted(grid.items())
        if any(len(ts) > 1 for ts in methods.values())
    }


def read_bench(files: list[str]) -> list[dict]:
    """Every model row of ``retort bench --json`` files: model, backend, quantization, ms per sample keyed
    by (batch size, threads), peak memory, file size, parameters, CPU and threads."""
    rows = []
    for f in files:
        try:
            data = json.loads(Path(f).read_text())
            runs = data["runs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RetortError(f"--bench {f}: not a 'retort bench --json' file ({e})") from None
        for r in runs:
            lat = {(x["batch_size"], r["environment"]["threads"]): x["ms_per_sample_p50"] for x in r["latency"]}
            rows.append({"file": f, "model": r["model"], "source_model": r.get("source_model"), "task": r.get("task"),
                         "backend": r.get("backend", "torch"),
                         "quantization": r.get("quantization", "none"), "ms": lat,
                         "peak_rss_mb": r.get("peak_rss_mb"), "file_mb": r.get("file_mb"),
                         "parameters": r.get("parameters"), "cpu": r["environment"].get("cpu", "?"),
                         "threads": r["environment"]["threads"]})  # fmt: skip
    return rows


def bench_of(model: Path, bench: list[dict]) -> dict:
    """What the PyTorch bench row that timed ``model`` (a model folder) at batch 1 measured: ms/sample
    (``ms_b1``), peak memory, CPU and threads; {} when no bench row did."""
    for b in reversed(bench):  # the last row that timed it, as given
        if b["backend"] == "torch" and Path(b["model"]).resolve() == model.resolve():
            ms = {bs: v for (bs, _t), v in b["ms"].items()}
            if 1 in ms:
                return {"ms_b1": ms[1], "peak_rss_mb": b["peak_rss_mb"], "cpu": b["cpu"], "threads": b["threads"]}
    return {}


def attach_bench(runs: list[RunRecord], bench: list[dict]) -> None:
    """Set each run's ``bench`` from the PyTorch bench row that timed its model folder (``bench_of``). A run
    whose model no row timed (a run kept without its weights) takes the timing of a timed run of the same task
    (``retort bench`` times a model on its task's texts) and shape (``_same_shape``), preferring one of its own
    label; its ``bench`` then names that run under ``stand_in``."""
    for r in runs:
        r.bench = bench_of(r.model, bench)
    timed = [r for r in runs if r.bench]
    for r in runs:
        if r.bench:
            continue
        twins = [t for t in timed if t.task == r.task and _same_shape(t, r)]  # a task's texts set its lengths
        twins.sort(key=lambda t: t.label != r.label)
        if twins:
            t = twins[0]
            r.bench = {**t.bench, "stand_in": f"{t.label} {t.task} seed {t.seed}"}


def measured(r: RunRecord) -> bool:
    """Whether a bench row timed this run's own model (not a run of its shape standing in for it)."""
    return bool(r.bench) and not r.bench.get("stand_in")


# with the parameter count, what sets a model's speed on one task's texts
SHAPE_OPTIONS = ("student", "student_heads", "student_intermediate", "base", "attention", "feature_map", "dse",
                 "max_positions", "max_length", "long_sts_tokens")  # fmt: skip


def _same_shape(a: RunRecord, b: RunRecord) -> bool:
    """Whether two runs trained models of one shape: the same kind, the same ``SHAPE_OPTIONS`` (``--student`` with
    its heads and MLP size, the base, attention, lengths) and parameter counts within 0.1% (a task head apart)."""
    pa, pb = a.metrics.get("parameters"), b.metrics.get("parameters")
    return (
        a.kind == b.kind
        and all(a.config.get(k) == b.config.get(k) for k in SHAPE_OPTIONS)
        and isinstance(pa, int)
        and isinstance(pb, int)
        and abs(pa - pb) <= 0.001 * max(pa, pb)
    )


ENGINES = {"torch": "PyTorch", "onnxruntime": "ONNX", "onnx": "ONNX", "openvino": "OpenVINO"}


def backend_name(b: dict) -> str:
    """A bench row's engine and number format for a reader: "PyTorch fp32", "ONNX int8", "ONNX int8 static"."""
    quantization = b["quantization"] or "none"
    number = "fp32" if quantization.startswith("none") else quantization.split(" (")[0]  # "none (fp32; file F16)"
    number = {"int8-dynamic": "int8", "int8-static": "int8 static"}.get(number, number)
    return f"{ENGINES.get(b['backend'], b['backend'])} {number}"


def bench_name(b: dict, runs: list[RunRecord]) -> str:
    """What a bench row timed, for a reader: the run it comes from (method, temperature where not the default,
    and task; an export counts as the run it was exported from, or the run folder it sits in) and its backend,
    e.g. ``teacher MRPC, ONNX int8``; a model from no run found is named by its last two path parts other than
    ``model``."""
    backend = backend_name(b)
    paths = [Path(p).resolve() for p in (b.get("source_model"), b["model"]) if p]
    for path in paths:
        for r in runs:
            if path == r.path.resolve() or r.path.resolve() in path.parents:
                temperature = f" T {r.temperature:g}" if r.temperature not in (None, DEFAULT_T) else ""
                return f"{r.label}{temperature} {r.task}, {backend}"
    parts = [p for p in paths[-1].parts if p != "model"][-2:]
    return f"{'/'.join(parts)}, {backend}"
