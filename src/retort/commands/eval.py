"""``retort eval``: score a model folder (PyTorch or export) on a GLUE split with the task's official
metrics, print them and write them as JSON (default MODEL/eval_SPLIT.json; ``--json -``: standard output,
everything else printed going to stderr).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retort import options, outputs
from retort.data.glue import get_task, resolve_glue_dir
from retort.models.check import resolve_model_path
from retort.paths import write_result
from retort.report.tables import print_metrics


def add_parser(sub) -> None:
    """The ``eval`` subcommand."""
    p = sub.add_parser("eval", help="evaluate a model folder on a GLUE split")
    options.add(p, "glue_dir", "skip_bad_rows", "task", "model", "split", "batch_size", "max_length",
                "max_eval_samples", "threads", "eval_json", required=("task", "model"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the scores and where they were written."""
    result = evaluate(args.model, args.task, split=args.split, glue_dir=args.glue_dir, batch_size=args.batch_size,
                      max_length=args.max_length, max_eval_samples=args.max_eval_samples,
                      skip_bad_rows=args.skip_bad_rows, threads=args.threads, json_out=args.json_out,
                      show=True)  # fmt: skip
    if args.json_out != outputs.STDOUT:
        print(f"wrote {result['_path']}")
    return 0


def evaluate(
    model: str, task: str, *, split: str = "dev", glue_dir: str | None = None, batch_size: int = 128,
    max_length: int | None = None, max_eval_samples: int | None = None, skip_bad_rows: bool = False,
    threads: int | None = None, json_out: str | None = None, show: bool = False,
) -> dict:  # fmt: skip
    """The metrics of ``model`` (a PyTorch or export folder; ``max_length`` None: 128, or the export's own)
    on ``split``, written as JSON to ``json_out`` (default MODEL/eval_SPLIT.json, ``-``: standard output);
    ``show`` prints them. Returns ``evaluate_folder``'s record, plus ``_path``: where it was written."""
    from retort.evaluation.folder import evaluate_folder  # noqa: PLC0415  (onnxruntime, torch)

    name = get_task(task).name  # the cheap checks first: the task, then where the result goes
    where = resolve_model_path(model) if Path(model).is_dir() else model  # a run folder: its model, JSON there
    default = Path(where) / f"eval_{split}.json"
    reads = [outputs.local(model, "the model"), outputs.data_folder(resolve_glue_dir(glue_dir), name)]
    target = json_out or (default if Path(where).is_dir() else None)  # no folder: evaluate_folder says so
    outputs.check_output(target, "--json", reads=reads, own=[default], stdout=True)
    with outputs.result_stream(json_out) as stream:
        result = evaluate_folder(model, task, split, glue_dir, batch_size, max_length, max_eval_samples,
                                 bool(skip_bad_rows), threads)  # fmt: skip
        if show:
            print_metrics(result["task"], result["results"], title=f"{model}")
    where = write_result(json_out or default, json.dumps(result, indent=2), stream)
    return {**result, "_path": where}
