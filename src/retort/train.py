"""The training loop: fine-tuning a teacher or distilling a student, with exact resume.

One loop serves both: a run has a model being trained, an optional frozen teacher, and an objective.
Every ``save_every`` steps and after every evaluation the full training state is written to
``OUT/checkpoint`` (model and objective weights, optimizer, scheduler, RNG states, the position in
the epoch's batch order), always to a temporary name first and then renamed. ``--resume`` loads it
and continues; because the batch order is a pure function of (seed, epoch) and every RNG is restored,
the resumed run ends with the same metrics as one that was never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from retort.config import TrainConfig, save_yaml, to_dict
from retort.data.batching import Encoded, batch_order, collate, encode
from retort.data.glue import Task, get_task, load_split
from retort.data.transfer import with_transfer
from retort.distill.objective import FineTune, MultiLevel, Objective, trainable_parameters
from retort.distill.presets import resolve as resolve_preset
from retort.distill.teacher_cache import TeacherOutputCache, open_output_cache
from retort.errors import ConfigError, RetortError
from retort.evaluation.evaluator import evaluate, selection_score
from retort.models import linear
from retort.models.biencoder import BiEncoder
from retort.models.hf import load_classifier, load_tokenizer, replace_dir, resolve_model_path
from retort.models.hf import save_model as save_hf
from retort.models.outputs import ModelOutput, Needs, forward
from retort.models.student import StudentShape, build_student
from retort.progress import progress as progress_bar
from retort.report import plot_run

# --------------------------------------------------------------------------------------------
# building blocks


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_objective(cfg: TrainConfig, task: Task, student: nn.Module, teacher: nn.Module | None) -> Objective:
    if cfg.kind == "teacher":
        return FineTune(task.is_regression)
    return MultiLevel(resolve_preset(cfg.objective), task.is_regression, student.config, teacher.config)


def resolved_config(cfg: TrainConfig) -> TrainConfig:
    """The config with the method preset's weights filled in (what a run folder records)."""
    cfg = _fit_max_length(cfg, cfg.base if cfg.kind == "teacher" else cfg.teacher, quiet=True)
    if cfg.kind != "distill":
        return cfg
    return dataclasses.replace(cfg, objective=resolve_preset(cfg.objective))


