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

from harness import Option, add, command, parser, print_table

LR = Option("--lr", "learning rate of both sides", type=float, default=5e-5, low=0, open_low=True)
WORKDIR = Option("--workdir", "where both sides write (default: a new temporary folder)", metavar="DIR")
HIDDEN_MATCHES = [(0, 0), (1, 2), (2, 4), (3, 6)]  # (student, teacher) hidden_states index, 0 = embeddings
ATTENTION_MATCHES = [(0, 1), (1, 3), (2, 5)]  # attentions index: student layers 1-3, teacher layers 2, 4, 6


def race_data(a: argparse.Namespace):
    """(task, tokenizer, train, dev, teacher, student, pad id): the same STS-B rows, teacher and 3x384 student
    (initialised from the teacher's layers) retort's side uses; the teacher reads attention maps eagerly."""
    from retort.data.batching import encode  # noqa: PLC0415  (torch)
    from retort.data.tasks import get_task, load_split
    from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415
    from retort.models.student import StudentShape, build_student  # noqa: PLC0415

    task = get_task("STS-B")
    tok = load_tokenizer(a.teacher)
    train = encode(load_split(task, "train", a.glue_dir, max_samples=a.max_train_samples), tok, 128)
    dev = {"dev": encode(load_split(task, "dev", a.glue_dir), tok, 128)}
    teacher = load_classifier(a.teacher, task, attn_implementation="eager").eval()
    student = build_student(teacher, StudentShape.parse("3x384"), "teacher")
    return task, tok, train, dev, teacher, student, tok.pad_token_id or 0


