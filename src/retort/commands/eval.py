"""``retort eval``: score a model folder (PyTorch or export) on a GLUE split with the task's official
metrics, print them and write them as JSON (default: beside the run, RUN/eval_SPLIT.json, or in an export
folder; a model folder of the user's is never written into; ``--json -``: standard output, everything else
printed going to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from retort import options, outputs
from retort.data.spec import choose_task
from retort.data.tasks import task_inputs
from retort.errors import RetortError
from retort.models.check import resolve_model_path
from retort.paths import write_result
from retort.report.tables import print_metrics


def add_parser(sub) -> None:
    """The ``eval`` subcommand."""
    p = sub.add_parser("eval", help="evaluate a model folder on a GLUE split")
    options.add(p, "glue_dir", "skip_bad_rows", "source_task", "data", "model", "split", "batch_size", "max_length",
                "max_eval_samples", "threads", "eval_json", required=("model",))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the scores and where they were written."""
    result = evaluate(args.model, args.task, data=args.data, split=args.split, glue_dir=args.glue_dir,
                      batch_size=args.batch_size, max_length=args.max_length, max_eval_samples=args.max_eval_samples,
                      skip_bad_rows=args.skip_bad_rows, threads=args.threads, json_out=args.json_out,
                      show=True)  # fmt: skip
    if args.json_out != outputs.STDOUT and result["_path"]:
        print(f"wrote {result['_path']}")
    return 0


def evaluate(
    model: str, task: str | None = None, *, data: str | None = None, split: str = "dev", glue_dir: str | None = None,
    batch_size: int = 128, max_length: int | None = None, max_eval_samples: int | None = None,
    skip_bad_rows: bool = False, threads: int | None = None, json_out: str | None = None, show: bool = False,
) -> dict:  # fmt: skip
    """The metrics of ``model`` (a PyTorch or export folder; ``max_length`` None: 128, or the export's own)
    on ``split``, written as JSON to ``json_out`` (default: ``default_json``, ``-``: standard output); ``show``
    prints them. Returns ``evaluate_folder``'s record, plus ``_path``: where it was written (None: nowhere)."""
    from retort.evaluation.folder import evaluate_folder, require_task_head  # noqa: PLC0415  (onnxruntime, torch)

    if task and data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    where = resolve_model_path(model) if Path(model).is_dir() else model  # a run folder: its model
    require_task_head(where)  # an export of a sentence-transformers model embeds; it has no task
    chosen = choose_task(task, data, where)  # --data, else --task, else the one the folder was trained for
    name = chosen.name
    default = default_json(model, where, split)
    reads = [outputs.local(model, "the model"), *task_inputs(chosen, glue_dir)]
    target = json_out or default
    outputs.check_output(target, "--json", reads=reads, own=[default] if default else [], stdout=True)
    with outputs.result_stream(json_out) as stream:
        result = evaluate_folder(model, name, split, glue_dir, batch_size, max_length, max_eval_samples,
                                 bool(skip_bad_rows), threads)  # fmt: skip
        if show:
            print_metrics(result["task"], result["results"], title=f"{model}", baseline=result.get("baseline"))
    if target is None:
        print(
            f"not written: {model} is not a folder retort made (its model folder is left as it is); "
            "give --json PATH to keep the result",
            file=sys.stderr,
        )
        return {**result, "_path": None}
    where = write_result(target, json.dumps(result, indent=2), stream)
    return {**result, "_path": where}


def default_json(model: str, where: str, split: str) -> Path | None:
    """Where eval's JSON goes without ``--json``: beside the run (``RUN/eval_SPLIT.json``, for a run folder or
    the model inside one), or into an export folder retort wrote; never into a model folder of the user's
    (a fine-tuned folder, a hub id): None, nothing written."""
    given, model_dir = Path(model), Path(where)
    if outputs.kind_of(given) == "run":
        return given / f"eval_{split}.json"
    if outputs.kind_of(model_dir.parent) == "run" and model_dir.name == "model":
        return model_dir.parent / f"eval_{split}.json"
    if outputs.kind_of(given) in ("export", "bi-encoder") and given.is_dir():
        return given / f"eval_{split}.json"
    return None
