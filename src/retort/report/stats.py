"""The evidence page's numbers, from run records: the method table over seeds, per-seed averages over tasks,
the share of the teacher, paired tests against a reference method, loss curves and learned per-layer
weights (the temperature sweep's grouping is ``records.temperature_sweep``). Nothing here draws or writes;
``report.page`` lays these out."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from retort.evaluation.metrics import METRICS
from retort.evaluation.significance import holm, paired_test, seed_test
from retort.report.figures import read_log
from retort.report.records import DEFAULT_T, WEAK_TEACHER, RunRecord

METHOD_ORDER = ["kd", "distilbert", "tinybert", "minilm", "mobilebert", "multilevel", "dse"]


def order_labels(labels) -> list[str]:
    """The distinct labels in page order: the teacher first, then the methods of ``METHOD_ORDER`` (a variant
    ``method+x`` or ``method@x`` with its method), then the others, alphabetically within each."""

    def key(x: str):
        base = x.split("+")[0].split("@")[0]
        return (x != "teacher", METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), x)

    return sorted(set(labels), key=key)


def mean_std(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def mean_pm(values: list[float]) -> str:
    """mean +- sample standard deviation, as percentages with two decimals ("-" for no value, the mean
    alone for one)."""
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if len(values) > 1 else f"{100 * mean:.2f}"


def task_columns(runs: list[RunRecord]) -> dict[str, list[tuple[str, str]]]:
    """task -> its (split, metric) columns, as the runs report them, tasks in alphabetical order."""
    cols: dict[str, list[tuple[str, str]]] = {}
    for r in runs:
        if r.task not in cols:
            cols[r.task] = [(s, k) for s, res in r.dev.items() for k in res if k != "score"]
    return dict(sorted(cols.items()))


def method_table(runs: list[RunRecord]) -> dict:
    """Table 1: label -> task -> its runs (one per seed), teachers and runs at the default temperature,
    labels in page order."""
    main = [r for r in runs if r.kind == "teacher" or r.temperature == DEFAULT_T]
    cells: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in main:
        cells[r.label][r.task].append(r)
    return {label: dict(cells[label]) for label in order_labels(cells)}


def seed_averages(tasks: dict[str, list[RunRecord]], n_tasks: int) -> list[float]:
    """Per seed that ran all ``n_tasks`` tasks, the mean over tasks of its GLUE task scores."""
    per_seed = defaultdict(list)  # seed -> task scores
    for rs in tasks.values():
        for r in rs:
            per_seed[r.seed].append(r.score())
    return [float(np.mean(v)) for v in per_seed.values() if len(v) == n_tasks]


def teacher_shares(table1: dict, tasks: list[str]) -> dict[str, dict[str, list | None]]:
    """label -> task -> each seed's primary metric as a fraction of the teacher's mean; None where the
    teacher is at or below zero (at chance: no share to speak of)."""
    teacher = table1.get("teacher", {})
    shares: dict[str, dict[str, list | None]] = {}
    for label, runs_of in table1.items():
        if label == "teacher":
            continue
        shares[label] = {}
        for task in tasks:
            t_val = np.mean([r.primary()[2] for r in teacher[task]])
            if t_val <= 0:
                shares[label][task] = None
                continue
            shares[label][task] = [r.primary()[2] / t_val for r in runs_of.get(task, [])]
    return shares


def paired_tests(table1: dict, reference: str, resamples: int, unranked: Sequence[str] = ()) -> list[dict]:
    """Each method against ``reference`` per task, over the seeds both ran: the seed-level test (primary, on
    per-seed scores paired by seed) and, where the runs kept their dev predictions, the example-level view
    (permutation p-value, bootstrap interval); every p-value (t-test, sign-flip, permutation) Holm-corrected over
    every comparison made here.
    Tasks in ``unranked`` (``weak_tasks``) are not tested, so they are not in the correction's family either."""
    out = []
    ref = table1.get(reference, {})
    for label, tasks in table1.items():
        if label in (reference, "teacher"):
            continue
        for task, rs in sorted(tasks.items()):
            if task in unranked:
                continue
            mine = {r.seed: r for r in rs}
            theirs = {r.seed: r for r in ref.get(task, [])}
            seeds = sorted(set(mine) & set(theirs))
            if not seeds:
                continue
            split, metric, _ = rs[0].primary()
            entry = {"method": label, "reference": reference, "task": task, "split": split, "metric": metric,
                     "label": rs[0].primary_label(), "seeds": seeds, "seed_test": None,
                     "example_test": None}  # fmt: skip
            if len(seeds) >= 2:
                entry["seed_test"] = seed_test([mine[x].primary()[2] for x in seeds],
                                               [theirs[x].primary()[2] for x in seeds])  # fmt: skip
            a = [_predictions(mine[x]) for x in seeds]
            b = [_predictions(theirs[x]) for x in seeds]
            if all(x is not None for x in a + b):
                gold = np.asarray(a[0][split]["gold"])
                pa = np.asarray([x[split]["pred"] for x in a])
                pb = np.asarray([x[split]["pred"] for x in b])
                test = paired_test(pa, pb, gold, lambda p, g, f=METRICS[metric]: f(p, g), n_resamples=resamples)
                entry["example_test"] = test
            if entry["seed_test"] or entry["example_test"]:
                out.append(entry)
    corrected = (("seed_test", "t_p", "holm_p", "comparisons"),
                 ("seed_test", "sign_flip_p", "sign_flip_holm_p", "sign_flip_comparisons"),
                 ("example_test", "p_value", "holm_p", "comparisons"))  # fmt: skip
    for kind, key, holm_key, family in corrected:
        tested = [e[kind] for e in out if e[kind] and e[kind][key] is not None]  # an undefined test is not one
        for e in out:
            if e[kind] and e[kind][key] is None:
                e[kind][holm_key] = None
        for t, adjusted in zip(tested, holm([t[key] for t in tested])):
            t[holm_key] = adjusted
            t[family] = len(tested)
    return out


