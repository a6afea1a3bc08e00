"""``retort predict``: test-set predictions of a PyTorch model folder in the GLUE leaderboard's format,
one file per task under the leaderboard's name (e.g. SST-2.tsv); ``--out -`` writes it to standard output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retort import options, outputs
from retort.data.glue import resolve_glue_dir
from retort.data.tasks import get_task
from retort.paths import write_result


def add_parser(sub) -> None:
    """The ``predict`` subcommand."""
    p = sub.add_parser("predict", help="test-set predictions in the GLUE leaderboard's format (one file per task)")
    options.add(p, "glue_dir", "skip_bad_rows", "task", "model", "test_split", "predictions_out", "batch_size",
                "max_length", "threads", required=("task", "model", "predictions_out"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the predictions file and say how many rows it holds."""
    out, rows = predict(args.model, args.task, args.out, split=args.split, glue_dir=args.glue_dir,
                        batch_size=args.batch_size, max_length=args.max_length, threads=args.threads)  # fmt: skip
    print(f"wrote {out}: {rows} predictions", file=sys.stderr if args.out == outputs.STDOUT else sys.stdout)
    return 0


def predict(
    model: str, task: str, out: str, *, split: str = "test", glue_dir: str | None = None, batch_size: int = 128,
    max_length: int | None = None, threads: int | None = None,
) -> tuple[Path, int]:  # fmt: skip
    """Predict every row of ``split`` and write the file into ``out`` (a folder, the file taking the
    leaderboard's name, or a file path; ``-``: standard output); ``max_length`` None: 128. Returns (where it
    was written, rows)."""
    from retort.evaluation.folder import LEADERBOARD_FILES, predict_file  # noqa: PLC0415  (onnxruntime, torch)

    name = get_task(task).name
    reads = [outputs.local(model, "the model"), outputs.data_folder(resolve_glue_dir(glue_dir), name)]
    path = Path(out)
    folder = path.is_dir() or not path.suffix
    if folder and (name, split) in LEADERBOARD_FILES:  # else predict_file says there is no such file
        path, folder = path / LEADERBOARD_FILES[(name, split)], False
    outputs.check_output(out if out == outputs.STDOUT else path, "--out", reads=reads, folder=folder, parents=True,
                         stdout=True)  # fmt: skip
    with outputs.result_stream(out) as stream:
        _, text, rows = predict_file(model, task, split, glue_dir, batch_size, max_length, threads)
    if stream is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return Path(write_result(path, text, stream)), rows
