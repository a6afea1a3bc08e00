"""``retort predict``: test-set predictions of a PyTorch model folder in the GLUE leaderboard's format,
one file per task under the leaderboard's name (e.g. SST-2.tsv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retort import options
from retort.paths import write_atomic


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
    print(f"wrote {out}: {rows} predictions")
    return 0


def predict(
    model: str, task: str, out: str, *, split: str = "test", glue_dir: str | None = None, batch_size: int = 128,
    max_length: int | None = None, threads: int | None = None,
) -> tuple[Path, int]:  # fmt: skip
    """Predict every row of ``split`` and write the file into ``out`` (a folder, the file taking the
    leaderboard's name, or a file path); ``max_length`` None: 128. Returns (file written, rows)."""
    from retort.evaluation.folder import predict_file  # noqa: PLC0415  (onnxruntime, torch)

    name, text, rows = predict_file(model, task, split, glue_dir, batch_size,
                                    128 if max_length is None else max_length, threads)  # fmt: skip
    path = Path(out)
    path = path / name if path.is_dir() or not path.suffix else path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return path, rows
