from __future__ import annotations

import sys
import types

import pytest

from conftest import write_tsv
from retort.data.glue import TASKS
from retort.data.tasks import get_task, load_split
from retort.errors import DataError


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_reads_train_and_dev(glue_dir, name):
    task = TASKS[name]
    train = load_split(task, "train", glue_dir)
    assert len(train) == 48
    for split in task.dev_splits:
        dev = load_split(task, split, glue_dir)
        assert len(dev) == 24
        for ex in dev.examples:
            assert len(ex.texts) == len(task.text_columns)
            assert all(t.strip() for t in ex.texts)
            if task.is_regression:
                assert 0.0 <= ex.label <= 5.0
            else:
                assert ex.label in range(task.num_labels)


def test_task_aliases():
    assert get_task("sts-b").name == get_task("stsb").name == "STS-B"
    assert get_task("SST2").name == "SST-2"
    assert get_task("MNLI").test_splits == ("test_matched", "test_mismatched")
    assert get_task("RTE").test_splits == ("test",)
    with pytest.raises(DataError, match="unknown task"):
        get_task("squad")


def test_mnli_labels_in_glue_order(glue_dir, tmp_path):
    write_tsv(
        tmp_path / "MNLI" / "train.tsv",
        ["sentence1", "sentence2", "gold_label"],
        [["a", "b", "entailment"], ["c", "d", "neutral"], ["e", "f", "contradiction"]],
    )
    split = load_split("MNLI", "train", tmp_path)
    assert [e.label for e in split.examples] == [0, 1, 2]
    with pytest.raises(DataError, match="several dev splits"):
        load_split("MNLI", "dev", glue_dir)


def test_mrpc_bom_and_cola_without_header(glue_dir):
    mrpc = load_split("MRPC", "dev", glue_dir)
    assert mrpc.examples[0].texts[0][0].isupper()  # header found despite the BOM
    cola = load_split("CoLA", "train", glue_dir)
    assert cola.examples[0].label in (0, 1)


def test_quote_none_keeps_stray_quotes(tmp_path):
    write_tsv(
        tmp_path / "RTE" / "dev.tsv",
        ["index", "sentence1", "sentence2", "label"],
        [["0", 'He said "hi', "ok", "entailment"]],
    )
    assert load_split("RTE", "dev", tmp_path).examples[0].texts[0] == 'He said "hi'


def test_test_split_has_no_labels(tmp_path):
    write_tsv(tmp_path / "RTE" / "test.tsv", ["index", "sentence1", "sentence2"], [["0", "a b", "c d"]])
    assert load_split("RTE", "test", tmp_path).examples[0].label is None


@pytest.mark.parametrize(
    "row, fault",
    [
        (["0", "a", "entailment"], "3 fields, the header has 4"),
        (["0", "a", "b", "maybe"], "label 'maybe' is not one of entailment, not_entailment"),
        (["0", "  ", "b", "entailment"], "empty text"),
    ],
)
def test_bad_rows_name_file_line_and_fault(tmp_path, row, fault):
    good = ["1", "x", "y", "entailment"]
    write_tsv(tmp_path / "RTE" / "train.tsv", ["index", "sentence1", "sentence2", "label"], [good, row, good])
    with pytest.raises(DataError) as e:
        load_split("RTE", "train", tmp_path)
    assert str(e.value) == f"{tmp_path / 'RTE' / 'train.tsv'}:3: {fault}"
    split = load_split("RTE", "train", tmp_path, skip_bad_rows=True)
    assert len(split) == 2 and len(split.skipped) == 1


def test_bad_utf8_and_out_of_range_score(tmp_path):
    path = tmp_path / "STS-B" / "train.tsv"
    path.parent.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path.write_bytes(header.encode() + b"0\tg\tf\ty\t0\ts\ts\tcaf\xe9\tb\t3.0\n" + b"1\tg\tf\ty\t0\ts\ts\ta\tb\t7.5\n")
    with pytest.raises(DataError, match=r"train.tsv:2: bytes that are not UTF-8"):
        load_split("STS-B", "train", tmp_path)
    with pytest.raises(DataError, match=r"train.tsv: all 2 rows were bad"):  # nothing left to train on
        load_split("STS-B", "train", tmp_path, skip_bad_rows=True)
    with path.open("ab") as f:
        f.write(b"2\tg\tf\ty\t0\ts\ts\ta\tb\t2.5\n")
    split = load_split("STS-B", "train", tmp_path, skip_bad_rows=True)
    assert len(split) == 1 and "7.5" in split.skipped[1]


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match="no such task folder"):
        load_split("RTE", "train", tmp_path)
    (tmp_path / "RTE").mkdir()
    with pytest.raises(DataError, match=r"RTE/train.tsv: no such file"):
        load_split("RTE", "train", tmp_path)
    with pytest.raises(DataError, match="has no split"):
        load_split("RTE", "validation_matched", tmp_path)


