"""``retort predict``: predictions of a PyTorch or export folder for every row of a split: for a GLUE task in
the leaderboard's format, one file per task under the leaderboard's name (e.g. SST-2.tsv); for a task of the
user's, label names (or scores) as TASK-SPLIT.tsv. ``--out -`` writes it to standard output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retort import options, outputs
from retort.data.spec import choose_task
from retort.data.tasks import task_inputs
from retort.errors import RetortError
from retort.models.check import resolve_model_path
from retort.paths import write_result


def add_parser(sub) -> None:
    """The ``predict`` subcommand."""
    p = sub.add_parser("predict", help="predictions for every row of a split (GLUE: the leaderboard's files)")
    options.add(p, "glue_dir", "skip_bad_rows", "source_task", "data", "model", "test_split", "predictions_out",
                "batch_size", "max_length", "threads", required=("model", "predictions_out"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the predictions file and say how many rows it holds."""
    out, rows = predict(args.model, args.task, args.out, data=args.data, split=args.split, glue_dir=args.glue_dir,
                        batch_size=args.batch_size, max_length=args.max_length, threads=args.threads)  # fmt: skip
    print(f"wrote {out}: {rows} predictions", file=sys.stderr if args.out == outputs.STDOUT else sys.stdout)
    return 0


def predict(
    model: str, task: str | None, out: str, *, data: str | None = None, split: str = "test",
    glue_dir: str | None = None, batch_size: int = 128, max_length: int | None = None, threads: int | None = None,
) -> tuple[Path, int]:  # fmt: skip
    """Predict every row of ``split`` and write the file into ``out`` (a folder, the file taking the
    leaderboard's name or ``TASK-SPLIT.tsv``, or a file path; ``-``: standard output); the task: ``data``, else
    ``task``, else the model folder's own; ``max_length`` None: 128. Returns (where it was written, rows)."""
    from retort.evaluation.folder import predict_file, prediction_file_name, require_task_head  # noqa: PLC0415

    if task and data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    where = resolve_model_path(model) if Path(model).is_dir() else model  # a run folder: its model
    require_task_head(where)  # an export of a sentence-transformers model embeds; it has no task
    chosen = choose_task(task, data, where)
    reads = [outputs.local(model, "the model"), *task_inputs(chosen, glue_dir)]
    path = Path(out)
    folder = path.is_dir() or not path.suffix
    if folder:
        path, folder = path / prediction_file_name(chosen, split), False
    outputs.check_output(out if out == outputs.STDOUT else path, "--out", reads=reads, folder=folder, parents=True,
                         stdout=True)  # fmt: skip
    with outputs.result_stream(out) as stream:
        _, text, rows = predict_file(model, chosen.name, split, glue_dir, batch_size, max_length, threads)
    if stream is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return Path(write_result(path, text, stream)), rows