def baselines(table1: dict, cols: dict[str, list[tuple[str, str]]]) -> dict:
    """``{task/split/metric: value or None}`` of the majority-class (regression: mean) baseline the runs of
    Table 1 recorded in their ``metrics.json`` (the same dev labels give the same baseline); {} when no run
    recorded one. ``cols``: ``task_columns``."""
    out, found = {}, False
    for task, c in cols.items():
        runs = [r for tasks in table1.values() for r in tasks.get(task, [])]
        for s, m in c:
            vals = [(r.metrics.get("baseline") or {}).get(s, {}).get(m) for r in runs]
            vals = [v for v in vals if isinstance(v, (int, float))]
            out[f"{task}/{s}/{m}"] = float(vals[0]) if vals else None
            found = found or bool(vals)
    return out if found else {}


def task_baselines(table1: dict, cols: dict[str, list[tuple[str, str]]]) -> dict[str, float | None]:
    """Task -> the baseline (``baselines``) of the metric its runs rank by (``RunRecord.primary``)."""
    base = baselines(table1, cols)
    first = {t: rs[0] for tasks in table1.values() for t, rs in tasks.items() if rs}
    return {t: base.get("/".join((t, *r.primary()[:2]))) for t, r in first.items()}


def weak_tasks(table1: dict, baseline: dict) -> list[str]:
    """Tasks whose teacher's primary metric (mean over its runs) is within ``WEAK_TEACHER`` of the majority-class
    (regression: mean) baseline: they cannot rank methods, so the tests and the average leave them out.
    ``baseline``: ``{task/split/metric: value}`` (``baselines``)."""
    out = []
    for task, rs in sorted(table1.get("teacher", {}).items()):
        split, metric, _ = rs[0].primary()
        base = baseline.get(f"{task}/{split}/{metric}")
        if base is not None and float(np.mean([r.primary()[2] for r in rs])) - base < WEAK_TEACHER:
            out.append(task)
    return out


