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
        (["0", "a", "entailment"], "expected 4 tab-separated columns, found 3"),
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


def test_hub_fallback_offline_gives_one_clear_line(monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)

    def load_dataset(*a, **k):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError) as e:
        load_split("RTE", "dev")
    assert "nyu-mll/glue/rte (validation) could not be loaded" in str(e.value)
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

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    split = load_split("MNLI", "dev_mismatched")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert [e.label for e in split.examples] == [2, None]
    assert split.examples[0].texts == ("p", "h")