def test_glue_dir_from_environment(glue_dir, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    assert len(load_split("WNLI", "dev")) == 24


def fake_datasets(load_dataset):
    """A stand-in for the ``datasets`` package: ``load_dataset`` as given."""
    return types.SimpleNamespace(load_dataset=load_dataset, disable_progress_bars=lambda: None, DatasetDict=dict)


def test_hub_fallback_offline_gives_one_clear_line(monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)

    def load_dataset(*a, **k):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load_dataset))
    with pytest.raises(DataError) as e:
        load_split("RTE", "dev")
    assert str(e.value).startswith("no GLUE folder given (--glue-dir or $GLUE_DIR), and from the hub: ")
    assert "hf:nyu-mll/glue:rte (validation): cannot be loaded (Couldn't reach 'nyu-mll/glue'" in str(e.value)
    assert "\n" not in str(e.value)


def test_hub_fallback_maps_columns_and_labels(monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    calls = []

    def load_dataset(repo, config, split):
        calls.append((repo, config, split))
        return [
            {"premise": "p", "hypothesis": "h", "label": 2, "idx": 0},
            {"premise": "p", "hypothesis": "h", "label": -1, "idx": 1},
        ]

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load_dataset))
    split = load_split("MNLI", "dev_mismatched")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert [e.label for e in split.examples] == [2, None]
    assert split.examples[0].texts == ("p", "h")


@pytest.mark.parametrize("name", list(TASKS))
def test_every_glue_task_is_a_spec_a_user_could_write(glue_dir, tmp_path, name):
    """The built-in specs use only the fields of a user's spec: the same spec given as ``--data`` (its hub fields
    left out, files named directly) reads every split to the same examples."""
    import yaml

    from retort.data.glue import GLUE_SPECS
    from retort.data.spec import load_task

    spec = {k: v for k, v in next(s for s in GLUE_SPECS if s["name"] == name).items() if k not in ("hub", "hub_text")}
    spec["name"] = f"my-{name}"
    for split in [k for k in spec if k in ("train", "dev", "test") or k.startswith(("dev_", "test_"))]:
        found = [p for c in spec[split] for p in sorted(glue_dir.glob(c))]
        if found:
            spec[split] = str(found[0])
        else:
            del spec[split]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    mine, builtin = load_task(str(path)), TASKS[name]
    assert mine.dev_splits == builtin.dev_splits and mine.label_names == builtin.label_names
    for split in ["train", *builtin.dev_splits]:
        ours, theirs = load_split(mine, split), load_split(builtin, split, glue_dir)
        assert [(e.texts, e.label) for e in ours.examples] == [(e.texts, e.label) for e in theirs.examples]


def test_layout_fields_of_a_users_spec(tmp_path):
    """quoting: none, a header-less file's columns, label_values with names, a regression range, more dev splits."""
    import yaml

    from retort.data.spec import load_task

    rows = ['7\t1\tHe said "hi', "8\t0\ta plain one"] * 5
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev_a.tsv").write_text("id\tlabel\ttext\n1\t0\tx y\n")
    (tmp_path / "dev_b.tsv").write_text("1\t1\tz\n")
    spec = {"train": "train.tsv", "dev_a": "dev_a.tsv", "dev_b": "dev_b.tsv", "quoting": "none",
            "columns": ["id", "label", "text"], "label_values": [0, 1], "labels": ["neg", "pos"]}  # fmt: skip
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    task = load_task(str(tmp_path / "s.yaml"))
    assert task.dev_splits == ("dev_a", "dev_b") and task.label_names == ("neg", "pos")
    train = load_split(task, "train")
    assert train.examples[0].texts == ('He said "hi',) and [e.label for e in train.examples[:2]] == [1, 0]
    assert load_split(task, "dev_a").examples[0].label == 0  # its first row names the columns: a header
    with pytest.raises(DataError, match="several dev splits"):
        load_split(task, "dev")
    (tmp_path / "dev_b.tsv").write_text("1\t2\tz\n")
    with pytest.raises(DataError, match=r"dev_b.tsv:1: label '2' is not one of the labels train has \(0, 1\)"):
        load_split(task, "dev_b")

    (tmp_path / "r.csv").write_text("text,score\n" + "".join(f"t{i},{i / 4}\n" for i in range(12)) + "u,9.5\n")
    carved = {"train": "r.csv", "range": [0, 5], "dev_size": 0.25, "seed": 3}  # dev_size is a field, not a split
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(carved))
    assert len(load_split(load_task(str(tmp_path / "c.yaml")), "dev", skip_bad_rows=True)) == 3
    bad = {"train": "r.csv", "range": [0, 5]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(DataError, match=r"r.csv:14: label '9.5' is not a number from 0 to 5"):
        load_split(load_task(str(tmp_path / "r.yaml")), "train")
    for fields, needle in [({"range": [5, 0]}, r"range \[5, 0\]: \[low, high\]"),
                           ({"quoting": "all"}, "quoting 'all' is not one of csv, none"),
                           ({"type": "classification", "label_values": ["1"]}, "not among label_values"),
                           ({"columns": "text"}, "columns 'text': a list")]:  # fmt: skip
        (tmp_path / "x.yaml").write_text(yaml.safe_dump({"train": "r.csv", **fields}))
        with pytest.raises(DataError, match=needle):
            load_task(str(tmp_path / "x.yaml"))
