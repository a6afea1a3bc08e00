"""The training loop: fine-tuning a teacher or distilling a student, with exact resume.

One loop serves both: a run (``retort.training.assembly.prepare``) has a model being trained, an optional frozen
teacher, and an objective. Every ``save_every`` steps and after every evaluation the full training state is written to
``OUT/checkpoint`` (model and objective weights, optimizer, scheduler, RNG states, the position in
the epoch's batch order), always to a temporary name first and then renamed. ``--resume`` loads it
and continues; because the batch order is a pure function of (seed, epoch) and every RNG is restored,
the resumed run ends with the same metrics as one that was never stopped (``retort.training.checkpoint``).
Once the run has finished (``metrics.json`` written) the checkpoint is removed, unless ``--keep-checkpoint``.
One process or several (``retort.training.distributed``); the log is ``retort.training.log``'s.

The best model is picked by an evaluator (``retort.training.evaluators``: the task's dev metrics unless
``fit`` is given another) and kept in ``OUT/model``; tests reach into a run through hooks
(``retort.training.hooks``), never through the environment.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from retort.config import save_yaml, to_dict
from retort.data.batching import batch_order, collate
from retort.errors import ConfigError, RetortError
from retort.evaluation.evaluator import evaluate
from retort.evaluation.metrics import baseline
from retort.models.hf import load_classifier
from retort.models.hf import save_model as save_hf
from retort.models.outputs import forward
from retort.paths import discard_dir, write_atomic
from retort.progress import progress as progress_bar
from retort.training.assembly import TrainingSetup, earlier_stage
from retort.training.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint
from retort.training.distributed import (
    all_reduce_grads,
    barrier,
    broadcast_buffers,
    broadcast_parameters,
    gather_rng_states,
    shard,
)
from retort.training.distributed import close as dist_close
from retort.training.evaluators import Evaluator, default_evaluator, heldout_loss
from retort.training.hooks import Hooks, installed_hooks
from retort.training.log import TrainingLog
from retort.training.runtime import Runtime, StepPlan, optimizer_and_schedule, runtime
from retort.training.targets import teacher_outputs

PREDICTIONS_NAME = "dev_predictions.json"


class NonFiniteError(RetortError):
    """The loss or gradient went NaN or infinite: the run stops, and what it saved before stays finite."""


def check_finite_loss(loss, step: int) -> None:
    """Raise ``NonFiniteError`` (naming every weighted term) when step ``step``'s loss is NaN or infinite."""
    if bool(torch.isfinite(loss.total.detach())):
        return
    terms = ", ".join(
        f"{k} {float(v.detach()):.4g} x weight {loss.weights.get(k, 1.0):.3g}" for k, v in loss.terms.items()
    )
    raise NonFiniteError(
        f"step {step}: the loss is not finite (total {float(loss.total.detach())}; terms: {terms}); stopped, "
        "nothing of this step saved (check --lr, --temperature and the loss weights)"
    )


def fit(
    setup: TrainingSetup,
    resume: bool = False,
    progress: bool = True,
    evaluator: Evaluator | None = None,
    hooks: Hooks | None = None,
) -> dict:
    """Train, evaluate, keep the best model in ``OUT/model``; return and write ``OUT/metrics.json`` (rank 0;
    ``{}`` on the other processes). ``evaluator`` picks the best model (default ``default_evaluator(setup)``:
    the task's dev metrics); ``hooks`` run at fixed points of the run (default: those ``install_hooks``
    installed in this process, else none)."""
    cfg = setup.cfg
    rt = runtime(cfg)
    out = Path(cfg.out)
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
    model, objective = setup.model.to(rt.device), setup.objective.to(rt.device)
    teacher = setup.teacher.to(rt.device) if setup.teacher is not None else None
    broadcast_parameters([model, objective])
    plan = StepPlan.of(cfg, len(setup.train), rt.size)
    optimizer, scheduler = optimizer_and_schedule(cfg, [model, objective], plan.schedule_steps)
    if rt.size > 1 and not resume:
        torch.manual_seed(cfg.seed + 7919 * rt.rank)  # each process its own dropout stream, after the shared init
    state = _resumed_state(out / "checkpoint", model, objective, optimizer, scheduler, rt) if resume else TrainState()
    trainer = _Trainer(
        setup, rt, plan, model, objective, teacher, optimizer, scheduler, state,
        evaluator=evaluator if evaluator is not None else default_evaluator(setup),
        hooks=hooks if hooks is not None else installed_hooks(),
        log=TrainingLog(out, state.step if resume else None) if rt.main else None,
    )  # fmt: skip
    try:
        trainer.train(progress)
    finally:  # training is over (or failed): the entries are idle, a later run may remove them
        for cache in (setup.teacher_cache, setup.val_cache):
            if cache is not None:
                cache.close()
    return trainer.finish()


