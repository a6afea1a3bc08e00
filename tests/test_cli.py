from __future__ import annotations

import json

from conftest import error_lines, train_tiny_teacher
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
    ev = json.loads((out / "eval_dev.json").read_text())
    saved = json.loads((out / "metrics.json").read_text())["best"]
    assert ev["results"]["dev"]["pearson"] == saved["dev"]["pearson"]
    assert "eval STS-B dev: row" in capsys.readouterr().err  # progress as a line: stderr is not a terminal
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
    (tmp_path / "unfinished" / "config.yaml").write_text("task: RTE\n")
    assert main(["report", str(tmp_path / "r"), str(tmp_path / "unfinished"), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| RTE | fine-tune |" in out and "unfinished?" in out


def _flags(command: list[str]) -> dict:
    """dest -> option strings of a subcommand's parser."""
    from retort.cli import build_parser  # noqa: PLC0415

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command[0]]
    if len(command) > 1:
        sub = next(a for a in sub._actions if a.dest == "dse_command").choices[command[1]]
    return {a.dest: a.option_strings for a in sub._actions}


def test_flags_come_from_the_config_declarations():
    """Each option is declared once (retort/config.py): every field tagged for a command is a flag of it,
    named after the field, and reaches the config."""
    import dataclasses  # noqa: PLC0415

    from retort.commands.train import FLAG_GROUPS  # noqa: PLC0415
    from retort.config import ObjectiveConfig, TrainConfig  # noqa: PLC0415

    for command, key in ((["teacher"], "teacher"), (["distill"], "distill"), (["dse", "train"], "dse")):
        flags = _flags(command)
        for cls in (TrainConfig, ObjectiveConfig):
            for f in dataclasses.fields(cls):
                tagged = f.metadata.get("cli") in FLAG_GROUPS[key]
                assert (f.name in flags) == tagged, (command, f.name)
    assert "--long-sts" in _flags(["distill"])["long_sts_tokens"]
    assert "--base" not in str(_flags(["distill"])) and "--pooling" in str(_flags(["dse", "train"]))


def test_generated_flags_reach_the_config(tmp_path):
    import argparse  # noqa: PLC0415

    from retort.cli import build_parser  # noqa: PLC0415
    from retort.commands.train import train_config_from_args  # noqa: PLC0415

    argv = ["distill", "--teacher", "t", "--out", str(tmp_path / "o"), "--no-embeddings", "--layer-list", "2", "4",
            "--layer-map", "list", "--beta", "0.5", "--no-group-by-length", "--transfer", "a.txt", "SST-2:10",
            "--max-grad-norm", "0.5", "--long-sts-dev", "7", "--skip-bad-rows"]  # fmt: skip
    args: argparse.Namespace = build_parser().parse_args(argv)
    cfg = train_config_from_args(args, "distill")
    assert cfg.objective.embeddings is False and cfg.objective.layer_list == [2, 4] and cfg.objective.beta == 0.5
    assert cfg.group_by_length is False and cfg.transfer == ["a.txt", "SST-2:10"] and cfg.max_grad_norm == 0.5
    assert cfg.long_sts_dev == 7 and cfg.skip_bad_rows is True and cfg.objective.layer_map == "list"
    plain = train_config_from_args(build_parser().parse_args(["distill", "--teacher", "t", "--out", "o"]), "distill")
    assert plain.objective.embeddings is None and plain.group_by_length is True  # not given: the default


def test_help_shows_default_and_range(capsys):
    import pytest  # noqa: PLC0415

    with pytest.raises(SystemExit):
        main(["teacher", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "passes over the training set (default 3; >= 1)" in text
    assert "peak learning rate (AdamW, linear warm-up and decay) (default 5e-05; > 0, <= 1)" in text


def test_config_built_in_python_is_checked_too():
    import pytest  # noqa: PLC0415

    from retort.config import ObjectiveConfig, TrainConfig  # noqa: PLC0415
    from retort.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"epochs = 0 \(--epochs\): must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"choose from uniform, last, list"):
        ObjectiveConfig(layer_map="diagonal")


def test_demo_options_are_checked(capsys):
    for argv, needle in (
        (["--teacher-epochs", "0"], "--teacher-epochs 0: must be >= 1"),
        (["--student-epochs", "-1"], "--student-epochs -1: must be >= 1"),
        (["--threads", "0"], "--threads 0: must be >= 1"),
        (["--bench-samples", "0"], "--bench-samples 0"),
    ):
        assert main(["demo", *argv]) == 2
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and needle in err[0], err