def linear_schedule(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


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


@dataclass
class TrainState:
    """Everything about the loop's position that a resumed run needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float = -math.inf
    best_step: int = -1
    best_results: dict = field(default_factory=dict)
    evals: list = field(default_factory=list)
    train_seconds: float = 0.0  # time in training steps only (no evaluation)
    train_samples: int = 0
    train_tokens: int = 0  # real (unpadded) tokens
    padded_tokens: int = 0
    wall_seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# checkpoints: safetensors and JSON only, no pickle


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
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
    path: Path, model: nn.Module, objective: nn.Module, optimizer, scheduler, state: TrainState
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    kill = os.environ.get("RETORT_TEST_KILL_IN_SAVE", "")  # fault injection: "STEP:files" or "STEP:swap"
    kill_step, _, kill_point = kill.partition(":")
    kill_now = bool(kill) and int(kill_step) == state.step
    save_model(model, str(tmp / "model.safetensors"))
    if kill_now and kill_point == "files":
        os.kill(os.getpid(), 9)
    save_model(objective, str(tmp / "objective.safetensors"))
    opt = optimizer.state_dict()
    tensors = {f"{pid}.{k}": v for pid, s in opt["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "optimizer.safetensors"))
    rng_tensors, rng_plain = _rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    meta = {
        "optimizer_param_groups": opt["param_groups"],
        "optimizer_state_keys": {str(pid): sorted(s) for pid, s in opt["state"].items()},
        "scheduler": scheduler.state_dict(),
        "rng": rng_plain,
        "state": state.__dict__,
    }
    (tmp / "trainer_state.json").write_text(json.dumps(meta))
    replace_dir(tmp, path, (lambda: os.kill(os.getpid(), 9)) if kill_now and kill_point == "swap" else None)


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
    meta = check_checkpoint(path)
    load_model(model, str(path / "model.safetensors"))
    load_model(objective, str(path / "objective.safetensors"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    opt_state = {
        int(pid): {k: tensors[f"{pid}.{k}"] for k in keys} for pid, keys in meta["optimizer_state_keys"].items()
    }
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    _set_rng_state(load_file(str(path / "rng.safetensors")), meta["rng"])
    return TrainState(**meta["state"])


# --------------------------------------------------------------------------------------------
# logging


class RunLog:
    """Every logged value goes to ``log.jsonl`` and to TensorBoard under ``tb/``."""

    def __init__(self, out: Path, resume_step: int | None):
        self.path = out / "log.jsonl"
        if resume_step is not None and self.path.exists():  # drop what came after the checkpoint
            keep = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in keep))
        elif self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (slow import)

        self.tb = SummaryWriter(str(out / "tb"), purge_step=(resume_step + 1) if resume_step is not None else None)
        self.file = self.path.open("a")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        step = record["step"]
        for key, value in _flatten(record).items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        self.file.close()
        self.tb.close()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Run:
    """What ``prepare`` builds: data, models and objective, ready for ``fit``."""

    cfg: TrainConfig
    task: Task
    tokenizer: object
    train: Encoded
    dev: dict[str, Encoded]
    model: nn.Module  # the model being trained
    teacher: nn.Module | None
    objective: Objective
    info: dict
    teacher_cache: TeacherOutputCache | None = None


def prepare(cfg: TrainConfig) -> Run:
    task = get_task(cfg.task)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    source = cfg.base if cfg.kind == "teacher" else cfg.teacher
    if cfg.kind not in ("teacher", "distill"):
        raise ConfigError(f"kind {cfg.kind!r}: expected teacher or distill")
    if cfg.kind == "distill" and not cfg.teacher:
        raise ConfigError("distillation needs --teacher DIR (a fine-tuned teacher, see 'retort teacher')")
    tokenizer = load_tokenizer(source)
    cfg = _fit_max_length(cfg, source)
    train_split = load_split(task, "train", cfg.glue_dir, cfg.skip_bad_rows, cfg.max_train_samples)
    dev_splits = {
        s: load_split(task, s, cfg.glue_dir, cfg.skip_bad_rows, cfg.max_eval_samples) for s in task.dev_splits
    }
    if not train_split.examples:
        raise ConfigError(f"{train_split.source}: no training examples")
    transfer_examples = 0
    if cfg.transfer:
        if cfg.kind != "distill" or cfg.dse or cfg.long_sts_tokens:
            raise ConfigError("--transfer: inputs for the teacher to label, retort distill only (no dse, long STS-B)")
        train_split, transfer_examples = with_transfer(
            train_split, list(cfg.transfer), cfg.glue_dir, cfg.seed, cfg.skip_bad_rows
        )
    skipped = {s.source: len(s.skipped) for s in (train_split, *dev_splits.values()) if s.skipped}
    for s in (train_split, *dev_splits.values()):
        for msg in s.skipped[:5]:
            print(f"skipped: {msg}")
        if len(s.skipped) > 5:
            print(f"skipped: ... {len(s.skipped) - 5} more in {s.source}")
    if cfg.long_sts_tokens:
        train, dev = _long_sts(cfg, task, train_split, dev_splits, tokenizer)
    elif cfg.dse:
        train, dev = _dse_data(cfg, task, train_split, dev_splits, tokenizer)
    else:
        train = encode(train_split, tokenizer, cfg.max_length)
        dev = {name: encode(s, tokenizer, cfg.max_length) for name, s in dev_splits.items()}
    attn = "sdpa"  # attention terms read Q, K, V through hooks (models/outputs.py), so no eager needed
    info = {
        "train_source": train_split.source,
        "train_examples": len(train),
        "transfer_examples": transfer_examples,
        "dev_examples": {k: len(v) for k, v in dev.items()},
        "skipped_rows": skipped,
    }
    if cfg.kind == "teacher":
        model = load_classifier(cfg.base, task, attn_implementation=attn)
        teacher = None
    else:
        teacher = load_classifier(cfg.teacher, task, attn_implementation=attn)
        teacher.eval().requires_grad_(False)
        shape = StudentShape.parse(cfg.student, cfg.student_heads, cfg.student_intermediate)
        positions = cfg.max_positions
        if cfg.long_sts_tokens and cfg.long_sts_tokens > teacher.config.max_position_embeddings and not positions:
            positions = cfg.long_sts_tokens  # extend the student's position table to the long inputs
        hedgehog = {"hedgehog_act": cfg.hedgehog_act, "hedgehog_qk": cfg.hedgehog_qk}
        model = build_student(
            teacher, shape, cfg.student_init, cfg.attention, cfg.feature_map, positions, cfg.position_mode, hedgehog
        )
        if cfg.student_init not in ("teacher", "random"):  # record what the checkpoint folder holds
            is_linear = isinstance(model, linear.LinearBertForSequenceClassification)
            cfg = dataclasses.replace(
                cfg,
                attention="linear" if is_linear else "softmax",
                **({k: getattr(model.config, k) for k in ("feature_map", *hedgehog)} if is_linear else {}),
            )
        info["copied_from_teacher"] = getattr(model, "retort_copied", None)
        if cfg.dse:
            model = BiEncoder(model, task.num_labels, task.is_regression, cfg.pooling)
        info["teacher_parameters"] = count_parameters(teacher)
    info["parameters"] = count_parameters(model)
    objective = make_objective(cfg, task, model, teacher)
    if cfg.kind == "distill":
        trainable_parameters(cfg.objective.stage, model)
    cfg = resolved_config(cfg)  # the run folder records every resolved weight
    cache = _teacher_cache(cfg, task, train, teacher, objective)
    if cache is not None:
        info["teacher_cache"] = {"dir": str(cache.root), "what": cache.what, "bytes": cache.nbytes()}
    return Run(cfg, task, tokenizer, train, dev, model, teacher, objective, info, cache)


def _teacher_cache(cfg: TrainConfig, task: Task, train: Encoded, teacher, objective) -> TeacherOutputCache | None:
    """The teacher-output cache of this run (--cache-teacher), or None where it would not save a teacher run:
    no teacher, precomputed logits (DSE, long inputs), or logits only while the objective reads more."""
    if cfg.cache_teacher == "none" or teacher is None or not objective.uses_teacher or train.teacher_logits:
        return None
    if cfg.cache_teacher == "logits" and objective.teacher_needs != Needs():
        return None
    layers = objective.teacher_layers()
    return open_output_cache(
        cfg.teacher, teacher.config, train, cfg.cache_teacher, layers, cfg.cache_dtype, task.num_labels
    )


def _fit_max_length(cfg: TrainConfig, source: str | None, quiet: bool = False) -> TrainConfig:
    """``max_length`` within the position table of the model that reads the inputs (the teacher, or the
    base being fine-tuned): an explicit value above it is an error; the default 128 is lowered to fit."""
    if cfg.long_sts_tokens or not source:  # the long variant sizes its own inputs and the student's positions
        return cfg
    path = Path(resolve_model_path(source)) / "config.json"
    try:
        limit = int(json.loads(path.read_text()).get("max_position_embeddings", 0)) if path.is_file() else 0
    except (OSError, ValueError):
        return cfg  # a broken config is reported by the model loader, with its file name
    if not limit or cfg.max_length <= limit:
        return cfg
    if cfg.max_length != TrainConfig.max_length:
        raise ConfigError(
            f"max_length = {cfg.max_length} (--max-length): above {source}'s position table, at most {limit}"
        )
    if not quiet:
        print(f"max_length {cfg.max_length} is above {source}'s {limit} positions: using {limit}")
    return dataclasses.replace(cfg, max_length=limit)


def _dse_data(cfg: TrainConfig, task: Task, train_split, dev_splits, tokenizer):
    """Bi-encoder data: sentences tokenised alone, the cross-encoder teacher's pair logits from the cache."""
    from retort.data.batching import encode_pairs  # noqa: PLC0415
    from retort.distill.teacher_cache import teacher_logits  # noqa: PLC0415

    if cfg.kind != "distill" or not task.is_pair:
        raise ConfigError(f"DSE distils a cross-encoder on a sentence-pair task; {task.name} is not one")
    o = resolve_preset(cfg.objective)
    if o.beta or o.gamma or o.value_weight or o.cosine_weight:
        raise ConfigError("DSE trains on the teacher's cached pair scores: use soft and hard terms only")
    train = encode_pairs(train_split, tokenizer, cfg.max_length)
    train.teacher_logits = teacher_logits(cfg.teacher, train_split, tokenizer, cfg.max_length).tolist()
    return train, {name: encode_pairs(s, tokenizer, cfg.max_length) for name, s in dev_splits.items()}


def _long_sts(cfg: TrainConfig, task: Task, train_split, dev_splits, tokenizer):
    """The long STS-B variant: teacher targets from the cached short-pair scores (data/long_sts.py)."""
    from retort.data.long_sts import build_long  # noqa: PLC0415
    from retort.distill.teacher_cache import teacher_logits  # noqa: PLC0415

    if task.name != "STS-B" or cfg.kind != "distill":
        raise ConfigError("long_sts_tokens works with 'retort distill --task STS-B' only")
    if resolve_preset(cfg.objective).beta or resolve_preset(cfg.objective).gamma:
        raise ConfigError(
            "the long STS-B variant trains on cached teacher scores: use soft and hard terms only "
            "(the teacher cannot read inputs past 512 tokens)"
        )
    n = cfg.long_sts_tokens
    train = build_long(
        train_split, teacher_logits(cfg.teacher, train_split, tokenizer), tokenizer, n, cfg.long_sts_train, cfg.seed
    )
    dev = {s: build_long(d, None, tokenizer, n, cfg.long_sts_dev, cfg.seed + 1) for s, d in dev_splits.items()}
    return train, dev


class NonFiniteError(RetortError):
    """The loss or gradient went NaN or infinite: the run stops, and what it saved before stays finite."""


def check_finite_loss(loss, step: int) -> None:
    if bool(torch.isfinite(loss.total.detach())):
        return
    terms = ", ".join(
        f"{k} {float(v.detach()):.4g} x weight {loss.weights.get(k, 1.0):.3g}" for k, v in loss.terms.items()
    )
    raise NonFiniteError(
        f"step {step}: the loss is not finite (total {float(loss.total.detach())}; terms: {terms}); stopped, "
        "nothing of this step saved (check --lr, --temperature and the loss weights)"
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fit(run: Run, resume: bool = False, progress: bool = True) -> dict:
    """Train, evaluate, keep the best model in ``OUT/model``; return and write ``OUT/metrics.json``."""
    cfg, task = run.cfg, run.task
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    accelerator = Accelerator(cpu=cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()))
    device = accelerator.device
    model, objective = run.model.to(device), run.objective.to(device)
    teacher = run.teacher.to(device) if run.teacher is not None else None
    steps_per_epoch = math.ceil(len(run.train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    schedule_steps = steps_per_epoch * (cfg.schedule_epochs or cfg.epochs)  # a run may stop early on it
    # fused: one kernel over every parameter instead of a Python loop per tensor; on 2 CPU cores the loop
    # was 40% of a teacher step (119 ms of 302 ms for 22.7M parameters), fused takes 24 ms (docs/results.md)
    optimizer = torch.optim.AdamW(param_groups([model, objective], cfg.weight_decay), lr=cfg.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(int(cfg.warmup_ratio * schedule_steps), schedule_steps)
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    ckpt = out / "checkpoint"
    state = TrainState()
    if resume:
        if not (ckpt / "trainer_state.json").exists():
            raise ConfigError(f"{ckpt}: no checkpoint to resume from")
        state = load_checkpoint(ckpt, accelerator.unwrap_model(model), objective, optimizer, scheduler)
        print(f"resumed from step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    log = RunLog(out, state.step if resume else None)
    pad_id = run.tokenizer.pad_token_id or 0
    sneeds, tneeds = objective.student_needs, objective.teacher_needs
    cache = run.teacher_cache
    eval_every = cfg.eval_every or steps_per_epoch
    kill_at = int(os.environ.get("RETORT_TEST_KILL_AT_STEP", "0"))  # fault injection for the resume test
    wall_start = time.perf_counter() - state.wall_seconds
    bar = progress_bar(total_steps, f"{cfg.kind} {task.name}", progress, cfg.batch_size, initial=state.step)
    model.train()
    while state.epoch < cfg.epochs:
        batches = batch_order(
            run.train.lengths, cfg.batch_size, cfg.seed, state.epoch, group_by_length=cfg.group_by_length
        )
        while state.batch_in_epoch < len(batches):
            idx = batches[state.batch_in_epoch]
            t0 = time.perf_counter()
            batch = {k: v.to(device) for k, v in collate(run.train, idx, pad_id).items()}
            if "teacher_logits" in batch and tneeds == Needs():  # precomputed teacher outputs (cached)
                t_out = ModelOutput(batch.pop("teacher_logits"), batch["attention_mask"])
            elif cache is not None and cache.has(idx):  # the teacher's outputs, kept from an earlier pass
                t_out = cache.get(idx, batch["attention_mask"]).to(device)
            elif teacher is not None and objective.uses_teacher:
                with torch.inference_mode():
                    t_out = forward(teacher, batch, tneeds)
                t_out = t_out.detached()
                if cache is not None:
                    cache.put(idx, t_out)
            else:
                t_out = None
            s_out = forward(model, batch, sneeds, objective.layer_inputs(t_out))
            loss = objective(s_out, t_out, batch)
            check_finite_loss(loss, state.step + 1)
            accelerator.backward(loss.total)
            clipped = [*model.parameters(), *objective.parameters()]  # projections and learned layer weights too
            grad_norm = accelerator.clip_grad_norm_(clipped, cfg.max_grad_norm) if cfg.max_grad_norm else None
            if grad_norm is not None and not math.isfinite(float(grad_norm)):
                raise NonFiniteError(
                    f"step {state.step + 1}: the gradient norm is {float(grad_norm)} (loss {float(loss.total):.4g}); "
                    "stopped before the update, nothing of this step saved (lower --lr?)"
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.train_seconds += time.perf_counter() - t0
            state.train_samples += len(idx)
            state.train_tokens += int(batch["attention_mask"].sum())
            state.padded_tokens += batch["attention_mask"].numel()
            state.step += 1
            state.batch_in_epoch += 1
            bar.update(1)
            if state.step % cfg.log_every == 0 or state.step == 1:
                rec = {
                    "step": state.step,
                    "epoch": state.epoch + state.batch_in_epoch / len(batches),
                    "lr": scheduler.get_last_lr()[0],
                    **loss.log_values(),
                    "samples_per_s": state.train_samples / max(state.train_seconds, 1e-9),
                }
                if grad_norm is not None:
                    rec["grad_norm"] = float(grad_norm)
                log.write(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
            end_of_epoch = state.batch_in_epoch == len(batches)
            if end_of_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
            if state.step % eval_every == 0 or (end_of_epoch and state.epoch == cfg.epochs):
                _evaluate_and_keep(run, accelerator.unwrap_model(model), state, log, device, pad_id, out)
                state.wall_seconds = time.perf_counter() - wall_start
                if cache is not None:
                    cache.flush()
                save_checkpoint(ckpt, accelerator.unwrap_model(model), objective, optimizer, scheduler, state)
            elif state.step % cfg.save_every == 0:
                state.wall_seconds = time.perf_counter() - wall_start
                if cache is not None:
                    cache.flush()
                save_checkpoint(ckpt, accelerator.unwrap_model(model), objective, optimizer, scheduler, state)
            if kill_at and state.step == kill_at:
                os.kill(os.getpid(), 9)
            if end_of_epoch:
                break
    bar.close()
    log.close()
    state.wall_seconds = time.perf_counter() - wall_start
    metrics = _final_metrics(run, state)
    metrics["plots"] = plot_run(out)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    tmp.replace(out / "metrics.json")
    return metrics


def _evaluate_and_keep(
    run: Run, model: nn.Module, state: TrainState, log: RunLog, device, pad_id: int, out: Path
) -> None:
    t0 = time.perf_counter()
    results = evaluate(model, run.task, run.dev, run.cfg.eval_batch_size, device, pad_id)
    score = selection_score(run.task, results)
    state.evals.append(
        {
            "step": state.step,
            "epoch": state.epoch,
            "results": results,
            "eval_seconds": time.perf_counter() - t0,
            "train_seconds": state.train_seconds,
        }
    )
    log.write({"step": state.step, "eval": results})
    summary = "  ".join(f"{s} {m}={v:.4f}" for s, r in results.items() for m, v in r.items() if m != "score")
    print(f"step {state.step} epoch {state.epoch}: {summary}", flush=True)
    keep_last = run.cfg.kind == "distill" and run.cfg.objective.stage in ("intermediate", "attention")
    if keep_last or score > state.best_score:  # the intermediate stage has no task output to select on
        state.best_score, state.best_step, state.best_results = score, state.step, results
        save_hf(model, run.tokenizer, out / "model")


def _final_metrics(run: Run, state: TrainState) -> dict:
    cfg = run.cfg
    return {
        "task": run.task.name,
        "kind": cfg.kind,
        "primary_metric": run.task.primary_metric,
        "best_step": state.best_step,
        "best": state.best_results,
        "evals": state.evals,
        "parameters": run.info["parameters"],
        "teacher_parameters": run.info.get("teacher_parameters"),
        "train_examples": run.info["train_examples"],
        "transfer_examples": run.info.get("transfer_examples", 0),
        "dev_examples": run.info["dev_examples"],
        "skipped_rows": run.info["skipped_rows"],
        "steps": state.step,
        "epochs": cfg.epochs,
        "train_seconds": state.train_seconds,
        "wall_seconds": state.wall_seconds,
        "train_samples_per_s": state.train_samples / max(state.train_seconds, 1e-9),
        "pad_fraction": 1 - state.train_tokens / max(state.padded_tokens, 1),
        "threads": torch.get_num_threads(),
        "config": to_dict(cfg),
    }
