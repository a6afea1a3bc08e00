"""``retort report`` on a user's own folder of runs (issue 32): the plain summary lists every run (teachers of
two tasks, students, two ``retort dse train`` bi-encoders, a stage, a run scored on held-out rows only), each
with its task, kind, method, the split it was scored on, its baselines, speed and origin, and where the
method comparison shows it or why not; the comparison keeps a row per task's teacher, no temperature for
teachers, a share column for every task and no "best dev" over held-out rows. Run folders written by hand,
as the trainer writes them (training/loop.py ``_final_metrics``): no model is trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retort.cli import main
from retort.errors import RetortError
from retort.report.tables import summarize_runs

BASELINE = {"RTE": {"accuracy": 0.527}, "MRPC": {"accuracy": 0.684, "f1": 0.812}, "SST-2": {"accuracy": 0.509}}


def write_run(root: Path, name: str, task: str, kind: str = "distill", method: str = "kd", seed: int = 1,
              temperature: float = 2.0, scored: str = "once", quality: float = 0.8, stage: str = "all",
              dse: bool = False, teacher: str | None = None) -> Path:  # fmt: skip
    """A finished run folder: ``metrics.json`` with the fields training writes (``scored``: "once" for a run kept
    on --val-split rows and scored on dev once, "dev" for a dev-selected one, "val" for held-out rows only) and
    its ``config.yaml``. A teacher's config carries the objective's default temperature, as real ones do."""
    path = root / name
    path.mkdir(parents=True)
    scores = {m: quality - 0.01 * i for i, m in enumerate(BASELINE[task])}
    scores["score"] = sum(scores.values()) / len(scores)
    base = dict(BASELINE[task])
    cfg = {"task": task, "kind": kind, "seed": seed, "tag": None, "base": "bert-base-uncased",
           "teacher": teacher or (None if kind == "teacher" else f"teachers/{task}/model"),
           "student": None if kind == "teacher" else "3x384", "dse": dse, "general": False, "val_split": 40,
           "objective": {"method": method, "temperature": temperature, "stage": stage}}  # fmt: skip
    best = {"dev": scores} if scored == "dev" else {"val": {**scores, "accuracy": quality + 0.02}}
    metrics = {"task": task, "kind": kind, "primary_metric": "accuracy", "best_step": 30, "best": best,
               "baseline": {"val": base, "dev": base}, "evals": [{"step": 30, "epoch": 1, "results": best}],
               "wall_seconds": 120.0, "train_samples_per_s": 40.0, "processes": 1, "config": cfg}  # fmt: skip
    if scored == "once":
        metrics["dev_once"] = {"dev": scores}
    (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (path / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """15 runs as a new user would have them: teachers of RTE (kept on held-out rows) and MRPC (dev-selected),
    kd and multilevel students on RTE (two seeds), MRPC and SST-2 (whose teacher is elsewhere), kd at T 4, the
    intermediate stage of a two-stage tinybert, a run scored on held-out rows only, and two DSE bi-encoders."""
    root = tmp_path / "runs"
    write_run(root, "teacher-rte", "RTE", kind="teacher", quality=0.7)
    write_run(root, "teacher-mrpc", "MRPC", kind="teacher", scored="dev", quality=0.85)
    for seed in (1, 2):
        write_run(root, f"rte-kd-s{seed}", "RTE", seed=seed, quality=0.6 + 0.01 * seed)
        write_run(root, f"rte-multilevel-s{seed}", "RTE", method="multilevel", seed=seed, quality=0.65)
        write_run(root, f"rte-dse-s{seed}", "RTE", method="dse", seed=seed, dse=True, quality=0.58)
    for task in ("MRPC", "SST-2"):
        teacher = "elsewhere/sst2-teacher/model" if task == "SST-2" else None
        write_run(root, f"{task.lower()}-kd", task, teacher=teacher, quality=0.8)
        write_run(root, f"{task.lower()}-multilevel", task, method="multilevel", teacher=teacher, quality=0.82)
    write_run(root, "rte-kd-T4", "RTE", temperature=4.0, quality=0.59)
    write_run(root, "rte-tinybert-intermediate", "RTE", method="tinybert", stage="intermediate")
    write_run(root, "rte-heldout-only", "RTE", method="multilevel", seed=3, scored="val", quality=0.66)
    return root


def bench_file(path: Path, model: Path) -> Path:
    """A ``retort bench --json`` file that timed one model folder in PyTorch at batch 1."""
    row = {"model": str(model), "backend": "torch", "quantization": "none", "peak_rss_mb": 300.0, "file_mb": 40.0,
           "environment": {"threads": 2, "cpu": "test CPU"},
           "latency": [{"batch_size": 1, "ms_per_sample_p50": 1.23}]}  # fmt: skip
    path.write_text(json.dumps({"runs": [row]}))
    return path


def test_the_page_summarizes_every_run_and_compares_what_it_can(folder, tmp_path):
    out = tmp_path / "page"
    bench = bench_file(tmp_path / "bench.json", folder / "rte-kd-s1" / "model")
    assert main(["report", str(folder), "--out", str(out), "--resamples", "19", "--bench", str(bench)]) == 0
    data = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    rows = {Path(r["run"]).name: r for r in data["summary"]}
    # every run found is a row, the two bi-encoders and the stage too; the comparison says where each is
    assert len(rows) == data["runs"] == 15 and data["compared"] == 11
    assert {n: r["kind"] for n, r in rows.items() if r["kind"] != "student"} == {
        "teacher-rte": "teacher", "teacher-mrpc": "teacher", "rte-dse-s1": "dse", "rte-dse-s2": "dse",
        "rte-tinybert-intermediate": "student, intermediate stage"}  # fmt: skip
    assert rows["rte-dse-s1"]["comparison"].startswith("left out: a bi-encoder (dse train)")
    assert rows["rte-tinybert-intermediate"]["comparison"].startswith("left out: intermediate stage")
    assert rows["rte-heldout-only"]["comparison"].startswith("left out: no dev score (scored on val only)")
    assert rows["rte-kd-T4"]["comparison"] == "Figure 2 only (T 4)"
    assert rows["rte-kd-s1"]["comparison"] == "Table 1: kd"
    assert rows["teacher-mrpc"]["comparison"] == "Table 1: teacher (MRPC)"
    # the split each was scored on, named; a baseline beside each score; speed where bench timed the model
    assert rows["rte-heldout-only"]["scored_on"] == "held-out rows (val), best epoch"
    assert rows["teacher-mrpc"]["scored_on"] == "dev, best epoch (dev-selected †)"
    assert rows["rte-kd-s1"]["scored_on"] == "dev once"
    assert rows["rte-kd-s1"]["ms_b1"] == 1.23 and rows["rte-kd-s2"]["ms_b1"] is None
    assert "accuracy 80.00 (68.40), f1 79.00 (81.20)" in md  # MRPC's kd: both metrics, both baselines
    assert "near the baseline |" not in md  # MRPC's teacher is ranked by accuracy here, 16.6 points over its baseline
    # where each came from: a teacher's base, a student's teacher; a teacher is fine-tuned, no temperature
    assert rows["teacher-rte"]["from"] == "base: bert-base-uncased" and rows["teacher-rte"]["method"] == "fine-tune"
    assert rows["sst-2-kd"]["from"] == "teacher: elsewhere/sst2-teacher/model"
    assert rows["rte-dse-s1"]["method"] == "dse, 3x384"
    assert {r["T"] for r in data["run_list"] if r["label"] == "teacher"} == {None}
    runs_table = md[md.index("## Runs compared") :]
    teacher_lines = [line for line in runs_table.splitlines() if "| teacher |" in line]
    assert len(teacher_lines) == 2 and all(line.split("|")[5].strip() == "-" for line in teacher_lines)
    # Table 1: one row per task's teacher, each with its own task's cells only
    table1 = md[md.index("## Table 1") : md.index("### Share")]
    rte_teacher = next(line for line in table1.splitlines() if line.startswith("| teacher (RTE) |"))
    mrpc_teacher = next(line for line in table1.splitlines() if line.startswith("| teacher (MRPC) |"))
    assert "70.00" in rte_teacher and "85.00†" in mrpc_teacher and "85.00" not in rte_teacher
    assert "leaves out the runs that Runs found (below) marks 'left out' (4, each with its reason)" in table1
    # the share table: a column for every task, SST-2 (no teacher run among the folders) included
    share = md[md.index("### Share") :].split("\n\n")[2]
    assert share.splitlines()[0] == "| method | MRPC accuracy | RTE accuracy | SST-2 accuracy |"
    assert "no teacher run" in share and data["share_without_teacher"] == ["SST-2"]
    # the comparison comes first, the list of every run after it, saying what it shows; nothing calls
    # held-out rows "best dev"
    assert md.index("## Table 1") < md.index("## Runs found") < md.index("## Runs compared")
    assert "Every run found, one row each" in md
    assert "best dev" not in md.lower()


def test_the_terminal_summary_lists_every_run(folder, tmp_path, capsys):
    bench = bench_file(tmp_path / "bench.json", folder / "rte-dse-s2" / "model")
    assert main(["report", str(folder), "--bench", str(bench)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("Every run found, one row each") and "best dev" not in text.lower()
    header = lines[2]
    assert header.split()[:5] == ["run", "task", "method", "kind", "scored"] and "comparison view" in header
    body = lines[4:]
    assert len(body) == 15 and sum(" dse " in line for line in body) == 2
    dse2 = next(line for line in body if "rte-dse-s2" in line)
    assert "1.23" in dse2 and "left out: a bi-encoder" in dse2
    heldout = next(line for line in body if "rte-heldout-only" in line)
    assert "held-out rows (val), best epoch" in heldout and "68.00 (52.70)" in heldout
    assert main(["report", str(folder), "--markdown"]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("| run | task | method | kind | scored on |")


def test_the_summary_keeps_unfinished_and_empty_folders_and_refuses_damage(tmp_path):
    """What ``retort report`` without ``--out`` always did: unfinished and empty folders as rows, a file given
    left out, a folder of nothing but empty folders refused, a damaged metrics.json one line naming it."""
    root = tmp_path / "runs"
    done = write_run(root / "a", "rte-kd", "RTE")
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text("task: RTE\n")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a run")
    paths = [str(done), str(root / "unfinished"), str(root / "empty"), str(root / "notes.txt")]
    lines = summarize_runs(paths).splitlines()[4:]
    assert len(lines) == 3 and "RTE" in lines[0] and "2.0" in lines[0]  # two minutes of training
    assert "(no metrics.json: unfinished?)" in lines[1] and "(holds no run)" in lines[2]
    with pytest.raises(RetortError, match="holds no run"):
        summarize_runs([str(root / "empty")])
    (done / "metrics.json").write_text("{")
    with pytest.raises(RetortError, match="metrics.json: unreadable"):
        summarize_runs([str(done)])


def test_a_folder_of_bi_encoders_alone_still_makes_a_page(tmp_path):
    """Nothing to compare is no error: the page lists the runs and says why each is left out."""
    root = tmp_path / "runs"
    for seed in (1, 2):
        write_run(root, f"dse-s{seed}", "RTE", method="dse", seed=seed, dse=True)
    out = tmp_path / "page"
    assert main(["report", str(root), "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["runs"] == 2 and data["compared"] == 0 and "table1" not in data
    assert all(r["comparison"].startswith("left out: a bi-encoder") for r in data["summary"])


def test_the_page_aligns_numbers_right_words_left_and_names_runs_under_their_folder(tmp_path):
    """Legible at the page's width: numeric columns right-aligned, text left; short cells on one line; run
    folders shown under the folder holding them all (named once in the caption)."""
    from retort.report.render import Page
    from retort.report.summary import common_root, summary_table

    page = Page(tmp_path)
    page.table(["task", "score", "command"], [["STS-B", "-0.81 [-1.38, -0.28]", "retort distill --seed 1"],
                                              ["MRPC", "0.0080 / 0.0480", "-"]])  # fmt: skip
    doc = page.html("t")
    assert '<th>task</th><th class="n">score</th><th>command</th>' in doc  # a header may wrap
    assert '<td class="k">STS-B</td>' in doc and ".k{white-space:nowrap}" in doc  # a short cell may not
    assert '<td class="n">0.0080 / 0.0480</td>' in doc
    # a teacher's primary metric on its first split within 10 points of its baseline is marked, as Table 1 rules
    teacher = {"task": "MNLI", "method": "fine-tune", "kind": "teacher", "scored_on": "dev once", "primary": "accuracy",
               "scores": {"dev_matched": {"accuracy": 0.42, "f1": 0.40}, "dev_mismatched": {"accuracy": 0.41}},
               "baseline": {"dev_matched": {"accuracy": 0.35, "f1": 0.35}, "dev_mismatched": {"accuracy": 0.35}},
               "ms_b1": None, "train_minutes": None, "from": "base: x", "comparison": "Table 1: teacher (MNLI)",
               "run": "/x/t"}  # fmt: skip
    cells = summary_table([teacher])[1][0]
    assert cells[5] == ("dev_matched: accuracy 42.00 (35.00), near the baseline, f1 40.00 (35.00); "
                        "dev_mismatched: accuracy 41.00 (35.00)")  # fmt: skip
    assert "near the baseline" not in summary_table([{**teacher, "kind": "student"}])[1][0][5]
    row = {"task": "RTE", "method": "kd", "kind": "student", "scored_on": "dev once", "scores": {}, "baseline": {},
           "ms_b1": None, "train_minutes": None, "comparison": "Table 1: kd"}  # fmt: skip
    rows = [{**row, "run": "/x/p/runs/RTE/kd-s1", "from": "teacher: /x/p/teachers/RTE/model"},
            {**row, "run": "/x/p/teachers/RTE", "from": "base: all-MiniLM-L6-v2"}]  # fmt: skip
    assert common_root(rows) == Path("/x/p") and common_root(rows[:1]) is None
    cells = summary_table(rows)[1]
    assert cells[0][0] == "runs/RTE/kd-s1" and cells[0][8] == "teacher: teachers/RTE/model"
    assert cells[1][8] == "base: all-MiniLM-L6-v2"
