"""What gets written (issue #28): one output rule for every command that writes (never an input, never a
model or a run it did not make, never a device or a FIFO, ``-`` for standard output), one writer per run
folder (a lock naming the process that holds it), and every disk error one line naming the path with the
folder given back as it was found. Each refusal is exit code 2, one line, no traceback, and every file
(and device node) that existed before is unchanged."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError
from safetensors.numpy import save_file

from conftest import error_lines, train_tiny_teacher, write_tsv
from retort.cli import main
from retort.errors import RetortError
from retort.training import outdir

FULL = "Error while serializing: I/O error: No space left on device (os error 28)"  # safetensors on a full disk


@pytest.fixture(scope="module")
def run(tmp_path_factory, glue_dir, tiny_model) -> Path:
    """A finished RTE teacher run (its model in run/model), shared by the module's tests."""
    return train_tiny_teacher(glue_dir, tiny_model, tmp_path_factory.mktemp("outputs") / "t", "RTE")


@pytest.fixture(scope="module")
def glue(tmp_path_factory, glue_dir) -> Path:
    """A GLUE folder of its own with RTE's test split too (for predict)."""
    root = tmp_path_factory.mktemp("glue-rte")
    shutil.copytree(glue_dir / "RTE", root / "RTE")
    rows = [[str(i), f"The cat sleeps {i}.", "A dog runs."] for i in range(6)]
    write_tsv(root / "RTE" / "test.tsv", ["index", "sentence1", "sentence2"], rows)
    return root


