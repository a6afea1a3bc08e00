"""Bad inputs and faults a newcomer meets: each is exit code 2, one line naming the problem, no traceback,
and no file that existed before is changed (issue #15; more cases in test_cli.py and test_export.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import error_lines, train_tiny_teacher
from retort.cli import main


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, glue_dir, tiny_model) -> Path:
    return train_tiny_teacher(glue_dir, tiny_model, tmp_path_factory.mktemp("rel") / "t", "MRPC") / "model"


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def one_error_line(capsys, command: str, needle: str) -> str:
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith(f"retort {command}: error:") and "Traceback" not in err[0]
    assert needle in err[0], err[0]
    return err[0]


def teacher_args(glue_dir, tiny_model, out) -> list[str]:
    return ["teacher", "--task", "MRPC", "--glue-dir", str(glue_dir), "--base", str(tiny_model), "--out", str(out),
            "--epochs", "1", "--threads", "1", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--epochs", "0", "--epochs"),
        ("--epochs", "-1", "--epochs"),
        ("--batch-size", "0", "--batch-size"),
        ("--batch-size", "-4", "--batch-size"),
        ("--eval-batch-size", "0", "--eval-batch-size"),
        ("--lr", "0", "--lr"),
        ("--lr", "-1e-5", "--lr"),
        ("--lr", "nan", "--lr"),
        ("--warmup-ratio", "1.5", "--warmup-ratio"),
        ("--weight-decay", "-0.1", "--weight-decay"),
        ("--max-length", "0", "--max-length"),
        ("--max-length", "1024", "--max-length"),  # above the tiny model's 64 positions
        ("--save-every", "0", "--save-every"),
        ("--log-every", "0", "--log-every"),
        ("--eval-every", "-3", "--eval-every"),
        ("--threads", "0", "--threads"),
        ("--max-train-samples", "0", "--max-train-samples"),
        ("--max-eval-samples", "-5", "--max-eval-samples"),
        ("--set", "max_grad_norm=-1", "--max-grad-norm"),
        ("--set", "epochs=two", "epochs"),
    ],
)
def test_numeric_options_out_of_range(glue_dir, tiny_model, tmp_path, capsys, flag, value, needle):
    out = tmp_path / "run"
    assert main([*teacher_args(glue_dir, tiny_model, out), f"{flag}={value}"]) == 2  # = keeps "-1e-5" a value
    one_error_line(capsys, "teacher", needle)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--temperature", "0"], "--temperature"),
        (["--temperature=-2"], "--temperature"),
        (["--alpha=-1"], "--alpha"),
        (["--set", "objective.gamma=-1"], "--gamma"),
        (["--set", "objective.weight_floor=2"], "--weight-floor"),
        (["--student-heads", "0"], "--student-heads"),
        (["--max-positions", "1"], "--max-positions"),
    ],
)
def test_distill_options_out_of_range(glue_dir, teacher, tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    args = ["distill", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--student", "2x32"]
    assert main([*args, "--out", str(out), "--no-progress", *extra]) == 2
    one_error_line(capsys, "distill", needle)
    assert not out.exists()


def test_out_holding_a_run_is_refused_unless_overwrite(glue_dir, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(teacher_args(glue_dir, tiny_model, out)) == 0
    capsys.readouterr()
    before = snapshot(out)
    args = teacher_args(glue_dir, tiny_model, out)
    assert main([*args, "--task", "RTE"]) == 2
    one_error_line(capsys, "teacher", "holds a run already")
    assert snapshot(out) == before
    assert main([*args, "--resume", "--overwrite"]) == 2
    one_error_line(capsys, "teacher", "choose one")
    assert main([*args, "--task", "RTE", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["task"] == "RTE"


def test_out_that_is_a_file_or_unwritable(glue_dir, tiny_model, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("mine")
    assert main(teacher_args(glue_dir, tiny_model, target)) == 2
    one_error_line(capsys, "teacher", "not a folder")
    assert target.read_text() == "mine"
    assert main(teacher_args(glue_dir, tiny_model, Path("/proc/retort-run"))) == 2
    one_error_line(capsys, "teacher", "cannot write")


@pytest.mark.parametrize(
    "change,needle",
    [
        (["--task", "RTE"], "task 'MRPC' -> 'RTE'"),
        (["--batch-size", "8"], "batch_size 16 -> 8"),
        (["--lr", "1e-4"], "lr"),
        (["--epochs", "2"], "epochs 1 -> 2"),
        (["--seed", "7"], "seed 42 -> 7"),
        (["--max-train-samples", "10"], "max_train_samples"),
    ],
)
def test_resume_refuses_changes_that_change_the_run(glue_dir, tiny_model, tmp_path, capsys, change, needle):
    out = tmp_path / "run"
    assert main([*teacher_args(glue_dir, tiny_model, out), "--save-every", "1"]) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert main(["teacher", "--out", str(out), "--resume", "--no-progress", *change]) == 2
    one_error_line(capsys, "teacher", needle)
    assert snapshot(out) == before


def test_resume_accepts_neutral_changes_and_records_them(glue_dir, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*teacher_args(glue_dir, tiny_model, out), "--save-every", "1", "--keep-checkpoint"]) == 0
    resume = ["teacher", "--out", str(out), "--resume", "--no-progress", "--threads", "2", "--log-every", "3"]
    assert main([*resume, "--no-keep-checkpoint"]) == 0
    assert "threads: 2" in (out / "config.yaml").read_text()
    assert not (out / "checkpoint").exists()  # the resumed run's choice


def test_non_finite_loss_stops_and_saves_nothing(glue_dir, teacher, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--student", "2x32"]
    assert main([*args, "--out", str(out), "--no-progress", "--alpha", "1e39", "--method", "kd"]) == 2
    line = one_error_line(capsys, "distill", "not finite")
    assert "step 1" in line and "soft" in line
    assert not (out / "model").exists() and not (out / "metrics.json").exists()


def test_eval_refuses_non_finite_weights(glue_dir, teacher, tmp_path, capsys):
    broken = tmp_path / "nan-model"
    broken.mkdir()
    for f in teacher.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    name = next(k for k in weights if k.endswith("classifier.weight"))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(broken / "model.safetensors"))
    before = snapshot(tmp_path)
    assert main(["eval", "--task", "MRPC", "--model", str(broken), "--glue-dir", str(glue_dir)]) == 2
    one_error_line(capsys, "eval", "NaN or infinity")
    assert snapshot(tmp_path) == before
    assert main(["export", "--model", str(broken), "--out", str(tmp_path / "x"), "--glue-dir", str(glue_dir)]) == 2
    one_error_line(capsys, "export", "NaN or infinity")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--pairs", "0"], "--pairs"),
        (["--pairs", "10", "--pool", "0"], "--pool"),
        (["--pairs", "10", "--min-words", "5", "--max-words", "2"], "--max-words"),
        (["--pairs", "10", "--batch-size=-1"], "--batch-size"),
    ],
)
def test_mine_pairs_numbers(tmp_path, capsys, args, needle):
    corpus = tmp_path / "c.txt"
    corpus.write_text("A first sentence of some length here.\nAnother sentence of some length there.\n")
    assert main(["mine-pairs", "--corpus", str(corpus), "--out", str(tmp_path / "p.tsv"), *args]) == 2
    one_error_line(capsys, "mine-pairs", needle)
    assert not (tmp_path / "p.tsv").exists()


def test_mining_loop_ends_when_no_partner_exists():
    from retort.distill.mining import Sentence, mine_pairs, parse_mix
    from retort.errors import DataError

    pool = [Sentence(f"Sentence number {i} of its own document.", doc=i) for i in range(5)]
    with pytest.raises(DataError, match="no sentence of the pool has a partner"):
        mine_pairs(pool, None, 10, mix=parse_mix("document=1"), seed=0)


def test_progress_is_a_line_when_stderr_is_not_a_terminal(glue_dir, tiny_model, tmp_path, capsys):
    import io

    from retort.progress import LineProgress

    stream = io.StringIO()
    bar = LineProgress(total=4, initial=0, desc="distill STS-B", batch_size=16, every=0.0, stream=stream)
    for _ in range(4):
        bar.set_postfix(loss="0.5000")
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("distill STS-B: step 4/4 (100%)")
    assert "samples/s, loss 0.5000, ETA 0m00s" in lines[-1]
    args = [a for a in teacher_args(glue_dir, tiny_model, tmp_path / "run") if a != "--no-progress"]
    assert main(args) == 0
    assert "teacher MRPC: step 3/3 (100%)" in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["no-weights", "bad-header", "no-config", "pickle-only", "truncated", "bad-json"])
def test_broken_model_folders_are_one_line(glue_dir, teacher, tmp_path, capsys, fault):
    broken = tmp_path / "m"
    broken.mkdir()
    for f in teacher.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = broken / "model.safetensors"
    if fault == "no-weights":
        weights.unlink()
    elif fault == "bad-header":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif fault == "no-config":
        (broken / "config.json").unlink()
    elif fault == "pickle-only":
        weights.rename(broken / "pytorch_model.bin")
    elif fault == "truncated":
        weights.write_bytes(weights.read_bytes()[:-500])
    elif fault == "bad-json":
        (broken / "config.json").write_text("{not json")
    before = snapshot(tmp_path)
    for command in (["eval", "--task", "MRPC"], ["bench", "--task", "MRPC"]):
        assert main([*command, "--model", str(broken), "--glue-dir", str(glue_dir)]) == 2
        one_error_line(capsys, command[0], str(broken))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fault", ["no-onnx", "bad-meta", "no-tokenizer", "garbage-onnx"])
def test_broken_export_folders_are_one_line(glue_dir, teacher, tmp_path, capsys, fault):
    out = tmp_path / "x"
    assert main(["export", "--model", str(teacher), "--out", str(out), "--glue-dir", str(glue_dir), "--no-eval"]) == 0
    capsys.readouterr()
    {
        "no-onnx": lambda: (out / "model.onnx").unlink(),
        "bad-meta": lambda: (out / "retort_export.json").write_text("[1, 2"),
        "no-tokenizer": lambda: (out / "tokenizer.json").unlink(),
        "garbage-onnx": lambda: (out / "model.onnx").write_bytes(b"not a graph"),
    }[fault]()
    before = snapshot(tmp_path)
    assert main(["eval", "--task", "MRPC", "--model", str(out), "--glue-dir", str(glue_dir)]) == 2
    one_error_line(capsys, "eval", str(out))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fault", ["header-only", "cr-only", "nul", "huge-field", "empty"])
def test_bad_tsv_files_are_one_line(glue_dir, tiny_model, tmp_path, capsys, fault):
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(glue_dir / "MRPC", glue / "MRPC")
    train = glue / "MRPC" / "train.tsv"
    header, *rows = train.read_bytes().split(b"\n")
    needle = {"header-only": "no data rows", "cr-only": "CR only", "nul": "NUL byte", "huge-field": "characters",
              "empty": "empty file"}[fault]  # fmt: skip
    if fault == "header-only":
        train.write_bytes(header + b"\n")
    elif fault == "cr-only":
        train.write_bytes(b"\r".join([header, *rows]))
    elif fault == "nul":
        train.write_bytes(b"\n".join([header, rows[0].replace(b"\t", b"\t\x00", 1), *rows[1:]]))
    elif fault == "huge-field":
        train.write_bytes(b"\n".join([header, b"1\t1\t2\t" + b"word " * 250_000 + b"\tb", *rows[1:]]))
    elif fault == "empty":
        train.write_bytes(b"")
    before = snapshot(tmp_path)
    out = tmp_path / "run"
    args = [a if a != str(glue_dir) else str(glue) for a in teacher_args(glue_dir, tiny_model, out)]
    assert main(args) == 2
    one_error_line(capsys, "teacher", needle)
    assert snapshot(tmp_path) == before and not out.exists()


def test_a_row_cap_stops_reading_early(tmp_path):
    from retort.data.tasks import load_split

    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir(parents=True)
    with path.open("wb") as f:
        f.write(b"sentence\tlabel\n" + b"a fine film\t1\n" * 40 + b"broken row without a label\n" + b"x\t1\n" * 10)
    assert len(load_split("SST-2", "train", tmp_path, max_samples=32)) == 32  # the bad row past the cap is not read


def test_teacher_cache_key_covers_config_tokenizer_and_hub_name(glue_dir, teacher, tmp_path):
    import shutil

    from retort.data.batching import encode
    from retort.data.tasks import load_split
    from retort.distill.teacher_cache import outputs_key
    from retort.models.hf import load_tokenizer

    data = encode(load_split("MRPC", "train", glue_dir), load_tokenizer(str(teacher)), 64)

    def key(t: str, d=data) -> str:
        return outputs_key(t, d, "logits", {}, "float32")

    copy = tmp_path / "t"
    shutil.copytree(teacher, copy)
    assert key(str(copy)) == key(str(teacher))  # same files, same key
    cfg = json.loads((copy / "config.json").read_text())
    cfg["hidden_dropout_prob"] = 0.3
    (copy / "config.json").write_text(json.dumps(cfg))
    changed_config = key(str(copy))
    assert changed_config != key(str(teacher))
    (copy / "tokenizer.json").write_text(
        (copy / "tokenizer.json").read_text().replace('"lowercase": true', '"lowercase": false')
    )
    assert key(str(copy)) != changed_config
    assert key("teacher-a") != key("teacher-b")  # hub ids: no local files
    fewer = encode(load_split("MRPC", "train", glue_dir, max_samples=10), load_tokenizer(str(teacher)), 64)
    assert key(str(teacher), fewer) != key(str(teacher))  # other inputs


def test_student_init_folder_must_match_the_asked_shape(glue_dir, teacher, tmp_path, capsys):
    args = ["distill", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--no-progress"]
    assert main([*args, "--student", "2x32", "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert "tensors copied" in capsys.readouterr().out
    init = str(tmp_path / "a" / "model")
    assert main([*args, "--student", "3x32", "--student-init", init, "--out", str(tmp_path / "b")]) == 2
    one_error_line(capsys, "distill", "is a 2x32 student")
    assert not (tmp_path / "b" / "model").exists()


def test_weight_copy_refuses_a_teacher_of_another_shape():
    from transformers import BertConfig, BertForSequenceClassification

    from retort.errors import ConfigError
    from retort.models.init import copy_teacher_weights

    t = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=4, intermediate_size=64))  # fmt: skip
    s = BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=4, intermediate_size=64))  # fmt: skip
    with pytest.raises(ConfigError, match="word_embeddings.weight has shape"):
        copy_teacher_weights(t, s)


def test_skip_bad_rows_covers_transfer_sets(glue_dir, teacher, tmp_path, capsys):
    pairs = tmp_path / "pairs.tsv"
    from retort.data.tasks import load_split

    a, b = load_split("MRPC", "dev", glue_dir).examples[0].texts  # a dev pair: left out, said and recorded
    pairs.write_bytes(
        b"A dog runs.\tA cat sleeps.\nonly one text\nBad \xff byte.\tFine.\nThe man eats.\tA woman eats.\n"
        + f"{a}\t{b}\n".encode()
    )
    args = ["distill", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--student", "2x32"]
    args += ["--epochs", "1", "--no-progress", "--transfer", str(pairs)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    one_error_line(capsys, "distill", "pairs.tsv:2: expected two tab-separated texts")
    assert main([*args, "--out", str(tmp_path / "b"), "--skip-bad-rows"]) == 0
    out = capsys.readouterr().out
    assert "(2 from transfer sets" in out and "pairs.tsv:3: bytes that are not UTF-8" in out
    assert f"transfer set {pairs}: 1 rows left out, the texts of held-out or dev rows" in out
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["transfer_dropped"] == {str(pairs): 1}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs (root only; skipped elsewhere), unmounted afterwards."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_is_one_line_and_leaves_nothing(glue_dir, teacher, tiny_disk, capsys):
    assert main(["export", "--model", str(teacher), "--out", str(tiny_disk / "x"), "--glue-dir", str(glue_dir)]) == 2
    one_error_line(capsys, "export", "No space left on device")
    assert list(tiny_disk.iterdir()) == []


def test_sigint_stops_with_one_line_and_the_run_resumes(glue_dir, tiny_model, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [a for a in teacher_args(glue_dir, tiny_model, out)] + ["--epochs", "40", "--save-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "retort", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    deadline = time.time() + 120
    while not (out / "checkpoint" / "trainer_state.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    lines = error_lines(err)
    assert proc.returncode == 130 and lines[-1] == "retort teacher: interrupted (resume with --resume)"
    assert "Traceback" not in err
    assert main(["teacher", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 40 * 3


@pytest.mark.parametrize("fault", ["no-embeddings", "bad-embeddings", "count-mismatch", "bad-json"])
def test_broken_index_folders_are_one_line(glue_dir, teacher, tmp_path, capsys, fault):
    dse = tmp_path / "dse"
    args = ["dse", "train", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(teacher)]
    assert main([*args, "--student", "2x32", "--epochs", "1", "--no-progress", "--out", str(dse)]) == 0
    cands = tmp_path / "c.txt"
    cands.write_text("A dog runs.\nA cat sleeps.\nThe man eats.\n")
    idx = tmp_path / "idx"
    assert main(["dse", "index", "--model", str(dse / "model"), "--candidates", str(cands), "--out", str(idx)]) == 0
    capsys.readouterr()
    {
        "no-embeddings": lambda: (idx / "embeddings.safetensors").unlink(),
        "bad-embeddings": lambda: (idx / "embeddings.safetensors").write_bytes(b"\x00" * 20),
        "count-mismatch": lambda: (idx / "candidates.txt").write_text("only one\n"),
        "bad-json": lambda: (idx / "index.json").write_text("{"),
    }[fault]()
    before = snapshot(tmp_path)
    assert main(["dse", "search", "--index", str(idx), "--query", "A dog.", "--model", str(dse / "model")]) == 2
    one_error_line(capsys, "dse", str(idx))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fault", ["state-json", "model-weights", "optimizer-missing", "state-keys"])
def test_broken_checkpoints_are_one_line(glue_dir, tiny_model, tmp_path, capsys, fault):
    out = tmp_path / "run"
    assert main([*teacher_args(glue_dir, tiny_model, out), "--save-every", "1", "--keep-checkpoint"]) == 0
    ck = out / "checkpoint"
    {
        "state-json": lambda: (ck / "trainer_state.json").write_text("{"),
        "model-weights": lambda: (ck / "model.safetensors").write_bytes((ck / "model.safetensors").read_bytes()[:50]),
        "optimizer-missing": lambda: (ck / "optimizer.safetensors").unlink(),
        "state-keys": lambda: (ck / "trainer_state.json").write_text('{"state": {}}'),
    }[fault]()
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(["teacher", "--out", str(out), "--resume", "--no-progress"]) == 2
    one_error_line(capsys, "teacher", "the checkpoint is broken")
    assert snapshot(tmp_path) == before


def test_a_moved_run_folder_resumes(glue_dir, tiny_model, tmp_path):
    out = tmp_path / "run"
    assert main([*teacher_args(glue_dir, tiny_model, out), "--save-every", "1", "--keep-checkpoint"]) == 0
    moved = tmp_path / "moved"
    out.rename(moved)
    assert main(["teacher", "--out", str(moved), "--resume", "--no-progress"]) == 0


def test_a_finished_run_drops_its_resume_state_unless_kept(glue_dir, tiny_model, tmp_path, capsys):
    """The checkpoint (optimizer, RNG: ~3x the model) is for resuming; a finished run removes it, and
    --resume then says why there is nothing to continue. --keep-checkpoint keeps it."""
    out = tmp_path / "run"
    assert main(teacher_args(glue_dir, tiny_model, out)) == 0
    assert not (out / "checkpoint").exists() and not (out / "checkpoint.tmp").exists()
    assert (out / "model" / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(["teacher", "--out", str(out), "--resume", "--no-progress"]) == 2
    one_error_line(capsys, "teacher", "--keep-checkpoint")
    assert snapshot(tmp_path) == before
    kept = tmp_path / "kept"
    assert main([*teacher_args(glue_dir, tiny_model, kept), "--keep-checkpoint"]) == 0
    assert (kept / "checkpoint" / "trainer_state.json").is_file()


@pytest.mark.parametrize(
    "command",
    [["eval", "--task", "MRPC", "--model", "M"], ["bench", "--task", "MRPC", "--model", "M"],
     ["dse", "search", "--index", "M", "--query", "a"], ["cache", "list"]],
)  # fmt: skip
@pytest.mark.parametrize("target", ["missing-folder/out.json", "a-folder"])
def test_a_json_target_that_cannot_be_written_is_one_line(tmp_path, capsys, command, target):
    """Checked before any work: a result file in a folder that does not exist, or a folder given as one."""
    (tmp_path / "a-folder").mkdir()
    before = snapshot(tmp_path)
    args = [str(tmp_path / "M") if a == "M" else a for a in command]
    assert main([*args, "--json", str(tmp_path / target)]) == 2
    one_error_line(capsys, command[0], "--json")
    assert snapshot(tmp_path) == before


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_run_gives_back_the_folder_it_found(glue_dir, tiny_model, tmp_path, capsys, monkeypatch):
    """--overwrite, then the new run fails (here: the disk fills at its first model save): the run it was
    replacing comes back byte for byte, the failed run's log is kept beside it, nothing else remains."""
    import retort.training.loop

    out = tmp_path / "run"
    assert main(teacher_args(glue_dir, tiny_model, out)) == 0
    (out / "notes.txt").write_text("mine")  # not a run file: never touched
    before = snapshot(out)
    capsys.readouterr()
    monkeypatch.setattr(retort.training.loop, "save_hf", _disk_full)
    assert main([*teacher_args(glue_dir, tiny_model, out), "--overwrite", "--seed", "7"]) == 2
    one_error_line(capsys, "teacher", "No space left on device")
    after = snapshot(out)
    failed_log = out / "failed-run.log.jsonl"
    assert failed_log in after and json.loads(after.pop(failed_log).splitlines()[0])["step"] == 1
    assert after == before and not (out / ".before").exists()


