"""What gets read is checked before it is trusted (issue #28): model folders (``models/check.py``), data files
(``data/files.py``, ``data/glue.py``, transfer sets, corpora) and the run folders ``retort report`` reads
(``report/records.py``). Each bad input is exit code 2, one line naming the file and what is wrong, no
traceback, and every file that existed before unchanged; the friendly paths (a run folder for its model, a
narrow student's head count) run and say what they chose."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from conftest import alarm, error_lines, train_tiny_teacher
from retort.cli import main
from retort.errors import DataError, RetortError


@pytest.fixture(scope="module")
def run(tmp_path_factory, glue_dir, tiny_model) -> Path:
    """A tiny MRPC teacher's run folder (4 layers, 32 wide, 4 heads); its model is ``run / "model"``."""
    return train_tiny_teacher(glue_dir, tiny_model, tmp_path_factory.mktemp("inputs") / "t", "MRPC")


@pytest.fixture(scope="module")
def bi_encoder(run, tmp_path_factory) -> Path:
    """A bi-encoder folder as 'retort dse train' saves one, made from the teacher without training."""
    from retort.data.tasks import get_task
    from retort.models.biencoder import BiEncoder
    from retort.models.hf import load_classifier, load_tokenizer, save_model

    model = BiEncoder(load_classifier(str(run / "model"), get_task("MRPC")), 2, False)
    out = tmp_path_factory.mktemp("bi") / "model"
    save_model(model, load_tokenizer(str(run / "model")), out)
    return out


def snapshot(*roots: Path) -> dict:
    """Every entry under ``roots``, symlinks not followed: a regular file's sha256, else its kind (a FIFO
    is never opened)."""
    seen = {}
    for root in roots:
        for p in [root, *root.rglob("*")] if root.is_dir() and not root.is_symlink() else [root]:
            mode = os.lstat(p).st_mode
            seen[p] = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(mode) else stat.S_IFMT(mode)
    return seen


@contextmanager
def deadline(seconds: int = 60):
    """Fail instead of hanging (a FIFO opened for reading waits for a writer for ever)."""

    def stop(*_):
        raise TimeoutError(f"still running after {seconds}s: something blocked")

    with alarm(seconds, stop):
        yield


def refused(capsys, argv: list[str], needle: str, *roots: Path) -> str:
    """Run ``retort ARGV``: exit 2, exactly one stderr line ``retort CMD: error: ...`` holding ``needle``, no
    traceback, nothing under ``roots`` changed. Returns the line."""
    capsys.readouterr()
    before = snapshot(*roots)
    with deadline():
        code = main(argv)
    captured = capsys.readouterr()
    err = error_lines(captured.err)
    assert code == 2, (captured.out[-2000:], err)
    assert len(err) == 1 and err[0].startswith(f"retort {argv[0]}: error: "), err
    assert "Traceback" not in captured.err + captured.out and needle in err[0], err[0]
    assert snapshot(*roots) == before
    return err[0]


def copy_model(run: Path, dest: Path) -> Path:
    shutil.copytree(run / "model", dest)
    return dest


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))


def eval_args(model: Path, glue_dir: Path, tmp_path: Path) -> list[str]:
    return ["eval", "--task", "MRPC", "--model", str(model), "--glue-dir", str(glue_dir), "--json",
            str(tmp_path / "eval.json"), "--threads", "1"]  # fmt: skip


def distill_args(teacher: Path, glue_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--student", "2x32",
            "--out", str(out), "--epochs", "1", "--threads", "1", "--no-progress", *extra]  # fmt: skip


# ------------------------------------------------------------------------------------------------
# model folders


def test_a_model_without_tokenizer_files_is_refused(run, glue_dir, tmp_path, capsys):
    """It used to be evaluated with a 5-token tokenizer (every word [UNK]), wrong accuracy and exit 0."""
    model = copy_model(run, tmp_path / "m")
    for f in model.glob("tokenizer*.json"):
        f.unlink()
    line = refused(capsys, eval_args(model, glue_dir, tmp_path), "no tokenizer", tmp_path, glue_dir)
    assert f"--model {model}" in line
    refused(capsys, distill_args(model, glue_dir, tmp_path / "d"), "no tokenizer", tmp_path, glue_dir)
    export = ["export", "--model", str(model), "--out", str(tmp_path / "x"), "--glue-dir", str(glue_dir)]
    refused(capsys, export, "no tokenizer", tmp_path, glue_dir)
    assert not any((tmp_path / name).exists() for name in ("eval.json", "d", "x"))


