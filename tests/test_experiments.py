"""The experiment scripts' small pure helpers (run folder names, transfer-set variants)."""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import compare_methods  # noqa: E402
import numpy as np  # noqa: E402
import ratio_bootstrap  # noqa: E402
import transfer_scores  # noqa: E402
from harness import transfer_suffix  # noqa: E402


def test_transfer_run_suffixes():
    assert transfer_suffix(None) == ""
    assert transfer_suffix("MNLI:15000") == "-mnli15k"  # the linear_quality runs' folders
    assert transfer_suffix("MNLI:1500") == "-mnli1500"
    assert transfer_suffix("data/pairs.tsv") == "-pairs"
    assert transfer_suffix("SST-2:20000") == "-sst-2-20k"
    assert transfer_suffix("aug:CoLA:20000") == "-aug-cola20k"


def test_compare_methods_transfer_variants():
    args = Namespace(transfer_for=["CoLA=SST-2:20000", "STS-B=MNLI:15000"])
    assert compare_methods.run_name(args, "CoLA", "multilevel+transfer") == (
        "multilevel+sst-2-20k",
        ["--transfer", "SST-2:20000"],
    )
    assert compare_methods.run_name(args, "STS-B", "kd+aug") == ("kd+mnli15k", ["--transfer", "MNLI:15000"])
    assert compare_methods.run_name(args, "SST-2", "multilevel+transfer") == ("multilevel", [])  # reuses the plain run
    assert compare_methods.run_name(args, "CoLA", "kd") == ("kd", [])


def test_second_cycle_keeps_the_best_epoch_of_both():
    import linear_quality

    first = {"pearson": 0.77, "spearman": 0.78, "per_epoch_pearson": [0.7, 0.77], "train_min": 10.0, "threads": 1}
    then = {"pearson": 0.76, "spearman": 0.79, "per_epoch_pearson": [0.75, 0.76], "train_min": 5.0, "threads": 2}
    s = linear_quality.continued([first, then])
    assert (s["pearson"], s["spearman"], s["best_cycle"]) == (0.77, 0.78, 1)
    assert s["per_epoch_pearson"] == [0.7, 0.77, 0.75, 0.76] and s["train_min"] == 15.0
    s = linear_quality.continued([first, then, {**then, "pearson": 0.8, "per_epoch_pearson": [0.8]}])
    assert (s["pearson"], s["best_cycle"], len(s["per_epoch_pearson"])) == (0.8, 3, 5)


def test_transfer_scores_describe():
    d = transfer_scores.describe(np.array([-0.2, 0.5, 1.0, 2.5, 4.9, 5.3]))
    assert d["n"] == 6 and d["share_per_unit"] == [2 / 6, 1 / 6, 1 / 6, 0, 2 / 6]  # clipped into 0..5
    assert abs(d["mean"] - 14.0 / 6) < 1e-12 and d["quantiles"]["0.5"] == 1.75


def test_ratio_bootstrap_is_paired():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=300)
    ref = gold + rng.normal(scale=0.5, size=300)
    same = ratio_bootstrap.ratio_bootstrap(ref, ref.copy(), gold, 200, bar=0.95)
    assert same["ratio"] == 1.0 and same["ci95"] == [1.0, 1.0] and same["share_at_or_above_bar"] == 1.0
    worse = ratio_bootstrap.ratio_bootstrap(ref, gold + rng.normal(scale=1.5, size=300), gold, 200, bar=0.95)
    assert worse["ci95"][0] <= worse["ratio"] <= worse["ci95"][1] < 0.95 and worse["share_at_or_above_bar"] == 0.0


def test_frontier_pareto_points():
    import frontier

    points = [(10.0, 0.85), (5.0, 0.80), (6.0, 0.78), (2.0, 0.70), (2.0, 0.65), (5.0, 0.80)]
    # (6, 0.78) is beaten by (5, 0.80); (2, 0.65) by (2, 0.70); equal twins both stay
    assert frontier.pareto(points) == [True, True, False, True, False, True]


