"""The resume state of a run: model, objective, optimizer, scheduler, every RNG state and the position
in the epoch's batch order, as safetensors and JSON (nothing is loaded with pickle), written under a
temporary name and renamed. A multi-process run keeps each process's RNG state."""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from retort.errors import ConfigError
from retort.paths import publish_dir, saving
from retort.training.distributed import world as dist_world
from retort.training.hooks import Hooks


@dataclass
class TrainState:
    """Everything about the loop's position that a resumed run needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float = -math.inf  # the best model's selection key, higher is better (minus a lower-is-better score)
    best_step: int = -1
    best_results: dict = field(default_factory=dict)
    evals: list = field(default_factory=list)
    train_seconds: float = 0.0  # time in training steps only (no evaluation)
    train_samples: int = 0
    train_tokens: int = 0  # real (unpadded) tokens
    padded_tokens: int = 0
    wall_seconds: float = 0.0
    # the objective's total summed over the training rows since the last evaluation (this process's rows),
    # for the per-evaluation training loss beside the held-out one
    loss_sum: float = 0.0
    loss_rows: int = 0
    # train_seconds broken down: data (collate), teacher (forward or cache), student (forward, loss,
    # backward), update (gradient all-reduce, clipping, optimizer, scheduler)
    phase_seconds: dict = field(default_factory=lambda: {"data": 0.0, "teacher": 0.0, "student": 0.0, "update": 0.0})


# --------------------------------------------------------------------------------------------
# checkpoints: safetensors and JSON only, no pickle


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's RNG states: torch's (CPU and every GPU) as tensors, Python's and NumPy's as JSON data."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    np_state = np.random.get_state()
    plain = {"python": _to_json(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, plain


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    random.setstate(_to_tuple(plain["python"]))
    n = plain["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def _to_json(x):
    return [_to_json(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def save_checkpoint(
    path: Path,
    model: nn.Module,
    objective: nn.Module,
    optimizer,
    scheduler,
    state: TrainState,
    other_ranks: list[tuple[dict, dict]] | None = None,
    hooks: Hooks | None = None,
) -> None:
    """Write the resume state under ``PATH.tmp``, then rename. ``other_ranks``: the RNG states of
    processes 1..N-1 of a multi-process run (each continues its own stream on resume). ``hooks.inside_save``
    is called after the model's weights (point ``files``) and between the renames (``swap``)."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    inside_save = hooks.inside_save if hooks is not None else None
    try:
        with saving(tmp):  # a full disk (SafetensorError included) is an OSError naming the folder
            _write_checkpoint(tmp, model, objective, optimizer, scheduler, state, other_ranks, inside_save)
    except BaseException:  # the last complete checkpoint stays; nothing half-written is left beside it
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, path, (lambda: inside_save(state.step, "swap")) if inside_save is not None else None)


def _write_checkpoint(tmp: Path, model, objective, optimizer, scheduler, state: TrainState, other_ranks,
                      inside_save) -> None:  # fmt: skip
    """The files of a checkpoint, into the folder ``tmp``."""
    save_model(model, str(tmp / "model.safetensors"))
    if inside_save is not None:
        inside_save(state.step, "files")
    save_model(objective, str(tmp / "objective.safetensors"))
    opt = optimizer.state_dict()
    tensors = {f"{pid}.{k}": v for pid, s in opt["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "optimizer.safetensors"))
    rng_tensors, rng_plain = rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    for rank, (tensors, _) in enumerate(other_ranks or [], start=1):
        save_file(tensors, str(tmp / f"rng.rank{rank}.safetensors"))
    meta = {
        "optimizer_param_groups": opt["param_groups"],
        "optimizer_state_keys": {str(pid): sorted(s) for pid, s in opt["state"].items()},
        "scheduler": scheduler.state_dict(),
        "rng": rng_plain,
        "rng_other_ranks": [plain for _, plain in other_ranks or []],
        "state": state.__dict__,
    }
    (tmp / "trainer_state.json").write_text(json.dumps(meta))


def check_checkpoint(path: Path) -> dict:
    """The checkpoint's record and files, checked before anything is loaded: one line naming the file."""
    try:
        meta = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path / 'trainer_state.json'}: unreadable ({e}); the checkpoint is broken") from None
    missing = {"state", "optimizer_state_keys", "optimizer_param_groups", "scheduler", "rng"} - set(meta)
    if missing:
        raise ConfigError(f"{path / 'trainer_state.json'}: no {', '.join(sorted(missing))}; the checkpoint is broken")
    for name in ("model", "objective", "optimizer", "rng"):
        f = path / f"{name}.safetensors"
        try:
            with safe_open(str(f), framework="pt") as handle:
                handle.keys()
        except Exception as e:  # missing, truncated or not safetensors
            raise ConfigError(f"{f}: unreadable ({str(e).splitlines()[0]}); the checkpoint is broken") from None
    return meta


def load_checkpoint(path: Path, model: nn.Module, objective: nn.Module, optimizer, scheduler) -> TrainState:
    """Load a checkpoint (checked first, ``check_checkpoint``) into the model, objective, optimizer,
    scheduler and this process's RNGs; returns the loop's position."""
    meta = check_checkpoint(path)
    load_model(model, str(path / "model.safetensors"))
    load_model(objective, str(path / "objective.safetensors"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    opt_state = {
        int(pid): {k: tensors[f"{pid}.{k}"] for k in keys} for pid, keys in meta["optimizer_state_keys"].items()
    }
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    rank = dist_world()[0]
    if rank == 0:
        _set_rng_state(load_file(str(path / "rng.safetensors")), meta["rng"])
    else:
        others = meta.get("rng_other_ranks") or []
        if len(others) < rank:
            raise ConfigError(f"{path}: saved by fewer processes than this run has; resume with as many as before")
        _set_rng_state(load_file(str(path / f"rng.rank{rank}.safetensors")), others[rank - 1])
    return TrainState(**meta["state"])
