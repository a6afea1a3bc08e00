"""The training loop: fine-tuning a teacher or distilling a student, with exact resume.

One loop serves both: a run (``retort.training.assembly.prepare``) has a model being trained, an optional frozen
teacher, and an objective. Every ``save_every`` steps and after every evaluation the full training state is written to
``OUT/checkpoint`` (model and objective weights, optimizer, scheduler, RNG states, the position in
the epoch's batch order), always to a temporary name first and then renamed. ``--resume`` loads it
and continues; because the batch order is a pure function of (seed, epoch) and every RNG is restored,
the resumed run ends with the same metrics as one that was never stopped (``retort.training.checkpoint``).
Once the run has finished (``metrics.json`` written) the checkpoint is removed, unless ``--keep-checkpoint``.
One process or several (``retort.training.distributed``); the log is ``retort.training.log``'s.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from retort.training.assembly import TrainingSetup
from retort.training.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint
from retort.config import save_yaml, to_dict
from retort.data.batching import batch_order, collate, eval_order
from retort.training.distributed import (
    all_reduce_grads,
    barrier,
    broadcast_buffers,
    broadcast_parameters,
    gather_rng_states,
    shard,
)
from retort.training.distributed import close as dist_close
from retort.training.distributed import init as dist_init
from retort.errors import ConfigError, RetortError
from retort.evaluation.evaluator import evaluate, selection_score
from retort.models.hf import load_classifier
from retort.models.hf import save_model as save_hf
from retort.models.outputs import ModelOutput, Needs, forward
from retort.paths import discard_dir, write_atomic
from retort.progress import progress as progress_bar
from retort.training.log import TrainingLog

PREDICTIONS_NAME = "dev_predictions.json"


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


def fit(run: TrainingSetup, resume: bool = False, progress: bool = True) -> dict:
    """Train, evaluate, keep the best model in ``OUT/model``; return and write ``OUT/metrics.json``."""
    cfg, task = run.cfg, run.task
    out = Path(cfg.out)
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if use_cuda else "cpu")
    rank, size = dist_init(device)  # (0, 1) unless launched by torchrun / accelerate launch
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
    model, objective = run.model.to(device), run.objective.to(device)
    teacher = run.teacher.to(device) if run.teacher is not None else None
    broadcast_parameters([model, objective])
    global_batch = cfg.batch_size * size * cfg.grad_accum  # examples per optimizer step, all processes
    steps_per_epoch = math.ceil(len(run.train) / global_batch)
    total_steps = steps_per_epoch * cfg.epochs
    schedule_steps = steps_per_epoch * (cfg.schedule_epochs or cfg.epochs)  # a run may stop early on it
    # fused: one kernel over every parameter instead of a Python loop per tensor; on 2 CPU cores the loop
    # was 40% of a teacher step (119 ms of 302 ms for 22.7M parameters), fused takes 24 ms (docs/results.md)
    optimizer = torch.optim.AdamW(param_groups([model, objective], cfg.weight_decay), lr=cfg.lr, fused=True)
    # transformers' schedule (the first step at lr 0, as the HF Trainer): results move slightly against the
    # hand-written one it replaced, which started warm-up one step ahead (docs/results.md, issue #16)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * schedule_steps), schedule_steps)
    ckpt = out / "checkpoint"
    state = TrainState()
    if size > 1 and not resume:
        torch.manual_seed(cfg.seed + 7919 * rank)  # each process its own dropout stream, after the shared init
    if resume:
        if not (ckpt / "trainer_state.json").exists():
            raise ConfigError(f"{ckpt}: no checkpoint to resume from")
        state = load_checkpoint(ckpt, model, objective, optimizer, scheduler)
        if main:
            print(f"resumed from step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    log = TrainingLog(out, state.step if resume else None) if main else None
    pad_id = run.tokenizer.pad_token_id or 0
    sneeds = objective.student_needs
    cache = run.teacher_cache
    eval_every = cfg.eval_every or steps_per_epoch
    kill_at = int(os.environ.get("RETORT_TEST_KILL_AT_STEP", "0"))  # fault injection for the resume test
    wall_start = time.perf_counter() - state.wall_seconds
    desc = f"{cfg.kind} {task.name}"
    bar = progress_bar(total_steps, desc, progress and main, global_batch, state.step)

    def save() -> None:
        state.wall_seconds = time.perf_counter() - wall_start
        if cache is not None:
            cache.flush()
        others = gather_rng_states(rng_state())
        if main:
            save_checkpoint(ckpt, model, objective, optimizer, scheduler, state, others)
        barrier()

    model.train()
    try:
        while state.epoch < cfg.epochs:
            batches = batch_order(
                run.train.lengths, global_batch, cfg.seed, state.epoch, group_by_length=cfg.group_by_length
            )
            while state.batch_in_epoch < len(batches):
                idx = batches[state.batch_in_epoch]
                t0 = time.perf_counter()
                tokens = padded = 0
                phase = state.phase_seconds
                for micro in shard(idx, rank, size, cfg.grad_accum):  # this process's share, in micro-batches
                    t1 = time.perf_counter()
                    batch = {k: v.to(device) for k, v in collate(run.train, micro, pad_id).items()}
                    t2 = time.perf_counter()
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        t_out = _teacher_outputs(run, teacher, cache, micro, batch, device)
                        t3 = time.perf_counter()
                        s_out = forward(model, batch, sneeds, objective.layer_inputs(t_out))
                    if amp_dtype is not None:  # the losses in fp32
                        s_out, t_out = s_out.float(), t_out.float() if t_out is not None else None
                    objective.progress = state.step / schedule_steps  # scheduled weights (gamma_schedule)
                    loss = objective(s_out, t_out, batch)
                    check_finite_loss(loss, state.step + 1)
                    share = len(micro) * size / len(idx)  # the summed gradients are the global batch's mean loss
                    total = loss.total if share == 1 else loss.total * share
                    (scaler.scale(total) if scaler else total).backward()
                    state.loss_sum += float(loss.total.detach()) * len(micro)
                    state.loss_rows += len(micro)
                    tokens += int(batch["attention_mask"].sum())
                    padded += batch["attention_mask"].numel()
                    t4 = time.perf_counter()
                    phase["data"] += t2 - t1
                    phase["teacher"] += t3 - t2
                    phase["student"] += t4 - t3
                t5 = time.perf_counter()
                clipped = [*model.parameters(), *objective.parameters()]  # projections and learned layer weights too
                all_reduce_grads([p for p in clipped if p.requires_grad])
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grad_norm = nn.utils.clip_grad_norm_(clipped, cfg.max_grad_norm) if cfg.max_grad_norm else None
                if grad_norm is not None and not math.isfinite(float(grad_norm)) and scaler is None:  # fp16: skipped
                    raise NonFiniteError(
                        f"step {state.step + 1}: the gradient norm is {float(grad_norm)} "
                        f"(loss {float(loss.total):.4g}); stopped before the update, nothing of this step saved "
                        "(lower --lr?)"
                    )
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                broadcast_buffers(objective)
                phase["update"] += time.perf_counter() - t5
                state.train_seconds += time.perf_counter() - t0
                state.train_samples += len(idx)
                state.train_tokens += tokens
                state.padded_tokens += padded
                state.step += 1
                state.batch_in_epoch += 1
                bar.update(1)
                if main and (state.step % cfg.log_every == 0 or state.step == 1):
                    rec = {
                        "step": state.step,
                        "epoch": state.epoch + state.batch_in_epoch / len(batches),
                        "lr": scheduler.get_last_lr()[0],
                        **loss.log_values(),  # rank 0's last micro-batch
                        "samples_per_s": state.train_samples / max(state.train_seconds, 1e-9),
                        "tokens_per_s": state.train_tokens / max(state.train_seconds, 1e-9),
                    }
                    if grad_norm is not None:
                        rec["grad_norm"] = float(grad_norm)
                    log.write(rec)
                    tok_s = f"{rec['tokens_per_s']:,.0f}"
                    bar.set_postfix(refresh=False, **{"loss": f"{rec['loss']:.4f}", "tokens/s": tok_s})
                end_of_epoch = state.batch_in_epoch == len(batches)
                if end_of_epoch:
                    state.epoch += 1
                    state.batch_in_epoch = 0
                if state.step % eval_every == 0 or (end_of_epoch and state.epoch == cfg.epochs):
                    if main:
                        _evaluate_and_keep(run, model, state, log, device, pad_id, out)
                    save()
                elif state.step % cfg.save_every == 0:
                    save()
                if kill_at and state.step == kill_at:
                    os.kill(os.getpid(), 9)
                if end_of_epoch:
                    break
    except BaseException:  # close the log (its TensorBoard writer thread) before the run folder is restored
        if log is not None:
            log.close()
        raise
    bar.close()
    state.wall_seconds = time.perf_counter() - wall_start
    if not main:
        dist_close()
        return {}
    log.close()
    metrics = _final_metrics(run, state)
    metrics["processes"] = size
    if run.final_dev is not None:  # --val-split: the kept model, scored once on the GLUE dev set
        kept = load_classifier(str(out / "model"), task).to(device)
        kept_predictions: dict = {}
        metrics["dev_once"] = evaluate(kept, task, run.final_dev, cfg.eval_batch_size, device, pad_id,
                                       keep=kept_predictions)  # fmt: skip
        # per-example predictions of the kept model: what 'retort report' pairs across methods and seeds
        write_atomic(out / PREDICTIONS_NAME, json.dumps(kept_predictions))
        log_line = "  ".join(f"{s} {m}={v:.4f}" for s, r in metrics["dev_once"].items() for m, v in r.items())
        print(f"kept model (best on --val-split, step {state.best_step}), scored once: {log_line}", flush=True)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    if not cfg.keep_checkpoint and ckpt.is_dir():  # 200 MB a run for a 22M model; paper.py's 291 filled a disk
        # through the temporary name, a run file that the next save clears: never a broken checkpoint/ to resume
        discard_dir(ckpt, ckpt.with_name(ckpt.name + ".tmp"))
    dist_close()
    return metrics


def _teacher_outputs(run: TrainingSetup, teacher, cache, idx: list[int], batch: dict, device) -> ModelOutput | None:
    """What the objective compares the student with: precomputed logits (DSE, long inputs), the cache's
    copy of an earlier pass, or a teacher run now (kept in the cache, when there is one)."""
    objective = run.objective
    if "teacher_logits" in batch and objective.teacher_needs == Needs():
        return ModelOutput(batch.pop("teacher_logits"), batch["attention_mask"])
    if cache is not None and cache.has(idx):
        return cache.get(idx, batch["attention_mask"]).to(device)
    if teacher is None or not objective.uses_teacher:
        return None
    with torch.inference_mode():
        t_out = forward(teacher, batch, objective.teacher_needs)
    t_out = t_out.detached()
    if cache is not None:
        cache.put(idx, t_out)
    return t_out


@torch.inference_mode()
def _heldout_loss(run: TrainingSetup, model: nn.Module, data, device, pad_id: int) -> dict[str, float]:
    """The objective on held-out rows (``--val-split`` rows, or general distillation's held-out corpus
    sequences), dropout off: the total (``loss``) and each unweighted term (``loss/NAME``), per-row means.
    The teacher runs now (the cache holds training rows only)."""
    objective = run.objective
    was = model.training, objective.training
    model.eval()
    objective.eval()
    sums: dict[str, float] = {}
    try:
        for idx in eval_order(data.lengths, run.cfg.eval_batch_size):
            batch = {k: v.to(device) for k, v in collate(data, idx, pad_id).items()}
            t_out = _teacher_outputs(run, run.teacher, None, idx, batch, device)
            s_out = forward(model, batch, objective.student_needs)
            values = objective(s_out, t_out, batch).log_values()
            for k, v in values.items():
                if k == "loss" or k.startswith("loss/"):
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
    finally:
        model.train(was[0])
        objective.train(was[1])
    return {k: v / max(len(data), 1) for k, v in sums.items()}


def _evaluate_and_keep(
    run: TrainingSetup, model: nn.Module, state: TrainState, log: TrainingLog, device, pad_id: int, out: Path
) -> None:
    t0 = time.perf_counter()
    held_out = None
    if run.cfg.general:  # no task output yet: the objective's loss on held-out corpus sequences
        held_out = _heldout_loss(run, model, run.dev["heldout"], device, pad_id)
        results = {"heldout": {"loss": held_out["loss"]}}
        score = -results["heldout"]["loss"]
    else:
        results = evaluate(model, run.task, run.dev, run.cfg.eval_batch_size, device, pad_id)
        score = selection_score(run.task, results)
        if "val" in run.dev:  # --val-split: the same objective on the held-out rows (loss curves)
            held_out = _heldout_loss(run, model, run.dev["val"], device, pad_id)
    record = {
        "step": state.step,
        "epoch": state.epoch,
        "results": results,
        # the objective's mean over the training rows since the last evaluation (dropout on) and over the
        # held-out rows now (dropout off): the two loss curves
        "train_loss": state.loss_sum / state.loss_rows if state.loss_rows else None,
        "val_loss": held_out,
        "eval_seconds": time.perf_counter() - t0,
        "train_seconds": state.train_seconds,
    }
    state.loss_sum, state.loss_rows = 0.0, 0
    state.evals.append(record)
    log.write({"step": state.step, "eval": results, "train_loss": record["train_loss"], "val_loss": held_out})
    summary = "  ".join(f"{s} {m}={v:.4f}" for s, r in results.items() for m, v in r.items() if m != "score")
    print(f"step {state.step} epoch {state.epoch}: {summary}", flush=True)
    keep_last = run.cfg.kind == "distill" and run.cfg.objective.stage in ("intermediate", "progressive", "attention")
    if keep_last or score > state.best_score:  # the intermediate stage has no task output to select on
        state.best_score, state.best_step, state.best_results = score, state.step, results
        save_hf(model, run.tokenizer, out / "model")


def _final_metrics(run: TrainingSetup, state: TrainState) -> dict:
    cfg = run.cfg
    return {
        "task": run.task.name,
        "kind": cfg.kind,
        "primary_metric": run.task.primary_metric,
        "best_step": state.best_step,
        "best": state.best_results,
        "evals": state.evals,
        "objective": run.objective.formula(),  # which loss each term used (scores or probabilities, ...)
        "families": {"student": run.info.get("family"), "teacher": run.info.get("teacher_family")},
        "copied_from_teacher": run.info.get("copied_from_teacher"),
        "parameters": run.info["parameters"],
        "teacher_parameters": run.info.get("teacher_parameters"),
        "train_examples": run.info["train_examples"],
        "transfer_examples": run.info.get("transfer_examples", 0),
        "dev_examples": run.info["dev_examples"],
        "skipped_rows": run.info["skipped_rows"],
        "val_rows": run.info.get("val_rows"),  # --val-split: the carved rows (positions in the training rows)
        "steps": state.step,
        "epochs": cfg.epochs,
        "train_seconds": state.train_seconds,
        "phase_seconds": state.phase_seconds,
        "wall_seconds": state.wall_seconds,
        "train_samples_per_s": state.train_samples / max(state.train_seconds, 1e-9),
        "pad_fraction": 1 - state.train_tokens / max(state.padded_tokens, 1),
        "tokens_seen": state.train_tokens,  # real (non-padding) tokens trained on, every epoch
        "threads": torch.get_num_threads(),
        "config": to_dict(cfg),
    }
