"""More than one process (torchrun, gloo on CPU) and gradient accumulation: the same updates as one
process with the whole batch. Dropout is off in these models, so that splitting a batch changes nothing
but the order of floating-point sums."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_tiny_model
from retort.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-no-dropout"), dropout=0.0)


def _args(glue_dir, base, out, *extra) -> list[str]:
    return ["teacher", "--task", "STS-B", "--glue-dir", str(glue_dir), "--base", str(base), "--out", str(out),
            "--epochs", "2", "--lr", "1e-3", "--threads", "1", "--max-length", "32", "--no-progress",
            "--save-every", "2", *extra]  # fmt: skip


# torchrun's entry script for a run killed with SIGKILL after a step (retort.training.hooks), in every process
KILLED_RUN = """import sys
from retort.training.hooks import install_hooks, kill_hooks
install_hooks(kill_hooks(at_step={at_step}))
from retort.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _torchrun(args: list[str], kill_at: int = 0, entry_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Two processes under torchrun; with ``kill_at``, both killed right after that step (an entry script
    written in ``entry_dir`` installs the hooks)."""
    entry = ["-m", "retort"]
    if kill_at:
        script = entry_dir / "killed_run.py"
        script.write_text(KILLED_RUN.format(at_step=kill_at))
        entry = [str(script)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *entry]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=600)


def _same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=atol), (k, (wa[k] - wb[k]).abs().max())


def test_grad_accum_is_the_same_update(tmp_path, glue_dir, plain_model):
    assert main(_args(glue_dir, plain_model, tmp_path / "whole", "--batch-size", "8")) == 0
    assert main(_args(glue_dir, plain_model, tmp_path / "accum", "--batch-size", "4", "--grad-accum", "2")) == 0
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "accum" / "metrics.json").read_text())
    assert a["steps"] == b["steps"] == 12 and a["train_samples_per_s"] > 0
    _same_weights(tmp_path / "whole", tmp_path / "accum")
    assert abs(a["best"]["dev"]["pearson"] - b["best"]["dev"]["pearson"]) < 1e-4


def test_two_processes_equal_one_with_twice_the_batch_and_resume(tmp_path, glue_dir, plain_model):
    assert main(_args(glue_dir, plain_model, tmp_path / "one", "--batch-size", "8")) == 0
    two = _torchrun(_args(glue_dir, plain_model, tmp_path / "two", "--batch-size", "4"))
    assert two.returncode == 0, two.stderr[-3000:]
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 12
    _same_weights(tmp_path / "one", tmp_path / "two")

    # killed with SIGKILL at step 5 (after the checkpoint of step 4), then resumed: the unbroken 2-process run
    broken = _torchrun(_args(glue_dir, plain_model, tmp_path / "broken", "--batch-size", "4"), kill_at=5,
                       entry_dir=tmp_path)  # fmt: skip
    assert broken.returncode != 0 and not (tmp_path / "broken" / "metrics.json").exists()
    state = json.loads((tmp_path / "broken" / "checkpoint" / "trainer_state.json").read_text())
    assert state["state"]["step"] == 4 and len(state["rng_other_ranks"]) == 1
    resumed = _torchrun(["teacher", "--out", str(tmp_path / "broken"), "--resume", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "two" / "metrics.json").read_text())
    b = json.loads((tmp_path / "broken" / "metrics.json").read_text())
    assert [e["results"] for e in a["evals"]] == [e["results"] for e in b["evals"]]
    _same_weights(tmp_path / "two", tmp_path / "broken", atol=0.0)


def test_accelerate_launch_on_cpu_is_the_same_run(tmp_path, glue_dir, plain_model):
    """``accelerate launch --multi_gpu --num_processes 2`` starts the same processes as torchrun (it calls
    torch.distributed.run); on a CPU-only machine retort picks gloo, and the run equals one process with
    the whole batch. (accelerate's own multi-CPU mode, ``--cpu`` with several processes, needs an MPI
    hostfile, ``--mpirun_hostfile``; MPI is not installed here.)"""
    assert main(_args(glue_dir, plain_model, tmp_path / "one", "--batch-size", "8")) == 0
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "retort"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = _args(glue_dir, plain_model, tmp_path / "acc", "--batch-size", "4")
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "acc" / "metrics.json").read_text())["processes"] == 2
    _same_weights(tmp_path / "one", tmp_path / "acc")
