"""``experiments/paper.py`` end to end on the tiny model and data: teachers, methods (one two-stage variant,
mobilebert's progressive stages), a temperature sweep, the bench and the report, resumable. Marked slow
(``pytest -m slow tests/test_paper.py``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a dozen training processes: about 2 minutes on 2 cores
def test_paper_small_on_tiny_runs_everything_and_reports(tmp_path, glue_dir, tiny_model):
    out, report = tmp_path / "paper", tmp_path / "report"
    cmd = [sys.executable, str(ROOT / "experiments" / "paper.py"), "--budget", "small", "--glue-dir", str(glue_dir),
           "--out", str(out), "--report", str(report), "--base", str(tiny_model), "--student", "1x32",
           "--tasks", "RTE", "--methods", "kd", "mobilebert", "multilevel", "--variants", "multilevel-2stage",
           "--variant-tasks", "RTE", "--sweep-tasks", "RTE", "--sweep-methods", "kd", "--temperatures", "1", "2",
           "--seeds", "1", "--val", "8", "--rows", "40", "--bench-threads", "1",
           "--keep", str(tmp_path / "kept")]  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if k != "RETORT_CACHE"}, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any((out / "cache" / "teacher_outputs").iterdir())  # the teacher caches are kept inside OUT
    assert not list(out.glob("runs/RTE/*/checkpoint"))  # finished runs keep no resume state
    runs = sorted(p.name for p in (out / "runs" / "RTE").iterdir() if p.is_dir())
    assert runs == ["kd-T1-s1", "kd-s1", "mobilebert-s1", "mobilebert-s1-progressive1", "multilevel-2stage-s1",
                    "multilevel-2stage-s1-intermediate", "multilevel-s1"]  # fmt: skip
    data = json.loads((report / "report.json").read_text())
    assert set(data["table1"]) == {"teacher", "kd", "mobilebert", "multilevel", "multilevel-2stage"}
    assert set(data["temperature"]["RTE"]["kd"]) == {"1.0", "2.0"}
    tested = {t["method"] for t in data["paired_tests"]}  # a tiny teacher near the majority class ranks nothing
    assert tested == (set() if data["unranked"] == ["RTE"] else {"kd", "mobilebert", "multilevel-2stage"})
    bench = json.loads((out / "bench-RTE.json").read_text())
    assert len(bench["runs"]) == 1 + 4 + 1 + 2  # the teacher, a student per row, the sweep's T=1, two int8 exports
    assert sorted(p.name for p in (out / "exports").iterdir()) == ["RTE-multilevel-int8", "RTE-teacher-int8"]
    assert "Budget `small`" in (report / "report.md").read_text()
    # the page reads the kept (committed) copies of the runs, its bench naming them: every row finds its timing
    kept = json.loads((tmp_path / "kept" / "bench-RTE.json").read_text())
    assert json.loads((report / "bench-RTE.json").read_text()) == kept and (report / "paper.json").is_file()
    assert kept["runs"][0]["model"] == str(tmp_path / "kept" / "teachers" / "RTE" / "model")
    assert all(data["table1"][m]["ms_b1"] for m in ("teacher", "kd", "mobilebert", "multilevel"))
    assert str(tmp_path / "kept" / "runs") in (report / "report.md").read_text()
    m = json.loads((out / "runs" / "RTE" / "multilevel-2stage-s1" / "metrics.json").read_text())
    assert m["config"]["tag"] == "multilevel-2stage" and m["config"]["objective"]["stage"] == "prediction"
    # again: nothing trains, the report is made again
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert again.returncode == 0 and "+ " not in again.stdout, again.stdout[-2000:]
    # a new machine: OUT gone, the kept runs restored; nothing trains, the page holds the same rows
    shutil.rmtree(out)
    third = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert third.returncode == 0 and "+ " not in third.stdout, third.stdout[-2000:] + third.stderr[-2000:]
    assert "restored 8 finished run(s)" in third.stdout
    # no student's weights are kept: the bench the first machine made (kept) is read, not replaced by the teacher's
    assert "the page reads the kept bench" in third.stdout and "the bench times the teacher alone" not in third.stdout
    again = json.loads((report / "report.json").read_text())
    assert set(again["table1"]) == set(data["table1"]) and all(again["table1"][m]["ms_b1"] for m in again["table1"])
    assert json.loads((tmp_path / "kept" / "bench-RTE.json").read_text()) == kept
