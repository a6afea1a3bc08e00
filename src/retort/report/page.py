"""The evidence page: ``retort report RUN_DIRS... --out DIR``.

Reads finished run folders (each with ``metrics.json`` and ``config.yaml``; a folder without one is
searched for runs below it) and ``retort bench`` JSON files, and writes one self-contained page, twice:
``DIR/index.html`` (plots beside it in ``DIR/img``, no network needed to view it) and ``DIR/report.md``,
plus ``DIR/report.json`` (every number on the page) and ``DIR/configs`` (the config of every run).

Sections, each present when its runs are:

- **Table 1, methods**: one row per method (``--tag`` names a variant; default the method) and one column
  per task metric, mean +- standard deviation over seeds of the dev score, at the default temperature.
  A run kept on held-out training rows (``--val-split``) shows its dev score measured once on the kept
  model; a run without, its best dev epoch, and the page says how many such dev-selected runs it holds.
  The average is over tasks of the per-seed mean of each task's GLUE score. ms/sample at batch 1 is
  taken from bench JSON files that timed a run's model folder.
- **Share of the teacher** per task (a teacher run of the task among the folders).
- **Paired tests** of each method against the reference (``multilevel``), per task, on the seeds both
  ran: the mean difference of the task's primary metric, its 95% bootstrap interval and the permutation
  p-value (``evaluation/significance.py``; needs the kept models' ``dev_predictions.json``).
- **Figure 2, temperature**: score against the soft term's temperature for every method run at several
  (classification tasks: a regression task has no distribution to soften), with seed spread; latency
  against temperature from bench files that timed those models.
- **Figure 3, stability**: per task, each method's mean with the seed standard deviation as error bars.
- **Figure 4, latency and memory** from the bench files.
- **Figure 5, loss curves**: the objective's mean over training rows and over the held-out rows at each
  evaluation, per epoch, for every method on one task.
- **Per-layer weights**: the final learned weights of runs that adapt them.
- **Runs**: every run's folder, seed, temperature, selection, score and the command that remakes it.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from retort.config import ObjectiveConfig
from retort.data.glue import get_task
from retort.errors import RetortError
from retort.evaluation.metrics import METRICS
from retort.evaluation.significance import paired_test
from retort.paths import publish_dir
from retort.report.figures import read_log
from retort.report.tables import table

METHOD_ORDER = ["kd", "distilbert", "tinybert", "minilm", "mobilebert", "multilevel", "dse"]
DEFAULT_T = ObjectiveConfig().temperature
MARKER = "retort-report"


# --------------------------------------------------------------------------------------------
# runs


@dataclass
class RunRecord:
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
        return self.path / "model"

    def score(self) -> float:
        """The task's GLUE score (mean of its metrics, averaged over dev splits)."""
        return float(np.mean([r["score"] for r in self.dev.values()]))

    def primary(self) -> tuple[str, str, float]:
        """(split, metric, value) of the primary metric on the first dev split."""
        metric = self.metrics.get("primary_metric") or get_task(self.task).primary_metric
        split = next(iter(self.dev))
        return split, metric, self.dev[split][metric]