def test_a_truncated_tokenizer_json_is_refused(run, glue_dir, tmp_path, capsys):
    model = copy_model(run, tmp_path / "m")
    text = (model / "tokenizer.json").read_text()
    (model / "tokenizer.json").write_text(text[: len(text) // 2])
    line = refused(capsys, eval_args(model, glue_dir, tmp_path), "tokenizer.json is not valid JSON", tmp_path)
    assert "cut short" in line


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("num_hidden_layers", "six", 'config.json num_hidden_layers "six": must be a whole number >= 1'),
        ("hidden_size", -384, "config.json hidden_size -384: must be a whole number >= 1"),
        ("num_attention_heads", 5, "hidden_size 32 is not divisible by num_attention_heads 5"),
        ("vocab_size", 2.5, "config.json vocab_size 2.5: must be a whole number >= 1"),
        ("max_position_embeddings", True, "config.json max_position_embeddings true"),
    ],
)
def test_config_types_and_ranges(run, glue_dir, tmp_path, capsys, field, value, needle):
    teacher = copy_model(run, tmp_path / "m")
    edit_config(teacher, **{field: value})
    line = refused(capsys, distill_args(teacher, glue_dir, tmp_path / "d"), needle, tmp_path, glue_dir)
    assert line.startswith(f"retort distill: error: --teacher {teacher}: config.json {field}") or "divisible" in line
    refused(capsys, eval_args(teacher, glue_dir, tmp_path), needle, tmp_path, glue_dir)


def test_a_classifier_of_the_wrong_shape_for_the_same_bytes_is_refused(run, glue_dir, tmp_path, capsys):
    """classifier.weight saved as (32, 2) instead of (2, 32): the file is as long as a good one."""
    teacher = copy_model(run, tmp_path / "m")
    weights = load_file(str(teacher / "model.safetensors"))
    weights["classifier.weight"] = weights["classifier.weight"].t().contiguous()
    size = (teacher / "model.safetensors").stat().st_size
    save_file(weights, str(teacher / "model.safetensors"), metadata={"format": "pt"})
    assert (teacher / "model.safetensors").stat().st_size == size
    needle = "model.safetensors classifier.weight has shape [32, 2], config.json implies [2, 32]"
    refused(capsys, distill_args(teacher, glue_dir, tmp_path / "d"), needle, tmp_path, glue_dir)
    refused(capsys, eval_args(teacher, glue_dir, tmp_path), needle, tmp_path, glue_dir)


