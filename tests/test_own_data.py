"""Your data, your task (issue #29): a task spec or a data file as ``--data``, its fields inferred and kept in
every folder made with it, read in each format, and every bad input one line naming the file and row."""

from __future__ import annotations

import csv
import json
import random

import pytest

from conftest import error_lines, sentence
from retort.cli import main
from retort.data.spec import load_task
from retort.data.tasks import load_split
from retort.errors import DataError, RetortError

LABELS = ("pos", "neg", "neutral")
ONE = [["a cat", "pos"]] * 5  # one class only
TWO = [["a cat", "pos"], ["a dog", "neg"]] * 5


def write_rows(path, header, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """reviews/train.csv (60 rows) and test.csv (15): ``text,label`` with three string labels; no dev file."""
    root = tmp_path_factory.mktemp("reviews")
    rng = random.Random(0)
    for name, n in (("train", 60), ("test", 15)):
        write_rows(root / f"{name}.csv", ["text", "label"], [[sentence(rng), LABELS[i % 3]] for i in range(n)])
    return root


def test_inferred_spec_of_a_folder(reviews):
    task = load_task(str(reviews))
    spec = json.loads(task.spec)
    assert task.name == reviews.name and spec["text"] == ["text"] and spec["label"] == "label"
    assert spec["type"] == "classification" and spec["labels"] == ["neg", "neutral", "pos"]
    assert spec["metrics"] == ["accuracy", "macro_f1"] and spec["primary"] == "accuracy"
    assert spec["dev"] == {"carved_from": "train", "size": 0.1, "seed": 0}
    train, dev = load_split(task, "train"), load_split(task, "dev")
    assert len(train) == 54 and len(dev) == 6  # stratified: two of each class
    assert sorted(ex.label for ex in dev.examples) == [0, 0, 1, 1, 2, 2]
    assert {ex.texts for ex in train.examples}.isdisjoint({ex.texts for ex in dev.examples})
    assert [ex.texts for ex in load_split(task, "dev").examples] == [ex.texts for ex in dev.examples]  # seeded


def test_formats_read_alike(reviews, tmp_path):
    rows = list(csv.reader(open(reviews / "train.csv", encoding="utf-8")))[1:]
    write_rows(tmp_path / "train.tsv", ["text", "label"], rows, "\t")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    want = [ex.texts + (ex.label,) for ex in load_split(load_task(str(reviews / "train.csv")), "train").examples]
    for name in ("train.tsv", "train.jsonl"):
        task = load_task(str(tmp_path / name))
        assert [ex.texts + (ex.label,) for ex in load_split(task, "train").examples] == want, name


def test_arrow_formats(reviews, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = list(csv.DictReader(open(reviews / "train.csv", encoding="utf-8")))
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "train.parquet"))
    ds.save_to_disk(str(tmp_path / "arrow"))
    want = [ex.texts for ex in load_split(load_task(str(reviews / "train.csv")), "train").examples]
    for source in (tmp_path / "train.parquet", tmp_path / "arrow"):
        assert [ex.texts for ex in load_split(load_task(str(source)), "train").examples] == want


def test_pairs_and_regression_are_inferred(tmp_path):
    rng = random.Random(1)
    rows = [[sentence(rng), sentence(rng), f"{rng.uniform(0, 1):.3f}"] for _ in range(30)]
    task = load_task(str(write_rows(tmp_path / "sim.csv", ["sentence1", "sentence2", "score"], rows)))
    assert task.is_pair and task.is_regression and task.metrics == ("pearson", "spearman")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: sim2\ntrain: sim.csv\ntext: [sentence2, sentence1]\nlabel: score\nmetrics: [spearman]\n")
    task = load_task(str(spec))
    assert task.text_columns == ("sentence2", "sentence1") and task.primary_metric == "spearman"