def test_a_failed_fresh_run_leaves_only_its_log(glue_dir, tiny_model, tmp_path, capsys, monkeypatch):
    import retort.training.loop

    monkeypatch.setattr(retort.training.loop, "save_hf", _disk_full)
    out = tmp_path / "new"
    assert main(teacher_args(glue_dir, tiny_model, out)) == 2
    one_error_line(capsys, "teacher", "No space left on device")
    assert [p.name for p in out.iterdir()] == ["failed-run.log.jsonl"]


def test_a_failed_resume_gives_back_the_checkpoint_it_resumed(glue_dir, tiny_model, tmp_path, capsys, monkeypatch):
    """Ctrl-C keeps the interrupted run (that is what --resume continues); a resumption that then fails
    leaves the folder as the interruption left it."""
    import retort.training.loop

    real = retort.training.loop.check_finite_loss

    def interrupt_at_3(loss, step):
        if step == 3:
            raise KeyboardInterrupt
        real(loss, step)

    out = tmp_path / "run"
    args = teacher_args(glue_dir, tiny_model, out)
    monkeypatch.setattr(retort.training.loop, "check_finite_loss", interrupt_at_3)
    assert main([*args, "--epochs", "3", "--batch-size", "8", "--save-every", "1"]) == 130
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["state"]["step"] == 2
    monkeypatch.setattr(retort.training.loop, "check_finite_loss", real)
    before = snapshot(out)
    capsys.readouterr()
    monkeypatch.setattr(retort.training.loop, "save_hf", _disk_full)
    assert main(["teacher", "--out", str(out), "--resume", "--no-progress"]) == 2
    one_error_line(capsys, "teacher", "No space left on device")
    after = snapshot(out)
    after.pop(out / "failed-run.log.jsonl")
    assert after == before


