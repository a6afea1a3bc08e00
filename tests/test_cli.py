from __future__ import annotations

import json

from conftest import train_tiny_teacher
from retort.cli import main


def test_missing_glue_dir_is_one_line_exit_2(tmp_path, capsys, tiny_model):
    code = main(
        [
            "teacher",
            "--task",
            "RTE",
            "--glue-dir",
            str(tmp_path / "nowhere"),
            "--base",
            str(tiny_model),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no such task folder" in err


def test_unknown_task_exit_2(tmp_path, capsys, glue_dir):
    code = main(["eval", "--task", "SQuAD", "--model", str(tmp_path), "--glue-dir", str(glue_dir)])
    assert code == 2 and "unknown task 'SQuAD'" in capsys.readouterr().err


def test_bad_set_key_exit_2(tmp_path, capsys, glue_dir):
    code = main(["teacher", "--task", "RTE", "--glue-dir", str(glue_dir), "--out", str(tmp_path), "--set", "epoch=3"])
    assert code == 2 and "unknown key(s) epoch" in capsys.readouterr().err


def test_eval_and_bench_on_a_trained_folder(tmp_path, capsys, glue_dir, tiny_model):
    out = tmp_path / "t"
    train_tiny_teacher(glue_dir, tiny_model, out, "STS-B")
    assert main(["eval", "--task", "STS-B", "--model", str(out / "model"), "--glue-dir", str(glue_dir)]) == 0
    ev = json.loads((out / "model" / "eval_dev.json").read_text())
    saved = json.loads((out / "metrics.json").read_text())["best"]
    assert ev["results"]["dev"]["pearson"] == saved["dev"]["pearson"]
    assert (
        main(
            [
                "bench",
                "--model",
                str(out / "model"),
                "--task",
                "STS-B",
                "--glue-dir",
                str(glue_dir),
                "--threads",
                "1",
                "--samples",
                "32",
                "--warmup",
                "1",
            ]
        )
        == 0
    )
    bench = json.loads((out / "model" / "bench.json").read_text())
    assert [r["batch_size"] for r in bench["latency"]] == [1, 32]
    assert bench["parameters"] > 0 and bench["peak_rss_mb"] > 0
    assert bench["environment"]["threads"] == 1
    assert "ms/sample p50" in capsys.readouterr().out


def test_eval_mnli_reports_both_dev_sets(tmp_path, capsys, glue_dir, tiny_model):
    out = tmp_path / "m"
    train_tiny_teacher(glue_dir, tiny_model, out, "MNLI")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["best"]) == {"dev_matched", "dev_mismatched"}


def test_report_lists_runs(tmp_path, capsys, glue_dir, tiny_model):
    train_tiny_teacher(glue_dir, tiny_model, tmp_path / "r", "RTE")
    (tmp_path / "unfinished").mkdir()
    assert main(["report", str(tmp_path / "r"), str(tmp_path / "unfinished"), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| RTE | fine-tune |" in out and "unfinished?" in out