@pytest.mark.parametrize(
    "header,rows,spec,needle",
    [
        (["text", "label"], ONE, "label: stars", "no label column 'stars' (its columns: text, label)"),
        (["text", "label"], ONE, "", "every row has the label 'pos'"),
        (["text", "label"], [["a cat", "pos"], ["", "neg"]] * 5, "", "train.csv:3: empty text"),
        (["text", "label"], [["a cat", "pos"], ["a dog"]] * 5, "", "train.csv:3: 1 fields, the header has 2"),
        (["text", "label"], [["a cat", "1.5"], ["a dog", "nan"]] * 5, "", "train.csv:3: label 'nan' is not a finite"),
        (["text", "label"], ONE, "label: text", "'text' is named as both text and label"),
        (["text", "label"], TWO, "metrics: accuracy", "metrics 'accuracy': a list"),
        (["text", "a", "b"], [["a cat", "x", "y"]] * 5, "", "cannot tell the label column among a, b"),
        (["text", "text"], [["a cat", "x"]] * 5, "", "column 'text' appears 2 times in the header (columns 1, 2)"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, glue_dir, tiny_model, header, rows, spec, needle):
    write_rows(tmp_path / "train.csv", header, rows)
    data = tmp_path / "train.csv"
    if spec:
        data = tmp_path / "spec.yaml"
        data.write_text(f"train: train.csv\n{spec}\n")
    argv = ["teacher", "--data", str(data), "--base", str(tiny_model), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main(argv) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("retort teacher: error: ") and needle in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_dev_label_train_never_had(reviews, tmp_path):
    write_rows(tmp_path / "dev.csv", ["text", "label"], [["a cat runs", "pos"], ["a dog", "angry"]])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"train: {reviews / 'train.csv'}\ndev: dev.csv\n")
    with pytest.raises(DataError, match=r"dev.csv:3: label 'angry' is not one of the labels train has"):
        load_split(load_task(str(spec)), "dev")


def test_teacher_student_export_on_your_own_data(reviews, tiny_model, tmp_path, capsys):
    """Through ``--data`` only: the student takes its teacher's task, eval and export need no spec file, and
    the label names come back from AutoModel and from the export."""
    from transformers import AutoConfig

    spec = tmp_path / "reviews.yaml"
    spec.write_text(f"train: {reviews / 'train.csv'}\ntest: {reviews / 'test.csv'}\nlabels: [neg, neutral, pos]\n")
    common = ["--epochs", "1", "--threads", "1", "--no-progress"]
    assert main(["teacher", "--data", str(spec), "--base", str(tiny_model), "--out", str(tmp_path / "t"), *common]) == 0
    assert "dev: baseline" in capsys.readouterr().out  # the majority class beside the training table's scores
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["baseline"]["dev"]["accuracy"] == pytest.approx(
        1 / 3
    )
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--student", "2x32", "--out", str(tmp_path / "s"),
                 *common]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["task"] == "reviews" and metrics["task_spec"]["labels"] == ["neg", "neutral", "pos"]
    config = AutoConfig.from_pretrained(tmp_path / "s" / "model")
    assert config.id2label == {0: "neg", 1: "neutral", 2: "pos"} and config.retort_task == "reviews"
    spec.unlink()  # the folders keep the spec
    from retort.data import spec as specs
    from retort.data import tasks

    tasks._USER_TASKS.clear()  # as in a fresh process: the student's config.yaml alone is run again
    specs._RESOLVED.clear()
    assert main(["distill", "--config", str(tmp_path / "s" / "config.yaml"), "--out", str(tmp_path / "s2")]) == 0
    assert json.loads((tmp_path / "s2" / "metrics.json").read_text())["task"] == "reviews"
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "s"), "--split", "test", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "test: baseline" in out
    ev = json.loads((tmp_path / "e.json").read_text())
    assert set(ev["results"]["test"]) == {"accuracy", "macro_f1", "score"}
    assert ev["baseline"]["test"]["accuracy"] == pytest.approx(5 / 15)
    assert main(["report", str(tmp_path / "t"), str(tmp_path / "s"), "--out", str(tmp_path / "page")]) == 0
    page = (tmp_path / "page" / "report.md").read_text()
    assert "reviews accuracy" in page and "baseline (majority class / mean)" in page
    import retort

    said = retort.predict(tmp_path / "s", ["a cat sat", "the dog ran"])  # the PyTorch path: names, probabilities
    assert len(said) == 2 and said[0]["label"] in LABELS and sum(said[0]["probabilities"].values()) == pytest.approx(1)
    assert retort.predict(tmp_path / "s", "a cat", raw=True).shape == (1, 3)
    assert main(["predict", "--model", str(tmp_path / "s"), "--out", str(tmp_path / "p")]) == 0
    lines = (tmp_path / "p" / "reviews-test.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 16 and {x.split("\t")[1] for x in lines[1:]} <= set(LABELS)
    assert main(["export", "--model", str(tmp_path / "s"), "--out", str(tmp_path / "x"), "--threads", "1"]) == 0
    meta = json.loads((tmp_path / "x" / "retort_export.json").read_text())
    assert meta["task"] == "reviews" and meta["label_names"] == ["neg", "neutral", "pos"]
    assert main(["eval", "--model", str(tmp_path / "x"), "--split", "test", "--json", str(tmp_path / "ex.json")]) == 0
    ex = json.loads((tmp_path / "ex.json").read_text())
    assert ex["results"]["test"]["accuracy"] == pytest.approx(ev["results"]["test"]["accuracy"], abs=0.07)
    from retort.deploy.runtime import OnnxModel

    tasks._USER_TASKS.clear()  # as in a fresh process: the export folder alone says its task
    assert [s["label"] for s in retort.predict(tmp_path / "x", ["a cat sat", "the dog ran"])] == [
        s["label"] for s in said
    ]
    served = OnnxModel(tmp_path / "x").predict(["a cat sat", "the dog ran"])  # plain strings, not characters
    assert [s["label"] for s in served] == [s["label"] for s in said]
    with pytest.raises(RetortError, match="input 0: this model reads a single text, not a pair"):
        OnnxModel(tmp_path / "x").predict([("a cat", "a dog")])
    # two models, each timed in a process of its own that knows the task only from the folders
    assert (
        main(
            [
                "bench",
                "--model",
                str(tmp_path / "t" / "model"),
                str(tmp_path / "x"),
                "--batch-sizes",
                "1",
                "--samples",
                "4",
                "--warmup",
                "1",
                "--threads",
                "1",
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "b.json").read_text())["task"] == "reviews"


TOPICS = ("art", "food", "sport")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """tagged/train.jsonl (60 rows) and test.jsonl (15): a text and a list of topics (none, one or two)."""
    root = tmp_path_factory.mktemp("tagged")
    rng = random.Random(2)
    for name, n in (("train", 60), ("test", 15)):
        rows = [{"text": sentence(rng), "tags": sorted(rng.sample(TOPICS, i % 3))} for i in range(n)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_multi_label_is_inferred_from_lists(tagged, tmp_path):
    task = load_task(str(tagged))
    assert task.multi_label and task.label_names == TOPICS and task.problem_type == "multi_label_classification"
    assert task.metrics == ("micro_f1", "macro_f1", "exact_match") and task.primary_metric == "micro_f1"
    rows = [json.loads(x) for x in (tagged / "train.jsonl").read_text().splitlines()]
    first = load_split(task, "train").examples[0]
    assert first.label == tuple(int(t in rows[0]["tags"]) for t in TOPICS)
    # the same rows as CSV: a JSON list written as text, or names joined by label_sep with type given
    write_rows(tmp_path / "a.csv", ["text", "tags"], [[r["text"], json.dumps(r["tags"])] for r in rows])
    write_rows(tmp_path / "b.csv", ["text", "tags"], [[r["text"], "|".join(r["tags"])] for r in rows])
    (tmp_path / "b.yaml").write_text("train: b.csv\ntype: multi_label\nlabel_sep: '|'\n")
    want = [ex.label for ex in load_split(task, "train").examples]
    for data in (tmp_path / "a.csv", tmp_path / "b.yaml"):
        assert [ex.label for ex in load_split(load_task(str(data)), "train").examples] == want, data


@pytest.mark.parametrize(
    "rows,spec,needle",
    [
        ([["a cat", '["art"]'], ["a dog", "food"]] * 5, "", "train.csv:3: label 'food' is a single label but"),
        ([["a cat", '["art"]'], ["a dog", '["food"]']] * 5, "type: classification",
         "train.csv:2: label '[\"art\"]' is a list; lists of labels need type: multi_label"),
        ([["a cat", "art"], ["a dog", "food"]] * 5, "type: multi_label\nmetrics: [accuracy]",
         "a list of micro_f1, macro_f1, weighted_f1, exact_match"),
    ],
)  # fmt: skip
def test_bad_multi_label_input_is_one_line(tmp_path, capsys, tiny_model, rows, spec, needle):
    write_rows(tmp_path / "train.csv", ["text", "label"], rows)
    (tmp_path / "spec.yaml").write_text(f"train: train.csv\n{spec}\n")
    argv = ["teacher", "--data", str(tmp_path / "spec.yaml"), "--base", str(tiny_model), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "r").exists()


def test_multi_label_teacher_student_export(tagged, tiny_model, tmp_path):
    """BCE for the teacher, per-label sigmoid soft targets for the student, multi-hot metrics with the
    per-label majority baseline, and an export whose predict returns the label names above one half."""
    from retort.deploy.runtime import OnnxModel

    common = ["--epochs", "1", "--threads", "1", "--no-progress"]
    assert (
        main(["teacher", "--data", str(tagged), "--base", str(tiny_model), "--out", str(tmp_path / "t"), *common]) == 0
    )
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--student", "2x32", "--method", "kd", "--out",
                 str(tmp_path / "s"), *common]) == 0  # fmt: skip
    log = [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert any("loss/soft" in r for r in log)
    assert main(["eval", "--model", str(tmp_path / "s"), "--split", "test", "--json", str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    assert set(ev["results"]["test"]) == {"micro_f1", "macro_f1", "exact_match", "score"}
    assert 0 <= ev["baseline"]["test"]["exact_match"] <= 1
    assert main(["export", "--model", str(tmp_path / "s"), "--out", str(tmp_path / "x"), "--threads", "1"]) == 0
    model = OnnxModel(tmp_path / "x")
    out = model.predict(["a cat sat on the mat", "the dog ran"])
    assert len(out) == 2 and set(out[0]["probabilities"]) == set(TOPICS)
    assert out[0]["labels"] == [t for t in TOPICS if out[0]["probabilities"][t] > 0.5]
    assert model.predict(["a cat"], raw=True).shape == (1, 3)
    assert main(["predict", "--model", str(tmp_path / "x"), "--out", str(tmp_path / "p.tsv")]) == 0
    rows = [x.split("\t") for x in (tmp_path / "p.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 15 and all(set(filter(None, r[1].split(","))) <= set(TOPICS) for r in rows)


def fine_tuned(tiny_model, folder, id2label):
    """A Hugging Face classifier folder as a user brings it (no retort fields): ``id2label`` as given."""
    import shutil

    from transformers import AutoConfig, BertForSequenceClassification

    shutil.copytree(tiny_model, folder)
    config = AutoConfig.from_pretrained(tiny_model, num_labels=len(id2label), id2label=dict(enumerate(id2label)))
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize(
    "id2label,needle",
    [
        (["neg", "neutral", "pos"], None),  # the task's names in its order (case aside): taken as it is
        (["LABEL_0", "LABEL_1", "LABEL_2"], None),  # placeholder names say nothing: the count is checked
        (["pos", "neutral", "neg"], "labels are pos, neutral, neg and the task reviews's are neg, neutral, pos "
                                    "(the same names in another order)"),
        (["NEGATIVE", "POSITIVE"], "outputs 2 labels (NEGATIVE, POSITIVE), the task reviews has 3 labels"),
        (None, "no trained classification head in the folder"),
    ],
)  # fmt: skip
def test_a_users_teacher_is_checked_against_the_data(reviews, tiny_model, tmp_path, capsys, id2label, needle):
    folder = fine_tuned(tiny_model, tmp_path / "m", id2label) if id2label else tiny_model
    spec = tmp_path / "reviews.yaml"
    spec.write_text(f"train: {reviews / 'train.csv'}\nlabels: [neg, neutral, pos]\n")
    out = tmp_path / "s"
    argv = ["distill", "--teacher", str(folder), "--data", str(spec), "--student", "2x32", "--out", str(out),
            "--epochs", "1", "--max-train-samples", "8", "--threads", "1", "--no-progress"]  # fmt: skip
    code = main(argv)
    err = error_lines(capsys.readouterr().err)
    if needle is None:
        assert code == 0, err
        return
    assert code == 2 and len(err) == 1 and needle in err[0] and err[0].startswith("retort distill: error: "), err
    assert not out.exists()


def test_transfer_sets_of_your_own_data(reviews, tiny_model, tmp_path):
    """``aug:NAME`` (the task's own name), ``NAME:N`` (rows after the cap) and another data file's texts."""
    common = ["--epochs", "1", "--threads", "1", "--no-progress"]
    data = str(reviews / "train.csv")
    assert main(["teacher", "--data", data, "--base", str(tiny_model), "--out", str(tmp_path / "t"), *common,
                 "--max-train-samples", "8"]) == 0  # fmt: skip
    name = load_task(data).name
    extra = write_rows(tmp_path / "more.csv", ["text"], [["a cat sat"], ["the dog ran"], ["a bird"]])
    assert main(["distill", "--teacher", str(tmp_path / "t"), "--data", data, "--student", "1x32", "--out",
                 str(tmp_path / "s"), "--max-train-samples", "8", "--transfer", f"aug:{name}:10", f"{name}:4",
                 f"{extra}:2", *common]) == 0  # fmt: skip
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["transfer_examples"] == 16


def test_dse_on_your_own_pairs(tiny_model, tmp_path):
    """A cross-encoder teacher on a pair CSV, distilled into a bi-encoder that takes the task from it."""
    rng = random.Random(3)
    rows = [[sentence(rng), sentence(rng), ("same", "other")[i % 2]] for i in range(40)]
    data = write_rows(tmp_path / "pairs.csv", ["question1", "question2", "label"], rows)
    common = ["--epochs", "1", "--threads", "1", "--no-progress"]
    assert main(["teacher", "--data", str(data), "--base", str(tiny_model), "--out", str(tmp_path / "t"), *common]) == 0
    assert main(["dse", "train", "--teacher", str(tmp_path / "t"), "--student", "1x32", "--out", str(tmp_path / "d"),
                 *common]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["task"] == "pairs" and metrics["task_spec"]["labels"] == ["other", "same"]
    assert main(["eval", "--model", str(tmp_path / "d"), "--split", "dev"]) == 0
    assert json.loads((tmp_path / "d" / "eval_dev.json").read_text())["task"] == "pairs"


@pytest.mark.parametrize(
    "raw,needle",
    [
        ("text,label\na cat,pos\ncafé crème,neg\n".encode("latin-1"), "train.csv:3: not UTF-8 text"),
        ("text,label\na cat,pos\na dog,neg\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_text_that_is_not_utf8_is_one_line(tmp_path, capsys, tiny_model, raw, needle):
    (tmp_path / "train.csv").write_bytes(raw)
    argv = ["teacher", "--data", str(tmp_path / "train.csv"), "--base", str(tiny_model), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["eval", "predict", "compress"])
def test_a_model_that_is_not_there_is_named_before_its_task(tmp_path, capsys, command):
    """Without --task or --data the task comes from the model folder: a missing one, or a file, is named as
    such (not as a folder that does not say its task)."""
    (tmp_path / "m.csv").write_text("text,label\na cat,pos\n")
    flag = "--teacher" if command == "compress" else "--model"
    extra = {"eval": [], "predict": ["--out", str(tmp_path / "p.tsv")],
             "compress": ["--out", str(tmp_path / "c"), "--speedup", "5"]}[command]  # fmt: skip
    for target, needle in (
        (tmp_path / "nowhere", "no such model folder"),
        (tmp_path / "m.csv", "a file, not a model folder"),
    ):
        assert main([command, flag, str(target), *extra]) == 2
        assert error_lines(capsys.readouterr().err) == [f"retort {command}: error: {flag} {target}: {needle}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]