def find_runs(paths: list[str]) -> list[Path]:
    """Run folders (holding ``metrics.json``) among ``paths`` and below them, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise RetortError(f"{p}: no such run folder")
        if not p.is_dir():
            raise RetortError(f"{p}: not a folder (give run folders, or folders that hold them)")
        if (p / "metrics.json").is_file():
            found.append(p)
        else:
            found += sorted(m.parent for m in p.rglob("metrics.json") if m.parent.name != "model")
    return list(dict.fromkeys(found))


def load_run(path: Path) -> RunRecord | None:
    """A run of the tables, or None for what has no task score: general distillation, the intermediate
    and progressive stages of two-stage methods (their final stage is the run)."""
    try:
        m = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError) as e:
        raise RetortError(f"{path / 'metrics.json'}: unreadable ({e})") from None
    cfg = m.get("config") or {}
    obj = cfg.get("objective") or {}
    if cfg.get("general") or obj.get("stage") in ("intermediate", "progressive", "attention") or cfg.get("dse"):
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
    command_file = path / "command.json"
    if command_file.is_file():
        words = json.loads(command_file.read_text())
        command = "retort " + " ".join(words) + f" --out {path}"
    else:
        command = f"retort {kind} --config {path / 'config.yaml'}"
    return RunRecord(
        path=path, task=m["task"], kind=kind, label=label, method=method,
        temperature=float(obj.get("temperature", DEFAULT_T)), seed=int(cfg.get("seed", 42)), selection=selection,
        dev=dev, metrics=m, config=cfg, command=command,
    )  # fmt: skip


def read_bench(files: list[str]) -> list[dict]:
    """Every model row of ``retort bench --json`` files."""
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


def _attach_bench(runs: list[RunRecord], bench: list[dict]) -> None:
    by_model = {Path(b["model"]).resolve(): b for b in bench if b["backend"] == "torch"}
    for r in runs:
        b = by_model.get(r.model.resolve())
        if b:
            ms = {bs: v for (bs, _t), v in b["ms"].items()}
            if 1 in ms:
                r.bench = {"ms_b1": ms[1], "peak_rss_mb": b["peak_rss_mb"], "cpu": b["cpu"], "threads": b["threads"]}


# --------------------------------------------------------------------------------------------
# numbers


def _order(labels) -> list[str]:
    def key(x: str):
        base = x.split("+")[0].split("@")[0]
        return (x != "teacher", METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), x)

    return sorted(set(labels), key=key)


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _pm(values: list[float]) -> str:
    """mean +- sample standard deviation, as percentages with two decimals (n seeds)."""
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if len(values) > 1 else f"{100 * mean:.2f}"


def _columns(runs: list[RunRecord]) -> dict[str, list[tuple[str, str]]]:
    """task -> its (split, metric) columns, as the runs report them."""
    cols: dict[str, list[tuple[str, str]]] = {}
    for r in runs:
        if r.task not in cols:
            cols[r.task] = [(s, k) for s, res in r.dev.items() for k in res if k != "score"]
    return dict(sorted(cols.items()))


def method_table(runs: list[RunRecord]) -> dict:
    """Table 1: per (label, task) the scores over seeds at the default temperature."""
    main = [r for r in runs if r.kind == "teacher" or r.temperature == DEFAULT_T]
    cells: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in main:
        cells[r.label][r.task].append(r)
    return {label: dict(cells[label]) for label in _order(cells)}


def paired_tests(table1: dict, reference: str, resamples: int) -> list[dict]:
    """Each method against ``reference`` per task, over the seeds both ran, on the kept models' dev predictions."""
    out = []
    ref = table1.get(reference, {})
    for label, tasks in table1.items():
        if label in (reference, "teacher"):
            continue
        for task, rs in sorted(tasks.items()):
            mine = {r.seed: r for r in rs}
            theirs = {r.seed: r for r in ref.get(task, [])}
            seeds = sorted(set(mine) & set(theirs))
            a = [_predictions(mine[s]) for s in seeds]
            b = [_predictions(theirs[s]) for s in seeds]
            if not seeds or any(x is None for x in a + b):
                continue
            split, metric, _ = rs[0].primary()
            gold = np.asarray(a[0][split]["gold"])
            pa = np.asarray([x[split]["pred"] for x in a])
            pb = np.asarray([x[split]["pred"] for x in b])
            test = paired_test(pa, pb, gold, lambda p, g, f=METRICS[metric]: f(p, g), n_resamples=resamples)
            out.append({"method": label, "reference": reference, "task": task, "split": split, "metric": metric,
                        **test, "seeds": seeds})  # fmt: skip
    return out


def _predictions(r: RunRecord) -> dict | None:
    f = r.path / "dev_predictions.json"
    return json.loads(f.read_text()) if f.is_file() else None


def temperature_sweep(runs: list[RunRecord]) -> dict[str, dict[str, dict[float, list[RunRecord]]]]:
    """task -> method -> temperature -> runs, for methods run at two or more temperatures on a
    classification task."""
    grid: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in runs:
        if r.kind == "distill" and not get_task(r.task).is_regression:
            grid[r.task][r.label][r.temperature].append(r)
    return {
        task: {m: dict(sorted(ts.items())) for m, ts in methods.items() if len(ts) > 1}
        for task, methods in sorted(grid.items())
        if any(len(ts) > 1 for ts in methods.values())
    }


