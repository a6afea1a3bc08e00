"""The model card of ``retort compress`` (``OUT/README.md``): what the shipped student is, the budget asked and
what was met, its scores beside the baseline, its speed on the named CPU, how to load and remake it; when
nothing met the budget, every candidate against it."""

from __future__ import annotations

from retort.data.tasks import get_task
from retort.errors import RetortError


def model_card(frontier: dict, plan: dict) -> str:
    """``OUT/README.md``: what the shipped model is, the budget and what was met, its scores beside the
    baseline, its speed on the named CPU, how to load it, and how to remake it."""
    primary = frontier["primary_metric"]
    shipped = next((r for r in frontier["candidates"] if r["name"] == frontier["shipped"]), None)
    t = frontier["teacher"]
    lines = [f"# {frontier['task']}: a distilled student ({frontier['backend']})", ""]
    if shipped is None:
        return "\n".join(lines + _no_ship(frontier, plan))
    once, inputs = frontier.get("scored_once") or {}, _inputs(frontier["task"])
    lines += [
        f"- Shape {shipped['name']} ({shipped['layers']} layers, width {shipped['hidden']}, {shipped['heads']} heads, "
        f"FFN {shipped['ffn']}), {shipped['parameters']:,} parameters, {shipped['start']}, distilled (multilevel) "
        f"from `{t['folder']}`.",
        f"- Budget asked: {budget_words(frontier)}, quality floor {frontier['max_drop'] or 'none'}; target "
        f"{frontier['target_ms']:.3f} ms a call (from the teachers' times in the bench run below)."
        if frontier["target_ms"]
        else f"- Budget asked: {budget_words(frontier)}.",
        f"- Held-out {primary} ({frontier['heldout_rows']} training rows kept out of training, which chose the epoch "
        f"and the model): {shipped['heldout'][primary]:.4f}, teacher {t['heldout'][primary]:.4f}.",
        f"- Scored once, after the choice ({once.get('split')} split): {_scores(once.get('results'))}; "
        f"baseline (majority class or mean): {_scores(once.get('baseline'))}.",
        f"- Speed, batch 1, p50 (the least of {frontier['rounds']} rounds' medians), {frontier['threads']} threads, "
        f"{frontier['cpu']}: "
        f"{shipped['measured_ms']:.3f} ms; the teacher {t['torch_ms']:.3f} ms in PyTorch fp32 "
        f"({shipped['speedup_vs_teacher_torch']:.2f}x, mixed backends) and {t['backend_ms']:.3f} ms as its own "
        f"{frontier['backend']} export ({shipped['speedup_vs_teacher_backend']:.2f}x, same backend).",
        f"- Training: {shipped['train_s'] / 60:.1f} min for this one ({shipped['start']}); "
        f"{frontier['train_seconds'] / 60:.1f} min for the {len(frontier['candidates'])} candidates of the search "
        "(wall time on the same CPU).",
        *_transfer_line(shipped),
        *_vocab_line(plan),
        *_teacher_line(plan),
        "- Every candidate, with the teacher: `frontier.json`, `frontier.png`; the plan: `plan.json`.",
        "",
        "Load it:",
        "",
        "```python",
        "import retort",
        f"retort.predict('model', {inputs})   # label names with probabilities (scores for regression)",
    ]
    if frontier["backend"] != "torch":
        lines += ["from retort.deploy.runtime import OnnxModel   # onnxruntime, tokenizers, numpy only",
                  f"OnnxModel('model').predict({inputs})"]  # fmt: skip
    else:
        lines += ["from transformers import AutoModelForSequenceClassification",
                  "AutoModelForSequenceClassification.from_pretrained('model')"]  # fmt: skip
    lines += ["```", "", f"Remake it: `{remake(frontier, plan)}`", ""]
    return "\n".join(lines)


def _inputs(task: str) -> str:
    """A call's inputs as the task takes them: texts, or pairs of texts for a pair task (STS-B, MRPC)."""
    try:
        pair = get_task(task).is_pair
    except RetortError:  # a task no longer registered: one text
        pair = False
    return "[('a sentence', 'another sentence')]" if pair else "['a text']"


def remake(frontier: dict, plan: dict) -> str:
    """The command that makes this search again: the plan's options, then the timing ones it was run with
    (threads, dev rows timed, bench rounds), which change timings but not what a stopped search resumes on."""
    timing = [("--threads", plan.get("threads")), ("--probe-samples", plan.get("probe_samples")),
              ("--rounds", frontier.get("rounds"))]  # fmt: skip
    return " ".join(["retort compress", *plan.get("argv", []), *(f"{k} {v}" for k, v in timing if v is not None)])


