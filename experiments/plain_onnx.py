"""The plain recipe that ``retort export`` is measured against (issue #14): ``torch.onnx.export`` with its
defaults (the dynamo exporter in torch 2.13, the model's default ``sdpa`` attention), then
``onnxruntime.quantization.quantize_dynamic`` with its defaults (int8 weights per tensor), and nothing
else: no transformer fusions, no per-channel scales, no calibration.

It writes a folder in the export layout (``model.onnx``, the tokenizer, ``retort_export.json`` with
``"recipe": "plain"``), so ``retort bench`` times it through the same harness, tokenizer and onnxruntime
session options as retort's own export: the comparison is of the graphs alone.

    pip install 'retort[experiments]'   # onnxscript, which the dynamo exporter needs
    python experiments/plain_onnx.py --model runs/demo/student-3x384/model --out runs/export/student-plain-int8
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from harness import add, parser

from retort.data.tasks import get_task
from retort.deploy import runtime
from retort.errors import RetortError
from retort.paths import publish_dir, sha256_file


def plain_export(model_dir: str, out: str, force: bool = False) -> dict:
    """Export ``model_dir`` the plain way into ``out`` (written under a temporary name, then put in place);
    returns the folder's ``retort_export.json`` record."""
    import torch  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    from retort.deploy.export import _source_task, check_out_dir  # noqa: PLC0415  (torch)
    from retort.deploy.graph import ExportGraph, sample_inputs  # noqa: PLC0415
    from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415

    src, dest = Path(model_dir), Path(out)
    check_out_dir(dest, force)
    task = get_task(_source_task(src, None))
    model = load_classifier(str(src), task).eval()  # default attention (sdpa)
    tokenizer = load_tokenizer(str(src))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        tokenizer.save_pretrained(tmp)
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
        raw = tmp / "fp32.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                ExportGraph(model),
                sample_inputs(),
                str(raw),
                input_names=list(runtime.INPUTS),
                output_names=["logits"],
                dynamic_shapes=({0: batch, 1: seq},) * 3,
                external_data=False,
            )
            quantize_dynamic(str(raw), str(tmp / runtime.MODEL_NAME), weight_type=QuantType.QInt8)
        raw.unlink()
        record = {
            "kind": "classifier",
            "recipe": "plain",
            "task": task.name,
            "regression": task.is_regression,
            "label_names": list(task.label_names or ("score",)),
            "source_model": str(src.resolve()),
            "layers": model.config.num_hidden_layers,
            "hidden": model.config.hidden_size,
            "exporter": "torch.onnx.export (dynamo, defaults)",
            "fusions": {},
            "quantization": "int8-dynamic (plain: quantize_dynamic defaults)",
            "max_length": min(128, model.config.max_position_embeddings),
            "max_positions": model.config.max_position_embeddings,
            "pad_token_id": tokenizer.pad_token_id or 0,
            "sha256": sha256_file(tmp / runtime.MODEL_NAME),
            "bytes": (tmp / runtime.MODEL_NAME).stat().st_size,
        }
        (tmp / runtime.META_NAME).write_text(json.dumps(record, indent=2))
        publish_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(p, "model", "export_out", "force", required=["model", "export_out"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Export, then say what was written; a bad model or --out is one line and exit 2."""
    args = parse_args(argv)
    try:
        record = plain_export(args.model, args.out, args.force)
    except RetortError as e:
        print(f"plain_onnx: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({record['bytes'] / 2**20:.1f} MiB, {record['exporter']}, {record['quantization']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