def _resumed_state(ckpt: Path, model, objective, optimizer, scheduler, rt: Runtime) -> TrainState:
    """Load ``OUT/checkpoint`` into the model, objective, optimizer, scheduler and RNGs; the loop's position."""
    if not (ckpt / "trainer_state.json").exists():
        raise ConfigError(f"{ckpt}: no checkpoint to resume from")
    state = load_checkpoint(ckpt, model, objective, optimizer, scheduler)
    if rt.main:
        print(f"resumed from step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    return state


@dataclass
class _Trainer:
    """One run in progress: what ``fit`` set up, and the steps, logging, evaluation and saving it does."""

    setup: TrainingSetup
    rt: Runtime
    plan: StepPlan
    model: nn.Module
    objective: nn.Module
    teacher: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    state: TrainState
    evaluator: Evaluator
    hooks: Hooks
    log: TrainingLog | None  # rank 0's
    wall_start: float = field(init=False)

    def __post_init__(self) -> None:
        self.cfg = self.setup.cfg
        self.out = Path(self.cfg.out)
        self.ckpt = self.out / "checkpoint"
        self.pad_id = self.setup.tokenizer.pad_token_id or 0
        self.student_needs = self.objective.student_needs
        self.cache = self.setup.teacher_cache
        self.eval_every = self.cfg.eval_every or self.plan.steps_per_epoch
        self.wall_start = time.perf_counter() - self.state.wall_seconds

    def train(self, progress: bool) -> None:
        """Every remaining epoch; on any error the log (its TensorBoard writer thread) is closed first, so
        that the run folder can be restored."""
        desc = f"{self.cfg.kind} {self.setup.task.name}"
        show = progress and self.rt.main
        self.bar = progress_bar(self.plan.total_steps, desc, show, self.plan.global_batch, self.state.step)
        self.model.train()
        try:
            while self.state.epoch < self.cfg.epochs:
                self._epoch()
        except BaseException:
            if self.log is not None:
                self.log.close()
            raise
        self.bar.close()
        self.state.wall_seconds = time.perf_counter() - self.wall_start

    def _epoch(self) -> None:
        """The rest of the current epoch: each step, then the log record, evaluation, checkpoint and hook
        due after it."""
        state, cfg = self.state, self.cfg
        batches = batch_order(
            self.setup.train.lengths, self.plan.global_batch, cfg.seed, state.epoch, group_by_length=cfg.group_by_length
        )
        while state.batch_in_epoch < len(batches):
            loss, grad_norm = self._step(batches[state.batch_in_epoch])
            state.step += 1
            state.batch_in_epoch += 1
            self.bar.update(1)
            if self.rt.main and (state.step % cfg.log_every == 0 or state.step == 1):
                self._log_step(loss, grad_norm, len(batches))
            end_of_epoch = state.batch_in_epoch == len(batches)
            if end_of_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
            if state.step % self.eval_every == 0 or (end_of_epoch and state.epoch == cfg.epochs):
                if self.rt.main:
                    self._evaluate_and_keep()
                self._save()
            elif state.step % cfg.save_every == 0:
                self._save()
            if self.hooks.after_step is not None:
                self.hooks.after_step(state.step)
            if end_of_epoch:
                break

    def _step(self, idx: list[int]):
        """One optimizer step on the global batch ``idx``: this process's micro-batches forward and
        backward, then the update. Returns the last micro-batch's loss and the gradient norm (None
        without clipping)."""
        state = self.state
        t0 = time.perf_counter()
        tokens = padded = 0
        for micro in shard(idx, self.rt.rank, self.rt.size, self.cfg.grad_accum):  # this process's share
            loss, micro_tokens, micro_padded = self._forward_backward(micro, len(idx))
            tokens += micro_tokens
            padded += micro_padded
        t5 = time.perf_counter()
        grad_norm = self._update(loss)
        state.phase_seconds["update"] += time.perf_counter() - t5
        state.train_seconds += time.perf_counter() - t0
        state.train_samples += len(idx)
        state.train_tokens += tokens
        state.padded_tokens += padded
        return loss, grad_norm

    def _forward_backward(self, micro: list[int], global_rows: int):
        """One micro-batch: teacher and student forward (under autocast), the objective, its gradient
        added to the parameters'. Returns the loss, and the real and padded token counts."""
        rt, state, phase = self.rt, self.state, self.state.phase_seconds
        t1 = time.perf_counter()
        batch = {k: v.to(rt.device) for k, v in collate(self.setup.train, micro, self.pad_id).items()}
        t2 = time.perf_counter()
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            t_out = teacher_outputs(self.setup, self.teacher, self.cache, micro, batch, rt.device)
            t3 = time.perf_counter()
            s_out = forward(self.model, batch, self.student_needs, self.objective.layer_inputs(t_out))
        if rt.amp_dtype is not None:  # the losses in fp32
            s_out, t_out = s_out.float(), t_out.float() if t_out is not None else None
        self.objective.progress = state.step / self.plan.schedule_steps  # scheduled weights (gamma_schedule)
        loss = self.objective(s_out, t_out, batch)
        check_finite_loss(loss, state.step + 1)
        share = len(micro) * rt.size / global_rows  # the summed gradients are the global batch's mean loss
        total = loss.total if share == 1 else loss.total * share
        (rt.scaler.scale(total) if rt.scaler is not None else total).backward()
        state.loss_sum += float(loss.total.detach()) * len(micro)
        state.loss_rows += len(micro)
        tokens, padded = int(batch["attention_mask"].sum()), batch["attention_mask"].numel()
        t4 = time.perf_counter()
        phase["data"] += t2 - t1
        phase["teacher"] += t3 - t2
        phase["student"] += t4 - t3
        return loss, tokens, padded

    def _update(self, loss):
        """Sum the gradients over the processes, clip them, take the optimizer and scheduler step; returns
        the gradient norm (None without clipping). A non-finite norm stops the run before the update."""
        rt, optimizer = self.rt, self.optimizer
        clipped = [*self.model.parameters(), *self.objective.parameters()]  # projections and layer weights too
        all_reduce_grads([p for p in clipped if p.requires_grad])
        if rt.scaler is not None:
            rt.scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(clipped, self.cfg.max_grad_norm) if self.cfg.max_grad_norm else None
        if grad_norm is not None and not math.isfinite(float(grad_norm)) and rt.scaler is None:  # fp16: skipped
            raise NonFiniteError(
                f"step {self.state.step + 1}: the gradient norm is {float(grad_norm)} "
                f"(loss {float(loss.total):.4g}); stopped before the update, nothing of this step saved "
                "(lower --lr?)"
            )
        if rt.scaler is not None:
            rt.scaler.step(optimizer)
            rt.scaler.update()
        else:
            optimizer.step()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        broadcast_buffers(self.objective)
        return grad_norm

    def _log_step(self, loss, grad_norm, batches_in_epoch: int) -> None:
        """The step's log record (rank 0's last micro-batch's loss terms, speed) and the progress bar's."""
        state = self.state
        rec = {
            "step": state.step,
            "epoch": state.epoch + state.batch_in_epoch / batches_in_epoch,
            "lr": self.scheduler.get_last_lr()[0],
            **loss.log_values(),  # rank 0's last micro-batch
            "samples_per_s": state.train_samples / max(state.train_seconds, 1e-9),
            "tokens_per_s": state.train_tokens / max(state.train_seconds, 1e-9),
        }
        if grad_norm is not None:
            rec["grad_norm"] = float(grad_norm)
        self.log.write(rec)
        tok_s = f"{rec['tokens_per_s']:,.0f}"
        self.bar.set_postfix(refresh=False, **{"loss": f"{rec['loss']:.4f}", "tokens/s": tok_s})

    def _save(self) -> None:
        """The resume checkpoint, every process's RNG state in it (rank 0 writes it; all wait for it)."""
        self.state.wall_seconds = time.perf_counter() - self.wall_start
        if self.cache is not None:
            self.cache.flush()
        others = gather_rng_states(rng_state())
        if self.rt.main:
            save_checkpoint(
                self.ckpt, self.model, self.objective, self.optimizer, self.scheduler, self.state, others, self.hooks
            )
        barrier()

    def _evaluate_and_keep(self) -> None:
        """Rank 0: the evaluator's results and the loss curves, logged and recorded; the model kept in
        ``OUT/model`` when its score is the best so far."""
        state, cfg = self.state, self.cfg
        t0 = time.perf_counter()
        results = self.evaluator.evaluate(self.model, self.rt.device)
        score = self.evaluator.score(results)
        held_out = self._heldout_losses()
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
        self.log.write({"step": state.step, "eval": results, "train_loss": record["train_loss"], "val_loss": held_out})
        summary = "  ".join(f"{s} {m}={v:.4f}" for s, r in results.items() for m, v in r.items() if m != "score")
        print(f"step {state.step} epoch {state.epoch}: {summary}", flush=True)
        key = score if self.evaluator.greater_is_better else -score  # TrainState.best_score: higher is better
        if earlier_stage(cfg) or key > state.best_score:  # the intermediate stage has no task output to select on
            state.best_score, state.best_step, state.best_results = key, state.step, results
            save_hf(_in_dtype(self.model, cfg.save_dtype), self.setup.tokenizer, self.out / "model")

    def _heldout_losses(self) -> dict[str, float] | None:
        """The objective on the held-out rows (general distillation's held-out sequences, the --val-split
        rows): the evaluator's own measurement when it made one, else measured now; None without such rows."""
        measured = getattr(self.evaluator, "losses", None)
        if measured is not None:
            return measured
        data = self.setup.dev.get("heldout" if self.cfg.general else "val")
        return heldout_loss(self.setup, self.model, data, self.rt.device, self.pad_id) if data is not None else None

    def finish(self) -> dict:
        """Rank 0: the run's metrics (with ``--val-split``, the kept model scored once on the GLUE dev set),
        written to ``OUT/metrics.json``; the checkpoint removed unless --keep-checkpoint. ``{}`` elsewhere."""
        if not self.rt.main:
            dist_close()
            return {}
        self.log.close()
        metrics = _final_metrics(self.setup, self.state)
        metrics["processes"] = self.rt.size
        if self.setup.final_dev is not None:  # --val-split: the kept model, scored once on the GLUE dev set
            metrics["dev_once"] = self._score_kept_once()
        write_atomic(self.out / "metrics.json", json.dumps(metrics, indent=2))
        if not self.cfg.keep_checkpoint and self.ckpt.is_dir():  # 200 MB a run for a 22M model; paper.py's 291
            # filled a disk. Through the temporary name, a run file that the next save clears: never a broken
            # checkpoint/ to resume
            discard_dir(self.ckpt, self.ckpt.with_name(self.ckpt.name + ".tmp"))
        dist_close()
        return metrics

    def _score_kept_once(self) -> dict:
        """--val-split: the kept model's metrics on the GLUE dev set, and its per-example predictions in
        ``OUT/dev_predictions.json`` (what 'retort report' pairs across methods and seeds)."""
        setup, state = self.setup, self.state
        kept = load_classifier(str(self.out / "model"), setup.task).to(self.rt.device)
        kept_predictions: dict = {}
        dev_once = evaluate(kept, setup.task, setup.final_dev, self.cfg.eval_batch_size, self.rt.device, self.pad_id,
                            keep=kept_predictions)  # fmt: skip
        write_atomic(self.out / PREDICTIONS_NAME, json.dumps(kept_predictions))
        log_line = "  ".join(f"{s} {m}={v:.4f}" for s, r in dev_once.items() for m, v in r.items())
        print(f"kept model (best on --val-split, step {state.best_step}), scored once: {log_line}", flush=True)
        return dev_once


def _in_dtype(model: nn.Module, dtype: str) -> nn.Module:
    """``model`` itself for float32, else a copy in ``dtype`` to save (``--save-dtype``); training stays in float32."""
    return model if dtype == "float32" else copy.deepcopy(model).to(getattr(torch, dtype))


def _baselines(setup: TrainingSetup) -> dict:
    """``{split: metrics}`` of predicting without the text on each labelled dev split (``metrics.baseline``);
    {} for general distillation (no task output)."""
    if setup.cfg.general:
        return {}
    out = {}
    for name, data in {**setup.dev, **(setup.final_dev or {})}.items():  # --val-split rows, then the dev set
        if data.labels and all(y is not None for y in data.labels):
            out[name] = baseline(setup.task, setup.task.metrics, np.asarray(data.labels))
    return out


def _final_metrics(setup: TrainingSetup, state: TrainState) -> dict:
    """What ``metrics.json`` records of a finished run (before the process count and ``dev_once``)."""
    cfg, info = setup.cfg, setup.info
    return {
        "task": setup.task.name,
        **({"task_spec": json.loads(setup.task.spec)} if setup.task.spec else {}),
        "kind": cfg.kind,
        "primary_metric": setup.task.primary_metric,
        "best_step": state.best_step,
        "best": state.best_results,
        "baseline": _baselines(setup),  # the majority class (mean score) of each dev split, beside "best"
        "evals": state.evals,
        "objective": setup.objective.formula(),  # which loss each term used (scores or probabilities, ...)
        "families": {"student": info.get("family"), "teacher": info.get("teacher_family")},
        "copied_from_teacher": info.get("copied_from_teacher"),
        **({"student_tokenizer": info["student_tokenizer"]} if info.get("student_tokenizer") else {}),
        "parameters": info["parameters"],
        "teacher_parameters": info.get("teacher_parameters"),
        "train_examples": info["train_examples"],
        "transfer_examples": info.get("transfer_examples", 0),
        **({"transfer_dropped": info["transfer_dropped"]} if info.get("transfer_dropped") else {}),
        "dev_examples": info["dev_examples"],
        "skipped_rows": info["skipped_rows"],
        "val_rows": info.get("val_rows"),  # --val-split: the carved rows (positions in the training rows)
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
