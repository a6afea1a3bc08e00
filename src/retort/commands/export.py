"""``retort export``: a model folder as an ONNX Runtime folder (optionally int8), checked against the
source on real inputs, evaluated on the dev set (``--max-drop`` refuses a worse one) and only then moved
into ``--out``. The export folder loads without torch (deploy/runtime.py). A sentence-transformers folder
exports as a bi-encoder scored by cosine, its vectors checked against SentenceTransformer's (``--task`` or
``--data`` then only lend their sentences).
"""

from __future__ import annotations

import argparse

from retort import options
from retort.data.spec import load_task
from retort.errors import RetortError


def add_parser(sub) -> None:
    """The ``export`` subcommand."""
    p = sub.add_parser("export", help="a model folder as an ONNX Runtime folder (optionally int8), evaluated")
    options.add(p, "glue_dir", "skip_bad_rows", "model", "export_out", "format", "quantize", "source_task", "data",
                "calibration_rows", "max_length", "opset", "no_optimize", "no_eval", "max_drop", "force", "threads",
                required=("model", "export_out"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export and print one line on what was written."""
    record = export(args.model, args.out, fmt=args.format, quantize=args.quantize, task=args.task, data=args.data,
                    glue_dir=args.glue_dir, calibration_rows=args.calibration_rows, max_length=args.max_length,
                    opset=args.opset, optimize=not args.no_optimize, evaluate=not args.no_eval,
                    max_drop=args.max_drop, force=args.force, threads=args.threads)  # fmt: skip
    fused = ", ".join(f"{k} {v}" for k, v in record["fusions"].items()) or "none"
    print(
        f"wrote {args.out}: {record['kind']} for {record['task'] or 'sentence embeddings (cosine)'}, "
        f"{record['format']} opset {record['opset']}, "
        f"quantization {record['quantization']}, {record['bytes'] / 2**20:.1f} MiB, fused: {fused}"
    )
    return 0


def export(
    model: str, out: str, *, fmt: str = "onnx", quantize: str = "none", task: str | None = None,
    data: str | None = None, glue_dir: str | None = None, calibration_rows: int = 256, max_length: int | None = None,
    opset: int = 17,
    optimize: bool = True, evaluate: bool = True, max_drop: float | None = None, force: bool = False,
    threads: int | None = None,
) -> dict:  # fmt: skip
    """Export ``model`` into ``out`` (see the module docstring); the task: ``data`` (your own: a spec or data
    file), else ``task``, else the one it was trained for; ``max_length`` None: 128. Returns the export record
    (``retort_export.json``)."""
    from retort.deploy.export import export_model  # noqa: PLC0415  (torch, onnx)

    if data:
        if task:
            raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
        task = load_task(data).name

    return export_model(model, out, fmt, quantize, task, glue_dir, calibration_rows, max_length, opset,
                        optimize=optimize, evaluate=evaluate, max_drop=max_drop, force=force,
                        threads=threads)  # fmt: skip
