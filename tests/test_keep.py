"""``experiments/keep.py``: finished runs kept in a folder git keeps, and restored on a machine that has none of
them (a teacher with its model, a student without; unfinished runs and resume state left behind)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from keep import keep_runs, keeping, restore_runs  # noqa: E402


def _run(folder: Path, finished: bool = True) -> Path:
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.safetensors").write_bytes(b"weights")
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "trainer_state.json").write_text("{}")
    (folder / "command.json").write_text(json.dumps(["distill"]))
    (folder / "dev_predictions.json").write_text("{}")
    (folder / "tb").mkdir()
    (folder / "tb" / "events.out.tfevents.1").write_bytes(b"events")
    if finished:
        (folder / "metrics.json").write_text(json.dumps({"task": "RTE", "best": {}}))
    return folder


def test_keep_then_restore_on_a_new_machine(tmp_path):
    out, keep, fresh = tmp_path / "out", tmp_path / "keep", tmp_path / "fresh"
    teacher = _run(out / "teachers" / "RTE")
    student = _run(out / "runs" / "RTE" / "kd-s42")
    stage = _run(out / "runs" / "RTE" / "tinybert-s42-intermediate")
    unfinished = _run(out / "runs" / "RTE" / "tinybert-s42", finished=False)
    made = keep_runs(out, keep, [teacher, student, stage, unfinished])
    assert [p.relative_to(keep).as_posix() for p in made] == ["teachers/RTE", "runs/RTE/kd-s42",
                                                              "runs/RTE/tinybert-s42-intermediate"]  # fmt: skip
    assert (keep / "teachers" / "RTE" / "model" / "model.safetensors").read_bytes() == b"weights"
    assert not (keep / "runs" / "RTE" / "kd-s42" / "model").exists()  # a student's weights stay behind
    assert not list(keep.rglob("checkpoint")) and not list(keep.rglob("*.tmp")) and not list(keep.rglob("tb"))
    assert (keep / "runs" / "RTE" / "kd-s42" / "dev_predictions.json").is_file()  # what the report pairs
    assert keep_runs(out, keep, [teacher, student]) == []  # a finished run does not change: not copied again
    assert not list(out.rglob("*.tmp"))
    restored = restore_runs(keep, fresh)
    assert sorted(p.relative_to(fresh).as_posix() for p in restored) == [
        "runs/RTE/kd-s42", "runs/RTE/tinybert-s42-intermediate", "teachers/RTE"]  # fmt: skip
    assert (fresh / "teachers" / "RTE" / "model" / "model.safetensors").is_file()
    assert restore_runs(keep, fresh) == []  # what is there already is not copied again
    # a run this machine holds unfinished is replaced by the kept finished one
    _run(tmp_path / "other" / "runs" / "RTE" / "kd-s42", finished=False)
    assert [p.name for p in restore_runs(keep, tmp_path / "other")] == ["kd-s42", "tinybert-s42-intermediate", "RTE"]
    assert (tmp_path / "other" / "runs" / "RTE" / "kd-s42" / "metrics.json").is_file()
    assert restore_runs(tmp_path / "nothing", fresh) == []


def test_keeping_keeps_a_job_when_it_is_done(tmp_path):
    out, keep = tmp_path / "out", tmp_path / "keep"
    calls = []

    def job():
        calls.append(1)
        _run(out / "runs" / "RTE" / "kd-s42")

    jobs = keeping({"RTE/kd/s42": job}, out, keep, lambda name: [out / "runs" / "RTE" / "kd-s42"])
    jobs["RTE/kd/s42"]()
    assert calls == [1] and (keep / "runs" / "RTE" / "kd-s42" / "metrics.json").is_file()
    assert keeping({"a": job}, out, None, lambda name: [])["a"] is job  # nothing to keep: the jobs as they are


def test_a_file_added_to_a_finished_run_is_kept_too(tmp_path):
    out, keep = tmp_path / "out", tmp_path / "keep"
    run = _run(out / "runs" / "STS-B" / "multilevel-s42")
    assert keep_runs(out, keep, [run])
    (run / "glue-test").mkdir()
    (run / "glue-test" / "STS-B.tsv").write_text("index\tprediction\n0\t4.1\n")
    assert keep_runs(out, keep, [run])  # the test-set files came after metrics.json: copied again
    assert (keep / "runs" / "STS-B" / "multilevel-s42" / "glue-test" / "STS-B.tsv").is_file()
    assert keep_runs(out, keep, [run]) == []
    # a file only the kept copy holds (another sitting made it) stays when this machine's copy lacks it
    shutil.rmtree(run / "glue-test")
    assert keep_runs(out, keep, [run]) == []
    (run / "later.json").write_text("{}")
    assert keep_runs(out, keep, [run])
    assert {p.name for p in (keep / "runs" / "STS-B" / "multilevel-s42").iterdir()} >= {"glue-test", "later.json"}


def test_test_set_files_go_in_a_folder_of_the_run(tmp_path, glue_dir, tiny_model):
    """``paper_steps.predict_into``: the leaderboard's file in RUN/glue-test (a folder, also when a stopped
    version left a file of that name behind); nothing for a run without a model."""
    from paper_steps import predict_into

    from conftest import train_tiny_teacher

    glue = tmp_path / "glue"
    shutil.copytree(glue_dir / "STS-B", glue / "STS-B")
    shutil.copy(glue / "STS-B" / "dev.tsv", glue / "STS-B" / "test.tsv")
    run = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "run")
    (run / "glue-test.tmp").write_text("a file, as an older version left it")
    predict_into("STS-B", run, str(glue), 1)
    assert [p.name for p in (run / "glue-test").iterdir()] == ["STS-B.tsv"] and not (run / "glue-test.tmp").exists()
    predict_into("STS-B", tmp_path / "no-model", str(glue), 1)
    assert not (tmp_path / "no-model").exists()