def batch_loader(train, batch_size: int, seed: int, pad: int):
    """A TextBrewer data loader: plain random batches (one fixed shuffle, a fresh pass each epoch is enough
    for a speed race), dynamic padding, and ``len()`` for the schedule."""
    import torch  # noqa: PLC0415

    from retort.data.batching import collate  # noqa: PLC0415

    def batches():
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(train), generator=g).tolist()
        for s in range(0, len(order), batch_size):
            b = collate(train, order[s : s + batch_size], pad)
            yield {k: b[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

    class Loader:
        def __iter__(self):
            return batches()

        def __len__(self):
            return (len(train) + batch_size - 1) // batch_size

    return Loader()


def adaptor(batch, out) -> dict:
    """TextBrewer's view of a model's output: logits, hidden states, attention maps and the padding mask."""
    return {"logits": out.logits, "hidden": out.hidden_states, "attention": out.attentions,
            "inputs_mask": batch["attention_mask"]}  # fmt: skip


def distillation_config():
    """TinyBERT's terms as TextBrewer writes them: soft MSE on the score, hidden-state MSE on (embeddings,
    2, 4, 6) and attention MSE on layers 2, 4, 6, each term the mean over its layers."""
    from textbrewer import DistillationConfig  # noqa: PLC0415  (optional: the race extra)

    matches = [
        {"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1 / len(HIDDEN_MATCHES)}
        for s, t in HIDDEN_MATCHES
    ] + [
        {"layer_T": t, "layer_S": s, "feature": "attention", "loss": "attention_mse",
         "weight": 1 / len(ATTENTION_MATCHES)}
        for s, t in ATTENTION_MATCHES
    ]  # fmt: skip
    return DistillationConfig(temperature=1, hard_label_weight=0, kd_loss_type="mse", kd_loss_weight=1,
                              intermediate_matches=matches)  # fmt: skip


def textbrewer_side(a: argparse.Namespace) -> dict:
    """One TextBrewer run in this process; returns its numbers."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from textbrewer import GeneralDistiller, TrainingConfig  # noqa: PLC0415
    from transformers import get_linear_schedule_with_warmup  # noqa: PLC0415

    from retort.evaluation.evaluator import evaluate  # noqa: PLC0415

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    task, tok, train, dev, teacher, student, pad = race_data(a)
    loader = batch_loader(train, a.batch_size, a.seed, pad)
    work = Path(a.workdir) / "textbrewer"
    tcfg = TrainingConfig(device="cpu", output_dir=str(work), log_dir=str(work / "log"), ckpt_frequency=1)
    distiller = GeneralDistiller(tcfg, distillation_config(), teacher, student, adaptor, adaptor)
    optimizer = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=0.01)
    steps = len(loader) * a.epochs
    evals, eval_seconds = [], [0.0]

    def callback(model, step):
        t0 = time.perf_counter()
        evals.append(evaluate(model, task, dev, 128, "cpu", pad)["dev"]["pearson"])
        eval_seconds[0] += time.perf_counter() - t0
        model.train()

    t0 = time.perf_counter()
    with distiller:
        distiller.train(optimizer, loader, num_epochs=a.epochs, scheduler_class=get_linear_schedule_with_warmup,
                        scheduler_args={"num_warmup_steps": int(0.1 * steps), "num_training_steps": steps},
                        max_grad_norm=1.0, callback=callback, output_hidden_states=True,
                        output_attentions=True)  # fmt: skip
    train_seconds = time.perf_counter() - t0 - eval_seconds[0]
    return {"samples_per_s": len(train) * a.epochs / train_seconds, "train_seconds": train_seconds,
            "dev_pearson_per_epoch": evals, "dev_pearson": float(np.max(evals))}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--side textbrewer``: this process is the TextBrewer side)."""
    p = parser(__doc__)
    add(p, "teacher", "glue_dir", "epochs", "train_batch_size", "threads", LR, "seed", "max_train_samples",
        "out_json", WORKDIR, required=["teacher", "glue_dir"],
        defaults={"train_batch_size": 32, "threads": 2, "out_json": "textbrewer_race.json"})  # fmt: skip
    p.add_argument("--side", choices=["race", "textbrewer"], default="race", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def sides_commands(a: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    """The two whole commands raced: ``retort distill`` (tinybert) and this script's TextBrewer side."""
    same = dict(epochs=a.epochs, batch_size=a.batch_size, threads=a.threads, lr=a.lr, seed=a.seed,
                max_train_samples=a.max_train_samples or None)  # fmt: skip
    retort_cmd = [sys.executable, "-m", "retort", *command(
        "distill", task="STS-B", glue_dir=a.glue_dir, teacher=a.teacher, student="3x384", method="tinybert", **same,
        cache_teacher="all", out=work / "retort", no_progress=True)]  # fmt: skip
    tb_cmd = [sys.executable, __file__, *command("--side", "textbrewer", teacher=a.teacher, glue_dir=a.glue_dir,
                                                 **same, out=work / "textbrewer.json", workdir=work)]  # fmt: skip
    return {"retort": retort_cmd, "TextBrewer": tb_cmd}


def race(a: argparse.Namespace, work: Path) -> dict[str, dict]:
    """Run both sides, one after the other, each timed from start to exit; their numbers by name."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RETORT_CACHE": str(work / "cache"), "OMP_NUM_THREADS": str(a.threads)}
    sides = {}
    for name, cmd in sides_commands(a, work).items():
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        if name == "retort":
            m = json.loads((work / "retort" / "metrics.json").read_text())
            sides[name] = {"samples_per_s": m["train_samples_per_s"], "train_seconds": m["train_seconds"],
                           "phase_seconds": m["phase_seconds"],
                           "dev_pearson_per_epoch": [e["results"]["dev"]["pearson"] for e in m["evals"]],
                           "dev_pearson": m["best"]["dev"]["pearson"], "command": " ".join(cmd[2:])}  # fmt: skip
        else:
            sides[name] = {**json.loads((work / "textbrewer.json").read_text()), "command": " ".join(cmd[1:])}
        sides[name]["wall_seconds"] = wall
        print(f"{name}: {sides[name]['samples_per_s']:.1f} samples/s, {wall:.0f}s wall", flush=True)
    return sides


def main(argv: list[str] | None = None) -> None:
    """Race both sides (or, with ``--side textbrewer``, be one), print the table, write the JSON."""
    a = parse_args(argv)
    from retort.machine import cpu_label  # noqa: PLC0415

    if a.side == "textbrewer":
        Path(a.out).write_text(json.dumps(textbrewer_side(a)))
        return
    sides = race(a, Path(a.workdir or tempfile.mkdtemp(prefix="retort-race-")))
    r, t = sides["retort"], sides["TextBrewer"]
    cpu = cpu_label()
    print(f"\nSTS-B, 3x384 student, batch {a.batch_size}, {a.epochs} epochs, {a.threads} threads, {cpu}\n")
    print_table(["tool", "samples/s (steps)", "wall s (whole command)", "dev Pearson (best epoch)", "per epoch"],
                [[name, f"{s['samples_per_s']:.1f}", f"{s['wall_seconds']:.0f}", f"{s['dev_pearson']:.4f}",
                  ", ".join(f"{x:.4f}" for x in s["dev_pearson_per_epoch"])] for name, s in sides.items()])  # fmt: skip
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
