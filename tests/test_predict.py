"""GLUE test-set prediction files in the leaderboard's format (``retort predict``): the official file
name, a header, one line per test row in file order, labels as the task writes them; and the logits
under them (``models.inference.predict``) in the rows' order whatever the batches."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from conftest import error_lines, sentence, train_tiny_teacher, write_tsv
from retort.cli import main

HEADERS = {
    "SST-2": ["index", "sentence"],
    "CoLA": ["index", "sentence"],
    "MRPC": ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "RTE": ["index", "sentence1", "sentence2"],
    "STS-B": ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"],
}


def _test_rows(task: str, rng: random.Random, n: int) -> list[list[str]]:
    s = lambda: sentence(rng)  # noqa: E731
    row = {
        "SST-2": lambda i: [str(i), s()],
        "CoLA": lambda i: [str(i), s()],
        "MRPC": lambda i: [str(i), "1", "2", s(), s()],
        "RTE": lambda i: [str(i), s(), s()],
        "STS-B": lambda i: [str(i), "main-captions", "MSRvid", "2012test", "0001", "none", "none", s(), s()],
    }[task]
    return [row(i) for i in range(n)]


@pytest.fixture(scope="module")
def glue_with_test(glue_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("glue-test")
    shutil.copytree(glue_dir, root, dirs_exist_ok=True)
    rng = random.Random(7)
    for task, header in HEADERS.items():
        write_tsv(root / task / "test.tsv", header, _test_rows(task, rng, 17))
    return root


@pytest.mark.parametrize("task, labels", [("SST-2", {"0", "1"}), ("MRPC", {"0", "1"}), ("CoLA", {"0", "1"}),
                                          ("RTE", {"entailment", "not_entailment"}), ("STS-B", None)])  # fmt: skip
def test_leaderboard_file(tmp_path, glue_with_test, tiny_model, task, labels):
    teacher = train_tiny_teacher(glue_with_test, tiny_model, tmp_path / "t", task=task)
    assert main(["predict", "--task", task, "--glue-dir", str(glue_with_test), "--model", str(teacher / "model"),
                 "--out", str(tmp_path / "preds")]) == 0  # fmt: skip
    lines = (tmp_path / "preds" / f"{task}.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 1 + 17
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(17))
    if labels:
        assert {r[1] for r in rows} <= labels
    else:
        assert all(0.0 <= float(r[1]) <= 5.0 for r in rows)


def test_no_leaderboard_file_is_one_line(tmp_path, glue_with_test, tiny_model, capsys):
    teacher = train_tiny_teacher(glue_with_test, tiny_model, tmp_path / "t", task="STS-B")
    capsys.readouterr()
    code = main(["predict", "--task", "STS-B", "--split", "dev", "--glue-dir", str(glue_with_test),
                 "--model", str(teacher / "model"), "--out", str(tmp_path / "p")])  # fmt: skip
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "no leaderboard file" in err[0]
    assert not (tmp_path / "p").exists()


def test_inference_puts_rows_back_in_order_and_restores_the_mode(glue_dir, tiny_model):
    """``models.inference.predict`` writes each batch at its rows: the evaluator's batches (longest first)
    and the same batches reversed give the same array, and one row at a time (no padding) agrees."""
    from retort.data.batching import collate, encode
    from retort.data.tasks import load_split
    from retort.evaluation.evaluator import eval_batches, predict_split
    from retort.models.hf import load_classifier, load_tokenizer
    from retort.models.inference import predict

    split = load_split("MRPC", "dev", glue_dir)
    data = encode(split, load_tokenizer(str(tiny_model)), 32)
    model = load_classifier(str(tiny_model), split.task).train()
    logits = predict_split(model, data, batch_size=5)
    assert model.training and logits.shape == (len(data), 2) and logits.dtype == np.float32
    backwards = list(eval_batches(data, 5))[::-1]
    np.testing.assert_array_equal(predict(model, backwards, len(data)), logits)
    one_by_one = predict(model, (([i], collate(data, [i])) for i in range(len(data))), len(data))
    np.testing.assert_allclose(one_by_one, logits, atol=1e-5)
    assert predict(model, [], 0).shape == (0, 1)