def state(*roots: Path) -> dict:
    """Every entry under ``roots`` (symlinks not followed): a file's sha256, a folder, a link's target, or
    a special file's type and device numbers (never read: /dev/full-like nodes never end)."""
    seen = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                p = Path(folder) / name
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode):
                    seen[p] = hashlib.sha256(p.read_bytes()).hexdigest()
                elif stat.S_ISLNK(st.st_mode):
                    seen[p] = ("link", os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    seen[p] = "dir"
                else:
                    seen[p] = (stat.S_IFMT(st.st_mode), st.st_rdev)
    return seen


def refused(capsys, argv: list, command: str, *needles: str) -> str:
    """Run ``retort ARGV``: exit code 2, one line on stderr under the command's name holding ``needles``."""
    assert main([str(a) for a in argv]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith(f"retort {command}: error: ") and "Traceback" not in err[0], err[0]
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def teacher_args(glue_dir: Path, tiny_model: Path, out, *extra) -> list:
    return ["teacher", "--task", "MRPC", "--glue-dir", glue_dir, "--base", tiny_model, "--out", out,
            "--epochs", "1", "--threads", "1", "--no-progress", *extra]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# an output is never an input, nor inside one, nor a folder holding one


def test_dse_search_json_onto_its_index(tmp_path, capsys):
    idx = tmp_path / "idx"
    idx.mkdir()
    save_file({"embeddings": np.zeros((2, 4), dtype=np.float32)}, str(idx / "embeddings.safetensors"))
    (idx / "candidates.txt").write_text("one\ntwo\n")
    (idx / "index.json").write_text(json.dumps({"model": str(tmp_path / "m"), "count": 2, "dim": 4}))
    before = state(tmp_path)
    argv = ["dse", "search", "--index", idx, "--query", "a dog", "--json", idx / "embeddings.safetensors"]
    refused(capsys, argv, "dse", f"--json {idx / 'embeddings.safetensors'}: is inside {idx}", "(the index)")
    assert state(tmp_path) == before


def test_bench_json_onto_another_models_weights(run, glue_dir, tiny_model, capsys):
    before = state(tiny_model, run)
    argv = ["bench", "--model", run / "model", "--task", "RTE", "--glue-dir", glue_dir, "--json",
            tiny_model / "model.safetensors"]  # fmt: skip
    refused(capsys, argv, "bench", "--json", f"is inside {tiny_model}, a model folder that this command did not make")
    assert state(tiny_model, run) == before


@pytest.mark.parametrize("command,flag,name", [("eval", "--json", "dev.tsv"), ("predict", "--out", "test.tsv")])
def test_a_result_onto_the_data_it_reads(run, glue, capsys, command, flag, name):
    """The split file, its task folder (predict: RTE/RTE.tsv in it) and a symlink to the file are all the data."""
    before = state(glue, run)
    data = glue / "RTE" / name
    argv = [command, "--task", "RTE", "--model", run / "model", "--glue-dir", glue, flag, data]
    refused(capsys, argv, command, f"{flag} {data}: is inside {glue / 'RTE'}", "(the RTE data); choose another")
    refused(capsys, argv[:-1] + [glue / "RTE"], command, f"{flag} {glue / 'RTE'}")  # predict: RTE/RTE.tsv in it
    link = run.parent / "link.tsv"
    link.symlink_to(data)
    try:
        refused(capsys, argv[:-1] + [link], command, "input of this command (the RTE data)")
    finally:
        link.unlink()
    assert state(glue, run) == before


def test_mine_pairs_out_onto_its_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sleeps on the red mat today. The dog runs in the big park now.\n")
    before = state(tmp_path)
    argv = ["mine-pairs", "--corpus", corpus, "--out", corpus, "--pairs", "4", "--mix", "random=1"]
    refused(capsys, argv, "mine-pairs", f"--out {corpus}: is an input of this command (the corpus)")
    assert state(tmp_path) == before


def test_export_onto_the_model_it_exports(run, glue_dir, capsys):
    before = state(run)
    model = run / "model"
    argv = ["export", "--model", model, "--out", model, "--force", "--glue-dir", glue_dir, "--no-eval"]
    refused(capsys, argv, "export", f"--out {model}: is an input of this command (the model)")
    argv = ["export", "--model", model, "--out", run, "--force", "--glue-dir", glue_dir, "--no-eval"]
    refused(capsys, argv, "export", f"--out {run}: holds {model}, an input of this command")
    assert state(run) == before


def test_distill_into_its_teacher(run, glue_dir, capsys):
    before = state(run)
    teacher = run / "model"
    args = ["distill", "--task", "RTE", "--glue-dir", glue_dir, "--teacher", teacher, "--student", "1x32",
            "--epochs", "1", "--no-progress", "--out"]  # fmt: skip
    refused(capsys, [*args, teacher / "sub"], "distill", f"is inside {teacher}, an input of this command (the teacher)")
    refused(capsys, [*args, teacher, "--overwrite"], "distill", "is an input of this command (the teacher)")
    refused(capsys, [*args, run, "--overwrite"], "distill", f"holds {teacher}, an input of this command")
    assert state(run) == before


def test_a_run_never_goes_into_a_model_or_another_run(run, glue_dir, tiny_model, tmp_path, capsys):
    before = state(run, tiny_model)
    refused(capsys, teacher_args(glue_dir, tiny_model, run / "model", "--overwrite"), "teacher", "holds a model")
    refused(capsys, teacher_args(glue_dir, tiny_model, run / "inner"), "teacher", f"is inside {run}, a run folder")
    refused(capsys, teacher_args(glue_dir, tiny_model, tiny_model / "run"), "teacher", "(the base model)")
    assert state(run, tiny_model) == before
    assert not (run / "inner").exists()


def test_report_force_never_deletes_a_run(run, tiny_model, capsys):
    before = state(run, tiny_model)
    refused(
        capsys, ["report", run, "--out", run, "--force"], "report", "is an input of this command (a run of the page)"
    )
    refused(capsys, ["report", run, "--out", run / "model", "--force"], "report", f"is inside {run}, an input")
    refused(capsys, ["report", run, "--out", tiny_model, "--force"], "report", "holds a model, which this command")
    assert state(run, tiny_model) == before


def test_force_replaces_an_export_but_never_a_run(run, glue_dir, tmp_path, capsys):
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "config.yaml").write_text("task: RTE\n")
    (other / "metrics.json").write_text("{}")
    before = state(other)
    argv = ["export", "--model", run / "model", "--out", other, "--force", "--glue-dir", glue_dir, "--no-eval"]
    refused(capsys, argv, "export", "holds a run, which this command does not make and never replaces")
    assert state(other) == before


# ---------------------------------------------------------------------------------------------------
# never a device, a FIFO, a loop; names and paths too long are one line


def test_eval_json_onto_a_device_node_or_a_fifo(run, glue_dir, tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full's numbers, in a temporary folder
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = state(tmp_path, run)
    argv = ["eval", "--task", "RTE", "--model", run / "model", "--glue-dir", glue_dir, "--json"]
    refused(capsys, [*argv, full], "eval", f"--json {full}: is a character device, not a regular file")
    refused(capsys, [*argv, fifo], "eval", f"--json {fifo}: is a FIFO (named pipe), not a regular file")
    (tmp_path / "to-full").symlink_to(full)
    refused(capsys, [*argv, tmp_path / "to-full"], "eval", "is a character device")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(capsys, [*argv, tmp_path / "loop" / "x.json"], "eval", "a symlink loop")
    after = state(tmp_path, run)
    assert {p: v for p, v in after.items() if p.name not in ("to-full", "loop")} == before
    assert stat.S_ISCHR(os.lstat(full).st_mode) and os.lstat(full).st_rdev == os.makedev(1, 7)


@pytest.mark.parametrize("shape", ["name", "path"])
def test_paths_too_long_are_one_line(run, glue_dir, tiny_model, tmp_path, capsys, shape):
    """A 300-character name (over NAME_MAX, 255) and a 4,500-character path (over PATH_MAX, 4096)."""
    long = str(tmp_path / ("a" * 300)) if shape == "name" else str(tmp_path)
    while shape == "path" and len(long) < 4500:  # names of 200 characters, 4,500 characters in all
        long += "/" + "b" * min(200, 4499 - len(long))
    assert len(long) == 4500 or shape == "name"
    needle = "a name in it is 300 bytes" if shape == "name" else "a path may have at most 4095"
    before = state(tmp_path, run)
    refused(capsys, teacher_args(glue_dir, tiny_model, long), "teacher", "--out", needle)
    refused(capsys, ["export", "--model", run / "model", "--out", long, "--glue-dir", glue_dir], "export", needle)
    refused(capsys, ["eval", "--task", "RTE", "--model", run / "model", "--glue-dir", glue_dir, "--json", long],
            "eval", "--json", needle)  # fmt: skip
    assert state(tmp_path, run) == before


# ---------------------------------------------------------------------------------------------------
# '-' is standard output; a command's own result beside its model is allowed


def test_dash_is_standard_output(run, glue, capsys):
    model = run / "model"
    before = state(run)
    assert main(["eval", "--task", "RTE", "--model", str(model), "--glue-dir", str(glue), "--json", "-",
                 "--max-eval-samples", "8", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr()
    assert json.loads(out.out)["task"] == "RTE" and "accuracy" in out.err  # the table went to stderr
    assert main(["predict", "--task", "RTE", "--model", str(model), "--glue-dir", str(glue), "--out", "-",
                 "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "index\tprediction" and len(out.out.splitlines()) == 7
    assert "wrote standard output: 6 predictions" in out.err
    assert main(["bench", "--model", str(model), "--task", "RTE", "--glue-dir", str(glue), "--threads", "1",
                 "--batch-sizes", "1", "--samples", "4", "--warmup", "1", "--json", "-"]) == 0  # fmt: skip
    out = capsys.readouterr()
    assert json.loads(out.out)["latency"][0]["batch_size"] == 1
    assert state(run) == before  # nothing written beside the model
    assert not Path("-").exists()


class FakeEmbedder:
    """A stand-in for a bi-encoder (dse index and search on a fake model: what is tested is the writing)."""

    pooling, embedding_dim = "mean", 4

    def embed(self, texts, batch_size=128, desc=None):
        return np.ones((len(texts), 4), dtype=np.float32)

    def score_against(self, query, candidates, label=None):
        return candidates.sum(1)

    def default_label(self):
        return None


def test_dse_search_json_dash_is_standard_output(tmp_path, capsys, monkeypatch):
    import retort.deploy.dse

    monkeypatch.setattr(retort.deploy.dse, "load_embedder", lambda *_, **__: FakeEmbedder())
    cands = tmp_path / "c.txt"
    cands.write_text("one sentence\nanother one\n")
    assert main(["dse", "index", "--model", str(tmp_path / "m"), "--candidates", str(cands), "--out",
                 str(tmp_path / "idx")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["dse", "search", "--index", str(tmp_path / "idx"), "--query", "a dog", "--json", "-"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["results"][0][0]["rank"] == 1 and "query: a dog" in out.err


def test_results_beside_a_run_but_not_onto_its_files(run, glue, capsys):
    args = ["eval", "--task", "RTE", "--model", str(run / "model"), "--glue-dir", str(glue), "--max-eval-samples",
            "8", "--threads", "1", "--json"]  # fmt: skip
    before = state(run)
    refused(capsys, [*args, run / "metrics.json"], "eval", f"is inside {run}, a run folder")
    refused(capsys, [*args, run / "model" / "scores.json"], "eval", "an input of this command (the model)")
    assert state(run) == before
    assert main([*args, str(run / "eval-rte.json")]) == 0  # a new name beside the run's files
    assert main(args[:-1]) == 0  # the default, RUN/eval_dev.json: the command's own result, beside the run
    assert (run / "eval-rte.json").is_file() and (run / "eval_dev.json").is_file()
    assert not (run / "model" / "eval_dev.json").exists()
    (run / "eval-rte.json").unlink()
    (run / "eval_dev.json").unlink()


def test_eval_never_writes_into_a_users_model_folder(run, glue, tmp_path, capsys):
    """A model folder retort did not make (as a user brings a fine-tuned one) is read, never written: no
    default JSON (the result is printed, and ``--json`` keeps it elsewhere)."""
    theirs = tmp_path / "theirs"
    shutil.copytree(run / "model", theirs)
    before = state(theirs)
    args = ["eval", "--task", "RTE", "--model", str(theirs), "--glue-dir", str(glue), "--max-eval-samples", "8",
            "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    assert "not written" in capsys.readouterr().err and state(theirs) == before
    assert main([*args, "--json", str(tmp_path / "e.json")]) == 0 and (tmp_path / "e.json").is_file()


# ---------------------------------------------------------------------------------------------------
# one writer per run folder


def test_a_second_writer_is_refused_and_the_first_goes_on(glue_dir, tiny_model, tmp_path, capsys):
    """Two real processes: a teacher trains in a child process; a second run, a --resume and an
    --overwrite on its folder are each one line naming its PID, and it finishes untouched."""
    out = tmp_path / "D1"
    args = teacher_args(glue_dir, tiny_model, out, "--save-every", "1")
    args[args.index("--epochs") + 1] = "6"
    first = subprocess.Popen([sys.executable, "-m", "retort", *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not (out / "checkpoint").is_dir() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    if first.poll() is not None:
        pytest.fail(f"the first run ended early: {first.stderr.read()}")
    holder = f"PID {first.pid}: retort teacher"
    refused(capsys, args, "teacher", f"--out {out}: another process is writing this run folder ({holder}")
    refused(capsys, ["teacher", "--out", out, "--resume", "--no-progress"], "teacher", holder)
    refused(capsys, [*args, "--overwrite"], "teacher", holder)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6 * 3
    assert not (out / outdir.LOCK).exists()


def test_a_stale_lock_is_taken_over(glue_dir, tiny_model, tmp_path, capsys):
    """A process holding the lock (flock held by a child process): refused, naming it. Killed (SIGKILL:
    no clean-up), its lock file stays; the next run takes it over and says so on stderr."""
    out = tmp_path / "run"
    out.mkdir()
    lock = out / outdir.LOCK
    hold = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()}\\nretort teacher --out run\\n'.encode())\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        refused(
            capsys, teacher_args(glue_dir, tiny_model, out), "teacher", f"(PID {child.pid}: retort teacher --out run)"
        )
        assert [p.name for p in out.iterdir()] == [outdir.LOCK]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert lock.read_text().startswith(f"{child.pid}\n")  # left behind
    assert main([str(a) for a in teacher_args(glue_dir, tiny_model, out)]) == 0
    err = error_lines(capsys.readouterr().err)
    assert (
        f"{out}: taking over the lock of process {child.pid} (retort teacher --out run), which is no longer running"
        in err
    )
    assert (out / "metrics.json").is_file() and not lock.exists()


def test_the_lock_is_one_per_folder_and_leaves_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    with outdir.locked(out):
        assert (out / outdir.LOCK).read_text().split("\n")[0] == str(os.getpid())
        with pytest.raises(RetortError, match=f"PID {os.getpid()}"), outdir.locked(out):
            pass  # flock is per open file: a second open in this process is a second writer
        assert (out / outdir.LOCK).exists()  # the refused one took nothing away
    assert not (tmp_path / "a").exists()  # made for the lock, empty again: removed


# ---------------------------------------------------------------------------------------------------
# disk errors: one line naming the path, the folder given back as it was found


def _full_disk(*args, **kwargs):
    raise SafetensorError(FULL)


def test_dse_index_on_a_full_disk_leaves_nothing(tmp_path, capsys, monkeypatch):
    import safetensors.numpy

    import retort.deploy.dse

    monkeypatch.setattr(retort.deploy.dse, "load_embedder", lambda *_, **__: FakeEmbedder())
    monkeypatch.setattr(safetensors.numpy, "save_file", _full_disk)
    cands = tmp_path / "c.txt"
    cands.write_text("one sentence\nanother one\n")
    before = state(tmp_path)
    out = tmp_path / "idx"
    argv = ["dse", "index", "--model", tmp_path / "m", "--candidates", cands, "--out", out]
    refused(capsys, argv, "dse", f"{tmp_path / 'idx.tmp'}: No space left on device")
    assert state(tmp_path) == before  # neither idx nor idx.tmp


def test_a_full_disk_at_the_model_save_gives_the_run_folder_back(glue_dir, tiny_model, tmp_path, capsys, monkeypatch):
    from transformers import PreTrainedModel

    out = tmp_path / "run"
    assert main([str(a) for a in teacher_args(glue_dir, tiny_model, out)]) == 0
    capsys.readouterr()
    before = state(out)
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", _full_disk)
    refused(capsys, teacher_args(glue_dir, tiny_model, out, "--overwrite", "--seed", "7"), "teacher",
            f"{out / 'model.tmp'}: No space left on device")  # fmt: skip
    after = state(out)
    assert after.pop(out / outdir.FAILED_LOG) and after == before  # the replaced run is back, byte for byte


def test_a_full_disk_at_a_checkpoint_leaves_no_half_checkpoint(glue_dir, tiny_model, tmp_path, capsys, monkeypatch):
    import retort.training.checkpoint

    monkeypatch.setattr(retort.training.checkpoint, "save_model", _full_disk)
    out = tmp_path / "new"
    refused(capsys, teacher_args(glue_dir, tiny_model, out, "--save-every", "1"), "teacher",
            f"{out / 'checkpoint.tmp'}: No space left on device")  # fmt: skip
    assert [p.name for p in out.iterdir()] == [outdir.FAILED_LOG]


def test_an_onnx_write_error_is_one_line_and_leaves_nothing(run, glue_dir, tmp_path, capsys, monkeypatch):
    import torch

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it: no file name

    monkeypatch.setattr(torch.onnx, "export", no_space)
    out = tmp_path / "onnx"
    argv = ["export", "--model", run / "model", "--out", out, "--glue-dir", glue_dir, "--no-eval"]
    line = refused(capsys, argv, "export", "No space left on device")
    assert f"{tmp_path}/.onnx." in line  # names the folder it was writing
    assert list(tmp_path.iterdir()) == []


def test_a_library_error_holding_a_disk_error_is_one_line(run, glue_dir, capsys, monkeypatch):
    import retort.evaluation.folder

    monkeypatch.setattr(retort.evaluation.folder, "evaluate_folder", _full_disk)
    argv = ["eval", "--task", "RTE", "--model", run / "model", "--glue-dir", glue_dir]
    assert refused(capsys, argv, "eval").endswith("error: No space left on device (nothing half-written was kept)")


_STUCK_EXPORT = """
import sys, time
import retort.deploy.export
def stuck(*args, **kwargs):
    print("writing", flush=True)
    time.sleep(600)
retort.deploy.export.write_graph = stuck
from retort.cli import main
main(sys.argv[1:])
"""


def test_an_export_killed_midway_is_cleaned_by_the_next(run, glue_dir, tmp_path):
    """SIGKILL while the graph is written leaves .out.PID-XXXXXXXX.tmp; the next export to the same place
    removes it (and the leftover of an earlier version, without a process id) and succeeds."""
    out = tmp_path / "out"
    args = ["export", "--model", str(run / "model"), "--out", str(out), "--glue-dir", str(glue_dir), "--no-eval"]
    child = subprocess.Popen([sys.executable, "-c", _STUCK_EXPORT, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".out.{child.pid}-") and left[0].endswith(".tmp"), left
    (tmp_path / ".out.abcd1234.tmp").mkdir()  # an earlier version's leftover
    (tmp_path / ".out.x.1-abcd1234.tmp").mkdir()  # another destination's ('out.x'): not ours to remove
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.x.1-abcd1234.tmp", "out"]
