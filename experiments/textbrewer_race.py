"""retort against TextBrewer on the same TinyBERT-style distillation, in one run on one machine.

Same teacher (a fine-tuned STS-B folder), same 3x384 student initialised from teacher layers 2, 4, 6,
same data (STS-B train, dynamic padding for both), batch size, epochs, threads, learning rate, warm-up,
clipping and loss terms: soft MSE on the teacher's score + hidden-state MSE on (embeddings, 2, 4, 6) +
attention MSE on layers 2, 4, 6, each term the mean over its layers. Both evaluate on dev after every
epoch and report their best epoch. Each side is a whole command, timed from start to exit (start-up,
loading and evaluation included), and reports its own samples/s over the training steps only.

What differs is what each tool does by default, which is the point of the race: retort reads
pre-softmax attention scores through hooks with ``sdpa``, batches grouped by length, a fused AdamW, and
``--cache-teacher all`` (the teacher runs in epoch 1 only); TextBrewer asks transformers for attention
maps (the ``eager`` path; the maps are softmax probabilities), plain random batches, and the optimizer a
TextBrewer user writes (``torch.optim.AdamW``). TextBrewer is an optional extra (``pip install -e
'.[race]'``), never a dependency of retort.

    python experiments/textbrewer_race.py --teacher runs/demo/teacher/model --glue-dir ../shared/data/glue \\
        --out docs/data/textbrewer_race.json

Prints a table (samples/s, ratio, wall, dev Pearson, and retort's time by phase) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def textbrewer_side(a: argparse.Namespace) -> dict:
    """One TextBrewer run in this process; returns its numbers."""
    import numpy as np
    import torch
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from transformers import get_linear_schedule_with_warmup

    from retort.data.batching import collate, encode
    from retort.data.glue import get_task, load_split
    from retort.evaluation.evaluator import evaluate
    from retort.models.hf import load_classifier, load_tokenizer
    from retort.models.student import StudentShape, build_student

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    task = get_task("STS-B")
    tok = load_tokenizer(a.teacher)
    train = encode(load_split(task, "train", a.glue_dir, max_samples=a.max_train_samples), tok, 128)
    dev = {"dev": encode(load_split(task, "dev", a.glue_dir), tok, 128)}
    teacher = load_classifier(a.teacher, task, attn_implementation="eager").eval()
    student = build_student(teacher, StudentShape.parse("3x384"), "teacher")
    pad = tok.pad_token_id or 0

    def batches():
        g = torch.Generator().manual_seed(a.seed)
        order = torch.randperm(len(train), generator=g).tolist()
        for s in range(0, len(order), a.batch_size):
            b = collate(train, order[s : s + a.batch_size], pad)
            yield {k: b[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

    class Loader:  # a fresh shuffle-free pass each epoch is enough for a speed race; len() for the schedule
        def __iter__(self):
            return batches()

        def __len__(self):
            return (len(train) + a.batch_size - 1) // a.batch_size

    def adaptor(batch, out):
        return {
            "logits": out.logits,
            "hidden": out.hidden_states,
            "attention": out.attentions,
            "inputs_mask": batch["attention_mask"],
        }

    hidden = [(0, 0), (1, 2), (2, 4), (3, 6)]  # (student, teacher) hidden_states index, 0 = embeddings
    attn = [(0, 1), (1, 3), (2, 5)]  # attentions index: student layers 1-3, teacher layers 2, 4, 6
    matches = [
        {"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1 / len(hidden)}
        for s, t in hidden
    ] + [
        {"layer_T": t, "layer_S": s, "feature": "attention", "loss": "attention_mse", "weight": 1 / len(attn)}
        for s, t in attn
    ]
    dcfg = DistillationConfig(
        temperature=1, hard_label_weight=0, kd_loss_type="mse", kd_loss_weight=1, intermediate_matches=matches
    )
    work = Path(a.workdir) / "textbrewer"
    tcfg = TrainingConfig(device="cpu", output_dir=str(work), log_dir=str(work / "log"), ckpt_frequency=1)
    distiller = GeneralDistiller(tcfg, dcfg, teacher, student, adaptor, adaptor)
    optimizer = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=0.01)
    steps = len(Loader()) * a.epochs
    evals, eval_seconds = [], [0.0]

    def callback(model, step):
        t0 = time.perf_counter()
        evals.append(evaluate(model, task, dev, 128, "cpu", pad)["dev"]["pearson"])
        eval_seconds[0] += time.perf_counter() - t0
        model.train()

    t0 = time.perf_counter()
    with distiller:
        distiller.train(
            optimizer,
            Loader(),
            num_epochs=a.epochs,
            scheduler_class=get_linear_schedule_with_warmup,
            scheduler_args={"num_warmup_steps": int(0.1 * steps), "num_training_steps": steps},
            max_grad_norm=1.0,
            callback=callback,
            output_hidden_states=True,
            output_attentions=True,
        )
    train_seconds = time.perf_counter() - t0 - eval_seconds[0]
    return {
        "samples_per_s": len(train) * a.epochs / train_seconds,
        "train_seconds": train_seconds,
        "dev_pearson_per_epoch": evals,
        "dev_pearson": float(np.max(evals)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--out", default="textbrewer_race.json")
    p.add_argument("--workdir")
    p.add_argument("--side", choices=["race", "textbrewer"], default="race", help=argparse.SUPPRESS)
    a = p.parse_args()
    from retort.machine import cpu_label

    if a.side == "textbrewer":
        Path(a.out).write_text(json.dumps(textbrewer_side(a)))
        return
    work = Path(a.workdir or tempfile.mkdtemp(prefix="retort-race-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RETORT_CACHE": str(work / "cache"), "OMP_NUM_THREADS": str(a.threads)}
    cap = ["--max-train-samples", str(a.max_train_samples)] if a.max_train_samples else []
    retort_cmd = [sys.executable, "-m", "retort", "distill", "--task", "STS-B", "--glue-dir", a.glue_dir,
                  "--teacher", a.teacher, "--student", "3x384", "--method", "tinybert", "--epochs", str(a.epochs),
                  "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--lr", str(a.lr),
                  "--seed", str(a.seed), "--cache-teacher", "all", "--out", str(work / "retort"), "--no-progress",
                  *cap]  # fmt: skip
    tb_json = work / "textbrewer.json"
    tb_cmd = [sys.executable, __file__, "--side", "textbrewer", "--teacher", a.teacher, "--glue-dir", a.glue_dir,
              "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--threads", str(a.threads),
              "--lr", str(a.lr), "--seed", str(a.seed), "--out", str(tb_json), "--workdir", str(work),
              *cap]  # fmt: skip
    sides = {}
    for name, cmd in (("retort", retort_cmd), ("TextBrewer", tb_cmd)):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        if name == "retort":
            m = json.loads((work / "retort" / "metrics.json").read_text())
            sides[name] = {
                "samples_per_s": m["train_samples_per_s"],
                "train_seconds": m["train_seconds"],
                "phase_seconds": m["phase_seconds"],
                "dev_pearson_per_epoch": [e["results"]["dev"]["pearson"] for e in m["evals"]],
                "dev_pearson": m["best"]["dev"]["pearson"],
                "command": " ".join(cmd[2:]),
            }
        else:
            sides[name] = {**json.loads(tb_json.read_text()), "command": " ".join(cmd[1:])}
        sides[name]["wall_seconds"] = wall
        print(f"{name}: {sides[name]['samples_per_s']:.1f} samples/s, {wall:.0f}s wall", flush=True)
    r, t = sides["retort"], sides["TextBrewer"]
    cpu = cpu_label()
    print(f"\nSTS-B, 3x384 student, batch {a.batch_size}, {a.epochs} epochs, {a.threads} threads, {cpu}\n")
    print("| tool | samples/s (steps) | wall s (whole command) | dev Pearson (best epoch) | per epoch |")
    print("|---|---|---|---|---|")
    for name, s in sides.items():
        per = ", ".join(f"{x:.4f}" for x in s["dev_pearson_per_epoch"])
        print(f"| {name} | {s['samples_per_s']:.1f} | {s['wall_seconds']:.0f} | {s['dev_pearson']:.4f} | {per} |")
    ratio = r["samples_per_s"] / t["samples_per_s"]
    print(f"\nretort / TextBrewer: {ratio:.2f}x samples/s, {t['wall_seconds'] / r['wall_seconds']:.2f}x wall")
    total = sum(r["phase_seconds"].values())
    parts = ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in r["phase_seconds"].items())
    print(f"retort's step time: {parts}")
    record = {"cpu": cpu, "threads": a.threads, "batch_size": a.batch_size, "epochs": a.epochs,
              "sides": sides, "ratio_samples_per_s": ratio}  # fmt: skip
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