def budget_words(frontier: dict) -> str:
    """The budget asked, in words: ``10x the teacher's PyTorch speed, 3x its onnx-int8 export's``."""
    b = frontier["budget"]
    parts = [f"{b['speedup']:g}x the teacher's PyTorch speed" if b.get("speedup") else "",
             f"{b['speedup_backend']:g}x its {frontier['backend']} export's" if b.get("speedup_backend") else "",
             f"at most {b['latency_ms']:g} ms a call" if b.get("latency_ms") else "",
             f"at most {b['max_params']:,} parameters" if b.get("max_params") else ""]  # fmt: skip
    return ", ".join(p for p in parts if p)


def _scores(results: dict | None) -> str:
    """``{"dev": {"pearson": 0.8373, "score": ...}}`` as ``dev: pearson 0.8373, spearman 0.8403`` (every split,
    without the combined ``score``)."""
    if not results:
        return "none"
    return "; ".join(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "score")
                     for split, values in results.items())  # fmt: skip


def _transfer_line(row: dict) -> list[str]:
    """The model card's word on the transfer rounds (below the floor, or with ``--hours`` left for the student that
    would ship): every stage's held-out score, and which the search kept."""
    scores = row.get("stage_scores") or {}
    if len(scores) < 2:
        return []
    shipped = row.get("stage_scores_shipped") or scores

    def name(n: str) -> str:
        return "task stage" if n == "task" else f"transfer {n}"

    each = ", ".join(f"after the {name(n)} {v:.4f}" + (f" ({shipped[n]:.4f} as shipped)" if n in shipped else "")
                     for n, v in scores.items())  # fmt: skip
    kept = row.get("kept_stage") or max(shipped, key=lambda n: (shipped[n], -list(shipped).index(n)))  # older rows
    return [f"- Held-out score {each} (PyTorch, then as exported): the {name(kept)} is the one kept."]


def _vocab_line(plan: dict) -> list[str]:
    """The model card's word on a pruned vocabulary (none when the teacher's is kept)."""
    words = plan.get("vocabulary") or {}
    if words.get("mode") != "task":
        return []
    return [
        f"- Vocabulary: {words['kept']:,} of the teacher's {words['of']:,} tokens (those of the training rows, "
        "every single character, the special tokens). A word outside them is split into smaller pieces, "
        "never [UNK]; the held-out score above includes what that costs on words training never showed."
    ]


def _teacher_line(plan: dict) -> list[str]:
    """The model card's word on a teacher this search fine-tuned (no ``--teacher`` given)."""
    argv = plan.get("argv", [])
    if "--base" not in argv:
        return []
    return [f"- The teacher was fine-tuned by this search from `{argv[argv.index('--base') + 1]}` (`teacher/`: its "
            "epoch kept on held-out training rows, its dev set scored once, in `teacher/metrics.json`)."]  # fmt: skip


def _no_ship(frontier: dict, plan: dict) -> list[str]:
    """The card when no candidate met the budget: what was asked and every candidate against it."""
    primary, t = frontier["primary_metric"], frontier["teacher"]
    target = f"{frontier['target_ms']:.3f} ms a call" if frontier["target_ms"] else "no latency target"
    floor = f"{frontier['floor']:.4f}" if frontier["floor"] is not None else "none"
    lines = [f"No candidate met the budget ({budget_words(frontier)}: {target}; held-out {primary} floor {floor}, the "
             f"teacher {t['heldout'][primary]:.4f}; {frontier['cpu']}, {frontier['threads']} threads). Nothing is "
             "shipped; every candidate as measured:", "",
             f"| candidate | parameters | held-out {primary} | ms b1 p50 | vs teacher torch | vs teacher "
             f"{frontier['backend']} | why not |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in frontier["candidates"]:
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['heldout'][primary]:.4f} | {r['measured_ms']:.3f} | "
                     f"{r['speedup_vs_teacher_torch']:.2f}x | {r['speedup_vs_teacher_backend']:.2f}x | "
                     f"{r['why_not']} |")  # fmt: skip
    lines += ["", *(f"- {n}: {why}" for n, why in (frontier.get("not_trained") or {}).items()),
              "Every number: `frontier.json`, `frontier.png`; the plan: `plan.json`.", "",
              f"Remake it: `{remake(frontier, plan)}`", ""]  # fmt: skip
    return lines
