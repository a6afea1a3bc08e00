import argparse
import json


def test_demo_end_to_end_on_a_tiny_model(tmp_path, glue_dir, tiny_model, capsys, monkeypatch):
    from retort.cli import build_parser
    from retort.commands.demo import run_demo

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        [
            "demo",
            "--glue-dir",
            str(glue_dir),
            "--base",
            str(tiny_model),
            "--out",
            str(tmp_path / "demo"),
            "--threads",
            "1",
            "--teacher-epochs",
            "1",
            "--student-epochs",
            "1",
            "--student",
            "2x32",
            "--bench-samples",
            "32",
        ]
    )
    assert isinstance(args, argparse.Namespace)
    assert run_demo(args) == 0
    out = capsys.readouterr().out
    assert "speed-up b1" in out and "student 2x32" in out
    record = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert set(record["models"]) == {"teacher", "student 2x32"}
    assert record["models"]["teacher"]["speedup_batch1"] == 1.0
    # a second run reuses both finished models instead of training again
    assert run_demo(args) == 0
    assert "reusing" in capsys.readouterr().out
