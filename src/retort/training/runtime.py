"""Where and how a process trains, fixed before the first step: its device and place among the
processes, mixed precision (``Runtime``), how many examples make a step and how many steps the run and
its learning-rate schedule span (``StepPlan``), and the optimizer with its schedule."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from retort.config import TrainConfig
from retort.training.distributed import init as dist_init


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            plain = p.ndim < 2 or "LayerNorm" in name or "norm" in name or ".feature_map." in name
            (no_decay if plain else decay).append(p)  # (learned feature maps start at, and stay near, I)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass(frozen=True)
class Runtime:
    """Where and how this process trains: its device, its place among the processes, mixed precision."""

    device: torch.device
    rank: int
    size: int  # processes
    amp_dtype: torch.dtype | None  # autocast's dtype; None: fp32
    scaler: torch.amp.GradScaler | None  # fp16's loss scaling

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that evaluates, logs and saves."""
        return self.rank == 0


def on_gpu(cfg: TrainConfig) -> bool:
    """Whether a run takes the GPU: ``--device cuda``, or ``auto`` where torch sees one."""
    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def plain_device(cfg: TrainConfig) -> torch.device:
    """``cuda`` or ``cpu`` as ``on_gpu`` says (no rank index): where a pass before training runs."""
    return torch.device("cuda" if on_gpu(cfg) else "cpu")


def runtime(cfg: TrainConfig) -> Runtime:
    """The device (``--device``; ``cuda:LOCAL_RANK`` under a launcher), the process group joined when
    there are several processes, and the autocast dtype and loss scaler of ``--precision``."""
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if on_gpu(cfg) else "cpu")
    rank, size = dist_init(device)  # (0, 1) unless launched by torchrun / accelerate launch
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    return Runtime(device, rank, size, amp_dtype, scaler)


@dataclass(frozen=True)
class StepPlan:
    """How many examples make a step and how many steps make the run and its schedule."""

    global_batch: int  # examples per optimizer step, all processes
    steps_per_epoch: int
    total_steps: int
    schedule_steps: int  # the learning-rate schedule's span: a run may stop early on it (--schedule-epochs)

    @classmethod
    def of(cls, cfg: TrainConfig, train_examples: int, processes: int) -> StepPlan:
        """The plan of a run of ``cfg`` over ``train_examples`` rows shared by ``processes`` processes."""
        global_batch = cfg.batch_size * processes * cfg.grad_accum
        steps_per_epoch = math.ceil(train_examples / global_batch)
        return cls(
            global_batch, steps_per_epoch, steps_per_epoch * cfg.epochs,
            steps_per_epoch * (cfg.schedule_epochs or cfg.epochs),
        )  # fmt: skip


def optimizer_and_schedule(cfg: TrainConfig, modules: list[nn.Module], schedule_steps: int):
    """AdamW over the trainable parameters of ``modules`` and the linear warm-up and decay schedule."""
    # fused: one kernel over every parameter instead of a Python loop per tensor; on 2 CPU cores the loop
    # was 40% of a teacher step (119 ms of 302 ms for 22.7M parameters), fused takes 24 ms (docs/results.md)
    optimizer = torch.optim.AdamW(param_groups(modules, cfg.weight_decay), lr=cfg.lr, fused=True)
    # transformers' schedule (the first step at lr 0, as the HF Trainer): results move slightly against the
    # hand-written one it replaced, which started warm-up one step ahead (docs/results.md, issue #16)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * schedule_steps), schedule_steps)
    return optimizer, scheduler