def test_paper_status_counts_jobs_and_prices_the_rest_from_finished_ones(tmp_path, glue_dir, capsys):
    """``paper.py --status``: done per part; a pending job at its task and method's finished wall time (all
    stages), else its task's, else any student's; the teachers apart. Nothing is trained or written."""
    import json

    import paper

    out = tmp_path / "out"
    for folder, seconds in [("teachers/RTE", 300.0), ("runs/RTE/kd-s1", 600.0), ("runs/RTE/tinybert-s1", 100.0),
                            ("runs/RTE/tinybert-s1-intermediate", 200.0), ("runs/RTE/kd-T1-s1", 60.0),
                            ("runs/RTE/tinybert-s2-intermediate", 250.0)]:  # fmt: skip
        (out / folder).mkdir(parents=True)
        (out / folder / "metrics.json").write_text(json.dumps({"wall_seconds": seconds}))
    a = paper.parse_args(["--glue-dir", str(glue_dir), "--out", str(out), "--tasks", "RTE", "--methods", "kd",
                          "tinybert", "multilevel", "--seeds", "1", "2", "--variants", "--sweep-tasks", "RTE",
                          "--sweep-methods", "kd", "--temperatures", "1", "2", "--workers", "2"])  # fmt: skip
    rec = paper.status(paper.Paper(a))
    assert rec["parts"] == {"teachers": [1, 1], "method table": [2, 6], "variants": [0, 0], "sweep": [1, 2]}
    # kd-s2 and kd-T1-s2 at kd's median (60 and 600: 330), tinybert-s2 at 300 (both stages) less its finished
    # first stage's 250, multilevel x2 at RTE's students' median (60, 300, 600: 300)
    assert rec["rest_seconds"] == pytest.approx(330 + 330 + 50 + 2 * 300)
    assert "method table 2 of 6" in capsys.readouterr().out and sorted(p.name for p in out.iterdir()) == [
        "runs", "teachers"]  # fmt: skip
    # a task none of whose jobs finished (MRPC), its teacher not done either: kd per byte of RTE's text, times MRPC's
    from paper_status import text_bytes

    a = paper.parse_args(["--glue-dir", str(glue_dir), "--out", str(out), "--tasks", "RTE", "MRPC", "--methods", "kd",
                          "--seeds", "1", "--variants", "--sweep-tasks", "RTE", "--temperatures", "2"])  # fmt: skip
    p = paper.Paper(a)
    want = 600.0 / text_bytes(str(glue_dir), "RTE", p.rows("RTE")) * text_bytes(str(glue_dir), "MRPC", p.rows("MRPC"))
    assert paper.status(p)["rest_seconds"] == pytest.approx(want + 300.0)  # and MRPC's teacher at RTE's
    # every teacher done: a task's cost is its teacher's seconds per row and epoch (its text lengths) times the rows
    for task, rows in (("RTE", 100), ("MRPC", 50)):
        (out / "teachers" / task).mkdir(parents=True, exist_ok=True)
        (out / "teachers" / task / "metrics.json").write_text(json.dumps({"wall_seconds": 300.0, "epochs": 3,
                                                                          "train_examples": rows}))  # fmt: skip
    want = 600.0 / (1.0 * p.rows("RTE")) * (2.0 * p.rows("MRPC"))
    assert paper.status(p)["rest_seconds"] == pytest.approx(want)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--glue-dir", "NOPE"], "--glue-dir"), (["--workers", "0"], "--workers 0"),
     (["--methods", "kd", "bogus"], "--methods bogus"), (["--tasks", "XYZ"], "unknown task"),
     (["--temperatures", "0"], "--temperatures"), (["--variants", "multilevel-x"], "--variants")],
)  # fmt: skip
def test_paper_refuses_bad_options_before_any_run(tmp_path, glue_dir, args, needle):
    """One line, exit 2, nothing written: not a traceback from the first training command."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "experiments" / "paper.py"),
           "--glue-dir", str(glue_dir), "--tasks", "RTE", "--sweep-tasks", "RTE", "--variant-tasks", "RTE",
           "--out", str(tmp_path / "out"), *[str(tmp_path / a) if a == "NOPE" else a for a in args]]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], done.stderr[-2000:]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--teachers", "NOPE"], "--teachers"), (["--shapes", "4y3"], "--shapes 4y3"),
     (["--longer", "RTE:4x256:8"], "--longer"), (["--rounds", "0"], "--rounds 0")],
)  # fmt: skip
def test_frontier_refuses_bad_options_before_any_run(tmp_path, glue_dir, args, needle):
    import subprocess

    teachers = tmp_path / "teachers"
    (teachers / "MRPC" / "model").mkdir(parents=True)
    (teachers / "MRPC" / "model" / "config.json").write_text("{}")
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "experiments" / "frontier.py"),
           "--teachers", str(teachers), "--glue-dir", str(glue_dir), "--tasks", "MRPC", "--out", str(tmp_path / "out"),
           *[str(tmp_path / a) if a == "NOPE" else a for a in args]]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], done.stderr[-2000:]
    assert not (tmp_path / "out").exists()


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
MODULES = ("harness", "keep", "paper_steps", "paper_status")  # imported by scripts, not scripts themselves
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if p.stem not in MODULES)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_imports_and_shows_help(script, capsys):
    """Every experiment script imports without its optional packages (textbrewer, openvino, onnxscript:
    imported only when they run) and its parser builds: ``--help`` exits 0 and names the options."""
    import importlib

    module = importlib.import_module(script)
    assert module.__doc__ and module.main.__doc__
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert "--" in capsys.readouterr().out


def test_frontier_refuses_a_task_it_cannot_score(tmp_path, glue_dir):
    """A task outside the frontier's scores (QQP) is refused before any run, not after training."""
    import subprocess

    cmd = [sys.executable, str(EXPERIMENTS / "frontier.py"), "--teachers", str(tmp_path), "--glue-dir", str(glue_dir),
           "--tasks", "QQP", "--out", str(tmp_path / "o")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--tasks QQP" in lines[0], done.stderr[-2000:]


def test_runs_as_data_keep_their_commands():
    """A run declared as data makes the same retort arguments the scripts wrote by hand, so the
    command recorded in an existing run folder still matches and the run resumes."""
    from harness import Run, _identity, command

    assert command("distill", task="STS-B", epochs=3, lr="2e-4", transfer=None, teacher_forced=True) == [
        "distill", "--task", "STS-B", "--epochs", "3", "--lr", "2e-4", "--teacher-forced"]  # fmt: skip
    run = Run.of("runs/x", "distill", "--set", "a=1", "--set", "b=2", method="kd").also(batch_size=8)
    assert run.args == ("distill", "--set", "a=1", "--set", "b=2", "--method", "kd", "--batch-size", "8")
    by_hand = ["distill", "--method", "kd", "--batch-size", "8", "--set", "b=2", "--set", "a=1"]
    assert _identity(list(run.args)) == _identity(by_hand)


def test_tasks_take_your_own_data(tmp_path, capsys):
    """``--tasks`` takes what retort's ``--data`` takes: the data is read and named before any run, and the
    runs pass it on as ``--data``; data that cannot be read is one line and exit 2."""
    from harness import add, command, distill_command, parser

    rows = ["text,label", *(f"{w} is {'good' if i % 2 else 'bad'} number {i},{'pos' if i % 2 else 'neg'}"
                            for i, w in enumerate(["tea", "coffee", "milk", "soup"] * 10))]  # fmt: skip
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    p = parser("A test.")
    add(p, "tasks", many=["tasks"])
    a = p.parse_args(["--tasks", "MRPC", str(tmp_path / "reviews.csv")])
    assert a.tasks == ["MRPC", "reviews"]
    assert command("distill", task="reviews", epochs=1) == ["distill", "--data", str(tmp_path / "reviews.csv"),
                                                             "--epochs", "1"]  # fmt: skip
    assert command("distill", task="MRPC") == ["distill", "--task", "MRPC"]
    assert distill_command("reviews", "g", "t", "2x32", 1, 1)[1:3] == ["--data", str(tmp_path / "reviews.csv")]
    with pytest.raises(SystemExit) as done:
        p.parse_args(["--tasks", str(tmp_path / "missing.csv")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv: no such file or folder" in err[0], err


def test_the_medium_budget_caps_two_tasks_and_starts_rte_from_mnli(glue_dir, tmp_path, monkeypatch):
    """Every row for CoLA, MRPC, RTE, STS-B; SST-2 and MNLI at most 8000; RTE's teacher from MNLI's."""
    import paper

    a = paper.parse_args(["--budget", "medium", "--glue-dir", str(glue_dir), "--out", str(tmp_path / "p"), "--tasks",
                          "RTE", "--sweep-tasks", "RTE", "--variant-tasks", "RTE"])  # fmt: skip
    p = paper.Paper(a)
    assert p.rows("RTE") == paper.train_rows(str(glue_dir), "RTE")
    monkeypatch.setattr(paper, "train_rows", lambda glue, task: 67349)
    assert p.rows("SST-2") == 8000 and p.rows("CoLA") == 67349
    made = []
    monkeypatch.setattr(paper.Run, "make", lambda run: made.append((run.out.name, run.args)) or run)
    p.teacher("RTE")
    (mnli_name, _), (rte_name, rte_args) = made
    assert (mnli_name, rte_name) == ("MNLI", "RTE") and str(tmp_path / "p" / "teachers" / "MNLI") in str(rte_args)
    # about 12 evaluations a student stage (Figure 5: at least 10 points a run); the small budget: once an epoch
    made.clear()
    p.student("RTE", "kd", 42)
    args = made[-1][1]
    every = int(args[args.index("--eval-every") + 1])
    steps = -(-(p.rows("RTE") - int(0.1 * p.rows("RTE"))) // 16) * 3
    assert steps // every >= 10
    assert (
        paper.Paper(paper.parse_args(["--glue-dir", str(glue_dir), "--out", str(tmp_path / "s")])).every(500, 2) == {}
    )


def test_paper_jobs_finish_the_method_table_task_by_task_before_variants_and_sweep(glue_dir, tmp_path):
    """A sitting that stops early leaves whole tasks to rank; the medium budget sweeps SST-2 only."""
    import paper

    a = paper.parse_args(["--budget", "medium", "--glue-dir", str(glue_dir), "--out", str(tmp_path / "p"),
                          "--tasks", "STS-B", "RTE", "SST-2", "--methods", "kd", "multilevel", "--seeds", "1",
                          "2"])  # fmt: skip
    assert a.sweep_tasks == ["SST-2"] and a.variant_tasks == ["STS-B"]
    names = list(paper.Paper(a).jobs())
    kinds = ["teacher" if n.startswith("teacher/") else "sweep" if "-T" in n else
             "variant" if "multilevel-" in n else "method" for n in names]  # fmt: skip
    # RTE's teacher starts from MNLI's: it comes just before RTE's students, so no worker waits on MNLI's
    assert names.index("teacher/RTE") == names.index("RTE/kd/s1") - 1 and names[0] == "teacher/STS-B"
    del kinds[names.index("teacher/RTE")], names[names.index("teacher/RTE")]
    assert kinds == sorted(kinds, key=["teacher", "method", "variant", "sweep"].index), names
    assert names[2:6] == ["STS-B/kd/s1", "STS-B/multilevel/s1", "STS-B/kd/s2", "STS-B/multilevel/s2"]
    assert {n.split("/")[0] for n, k in zip(names, kinds) if k == "sweep"} == {"SST-2"}
    assert not any(n.startswith("MRPC/") for n in names)
    small = paper.parse_args(["--glue-dir", str(glue_dir), "--out", str(tmp_path / "s")])
    assert small.sweep_tasks == ["MRPC", "RTE", "SST-2"]
