from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import train_tiny_teacher
from retort.cli import main
from retort.config import TrainConfig
from retort.errors import ConfigError
from retort.training.assembly import prepare
from retort.training.loop import fit

ROOT = Path(__file__).resolve().parents[1]


def tiny_cfg(tmp_path, glue_dir, tiny_model, **kw) -> TrainConfig:
    base = dict(
        task="RTE",
        out=str(tmp_path / "run"),
        glue_dir=str(glue_dir),
        base=str(tiny_model),
        epochs=2,
        batch_size=8,
        lr=1e-3,
        threads=1,
        log_every=1,
        max_length=32,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_epochs_stops_early_on_the_longer_schedule(tmp_path, glue_dir, tiny_model):
    """--epochs 1 --schedule-epochs 2 is the first epoch of the 2-epoch run, weights and all."""
    long = fit(prepare(tiny_cfg(tmp_path / "long", glue_dir, tiny_model, eval_every=6, save_every=100)), progress=False)
    short_cfg = tiny_cfg(tmp_path / "short", glue_dir, tiny_model, epochs=1, schedule_epochs=2, save_every=100)
    short = fit(prepare(short_cfg), progress=False)
    assert short["steps"] == 6 and short["evals"][0]["results"] == long["evals"][0]["results"]
    logged = [json.loads(x) for x in (tmp_path / "short" / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in logged if "lr" in r][-1] > 0  # stopped halfway down the 2-epoch schedule
    with pytest.raises(ConfigError, match="schedule_epochs = 1"):
        tiny_cfg(tmp_path, glue_dir, tiny_model, epochs=2, schedule_epochs=1)


def test_teacher_run_folder(tmp_path, glue_dir, tiny_model):
    cfg = tiny_cfg(tmp_path, glue_dir, tiny_model, task="STS-B")
    metrics = fit(prepare(cfg), progress=False)
    out = Path(cfg.out)
    for name in ("config.yaml", "metrics.json", "log.jsonl", "model/model.safetensors", "model/tokenizer.json"):
        assert (out / name).exists(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert metrics["steps"] == 2 * 6 and len(metrics["evals"]) == 2
    assert set(metrics["best"]["dev"]) == {"pearson", "spearman", "score"}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("loss/hard" in r for r in records) and any("eval" in r for r in records)


def test_distill_freezes_teacher_and_trains_student(tmp_path, glue_dir, tiny_model):
    teacher_cfg = tiny_cfg(tmp_path, glue_dir, tiny_model, out=str(tmp_path / "teacher"), epochs=1)
    fit(prepare(teacher_cfg), progress=False)
    cfg = tiny_cfg(
        tmp_path,
        glue_dir,
        tiny_model,
        kind="distill",
        teacher=str(tmp_path / "teacher" / "model"),
        student="2x32",
        out=str(tmp_path / "student"),
        epochs=1,
    )
    run = prepare(cfg)
    before = {k: v.clone() for k, v in run.teacher.state_dict().items()}
    metrics = fit(run, progress=False)
    assert not run.teacher.training
    assert all(p.grad is None for p in run.teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in run.teacher.state_dict().items())
    assert metrics["parameters"] < metrics["teacher_parameters"]
    records = [json.loads(line) for line in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    assert any("loss/soft" in r for r in records)


# a command line run with fault-injection hooks installed (retort.training.hooks): killed with SIGKILL
KILLED_RUN = """import sys
from retort.training.hooks import install_hooks, kill_hooks
install_hooks(kill_hooks(**{kill!r}))
from retort.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(args: list[str], env: dict | None = None, kill: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m retort ARGS``; with ``kill`` (``kill_hooks``' arguments), the same run with those hooks."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    entry = ["-c", KILLED_RUN.format(kill=kill)] if kill else ["-m", "retort"]
    return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=full_env, cwd=ROOT)


_TEACHERS: dict = {}


def kill_teacher(common: list[str], tiny_model, tmp_path_factory):
    """The teacher the distillation cases share, trained once (in this process: the cases kill students)."""
    if "t" not in _TEACHERS:
        out = tmp_path_factory.mktemp("kill-teacher") / "t"
        assert main(["teacher", *common, "--base", str(tiny_model), "--out", str(out)]) == 0
        _TEACHERS["t"] = out
    return _TEACHERS["t"]


@pytest.mark.parametrize(
    "kind, kill_at",
    [
        pytest.param("teacher", 5, marks=pytest.mark.slow),
        pytest.param("teacher", 9, marks=pytest.mark.slow),
        pytest.param("distill", 7, marks=pytest.mark.slow),
        ("distill-cached", 4),
    ],
)  # -m slow: the teacher's (the checkpoint-swap case below kills a teacher too) and the uncached distillation's
# (the cached case kills a multilevel run too, its layer weights restored from a checkpoint): CI's 15 minutes
def test_sigkill_then_resume_gives_identical_metrics(tmp_path, tmp_path_factory, glue_dir, tiny_model, kind, kill_at):
    """A run killed with SIGKILL (between checkpoints) and resumed ends exactly like an unbroken run.
    The distillation case uses multilevel, whose loss-based layer weights keep state in the objective;
    the cached case keeps every teacher output it reads (--cache-teacher all), killed halfway through
    filling the cache (its own, not the unbroken run's), and resumed from the partial cache."""
    cached = kind == "distill-cached"
    kind = "distill" if cached else kind
    common = [
        "--task",
        "MRPC",
        "--glue-dir",
        str(glue_dir),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--threads",
        "1",
        "--save-every",
        "3",
        "--eval-every",
        "4",
        "--max-length",
        "32",
        "--no-progress",
    ]
    if kind == "teacher":
        common = ["teacher", *common, "--base", str(tiny_model)]
    else:
        common = [
            "distill",
            *common,
            "--teacher",
            str(kill_teacher(common, tiny_model, tmp_path_factory) / "model"),
            "--student",
            "2x32",
            "--method",
            "multilevel",
            "--set",
            "objective.weight_temperature=0.5",
            "--set",
            "objective.weight_window=3",
            *(["--cache-teacher", "all"] if cached else []),
        ]
    whole = _cli([*common, "--out", str(tmp_path / "whole")], env={"RETORT_CACHE": str(tmp_path / "cache-whole")})
    assert whole.returncode == 0, whole.stderr
    own = {"RETORT_CACHE": str(tmp_path / "cache-broken")}
    broken = _cli([*common, "--out", str(tmp_path / "broken")], env=own, kill={"at_step": kill_at})
    assert broken.returncode == -9  # really killed, no clean exit
    assert not (tmp_path / "broken" / "metrics.json").exists()
    if cached:  # killed while the cache was filling: some examples kept, not all
        filled = np.load(next((tmp_path / "cache-broken").rglob("filled.npy")))
        assert 0 < filled.sum() < len(filled)
    resumed = _cli([kind, "--out", str(tmp_path / "broken"), "--resume", "--no-progress"], env=own)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in resumed.stdout
    if kind == "distill":  # the layer weights really moved, so their state had to survive the kill
        logged = [json.loads(x) for x in (tmp_path / "broken" / "log.jsonl").read_text().splitlines()]
        assert any(r.get("layer_weight/hidden/1", 1.0) != 1.0 for r in logged)

    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "broken" / "metrics.json").read_text())
    for key in ("best", "best_step", "steps"):
        assert a[key] == b[key], key
    assert [e["results"] for e in a["evals"]] == [e["results"] for e in b["evals"]]
    wa = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "broken" / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [json.loads(line)["step"] for line in (tmp_path / "broken" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # nothing logged twice after the resume


def test_resume_without_checkpoint_is_one_line(tmp_path):
    r = _cli(["teacher", "--out", str(tmp_path / "nothing"), "--resume", "--task", "RTE"])
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no checkpoint to resume from" in r.stderr


@pytest.mark.parametrize("point", [pytest.param("files", marks=pytest.mark.slow), "swap"])  # files: -m slow
def test_sigkill_during_a_checkpoint_save_then_resume(tmp_path, glue_dir, tiny_model, point):
    """Killed while writing a checkpoint (half the files in checkpoint.tmp, or between the two renames,
    when only checkpoint.old is complete): --resume continues from the last complete checkpoint and ends
    exactly like an unbroken run."""
    common = ["teacher", "--task", "MRPC", "--glue-dir", str(glue_dir), "--base", str(tiny_model)]
    common += ["--epochs", "2", "--batch-size", "8", "--threads", "1", "--save-every", "2", "--max-length", "32"]
    common += ["--no-progress"]
    whole = _cli([*common, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    broken = _cli([*common, "--out", str(tmp_path / "b")], kill={"save_step": 4, "save_point": point})
    assert broken.returncode == -9
    assert (tmp_path / "b" / ("checkpoint.tmp" if point == "files" else "checkpoint.old")).is_dir()
    resumed = _cli(["teacher", "--out", str(tmp_path / "b"), "--resume", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 2" in resumed.stdout
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["best"] == b["best"] and a["steps"] == b["steps"]
    wa = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bf16_autocast_trains_and_fp16_needs_a_gpu(tmp_path, glue_dir, tiny_model, capsys):
    from retort.cli import main  # noqa: PLC0415

    cfg = tiny_cfg(tmp_path / "bf16", glue_dir, tiny_model, epochs=1, precision="bf16", max_train_samples=16)
    metrics = fit(prepare(cfg), progress=False)
    assert metrics["steps"] == 2 and np.isfinite(metrics["best"]["dev"]["accuracy"])
    if not torch.cuda.is_available():
        args = ["teacher", "--task", "RTE", "--glue-dir", str(glue_dir), "--base", str(tiny_model), "--out",
                str(tmp_path / "fp16"), "--precision", "fp16", "--no-progress", "--threads", "1"]  # fmt: skip
        assert main(args) == 2
        assert "--precision fp16 needs a GPU" in capsys.readouterr().err


def test_a_base_fine_tuned_on_another_task_is_a_start(tmp_path, glue_dir, tiny_model, capsys):
    """RTE's teacher from MNLI's (here MRPC's): a --base trained for another task gives its encoder and gets a
    fresh head; as a --teacher for the other task it is refused in one line."""
    mrpc = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "mrpc", task="MRPC")
    args = ["teacher", "--task", "RTE", "--glue-dir", str(glue_dir), "--base", str(mrpc / "model"), "--epochs", "1",
            "--threads", "1", "--no-progress", "--out", str(tmp_path / "rte")]  # fmt: skip
    assert main(args) == 0
    config = json.loads((tmp_path / "rte" / "model" / "config.json").read_text())
    assert config["retort_task"] == "RTE" and len(config["id2label"]) == 2
    capsys.readouterr()
    args = ["distill", "--task", "RTE", "--glue-dir", str(glue_dir), "--teacher", str(mrpc / "model"), "--student",
            "1x32", "--epochs", "1", "--threads", "1", "--no-progress", "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(args) == 2
    assert "trained for MRPC, not RTE" in capsys.readouterr().err