def curves(runs: list[RunRecord]) -> dict[str, list[dict]]:
    """label -> per seed, the (epoch, train loss, held-out loss) of each evaluation that recorded both."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        pts = [
            (e["epoch"], e["train_loss"], e["val_loss"]["loss"])
            for e in r.metrics.get("evals", [])
            if e.get("train_loss") is not None and e.get("val_loss")
        ]
        if pts:
            out[r.label].append({"seed": r.seed, "run": str(r.path), "points": pts})
    return {k: out[k] for k in _order(out)}


def layer_weights(r: RunRecord) -> dict[str, list[float]]:
    """The last logged learned per-layer weights of a run: term -> weight of each student layer."""
    last: dict[str, float] = {}
    for rec in read_log(r.path):
        last.update({k: v for k, v in rec.items() if k.startswith("layer_weight/")})
    terms: dict[str, dict[int, float]] = defaultdict(dict)
    for k, v in last.items():
        _, term, layer = k.split("/")
        terms[term][int(layer)] = v
    return {t: [ws[i] for i in sorted(ws)] for t, ws in sorted(terms.items())}


# --------------------------------------------------------------------------------------------
# the page: a list of blocks rendered twice, as HTML and as Markdown


class Page:
    def __init__(self, out: Path):
        self.out = out
        self.blocks: list[tuple] = []
        (out / "img").mkdir(parents=True, exist_ok=True)
        (out / "configs").mkdir(parents=True, exist_ok=True)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", headers, [[str(c) for c in row] for row in rows]))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def figure(self, fig, name: str, caption: str) -> None:
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig.tight_layout()
        fig.savefig(self.out / "img" / name, dpi=110)
        plt.close(fig)
        self.blocks.append(("img", f"img/{name}", caption))

    def markdown(self) -> str:
        parts = []
        for b in self.blocks:
            if b[0] == "h":
                parts.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                parts.append(b[1])
            elif b[0] == "table":
                parts.append(table(b[1], [[c.replace("|", "\\|") for c in row] for row in b[2]], markdown=True))
            elif b[0] == "code":
                parts.append("```\n" + b[1] + "\n```")
            elif b[0] == "img":
                parts.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
        return "\n\n".join(parts) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b[0] == "code":
                body.append(f"<pre>{e(b[1])}</pre>")
            elif b[0] == "img":
                body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}</figcaption></figure>')
        style = (
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}"
            "pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}figcaption{font-size:13px;color:#555}"
            "code{background:#f3f3f3;padding:0 3px}"
        )
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{MARKER}">'
            f"<title>{e(title)}</title><style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def _inline(text: str) -> str:
    """Markdown's inline code (`x`) and links ([a](b)) in an otherwise escaped HTML text."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)


# --------------------------------------------------------------------------------------------
# the report


def write_report(
    paths: list[str],
    out: str,
    bench_files: list[str] | None = None,
    reference: str = "multilevel",
    curves_task: str | None = None,
    resamples: int = 2000,
    title: str = "retort: distillation evidence",
    force: bool = False,
    note: str = "",
) -> dict:
    """Write the page (see the module docstring) into ``out``; returns report.json's content."""
    dest = Path(out)
    if dest.exists() and any(dest.iterdir()) and not force and not _is_report(dest):
        raise RetortError(f"--out {dest}: a non-empty folder that holds no earlier report; give --force to replace it")
    found = find_runs(paths)
    runs = [r for r in (load_run(p) for p in found) if r is not None]
    if not runs:
        raise RetortError(f"no finished run with a dev score under {', '.join(paths)}")
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
    bench = read_bench(bench_files or [])
    _attach_bench(runs, bench)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        data = _build(Page(tmp), runs, bench, reference, curves_task, resamples, title, note)
        publish_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return data


def _is_report(folder: Path) -> bool:
    f = folder / "index.html"
    return f.is_file() and MARKER in f.read_text(errors="replace")[:400]