def test_guarded_leaves_other_files_and_keeps_an_interrupted_run(tmp_path):
    from retort.training.outdir import guarded

    out = tmp_path / "o"
    out.mkdir()
    (out / "config.yaml").write_text("old")
    (out / "data.tsv").write_text("user")
    with pytest.raises(KeyboardInterrupt), guarded(out):
        (out / "config.yaml").write_text("new")
        raise KeyboardInterrupt
    assert (out / "config.yaml").read_text() == "new" and not (out / ".before").exists()
    with pytest.raises(ValueError), guarded(out):
        (out / "config.yaml").write_text("newer")
        (out / "data.tsv").write_text("user edited in the run")
        (out / "model").mkdir()
        raise ValueError
    assert (out / "config.yaml").read_text() == "new" and not (out / "model").exists()
    assert (out / "data.tsv").read_text() == "user edited in the run"  # not a run file: left alone
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "data.tsv"]


def test_dse_index_and_export_refuse_a_folder_of_other_files(tmp_path, capsys):
    cands = tmp_path / "c.txt"
    cands.write_text("one sentence\nanother sentence\n")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("keep")
    before = snapshot(busy)
    args = ["dse", "index", "--model", str(tmp_path / "nowhere"), "--candidates", str(cands), "--out", str(busy)]
    assert main(args) == 2
    one_error_line(capsys, "dse", "not a retort index")
    assert main(["dse", "export", "--model", str(tmp_path / "nowhere"), "--out", str(busy)]) == 2
    one_error_line(capsys, "dse", "not a sentence-transformers model")
    assert snapshot(busy) == before
