"""``retort compress`` (issue #30), the part built so far: the plan from timings taken on this machine."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines, train_tiny_teacher
from retort.cli import main


@pytest.fixture(scope="module")
def teacher(glue_dir, tiny_model, tmp_path_factory):
    return train_tiny_teacher(glue_dir, tiny_model, tmp_path_factory.mktemp("compress") / "t", "RTE")


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_a_plan_from_timings_taken_here(teacher, glue_dir, tmp_path, capsys, backend):
    out = tmp_path / "c"
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(out), "--latency-ms",
            "1000", "--backend", backend, "--probe-samples", "8", "--threads", "1", "--dry-run"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    assert plan["task"] == "RTE" and plan["backend"] == backend and plan["teacher"]["name"] == "4x32-f64"
    assert plan["target_ms"] == 1000 and plan["met"] and plan["train"]  # timing noise of tiny models aside
    assert len(plan["points"]) == 4 and all(p["measured_ms"] > 0 for p in plan["points"])
    assert all(c["why_not"] for c in plan["candidates"] if not c["chosen"])
    assert "to train" in printed or "nothing to train" in printed
    assert main(args) == 0  # again: the probes are reused
    if backend == "onnx-int8":
        assert (out / "probes" / "teacher" / "onnx-int8" / "model.onnx").is_file()


@pytest.mark.parametrize(
    "extra,needle",
    [
        ([], "give a budget: --speedup, --latency-ms or --max-params"),
        (["--speedup", "0"], "--speedup 0: must be > 0"),
        (["--speedup", "2", "--task", "RTE", "--data", "x.csv"], "--task and --data: give one"),
        (["--speedup", "100000"], "no shape can meet it"),
    ],
)
def test_budgets_refused_in_one_line(teacher, glue_dir, tmp_path, capsys, extra, needle):
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(tmp_path / "c"),
            "--backend", "torch", "--probe-samples", "8", "--threads", "1", "--dry-run", *extra]  # fmt: skip
    assert main(args) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and needle in err[0] and err[0].startswith("retort compress: error: "), err
