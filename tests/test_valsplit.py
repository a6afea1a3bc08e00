"""Selection on held-out training rows (``--val-split``): the carved rows (seeded, stratified), a run
that picks its epoch on them and scores the GLUE dev set once, on the kept model."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import error_lines, train_tiny_teacher
from retort.cli import main
from retort.data.tasks import carve, load_split
from retort.errors import ConfigError
from retort.report.figures import read_log


def test_carve_is_seeded_stratified_and_disjoint(glue_dir):
    split = load_split("MRPC", "train", str(glue_dir))
    rest, val, rows = carve(split, 0.25, seed=3)
    assert len(val) == round(0.25 * len(split)) and len(rest) + len(val) == len(split)
    assert rows == sorted(rows) and [split.examples[i] for i in rows] == val.examples
    assert len(set(rows)) == len(rows) and len(rest.examples) == len(split) - len(rows)
    shares = Counter(ex.label for ex in split.examples)
    got = Counter(ex.label for ex in val.examples)
    for label, n in shares.items():  # each label keeps its share, to within one row
        assert abs(got[label] - len(val) * n / len(split)) <= 1
    assert carve(split, 0.25, seed=3)[2] == rows and carve(split, 0.25, seed=4)[2] != rows
    assert len(carve(split, 10, seed=0)[1]) == 10
    with pytest.raises(ConfigError, match="keep at least one on each side"):
        carve(split, len(split), seed=0)


def test_a_run_selects_on_val_and_scores_dev_once(tmp_path, glue_dir, tiny_model, capsys):
    args = ["teacher", "--task", "STS-B", "--glue-dir", str(glue_dir), "--base", str(tiny_model), "--epochs", "2",
            "--threads", "1", "--val-split", "12", "--no-progress", "--out", str(tmp_path / "t")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert len(m["val_rows"]) == 12 and m["train_examples"] == 48 - 12
    assert all(set(e["results"]) == {"val"} for e in m["evals"])  # every evaluation on the carved rows
    assert set(m["best"]) == {"val"} and set(m["dev_once"]) == {"dev"}
    assert "scored once" in out
    assert main(["eval", "--task", "STS-B", "--glue-dir", str(glue_dir), "--model", str(tmp_path / "t" / "model"),
                 "--json", str(tmp_path / "e.json")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["results"]["dev"]["pearson"] == pytest.approx(m["dev_once"]["dev"]["pearson"], abs=1e-6)


@pytest.mark.parametrize("value, message", [("1.5", "a number of rows (whole) or a fraction"),
                                            ("0", "val_split"), ("500", "500 of 48 training rows")])  # fmt: skip
def test_bad_val_split_is_one_line(tmp_path, glue_dir, tiny_model, capsys, value, message):
    code = main(["teacher", "--task", "STS-B", "--glue-dir", str(glue_dir), "--base", str(tiny_model),
                 "--val-split", value, "--out", str(tmp_path / "t"), "--no-progress"])  # fmt: skip
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_loss_curves_train_and_val_per_evaluation(tmp_path, glue_dir, tiny_model):
    """Every evaluation of a --val-split run records the objective's mean over the training rows since
    the last one and over the held-out rows (each unweighted term too), in metrics.json and log.jsonl."""
    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "teacher")
    args = ["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(teacher / "model"),
            "--student", "1x32", "--method", "multilevel", "--epochs", "2", "--threads", "1", "--val-split", "12",
            "--no-progress", "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(args) == 0
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert len(m["evals"]) == 2
    for e in m["evals"]:
        assert e["train_loss"] > 0 and e["val_loss"]["loss"] > 0
        assert {"loss/soft", "loss/hidden", "loss/attn"} <= set(e["val_loss"])
    logged = [r for r in read_log(tmp_path / "s") if "eval" in r]
    assert [r["val_loss"]["loss"] for r in logged] == [e["val_loss"]["loss"] for e in m["evals"]]


def test_held_out_losses_from_the_cached_val_outputs_match_a_live_teacher(tmp_path, glue_dir, tiny_model, monkeypatch):
    """With --cache-teacher all the teacher runs on the --val-split rows once (their own cache entry): the
    held-out losses of every evaluation are those of a run that runs the teacher each time."""
    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "teacher")
    losses = {}
    for mode in ("none", "all"):
        out = tmp_path / mode
        assert main(["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(teacher / "model"),
                     "--student", "1x32", "--method", "multilevel", "--epochs", "2", "--threads", "1", "--val-split",
                     "12", "--cache-teacher", mode, "--no-progress", "--out", str(out)]) == 0  # fmt: skip
        losses[mode] = [e["val_loss"] for e in json.loads((out / "metrics.json").read_text())["evals"]]
    entries = {json.loads(m.read_text())["examples"] for m in (tmp_path / "cache").glob("teacher_outputs/*/meta.json")}
    assert entries == {48 - 12, 12}  # the training rows' entry and the held-out rows' own
    for live, cached in zip(losses["none"], losses["all"], strict=True):
        assert cached == pytest.approx(live, rel=1e-5)


def test_a_teacher_kept_in_float16_is_scored_and_distilled_from_as_saved(tmp_path, glue_dir, tiny_model, capsys):
    """``--save-dtype float16``: the kept model's file holds float16 weights (half the bytes), it is read back as
    float32 everywhere (a user's float16 checkpoint too), and its dev score is that of the saved weights."""
    from safetensors import safe_open

    from retort.data.tasks import get_task
    from retort.models.hf import load_classifier

    args = ["teacher", "--task", "STS-B", "--glue-dir", str(glue_dir), "--base", str(tiny_model), "--epochs", "1",
            "--threads", "1", "--val-split", "12", "--no-progress", "--save-dtype", "float16",
            "--out", str(tmp_path / "t")]  # fmt: skip
    assert main(args) == 0
    with safe_open(str(tmp_path / "t" / "model" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    model = load_classifier(str(tmp_path / "t" / "model"), get_task("STS-B"))
    assert {str(p.dtype) for p in model.parameters()} == {"torch.float32"}
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert main(["eval", "--task", "STS-B", "--glue-dir", str(glue_dir), "--model", str(tmp_path / "t" / "model"),
                 "--json", str(tmp_path / "e.json")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["results"]["dev"]["pearson"] == pytest.approx(m["dev_once"]["dev"]["pearson"], abs=1e-6)
    assert main(["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(tmp_path / "t" / "model"),
                 "--student", "1x32", "--epochs", "1", "--threads", "1", "--no-progress",
                 "--out", str(tmp_path / "s")]) == 0  # fmt: skip


def test_an_earlier_stage_is_not_scored_on_dev(tmp_path, glue_dir, tiny_model):
    """An intermediate stage trains no task output: with --val-split its last step is kept and the dev set is left
    for the stage after it (on MNLI's 19.6k dev rows a needless score cost minutes a stage)."""
    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "teacher")
    args = ["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(teacher / "model"),
            "--student", "1x32", "--method", "tinybert", "--stage", "intermediate", "--epochs", "1", "--threads", "1",
            "--val-split", "12", "--no-progress", "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(args) == 0
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert "dev_once" not in m and not (tmp_path / "s" / "dev_predictions.json").exists()
    assert set(m["best"]) == {"val"}


@pytest.mark.parametrize("task, method", [("STS-B", "multilevel"), ("MRPC", "kd")])
def test_one_pass_gives_the_metrics_and_the_held_out_loss(tmp_path, glue_dir, tiny_model, task, method):
    """With --val-split the loop measures the objective on the held-out rows at every evaluation; the task's
    metrics there come from the logits of that same pass, equal to a pass of their own."""
    import torch

    from retort.config import ObjectiveConfig, TrainConfig
    from retort.training.assembly import prepare
    from retort.training.evaluators import TaskEvaluator, ValTaskEvaluator, default_evaluator

    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "teacher", task=task)
    cfg = TrainConfig(kind="distill", task=task, glue_dir=str(glue_dir), teacher=str(teacher / "model"),
                      student="1x32", val_split=12, threads=1, out=str(tmp_path / "s"),
                      objective=ObjectiveConfig(method=method))  # fmt: skip
    setup = prepare(cfg)
    one = default_evaluator(setup)
    assert isinstance(one, ValTaskEvaluator)
    results = one.evaluate(setup.model, torch.device("cpu"))
    alone = TaskEvaluator(setup.task, setup.dev, 128, setup.tokenizer.pad_token_id or 0)
    expected = alone.evaluate(setup.model, torch.device("cpu"))
    assert set(results) == {"val"} and set(results["val"]) == set(expected["val"])
    for metric, value in expected["val"].items():
        assert results["val"][metric] == pytest.approx(value, abs=1e-5)
    assert one.losses["loss"] > 0 and setup.model.training  # the model is handed back in training mode