def test_a_tokenizer_past_the_vocabulary_is_refused(run, glue_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    model = copy_model(run, tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    tokenizer.add_tokens([f"word{i}" for i in range(64)])  # ids past the model's vocab_size
    tokenizer.save_pretrained(str(model))
    refused(capsys, eval_args(model, glue_dir, tmp_path), "the tokenizer has token ids up to", tmp_path)


def test_a_bi_encoder_is_no_teacher(bi_encoder, glue_dir, tmp_path, capsys):
    line = refused(capsys, distill_args(bi_encoder, glue_dir, tmp_path / "d"), "a retort bi-encoder", bi_encoder)
    assert "retort_dse.json" in line and "not a cross-encoder teacher" in line and "retort dse index" in line
    args = ["teacher", "--task", "MRPC", "--glue-dir", str(glue_dir), "--base", str(bi_encoder), "--out",
            str(tmp_path / "t"), "--no-progress"]  # fmt: skip
    refused(capsys, args, "a retort bi-encoder", bi_encoder)
    assert not (tmp_path / "d").exists() and not (tmp_path / "t").exists()


def test_kinds_of_folder_where_each_is_taken(run, bi_encoder, tmp_path):
    """A bi-encoder is a model for eval, an export too (the runtime reads it: not opened here); neither
    is a teacher; a cross-encoder is no bi-encoder."""
    from retort.models.check import check_model_folder, inspect_model_folder

    assert inspect_model_folder(str(bi_encoder)).what == "dse"
    assert check_model_folder(str(bi_encoder), kind="bi-encoder") == str(bi_encoder)
    export = tmp_path / "export"
    export.mkdir()
    (export / "retort_export.json").write_text("{}")
    assert inspect_model_folder(str(export), "--model").what == "export"
    with pytest.raises(RetortError, match="an ONNX export .* not a PyTorch model folder"):
        check_model_folder(str(export), "--teacher", kind="teacher")
    with pytest.raises(RetortError, match="a cross-encoder .* not a bi-encoder"):
        check_model_folder(str(run / "model"), "--model", kind="bi-encoder")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RetortError, match="a file, not a model folder"):
        check_model_folder(str(tmp_path / "file"), "--model")


# ------------------------------------------------------------------------------------------------
# friendly paths


def test_a_run_folder_given_for_its_model(run, glue_dir, tmp_path, capsys):
    """``--teacher runs/t`` for ``runs/t/model``: used, and said in one line on stderr."""
    capsys.readouterr()
    assert main(distill_args(run, glue_dir, tmp_path / "d")) == 0
    notes = [x for x in error_lines(capsys.readouterr().err) if "holding one model" in x]
    assert notes == [f"--teacher {run}: a folder holding one model; using {run / 'model'}"]
    assert main(eval_args(run, glue_dir, tmp_path)) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["model"] == str(run / "model")
    two = tmp_path / "two"
    shutil.copytree(run / "model", two / "a")
    shutil.copytree(run / "model", two / "b")
    refused(capsys, eval_args(two, glue_dir, tmp_path), "it holds 2 models", two)


def test_every_command_takes_a_run_folder_for_its_model(run, bi_encoder, glue_dir, tmp_path, capsys):
    """``eval``, ``export``, ``bench`` and ``dse index/export`` check ``--model`` first (``models/check.py``) and
    take a run folder for its model; ``eval``'s default JSON then goes beside the run, not into its model."""
    work = tmp_path / "run"
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("tb", "*.png"))
    assert main(["eval", "--task", "MRPC", "--model", str(work), "--glue-dir", str(glue_dir), "--threads", "1"]) == 0
    assert (work / "eval_dev.json").is_file() and not (work / "model" / "eval_dev.json").exists()
    assert main(["export", "--model", str(work), "--out", str(tmp_path / "x"), "--no-eval", "--glue-dir",
                 str(glue_dir), "--threads", "1"]) == 0  # fmt: skip
    assert (tmp_path / "x" / "retort_export.json").is_file()
    assert (
        main(
            [
                "bench",
                "--model",
                str(work),
                "--task",
                "MRPC",
                "--glue-dir",
                str(glue_dir),
                "--threads",
                "1",
                "--batch-sizes",
                "1",
                "--samples",
                "4",
                "--warmup",
                "1",
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    bi_run = tmp_path / "bi-run"
    shutil.copytree(bi_encoder, bi_run / "model")
    (bi_run / "config.yaml").write_text("task: MRPC\n")
    (tmp_path / "cands.txt").write_text("A man plays a guitar.\nA dog runs.\n")
    assert main(["dse", "index", "--model", str(bi_run), "--candidates", str(tmp_path / "cands.txt"), "--out",
                 str(tmp_path / "idx"), "--threads", "1"]) == 0  # fmt: skip
    assert main(["dse", "export", "--model", str(bi_run), "--out", str(tmp_path / "st")]) == 0
    notes = [x for x in error_lines(capsys.readouterr().err) if "holding one model" in x]
    assert len(notes) == 5, notes
    # the wrong kind of folder is one line, before anything is written
    refused(capsys, ["export", "--model", str(tmp_path / "x"), "--out", str(tmp_path / "y")],
            "an ONNX export", tmp_path / "x")  # fmt: skip
    refused(capsys, ["dse", "index", "--model", str(work), "--candidates", str(tmp_path / "cands.txt"), "--out",
                     str(tmp_path / "idx2")], "not a bi-encoder", work)  # fmt: skip
    assert not (tmp_path / "y").exists() and not (tmp_path / "idx2").exists()


def test_max_length_past_the_position_table_is_one_line(run, glue_dir, tmp_path, capsys):
    """The tiny teacher has 64 positions: ``eval``, ``predict`` and ``export`` name the table, nothing is written."""
    model = run / "model"
    line = refused(capsys, [*eval_args(model, glue_dir, tmp_path), "--max-length", "100"], "--max-length 100", model)
    assert "between 2 and 64" in line
    refused(capsys, ["export", "--model", str(model), "--out", str(tmp_path / "x"), "--max-length", "100",
                     "--glue-dir", str(glue_dir)], "between 2 and 64", model)  # fmt: skip
    assert not (tmp_path / "eval.json").exists() and not (tmp_path / "x").exists()


def test_device_cuda_without_a_gpu_is_one_line(run, glue_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    refused(capsys, distill_args(run, glue_dir, tmp_path / "d", "--device", "cuda"), "no CUDA GPU", run)
    assert not (tmp_path / "d" / "model").exists()


def test_a_mistyped_option_is_named_under_its_command(capsys):
    assert main(["demo", "--studnet", "3x4"]) == 2
    assert capsys.readouterr().err.startswith("retort demo: error: unrecognized arguments: --studnet 3x4")


@pytest.mark.parametrize(
    "extra,said,heads,averaged",
    [
        ([], "student heads: 4, the teacher's count", 4, False),  # 48 wide: hidden/64 would give 1 head
        (["--student-heads", "2"], "comparing head-averaged maps", 2, True),
    ],
)
def test_a_narrow_students_heads_get_a_default(run, glue_dir, tmp_path, capsys, extra, said, heads, averaged):
    """A 48-wide student of a 4-head 32-wide teacher with an attention term used to stop, naming a flag."""
    out = tmp_path / "d"
    args = distill_args(run / "model", glue_dir, out, "--method", "tinybert", *extra)
    args[args.index("2x32")] = "2x48"
    capsys.readouterr()
    assert main(args) == 0
    assert said in capsys.readouterr().out
    assert json.loads((out / "model" / "config.json").read_text())["num_attention_heads"] == heads
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["student_heads"] == heads and saved["objective"]["head_average"] is averaged


# ------------------------------------------------------------------------------------------------
# data files


@pytest.fixture
def glue_copy(glue_dir, tmp_path) -> Path:
    return Path(shutil.copytree(glue_dir / "RTE", tmp_path / "glue" / "RTE")).parent


def teacher_args(glue: Path, tiny_model: Path, out: Path) -> list[str]:
    return ["teacher", "--task", "RTE", "--glue-dir", str(glue), "--base", str(tiny_model), "--out", str(out),
            "--epochs", "1", "--threads", "1", "--no-progress"]  # fmt: skip


def _rewrite_header(path: Path, header: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(header + "\n" + "".join(lines[1:]))


@pytest.mark.parametrize(
    "header,needle",
    [
        ("index\tsentence1\tsentence2\tlabel\tlabel", "column 'label' appears 2 times in the header (columns 4, 5)"),
        ("index\tsentence1\tsentence2\tgold", "no label column 'label' in the header (its columns: index, "),
        ("index\tsentence1\tsentence1\tsentence2\tlabel", "column 'sentence1' appears 2 times"),
    ],
)
def test_header_columns_named_twice_or_missing(glue_copy, tiny_model, tmp_path, capsys, header, needle):
    train = glue_copy / "RTE" / "train.tsv"
    _rewrite_header(train, header)
    if header.count("\t") == 4:  # one column more: every row gets one
        rows = train.read_text().splitlines()
        train.write_text("\n".join([rows[0], *(r + "\tx" for r in rows[1:])]) + "\n")
    line = refused(capsys, teacher_args(glue_copy, tiny_model, tmp_path / "r"), needle, glue_copy)
    assert f"{train}:1:" in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("codec,named", [("utf-16", "UTF-16 (little-endian)"), ("utf-16-be", "UTF-16 (big-endian"),
                                         ("utf-32", "UTF-32")])  # fmt: skip
def test_utf16_and_utf32_files_are_named(glue_copy, tiny_model, tmp_path, capsys, codec, named):
    train = glue_copy / "RTE" / "train.tsv"
    train.write_bytes(train.read_text().encode(codec))
    line = refused(capsys, teacher_args(glue_copy, tiny_model, tmp_path / "r"), named, glue_copy)
    assert "save it as UTF-8" in line and "binary" not in line


def test_latin1_header_is_named(glue_copy, tiny_model, tmp_path, capsys):
    train = glue_copy / "RTE" / "train.tsv"
    rows = train.read_bytes().split(b"\n", 1)[1]
    train.write_bytes("index\tsentence1\tsentence2\tlabel\tnot\u00e9\n".encode("latin-1") + rows)
    refused(capsys, teacher_args(glue_copy, tiny_model, tmp_path / "r"), "Latin-1 or Windows-1252", glue_copy)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.symlink_to(p.name), "a symlink loop"),
        (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a file"),
        (lambda p: p.symlink_to("nowhere.tsv"), "a symlink to nowhere.tsv, which does not exist"),
    ],
)
def test_a_folder_fifo_or_symlink_loop_where_a_file_should_be(glue_copy, tiny_model, tmp_path, capsys, make, needle):
    train = glue_copy / "RTE" / "train.tsv"
    train.unlink()
    make(train)
    line = refused(capsys, teacher_args(glue_copy, tiny_model, tmp_path / "r"), needle, glue_copy)
    assert str(train) in line and "no such file" not in line


def test_transfer_and_corpus_files_are_checked_the_same_way(glue_dir, tmp_path):
    from retort.data import corpus
    from retort.data.tasks import get_task
    from retort.data.transfer import load_transfer

    rte = get_task("RTE")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "u16.tsv").write_bytes("a b\tc d\n".encode("utf-16"))
    with deadline():
        for name, needle in [("dir", "is a folder"), ("fifo", "is a FIFO"), ("loop", "symlink loop"),
                             ("u16.tsv", "UTF-16 (little-endian) text; save it as UTF-8")]:  # fmt: skip
            with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
                load_transfer(rte, str(tmp_path / name), glue_dir)
        with pytest.raises(DataError, match="--corpus .*fifo: is a FIFO"):
            corpus.corpus_files(tmp_path / "fifo")
        with pytest.raises(DataError, match="symlink loop"):
            corpus.corpus_files(tmp_path / "loop")
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "wiki").write_bytes("Some text here.\n".encode("utf-16"))
        with pytest.raises(DataError, match="wiki: UTF-16"):
            list(corpus.documents(corpus.corpus_files(tmp_path / "c")))
        from retort.distill.mining import read_corpus  # mine-pairs reads its corpus the same way

        with pytest.raises(DataError, match="--corpus .*fifo: is a FIFO"):
            read_corpus([tmp_path / "fifo"])
        with pytest.raises(DataError, match="wiki: UTF-16"):
            read_corpus([tmp_path / "c"])


# ------------------------------------------------------------------------------------------------
# retort report


@pytest.fixture
def runs(run, tmp_path) -> Path:
    """A folder holding two copies of the finished run (model folders left out: the reports read metrics)."""
    root = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(run, root / name, ignore=shutil.ignore_patterns("model", "tb", "*.png"))
    return root


def test_report_on_damaged_metrics(runs, tmp_path, capsys):
    metrics = runs / "a" / "metrics.json"
    good = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**good, "best": [0.5]}))
    line = refused(capsys, ["report", str(runs)], "field 'best' is a list, expected an object", runs)
    assert str(metrics) in line
    metrics.write_text(json.dumps({**good, "wall_seconds": "long"}))
    refused(capsys, ["report", str(runs / "a")], "field 'wall_seconds' is \"long\", expected a number", runs)
    metrics.write_text(json.dumps(good)[:200])
    refused(capsys, ["report", str(runs)], "metrics.json: unreadable, not valid JSON (cut short?)", runs)
    refused(capsys, ["report", str(runs), "--out", str(tmp_path / "page")], "not valid JSON", runs)
    assert not (tmp_path / "page").exists()