def caveats(table1: dict, baseline: dict) -> list[str]:
    """What the data say the page cannot show, in sentences: a teacher within ``WEAK_TEACHER`` of the
    majority-class (or mean) baseline, a run that predicts one class for every dev example, a run at or below
    the baseline (a collapsed seed). ``baseline``: ``{task/split/metric: value}`` as Table 1 shows it."""
    out, weak = [], weak_tasks(table1, baseline)
    for task, rs in sorted(table1.get("teacher", {}).items()):
        split, metric, _ = rs[0].primary()
        base = baseline.get(f"{task}/{split}/{metric}")
        mean = float(np.mean([r.primary()[2] for r in rs]))
        if task in weak:
            out.append(f"{task}: the teacher's {metric} {mean:.4f} is within {100 * WEAK_TEACHER:.0f} points of the "
                       f"majority baseline's {base:.4f}; no method can be ranked on {task}, so the tests and the "
                       "average leave it out.")  # fmt: skip
            continue
        for other in rs[0].dev.get(split, {}):  # MRPC: ranked by accuracy, its F1 near a constant's
            other_base = baseline.get(f"{task}/{split}/{other}")
            if other in (metric, "score") or other_base is None:
                continue
            other_mean = float(np.mean([r.dev[split][other] for r in rs]))
            if other_mean - other_base < WEAK_TEACHER:
                out.append(f"{task}: the teacher's {other} {other_mean:.4f} is within {100 * WEAK_TEACHER:.0f} points "
                           f"of the majority baseline's {other_base:.4f} (its {metric} is not); {task} is ranked by "
                           f"{metric}, and its {other} cannot tell methods apart.")  # fmt: skip
    collapsed: dict[tuple[str, str, float], list[str]] = defaultdict(list)  # (task, metric, baseline) -> runs
    for label, tasks in table1.items():
        if label == "teacher":
            continue
        for task, rs in sorted(tasks.items()):
            for r in sorted(rs, key=lambda r: r.seed):
                split, metric, value = r.primary()
                base = baseline.get(f"{task}/{split}/{metric}")
                pred = (_predictions(r) or {}).get(split, {}).get("pred")
                if pred is not None and len(pred) > 1 and len({json.dumps(p) for p in pred}) == 1:
                    out.append(f"{task}: {label} seed {r.seed} predicts the same for every dev example ({metric} "
                               f"{value:.4f}).")  # fmt: skip
                elif base is not None and value <= base:
                    collapsed[(task, metric, base)].append(f"{label} seed {r.seed} ({value:.4f})")
    for (task, metric, base), names in sorted(collapsed.items()):  # one sentence a task: a list, not a wall
        out.append(f"{task}: {len(names)} run(s) collapsed, their {metric} at or below the majority baseline's "
                   f"{base:.4f}: {', '.join(names)}.")  # fmt: skip
    return out


def _predictions(r: RunRecord) -> dict | None:
    """The kept model's per-example dev predictions (``dev_predictions.json``), if the run wrote them."""
    f = r.path / "dev_predictions.json"
    return json.loads(f.read_text()) if f.is_file() else None


def curves(runs: list[RunRecord]) -> dict[str, list[dict]]:
    """label -> per seed, the (step, train loss, held-out loss) of each evaluation that recorded both."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        pts = [
            (e["step"], e["train_loss"], e["val_loss"]["loss"])
            for e in r.metrics.get("evals", [])
            if e.get("train_loss") is not None and e.get("val_loss")
        ]
        if pts:
            out[r.label].append({"seed": r.seed, "run": str(r.path), "points": pts})
    return {k: out[k] for k in order_labels(out)}


def curves_of_one_task(runs: list[RunRecord], task: str | None) -> tuple[str | None, dict[str, list[dict]]]:
    """The task of the loss-curve figure (``task``, else the one with the most methods) and its ``curves``
    of distilled runs at the default temperature (empty when it has none)."""
    with_curves = [r for r in runs if r.kind == "distill" and r.temperature == DEFAULT_T]
    by_task = {t: curves([r for r in with_curves if r.task == t]) for t in sorted({r.task for r in with_curves})}
    task = task or max(by_task, key=lambda t: len(by_task[t]), default=None)
    return task, by_task.get(task, {})


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


def learned_layer_weights(runs: list[RunRecord]) -> list[tuple[str, str, str, np.ndarray]]:
    """(label, task, term, weights of each seed as rows) for distilled runs at the default temperature whose
    per-layer weights moved away from uniform, sorted by label and task; seeds whose layer count differs
    from the first seed's are left out."""
    learned = [(r, layer_weights(r)) for r in runs if r.kind == "distill" and r.temperature == DEFAULT_T]
    learned = [(r, w) for r, w in learned if w and any(abs(x - 1.0) > 1e-6 for ws in w.values() for x in ws)]
    groups = defaultdict(list)
    for r, w in learned:
        groups[(r.label, r.task)].append(w)
    out = []
    for (label, task), ws in sorted(groups.items()):
        for term in sorted(ws[0]):
            arr = np.asarray([w[term] for w in ws if term in w and len(w[term]) == len(ws[0][term])])
            out.append((label, task, term, arr))
    return out
