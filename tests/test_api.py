"""The Python API (``retort.teacher``, ``student``, ``export``, ``evaluate``, ``bench``): the README's
notebook-sized example on a tiny random model, the same validation as the command line when the config is
built, and the same run-folder protection."""

from __future__ import annotations

import json

import pytest

import retort
from retort.errors import RetortError


def test_notebook_example(tmp_path, glue_dir, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = {"glue_dir": str(glue_dir), "threads": 1, "epochs": 1}
    # --- the README's example, with a tiny base model and tiny data ---
    teacher = retort.teacher(task="STS-B", out="runs/t", base=str(tiny_model), **common)
    student = retort.student(teacher=teacher.model, out="runs/s", shape="2x32", method="multilevel", **common)
    exported = retort.export(student.model, out="runs/s-onnx", glue_dir=str(glue_dir))
    scores = retort.evaluate(exported.out, task="STS-B", glue_dir=str(glue_dir))
    speed = retort.bench([teacher.model, exported.out], threads=[1], batch_sizes=[1], samples=8, warmup=1,
                         glue_dir=str(glue_dir), json_out="runs/bench.json")  # fmt: skip
    # --- what they return and write ---
    assert (tmp_path / "runs/t/model/config.json").exists() and (tmp_path / "runs/s/loss_curves.png").exists()
    metrics = json.loads((tmp_path / "runs/s/metrics.json").read_text())
    assert student.metrics == metrics and "pearson" in student.best["dev"]
    assert exported.record["quantization"] == "none" and (tmp_path / "runs/s-onnx/model.onnx").exists()
    assert set(scores.results) == {"dev"} and "pearson" in scores.results["dev"]
    assert len(speed.runs) == 2 and speed.path is not None and speed.path.exists()


def test_config_is_validated_when_built(tmp_path, glue_dir, tiny_model):
    with pytest.raises(RetortError, match="epochs"):
        retort.teacher(out=tmp_path / "t", base=str(tiny_model), glue_dir=str(glue_dir), epochs=0)
    with pytest.raises(RetortError, match="unknown option 'epoch'"):
        retort.teacher(out=tmp_path / "t", base=str(tiny_model), epoch=1)
    with pytest.raises(RetortError, match="temperature"):
        retort.student(teacher=tmp_path, out=tmp_path / "s", temperature=-1.0)
    with pytest.raises(RetortError):
        retort.bench([str(tmp_path)], threads=[0])
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


def test_a_second_call_does_not_replace_a_run(tmp_path, glue_dir, tiny_model):
    kw = {"out": tmp_path / "t", "base": str(tiny_model), "glue_dir": str(glue_dir), "epochs": 1, "threads": 1}
    first = retort.teacher(**kw)
    before = (first.out / "metrics.json").read_bytes()
    with pytest.raises(RetortError, match="holds a run already"):
        retort.teacher(**kw)
    assert (first.out / "metrics.json").read_bytes() == before
    again = retort.teacher(**kw, overwrite=True)
    assert again.model.is_dir()
