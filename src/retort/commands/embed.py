"""``retort embed``: sentence-embedding models. ``distill`` teaches a sentence-transformers teacher's vectors to a
smaller student (``training/embedding.py``); ``static`` distils it into static embeddings (Model2Vec,
``deploy/static.py``); ``eval`` scores embedding models on STS-style pairs (Spearman of cosine,
``evaluation/embeddings.py``), each folder beside the others in one table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from retort import options, outputs
from retort.data.spec import load_task
from retort.data.tasks import get_task, load_split, task_inputs
from retort.deploy.static import distill_static
from retort.errors import RetortError
from retort.machine import cpu_label
from retort.models.check import resolve_model_path
from retort.paths import write_result
from retort.report.tables import table


def add_parser(sub) -> None:
    """``embed`` and its subcommands."""
    p = sub.add_parser("embed", help="sentence embeddings: static (Model2Vec) baselines, STS evaluation")
    embed = p.add_subparsers(dest="embed_command", required=True)
    t = embed.add_parser("distill", help="a sentence-transformers teacher's vectors taught to a smaller student")
    options.add(t, "embed_teacher", "corpus", "task", "data", "glue_dir", "embed_student", "embed_init", "sentences",
                "held_out", "embed_epochs", "embed_lr", "embed_batch", "pair_weight", "max_length", "embed_seed",
                "threads", "model_out", required=("corpus", "model_out"), many=("corpus",))  # fmt: skip
    t.set_defaults(run=run_distill)
    t = embed.add_parser("static", help="distil a sentence-transformers teacher into static embeddings (Model2Vec)")
    options.add(t, "model", "model_out", required=("model", "model_out"))
    t.set_defaults(run=run_static)
    t = embed.add_parser("eval", help="Spearman of cosine on STS-style pairs, one row per model folder")
    options.add(t, "model", "source_task", "data", "glue_dir", "split", "threads", "embed_rounds", "json_out",
                required=("model",), many=("model",))  # fmt: skip
    t.set_defaults(run=run_eval)


def run_distill(args: argparse.Namespace) -> int:
    """Sentences from the corpus (and --data's training texts), the teacher's vectors (cached), a student
    trained on them with its epoch chosen on held-out sentences, saved as a sentence-transformers folder."""
    import torch  # noqa: PLC0415  (training)

    from retort.distill.mining import read_corpus  # noqa: PLC0415
    from retort.training import embedding  # noqa: PLC0415

    teacher = resolve_model_path(args.teacher or "all-MiniLM-L6-v2")
    parts = embedding.teacher_parts(teacher)  # a folder that is no sentence-transformers model: one line
    if not Path(args.student).is_dir():
        embedding.check_init(args.student_init)
    max_length = args.max_length or 128
    if args.task and args.data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    task = load_task(args.data) if args.data else (get_task(args.task) if args.task else None)
    reads = [outputs.local(teacher, "the teacher"), *(outputs.local(c, "the corpus") for c in args.corpus),
             *(task_inputs(task, args.glue_dir) if task else [])]  # fmt: skip
    outputs.check_output(args.out, "--out", reads=reads, folder=True, makes="sentence-transformers model")
    rng = random.Random(args.seed)
    corpus = [s.text for s in read_corpus(args.corpus)]
    texts = rng.sample(corpus, min(args.sentences, len(corpus)))
    if task:  # its training texts, no labels (its dev and test splits are never read)
        texts += [t for ex in load_split(task, "train", args.glue_dir).examples for t in ex.texts]
    texts = list(dict.fromkeys(texts))
    embedding.check_texts(texts)
    rng.shuffle(texts)
    held = min(args.held_out, len(texts) // 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    target, cached = embedding.teacher_vectors(teacher, texts)
    teacher_s = time.perf_counter() - start
    print(f"teacher vectors: {len(texts):,} sentences, {target.shape[1]} dimensions "
          f"({'from the cache' if cached else f'{teacher_s:.0f}s'})")  # fmt: skip
    model, tokenizer, start_from = embedding.build(teacher, args.student, args.student_init, texts[held:],
                                                   target.shape[1], parts.normalize)  # fmt: skip
    fitted = embedding.fit_projection(model, tokenizer, texts[held:], target[held:], max_length)
    if fitted is not None:
        print(f"projection to the teacher's {target.shape[1]} dimensions: ridge {fitted['ridge']:g} fitted on "
              f"{fitted['sentences']:,} sentences, cosine {fitted['held_cosine']:.4f} on a tenth held out")  # fmt: skip
    params = model.parameter_count()
    print(f"student: {start_from}, {params:,} parameters; {len(texts) - held:,} training and {held:,} held-out "
          "sentences")  # fmt: skip
    result = embedding.train(model, tokenizer, texts[held:], target[held:], (texts[:held], target[:held]),
                             epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, pair_weight=args.pair_weight,
                             max_length=max_length, seed=args.seed)  # fmt: skip
    record = {"teacher": teacher, "teacher_modules": list(parts.modules), "student": args.student, "start": start_from,
              "parameters": params, "corpus": args.corpus, "task": args.task, "data": args.data,
              "sentences": len(texts) - held, "held_out": held, "epochs": args.epochs, "lr": args.lr,
              "batch_size": args.batch_size, "pair_weight": args.pair_weight, "seed": args.seed,
              "teacher_seconds": round(teacher_s, 1), "teacher_cached": cached, "projection_fit": fitted,
              **result}  # fmt: skip
    embedding.save(model, tokenizer, args.out, record, max_length=max_length)
    print(f"wrote {args.out}: epoch {result['best_epoch']} kept (held-out cosine to the teacher "
          f"{result['heldout_cosine']:.4f}); SentenceTransformer('{args.out}') loads it")  # fmt: skip
    return 0


def run_static(args: argparse.Namespace) -> int:
    """Distil and say what was written."""
    record = distill_static(args.model, args.out)
    print(f"wrote {args.out}: {record['vocabulary']:,} token vectors of {record['dims']} dimensions from "
          f"{record['teacher']} in {record['seconds']:.0f}s")  # fmt: skip
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Score every model on the same pairs; a table, and JSON with ``--json``."""
    from retort.evaluation.embeddings import require_folder, sts_scores  # noqa: PLC0415  (numpy, scipy)

    for model in args.model:  # the models first: a missing one is named before any data is read
        require_folder(model)
    if args.task and args.data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    task = load_task(args.data) if args.data else get_task(args.task or "STS-B")
    reads = [*(outputs.local(m, "a model") for m in args.model), *task_inputs(task, args.glue_dir)]
    outputs.check_output(args.json_out, "--json", reads=reads, stdout=True)
    with outputs.result_stream(args.json_out) as stream:
        results = [sts_scores(m, task, args.split, args.glue_dir, args.threads, args.rounds) for m in args.model]
        print(table(["model", "kind", "dims", "parameters", f"{task.name} {args.split} Spearman", "Pearson",
                     "ms/sentence b1", "ms/sentence b32", "sentences/s b32"],
                    [[r["model"], r["kind"], r["dims"], f"{r['parameters']:,}" if r["parameters"] else "",
                      f"{r['spearman']:.4f}", f"{r['pearson']:.4f}", f"{r['speed']['ms_per_sentence_b1']:.3f}",
                      f"{r['speed']['ms_per_sentence_b32']:.3f}", f"{r['speed']['sentences_per_s_b32']:.0f}"]
                     for r in results]))  # fmt: skip
        print(
            f"cosine of the two embeddings against the gold score (a constant predictor scores 0); speed: the "
            f"split's sentences in one process, {cpu_label()}, the least of {args.rounds} rounds' medians"
        )
    if args.json_out:
        write_result(args.json_out, json.dumps({"results": results}, indent=2), stream)
    return 0