def _build(page: Page, runs, bench, reference, curves_task, resamples, title, note) -> dict:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from retort.machine import cpu_label  # noqa: PLC0415

    data: dict = {"title": title, "note": note, "runs": len(runs), "reference": reference}
    dev_selected = [r for r in runs if r.selection == "dev"]
    page.h(1, title)
    if note:
        page.p(note)
    page.p(
        f"{len(runs)} runs, written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {cpu_label()}. "
        f"Scores are x100, mean ± sample standard deviation over seeds. "
        + (
            f"{len(runs) - len(dev_selected)} runs kept their epoch on held-out training rows (`--val-split`) and "
            f"scored the GLUE dev set once; {len(dev_selected)} "
            f"{'was' if len(dev_selected) == 1 else 'were'} selected on dev (their scores are optimistic: marked † "
            "below)."
            if dev_selected
            else "Every run kept its epoch on held-out training rows (`--val-split`) and scored the GLUE dev set once."
        )
    )

    # Table 1
    t1 = method_table(runs)
    cols = _columns(runs)
    page.h(2, "Table 1: methods")
    headers = ["method", "seeds"] + [f"{t} {m}" + ("" if s == "dev" else f" ({s})") for t, c in cols.items()
                                     for s, m in c] + ["average", "ms/sample b1"]  # fmt: skip
    rows, data["table1"] = [], {}
    for label, tasks in t1.items():
        row = [label, "/".join(sorted({str(len(rs)) for rs in tasks.values()}))]
        rec = {}
        for task, c in cols.items():
            rs = tasks.get(task, [])
            dagger = "†" if any(r.selection == "dev" for r in rs) else ""
            for s, m in c:
                vals = [r.dev[s][m] for r in rs if s in r.dev]
                row.append(_pm(vals) + dagger if vals else "-")
                rec[f"{task}/{s}/{m}"] = vals
        per_seed = defaultdict(list)  # seed -> task scores
        for rs in tasks.values():
            for r in rs:
                per_seed[r.seed].append(r.score())
        full = [float(np.mean(v)) for v in per_seed.values() if len(v) == len(cols)]
        row.append(_pm(full) if full else "-")
        ms = [r.bench["ms_b1"] for rs in tasks.values() for r in rs if r.bench]
        row.append(f"{np.mean(ms):.2f}" if ms else "-")
        rows.append(row)
        data["table1"][label] = {"scores": rec, "average": full, "ms_b1": ms}
    page.table(headers, rows)
    page.p(
        "The average is over tasks of each seed's GLUE task score (mean of a task's metrics), for seeds that ran "
        "every task. ms/sample: PyTorch fp32 at batch 1, from the bench files given ("
        + (", ".join(sorted({f"{b['cpu']}, {b['threads']} threads" for b in bench})) or "none")
        + ")."
    )

    teacher = t1.get("teacher", {})
    if teacher:
        page.h(3, "Share of the teacher (primary metric)")
        share_rows, data["share"] = [], {}
        tasks_t = [t for t in cols if t in teacher]
        for label, tasks in t1.items():
            if label == "teacher":
                continue
            row = [label]
            for task in tasks_t:
                _, metric, _ = teacher[task][0].primary()
                t_val = np.mean([r.primary()[2] for r in teacher[task]])
                if t_val <= 0:  # a teacher at or below chance (MCC 0): no share to speak of
                    row.append("n/a (teacher ≤ 0)")
                    data["share"].setdefault(label, {})[task] = None
                    continue
                vals = [r.primary()[2] / t_val for r in tasks.get(task, [])]
                row.append(f"{100 * np.mean(vals):.1f}%" if vals else "-")
                data["share"].setdefault(label, {})[task] = vals
            share_rows.append(row)
        page.table(["method", *(f"{t} {teacher[t][0].primary()[1]}" for t in tasks_t)], share_rows)

    # paired tests
    tests = paired_tests(t1, reference, resamples)
    data["paired_tests"] = tests
    if tests:
        page.h(2, f"Paired tests against {reference}")
        page.p("Per task, over the seeds both methods ran and every dev example: the mean over seeds of the "
               "primary metric's difference (method − reference, x100), a 95% percentile bootstrap interval over "
               f"dev examples and the two-sided permutation p-value ({resamples} resamples; scipy.stats).")  # fmt: skip
        page.table(["method", "task", "metric", "seeds", "difference", "95% interval", "p"],
                   [[t["method"], t["task"], t["metric"], len(t["seeds"]), f"{100 * t['difference']:+.2f}",
                     f"[{100 * t['ci95'][0]:+.2f}, {100 * t['ci95'][1]:+.2f}]", f"{t['p_value']:.4f}"]
                    for t in tests])  # fmt: skip

    # Figure 3: stability
    students = {k: v for k, v in t1.items() if k != "teacher"}
    if students and cols:
        fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4), squeeze=False)
        for ax, task in zip(axes[0], cols):
            labels = [k for k in students if task in students[k]]
            means, stds = [], []
            for k in labels:
                m, s = _mean_std([r.primary()[2] for r in students[k][task]])
                means.append(m)
                stds.append(s)
            ax.bar(range(len(labels)), means, yerr=stds, capsize=3, color="C0")
            if task in teacher:
                ax.axhline(np.mean([r.primary()[2] for r in teacher[task]]), color="C3", linestyle="--", linewidth=1)
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{task} ({students[labels[0]][task][0].primary()[1]})" if labels else task, fontsize=9)
            if means:
                lo = min(m - s for m, s in zip(means, stds))
                ax.set_ylim(max(0.0, lo - 0.05), None)
        page.h(2, "Figure 3: stability across tasks")
        page.figure(fig, "stability.png", "Dev score per task, mean over seeds with one standard deviation as error "
                                          "bars; dashed: the teacher.")  # fmt: skip

    # Figure 2: temperature
    sweep = temperature_sweep(runs)
    data["temperature"] = {
        t: {m: {str(T): [r.primary()[2] for r in rs] for T, rs in ts.items()} for m, ts in ms.items()}
        for t, ms in sweep.items()
    }
    if sweep:
        page.h(2, "Figure 2: the soft term's temperature")
        page.p("Classification tasks only: a regression task's teacher gives one number, nothing to soften.")
        rows = []
        for task, methods in sweep.items():
            for m, ts in methods.items():
                for T, rs in ts.items():
                    split, primary, _ = rs[0].primary()
                    others = [k for k in rs[0].dev[split] if k not in ("score", primary)]
                    ms = [r.bench["ms_b1"] for r in rs if r.bench]
                    rows.append([task, m, f"{T:g}", len(rs), f"{primary} {_pm([r.dev[split][primary] for r in rs])}",
                                 "; ".join(f"{k} {_pm([r.dev[split][k] for r in rs])}" for k in others) or "-",
                                 f"{np.mean(ms):.2f}" if ms else "-"])  # fmt: skip
        page.table(["task", "method", "T", "seeds", "primary", "other metrics", "ms b1"], rows)
        timed = any(r.bench for ms in sweep.values() for ts in ms.values() for rs in ts.values() for r in rs)
        n = len(sweep) + (1 if timed else 0)
        fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
        for ax, (task, methods) in zip(axes[0], sweep.items()):
            for i, (m, ts) in enumerate(methods.items()):
                xs = list(ts)
                stats = [_mean_std([r.primary()[2] for r in ts[T]]) for T in xs]
                ax.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], label=m, capsize=3, marker="o",
                            color=f"C{i}")  # fmt: skip
            ax.set_xlabel("temperature T")
            ax.set_ylabel(next(iter(next(iter(methods.values())).values()))[0].primary()[1])
            ax.set_title(task)
            ax.legend(fontsize=8)
        if timed:
            ax = axes[0][-1]
            for i, (key, rs_all) in enumerate(
                ((f"{task} {m}", ts) for task, ms in sweep.items() for m, ts in ms.items())
            ):
                pts = [(T, np.mean([r.bench["ms_b1"] for r in rs if r.bench])) for T, rs in rs_all.items()
                       if any(r.bench for r in rs)]  # fmt: skip
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=key, color=f"C{i % 10}")
            ax.set_xlabel("temperature T")
            ax.set_ylabel("ms/sample, batch 1")
            ax.set_ylim(0, None)
            ax.set_title("latency against T")
            ax.legend(fontsize=7)
        page.figure(
            fig,
            "temperature.png",
            "Dev score against the soft term's temperature (mean and standard "
            "deviation over seeds)" + ("; latency at batch 1" if timed else ""),
        )

    # Figure 4: latency and memory
    if bench:
        page.h(2, "Figure 4: latency and memory")
        rows = []
        for b in bench:
            ms1 = {bs: v for (bs, _t), v in b["ms"].items()}
            rows.append([b["model"], b["backend"], b["quantization"], b["threads"],
                         "; ".join(f"b{bs} {v:.2f}" for bs, v in sorted(ms1.items())),
                         f"{b['peak_rss_mb']:.0f}" if b["peak_rss_mb"] else "-",
                         f"{b['file_mb']:.1f}" if b["file_mb"] else "-", b["cpu"]])  # fmt: skip
        page.table(["model", "backend", "quantization", "threads", "ms/sample (p50)", "peak MiB", "file MiB", "CPU"],
                   rows)  # fmt: skip
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(bench) + 2))
        names = [f"{Path(b['model']).parent.name}/{Path(b['model']).name} {b['backend']}" for b in bench]
        b1 = [next((v for (bs, _t), v in b["ms"].items() if bs == 1), float("nan")) for b in bench]
        axes[0].barh(range(len(bench)), b1, color="C0")
        axes[0].set_yticks(range(len(bench)), names, fontsize=7)
        axes[0].set_xlabel("ms/sample, batch 1")
        axes[1].barh(range(len(bench)), [b["peak_rss_mb"] or 0 for b in bench], color="C1")
        axes[1].set_yticks(range(len(bench)), [""] * len(bench))
        axes[1].set_xlabel("peak resident memory, MiB")
        page.figure(fig, "latency_memory.png", "Latency at batch 1 and the bench process's peak memory.")
        data["bench"] = [{**b, "ms": {f"b{k[0]}_t{k[1]}": v for k, v in b["ms"].items()}} for b in bench]

    # Figure 5: loss curves
    with_curves = [r for r in runs if r.kind == "distill" and r.temperature == DEFAULT_T]
    by_task = {t: curves([r for r in with_curves if r.task == t]) for t in sorted({r.task for r in with_curves})}
    task = curves_task or max(by_task, key=lambda t: len(by_task[t]), default=None)
    cv = by_task.get(task, {})
    data["curves"] = {"task": task, "methods": cv}
    if cv:
        page.h(2, f"Figure 5: training and validation loss ({task})")
        page.p(
            "Each method's own objective: its mean over the training rows since the previous evaluation "
            "(dropout on) and over the held-out `--val-split` rows at the evaluation (dropout off). Objectives "
            "differ between methods, so compare the shapes, not the levels. Thin lines: seeds."
        )
        n = len(cv)
        fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2), squeeze=False)
        for ax, (label, seeds) in zip(axes[0], cv.items()):
            for s in seeds:
                ep, tr, va = zip(*s["points"])
                ax.plot(ep, tr, color="C0", linewidth=1, marker=".", label="train" if s is seeds[0] else None)
                ax.plot(ep, va, color="C1", linewidth=1, marker=".", label="validation" if s is seeds[0] else None)
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("objective")
        page.figure(fig, "loss_curves.png", f"Training and validation loss per epoch on {task}, every method.")

    # per-layer weights
    learned = [(r, layer_weights(r)) for r in runs if r.kind == "distill" and r.temperature == DEFAULT_T]
    learned = [(r, w) for r, w in learned if w and any(abs(x - 1.0) > 1e-6 for ws in w.values() for x in ws)]
    if learned:
        page.h(2, "Per-layer weights (learned)")
        page.p("The last logged weight of each student layer in each term (they sum to the number of layers; "
               "uniform is 1.0), mean over seeds.")  # fmt: skip
        groups = defaultdict(list)
        for r, w in learned:
            groups[(r.label, r.task)].append(w)
        rows, data["layer_weights"] = [], {}
        for (label, task), ws in sorted(groups.items()):
            for term in sorted(ws[0]):
                arr = np.asarray([w[term] for w in ws if term in w and len(w[term]) == len(ws[0][term])])
                rows.append([label, task, term, len(arr), " ".join(f"{x:.3f}" for x in arr.mean(0))])
                data["layer_weights"][f"{label}/{task}/{term}"] = arr.mean(0).tolist()
        page.table(["method", "task", "term", "seeds", "weight per student layer (0: embeddings)"], rows)

    # runs
    page.h(2, "Runs")
    page.p("Every run on this page; its config is in `configs/` (remake a run with `retort KIND --config FILE`).")
    rows = []
    for i, r in enumerate(sorted(runs, key=lambda r: (r.task, _order([r.label]), r.label, r.temperature, r.seed))):
        name = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{i:03d}-{r.task}-{r.label}-T{r.temperature:g}-s{r.seed}") + ".yaml"
        (page.out / "configs" / name).write_text(yaml.safe_dump(r.config, sort_keys=False))
        split, metric, value = r.primary()
        rows.append([str(r.path), r.task, r.label, r.seed, f"{r.temperature:g}",
                     "held-out rows, dev once" if r.selection == "val" else "dev-selected †",
                     f"{split} {metric} {100 * value:.2f}", f"[config](configs/{name})", f"`{r.command}`"])  # fmt: skip
    page.table(["run", "task", "method", "seed", "T", "selection", "score", "config", "command"], rows)
    data["run_list"] = [{"path": str(r.path), "task": r.task, "label": r.label, "seed": r.seed, "T": r.temperature,
                         "selection": r.selection, "dev": r.dev, "command": r.command} for r in runs]  # fmt: skip

    (page.out / "report.md").write_text(page.markdown())
    (page.out / "index.html").write_text(page.html(title))
    (page.out / "report.json").write_text(json.dumps(data, indent=2, default=_json_default))
    return data


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)