def test_report_on_unrelated_json(runs, tmp_path, capsys):
    """Unrelated JSON below a folder of runs is skipped with a note; a folder of it alone holds no run; an
    unrelated metrics.json given as a run folder is refused."""
    other = runs / "other-tool"
    other.mkdir()
    (other / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "epochs": [1, 2]}))
    capsys.readouterr()
    assert main(["report", str(runs)]) == 0
    captured = capsys.readouterr()
    assert error_lines(captured.err) == [f"note: {other / 'metrics.json'}: skipped, not a retort run's metrics.json"]
    assert str(runs / "a") in captured.out and str(runs / "b") in captured.out and "other-tool" not in captured.out
    refused(capsys, ["report", str(other)], "not a retort run's metrics.json", runs)
    loose = tmp_path / "json"
    loose.mkdir()
    for name in ("a.json", "b.json"):
        (loose / name).write_text(json.dumps([1, 2, 3]))
    refused(capsys, ["report", str(loose)], f"{loose}: holds no run", loose)
    refused(capsys, ["report", str(loose), "--out", str(tmp_path / "page")], f"{loose}: holds no run", loose)


def test_report_on_an_empty_folder(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, ["report", str(empty)], f"{empty}: holds no run", empty)
    capsys.readouterr()
    assert main(["report", str(runs / "a"), str(empty)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "(holds no run)" in rows[-1] and "unfinished" not in rows[-1]
    (empty / "config.yaml").write_text("task: RTE\n")  # a run that has begun: unfinished, not empty
    assert main(["report", str(empty)]) == 0
    assert "(no metrics.json: unfinished?)" in capsys.readouterr().out
