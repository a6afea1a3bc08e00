"""Run folders and bench files as records: the one reader of what training and ``retort bench`` wrote.

A run folder holds ``metrics.json`` (its task, kind, config, evaluations and dev scores), ``config.yaml``
and, when it was kept, ``model/``; a folder without ``metrics.json`` is searched for runs below it.
``load_run`` turns one into a ``RunRecord`` (the row the evidence page groups by label, task, seed and
temperature), ``read_bench`` reads the model rows of ``retort bench --json`` files and ``attach_bench``
gives each run the batch-1 latency of its own model folder.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retort.config import ObjectiveConfig
from retort.data.glue import get_task
from retort.errors import RetortError

METRICS_FILE = "metrics.json"
DEFAULT_T = ObjectiveConfig().temperature  # Table 1 and the loss curves compare runs at this temperature
SKIPPED_STAGES = ("intermediate", "progressive", "attention")  # earlier stages of two-stage methods: no task score


@dataclass
class RunRecord:
    """One finished run with a dev score: what it is (task, kind, method, label, temperature, seed), how its
    epoch was kept (``selection``), its dev scores, its raw metrics and config, and bench numbers of its model."""

    path: Path
    task: str
    kind: str  # teacher | distill
    label: str  # the row name: --tag, else the method; "teacher" for teachers
    method: str
    temperature: float
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


def read_metrics(run_dir: Path, missing_ok: bool = False) -> dict | None:
    """The parsed ``metrics.json`` of a run folder; None when it has none and ``missing_ok`` (an unfinished
    run). Raises RetortError when the file cannot be read or parsed."""
    path = Path(run_dir) / METRICS_FILE
    if missing_ok and not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RetortError(f"{path}: unreadable ({e})") from None


def find_runs(paths: list[str]) -> list[Path]:
    """Run folders (holding ``metrics.json``) among ``paths`` and below them, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise RetortError(f"{p}: no such run folder")
        if not p.is_dir():
            raise RetortError(f"{p}: not a folder (give run folders, or folders that hold them)")
        if (p / METRICS_FILE).is_file():
            found.append(p)
        else:
            found += sorted(m.parent for m in p.rglob(METRICS_FILE) if m.parent.name != "model")
    return list(dict.fromkeys(found))


def load_run(path: Path) -> RunRecord | None:
    """A run of the tables, or None for what has no task score: general distillation, the intermediate
    and progressive stages of two-stage methods (their final stage is the run)."""
    m = read_metrics(path)
    cfg = m.get("config") or {}
    obj = cfg.get("objective") or {}
    if cfg.get("general") or obj.get("stage") in SKIPPED_STAGES or cfg.get("dse"):
        return None
    kind = m.get("kind", cfg.get("kind", "distill"))
    if "dev_once" in m:
        dev, selection = m["dev_once"], "val"
    elif m.get("best") and all(s.startswith("dev") for s in m["best"]):
        dev, selection = m["best"], "dev"
    else:
        return None
    method = obj.get("method", "kd") if kind == "distill" else "teacher"
    label = "teacher" if kind == "teacher" else (cfg.get("tag") or method)
    return RunRecord(
        path=path, task=m["task"], kind=kind, label=label, method=method,
        temperature=float(obj.get("temperature", DEFAULT_T)), seed=int(cfg.get("seed", 42)), selection=selection,
        dev=dev, metrics=m, config=cfg, command=_remake_command(path, kind),
    )  # fmt: skip


def _remake_command(path: Path, kind: str) -> str:
    """The command line that remakes a run: its recorded words (``command.json``), else its saved config."""
    command_file = path / "command.json"
    if command_file.is_file():
        words = json.loads(command_file.read_text())
        return "retort " + " ".join(words) + f" --out {path}"
    return f"retort {kind} --config {path / 'config.yaml'}"


def load_runs(paths: list[str]) -> list[RunRecord]:
    """Every run with a dev score among ``paths`` and below them, labelled so that one row is one method:
    when students differ the student joins the label, and a label, task, seed and temperature met twice
    (not seeds of one method) gets its folder's name."""
    runs = [r for r in (load_run(p) for p in find_runs(paths)) if r is not None]
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
            rows.append({"file": f, "model": r["model"], "backend": r.get("backend", "torch"),
                         "quantization": r.get("quantization", "none"), "ms": lat,
                         "peak_rss_mb": r.get("peak_rss_mb"), "file_mb": r.get("file_mb"),
                         "parameters": r.get("parameters"), "cpu": r["environment"].get("cpu", "?"),
                         "threads": r["environment"]["threads"]})  # fmt: skip
    return rows


def attach_bench(runs: list[RunRecord], bench: list[dict]) -> None:
    """Set each run's ``bench`` (batch-1 ms/sample, peak memory, CPU, threads) from the PyTorch bench row
    that timed its model folder, where one did at batch 1."""
    by_model = {Path(b["model"]).resolve(): b for b in bench if b["backend"] == "torch"}
    for r in runs:
        b = by_model.get(r.model.resolve())
        if b:
            ms = {bs: v for (bs, _t), v in b["ms"].items()}
            if 1 in ms:
                r.bench = {"ms_b1": ms[1], "peak_rss_mb": b["peak_rss_mb"], "cpu": b["cpu"], "threads": b["threads"]}
