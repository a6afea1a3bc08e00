"""``retort export``: a trained model folder as an ONNX Runtime folder someone can ship.

The recipe, in order (each step recorded in the folder's ``retort_export.json``):

1. **Export** with ``torch.onnx`` (the TorchScript exporter, eager attention: its graph is the one
   onnxruntime's transformer optimizer knows how to fuse), dynamic batch and sequence axes, opset 17.
   Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, (B, T)); output ``logits``
   (classifiers: teachers, softmax and linear-attention students) or ``embeddings`` (a DSE bi-encoder's
   encoder with its pooling; its pair head is written beside the graph and runs in numpy).
2. **Fuse** with ``onnxruntime.transformers.optimizer`` (embedding + LayerNorm, multi-head attention,
   skip + LayerNorm, bias + GELU). The fused graph is checked against PyTorch on real rows; if it differs
   by more than 1e-3 the unfused graph is kept instead (the record says which).
3. **Quantise** (``--quantize``): ``int8-dynamic`` (per-channel int8 weights, activations quantised per
   call: no calibration, the usual CPU choice) or ``int8-static`` (activation ranges calibrated on
   ``--calibration-rows`` training rows of the task, QDQ format).
4. **Evaluate** the exported file through onnxruntime on the task's dev set (``runtime.evaluate_export``,
   the code path ``retort eval`` uses) beside the source model's score; ``--max-drop X`` refuses an
   export whose score falls more than X below the source's.

Everything is written to a temporary folder beside ``--out`` and renamed into place only when every step,
the quality check included, has passed: a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from retort import __version__, runtime
from retort.data.glue import get_task, load_split
from retort.errors import RetortError
from retort.evaluation.folder import evaluate_folder
from retort.models.biencoder import BiEncoder, is_dse_folder
from retort.models.hf import check_finite, load_classifier, load_tokenizer
from retort.paths import check_writable, publish_dir

QUANTIZATIONS = ("none", "int8-dynamic", "int8-static")
FORMATS = ("onnx",)
OPSET = 17
FUSED_TOLERANCE = 1e-3


class ExportGraph(nn.Module):
    """What the ONNX file computes: a classifier's logits or a bi-encoder's sentence embeddings."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.biencoder = isinstance(model, BiEncoder)

    def forward(self, input_ids, attention_mask, token_type_ids):  # each (B, T) int64
        if self.biencoder:
            return self.model.embed(input_ids, attention_mask, token_type_ids)  # (B, D)
        from retort.models.outputs import forward  # noqa: PLC0415

        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return forward(self.model, batch).logits  # (B, C)


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse before any work: an existing non-empty folder without ``--force``, a file, or a place we
    cannot write to."""
    check_writable(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RetortError(f"--out {out}: folder exists and is not empty (use --force to replace it)")


def _source_task(model_dir: Path, task: str | None) -> str:
    meta = model_dir / ("retort_dse.json" if is_dse_folder(model_dir) else "config.json")
    if not meta.is_file():
        raise RetortError(f"{model_dir}: no config.json (not a model folder)")
    trained_for = json.loads(meta.read_text()).get("retort_task")
    if task and trained_for and get_task(task).name != trained_for:
        raise RetortError(f"{model_dir}: this model was trained for {trained_for}, not {get_task(task).name}")
    if not (task or trained_for):
        raise RetortError(f"{model_dir}: the folder does not say its task; give --task")
    return get_task(task or trained_for).name


def load_source(model_dir: Path, task_name: str) -> tuple[nn.Module, str]:
    """The model in eval mode with eager attention (the graph the fusions recognise), and its kind."""
    task = get_task(task_name)
    if is_dse_folder(model_dir):
        model = BiEncoder.from_pretrained(model_dir)
        if hasattr(model.encoder, "set_attn_implementation"):
            model.encoder.set_attn_implementation("eager")
        return model.eval(), "biencoder"
    return load_classifier(str(model_dir), task, attn_implementation="eager").eval(), "classifier"


def _config(model: nn.Module):
    return model.encoder.config if isinstance(model, BiEncoder) else model.config


def sample_feeds(examples: list[tuple[str, ...]], encoder: runtime.TextEncoder, kind: str, batch: int = 8):
    """Real rows as graph inputs, in batches with padding (a bi-encoder's graph reads single sentences)."""
    rows = [(ex[0],) for ex in examples] if kind == "biencoder" else examples
    return [encoder(rows[s : s + batch]) for s in range(0, len(rows), batch)]


def sample_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (2, 8) traced batch, the first row padded: input ids, attention mask, token types."""
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0, 0], [2, 7, 8, 9, 10, 11, 12, 3]])
    mask = (ids != 0).long()
    return ids, mask, torch.zeros_like(ids)


def torch_export(graph: ExportGraph, path: Path, opset: int) -> str:
    names = list(runtime.INPUTS)
    out_name = "embeddings" if graph.biencoder else "logits"
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {out_name: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            sample_inputs(),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=[out_name],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    return "torch.onnx.export (TorchScript)"


def max_abs_diff(graph: ExportGraph, path: Path, feeds: list[dict[str, np.ndarray]]) -> float:
    sess = runtime.session(path)
    worst = 0.0
    with torch.inference_mode():
        for f in feeds:
            ref = graph(*(torch.from_numpy(f[n]) for n in runtime.INPUTS)).float().numpy()
            got = sess.run(None, f)[0]
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def fuse(src: Path, dst: Path, config) -> dict:
    """onnxruntime's transformer optimizer; returns the count of each fused operator."""
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = optimize_model(
            str(src),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
        )
    opt.save_model_to_file(str(dst))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over prepared feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize(src: Path, dst: Path, how: str, calibration: list[dict[str, np.ndarray]]) -> dict:
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static  # noqa: PLC0415

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # fused contrib ops have no inferred output types
    with warnings.catch_warnings(), _quantizer_errors(how):
        warnings.simplefilter("ignore")
        if how == "int8-dynamic":
            quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, extra_options=extra)
            return {"method": "dynamic", "weights": "int8 per channel", "activations": "uint8, per call"}
        quantize_static(
            str(src),
            str(dst),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options=extra | {"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return {
        "method": "static",
        "weights": "int8 per channel",
        "activations": "uint8, ranges calibrated (min-max)",
        "calibration_batches": len(calibration),
    }


@contextlib.contextmanager
def _quantizer_errors(how: str):
    try:
        yield
    except (ValueError, RuntimeError) as e:
        raise RetortError(f"--quantize {how}: onnxruntime's quantizer failed ({str(e).splitlines()[0]})") from None


def _primary(task, results: dict) -> float:
    return float(np.mean([r[task.primary_metric] for r in results.values()]))


def export_model(
    model_dir: str,
    out: str,
    fmt: str = "onnx",
    quantization: str = "none",
    task: str | None = None,
    glue_dir: str | None = None,
    calibration_rows: int = 256,
    max_length: int | None = None,
    opset: int = OPSET,
    optimize: bool = True,
    evaluate: bool = True,
    max_drop: float | None = None,
    force: bool = False,
    threads: int | None = None,
    log=print,
) -> dict:
    """Export, check, evaluate and only then move into ``out``; returns the export record."""
    if fmt not in FORMATS:
        raise RetortError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    if quantization not in QUANTIZATIONS:
        raise RetortError(f"--quantize {quantization}: choose from {', '.join(QUANTIZATIONS)}")
    if calibration_rows < 1:
        raise RetortError(f"--calibration-rows {calibration_rows}: must be at least 1")
    if max_drop is not None and (max_drop < 0 or not evaluate):
        raise RetortError("--max-drop X: X must be >= 0, and it needs the evaluation (drop --no-eval)")
    if not 7 <= opset <= 21:
        raise RetortError(f"--opset {opset}: must be between 7 and 21")
    src, dest = Path(model_dir), Path(out)
    if not src.is_dir():
        raise RetortError(f"--model {model_dir}: no such model folder")
    check_out_dir(dest, force)
    task_name = _source_task(src, task)
    task_obj = get_task(task_name)
    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    model, kind = load_source(src, task_name)
    check_finite(model, str(src))
    config = _config(model)
    limit = int(getattr(config, "max_position_embeddings", 512))
    max_length = max_length or min(128, limit)
    if not 2 <= max_length <= limit:
        raise RetortError(f"--max-length {max_length}: must be between 2 and {limit} (the model's position table)")
    tokenizer = load_tokenizer(str(src))
    graph = ExportGraph(model).eval()

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        tokenizer.save_pretrained(tmp)
        encoder = runtime.TextEncoder(tmp, max_length, tokenizer.pad_token_id)
        rows = load_split(task_obj, "train", glue_dir, max_samples=calibration_rows).examples
        if not rows:
            raise RetortError(f"{task_name}: no training rows for calibration and checks")
        feeds = sample_feeds([ex.texts for ex in rows], encoder, kind)
        work = Path(tempfile.mkdtemp(prefix="retort-export-"))
        try:
            raw = work / "raw.onnx"
            exporter = torch_export(graph, raw, opset)
            diff_raw = max_abs_diff(graph, raw, feeds[:4])
            fp32, fusions, diff_fused = raw, {}, None
            if optimize:
                fused = work / "fused.onnx"
                fusions = fuse(raw, fused, config)
                diff_fused = max_abs_diff(graph, fused, feeds[:4])
                if diff_fused <= FUSED_TOLERANCE:
                    fp32 = fused
                else:
                    log(f"[export] fused graph differs from PyTorch by {diff_fused:.2e}: keeping the unfused graph")
                    fusions = {}
            qinfo = None
            if quantization == "none":
                shutil.copyfile(fp32, tmp / runtime.MODEL_NAME)
            else:
                qinfo = quantize(fp32, tmp / runtime.MODEL_NAME, quantization, feeds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if kind == "biencoder":
            from safetensors.numpy import save_file  # noqa: PLC0415

            head = {
                k: v.detach().float().numpy() for k, v in model.state_dict().items() if not k.startswith("encoder.")
            }
            save_file(head, str(tmp / runtime.HEAD_NAME))
        import onnxruntime  # noqa: PLC0415
        import transformers  # noqa: PLC0415

        record = {
            "kind": kind,
            "task": task_name,
            "regression": task_obj.is_regression,
            "num_labels": task_obj.num_labels,
            "label_names": list(task_obj.label_names or ("score",)),
            "source_model": str(src.resolve()),
            "architecture": getattr(config, "model_type", "bert"),
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "heads": config.num_attention_heads,
            "format": fmt,
            "opset": opset,
            "exporter": exporter,
            "inputs": list(runtime.INPUTS),
            "output": "embeddings" if kind == "biencoder" else "logits",
            "fusions": fusions,
            "quantization": quantization,
            "quantization_details": qinfo,
            "max_length": max_length,
            "max_positions": limit,
            "pad_token_id": tokenizer.pad_token_id or 0,
            "max_abs_diff_fp32_vs_torch": {"unfused": diff_raw, "fused": diff_fused},
            "versions": {
                "retort": __version__,
                "onnxruntime": onnxruntime.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
            "sha256": runtime.sha256(tmp / runtime.MODEL_NAME),
            "bytes": (tmp / runtime.MODEL_NAME).stat().st_size,
        }
        if kind == "biencoder":
            record["embedding_dim"] = model.embedding_dim
            record["pooling"] = model.pooling
        _write_json(tmp / runtime.META_NAME, record)  # evaluate_export reads the folder as shipped
        if evaluate:
            exported = runtime.evaluate_export(tmp, task_name, "dev", glue_dir, max_length=max_length, threads=threads)
            source = evaluate_folder(str(src), task_name, "dev", glue_dir, max_length=max_length, threads=threads)
            s_score, e_score = _primary(task_obj, source["results"]), _primary(task_obj, exported["results"])
            record["evaluation"] = {
                "split": "dev",
                "metric": task_obj.primary_metric,
                "source": source["results"],
                "export": exported["results"],
                "drop": s_score - e_score,
                "max_drop": max_drop,
            }
            log(
                f"[export] {task_name} dev {task_obj.primary_metric}: source {s_score:.4f}, "
                f"export ({quantization}) {e_score:.4f}, drop {s_score - e_score:+.4f}"
            )
            if max_drop is not None and s_score - e_score > max_drop:
                raise RetortError(
                    f"export refused: dev {task_obj.primary_metric} fell {s_score - e_score:.4f} "
                    f"(from {s_score:.4f} to {e_score:.4f}), more than --max-drop {max_drop}; nothing written"
                )
        record["seconds"] = time.perf_counter() - t0
        _write_json(tmp / runtime.META_NAME, record)
        publish_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
