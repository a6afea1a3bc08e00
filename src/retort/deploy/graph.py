"""The ONNX file of ``retort export``: trace the model, fuse the graph, check it against PyTorch, quantise.

``ExportGraph`` is what the file computes (a classifier's logits, or a bi-encoder's sentence embeddings);
``write_graph`` runs the steps in order on real rows and says what each did, for the export record:
the TorchScript exporter (eager attention, dynamic batch and sequence axes), onnxruntime's transformer
fusions (kept only when the fused graph stays within ``FUSED_TOLERANCE`` of PyTorch), and int8
quantisation, dynamic or statically calibrated (QDQ). The recipe around it (the source folder, the
record, the quality gate, the atomic move into place) is ``export.py``'s.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from retort.deploy import runtime
from retort.errors import RetortError
from retort.models import outputs
from retort.paths import disk_error

FUSED_TOLERANCE = 1e-3


class ExportGraph(nn.Module):
    """What the ONNX file computes: a classifier's logits, or the sentence embeddings of a model with
    ``embed(input_ids, attention_mask, token_type_ids)`` (a DSE ``BiEncoder``, a sentence-transformers
    folder's ``SentenceEncoder``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.biencoder = callable(getattr(model, "embed", None))

    def forward(self, input_ids, attention_mask, token_type_ids):  # each (B, T) int64
        """Sentence embeddings (B, D) of a bi-encoder, else the classifier's logits (B, C)."""
        if self.biencoder:
            return self.model.embed(input_ids, attention_mask, token_type_ids)  # (B, D)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return outputs.forward(self.model, batch).logits  # (B, C)


def sample_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (2, 8) traced batch, the first row padded: input ids, attention mask, token types."""
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0, 0], [2, 7, 8, 9, 10, 11, 12, 3]])
    mask = (ids != 0).long()
    return ids, mask, torch.zeros_like(ids)


def torch_export(graph: ExportGraph, path: Path, opset: int) -> str:
    """Trace ``graph`` to ONNX at ``path`` with dynamic batch and sequence axes; returns the exporter's name
    for the record."""
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
    """The largest absolute difference between the ONNX file's outputs (onnxruntime) and PyTorch's on
    ``feeds``."""
    sess = runtime.session(path)
    names = {i.name for i in sess.get_inputs()}  # the tracer drops an input the model never reads
    worst = 0.0
    with torch.inference_mode():
        for f in feeds:
            ref = graph(*(torch.from_numpy(f[n]) for n in runtime.INPUTS)).float().numpy()
            got = sess.run(None, {n: v for n, v in f.items() if n in names})[0]
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


@contextlib.contextmanager
def _no_log_warnings():
    """The quantizer's advice through ``logging`` ("consider to run pre-processing", once per model) kept off
    stderr: the graph it gets is already optimised, and a command's stderr is its own lines."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize(src: Path, dst: Path, how: str, calibration: list[dict[str, np.ndarray]]) -> dict:
    """Write ``src`` quantised to int8 at ``dst``: ``int8-dynamic`` or ``int8-static`` (activation ranges
    calibrated on ``calibration``); returns the record's ``quantization_details``."""
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static  # noqa: PLC0415

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # fused contrib ops have no inferred output types
    with warnings.catch_warnings(), _quantizer_errors(how, dst), _no_log_warnings():
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
def _quantizer_errors(how: str, dst: Path):
    """The quantizer's failure as one line; a failed write of ``dst`` (a full disk) as an ``OSError``."""
    try:
        yield
    except (ValueError, RuntimeError) as e:
        disk = disk_error(e, dst)
        if disk is not None:
            raise disk from e
        raise RetortError(f"--quantize {how}: onnxruntime's quantizer failed ({str(e).splitlines()[0]})") from None


def write_graph(
    graph: ExportGraph, config, feeds: list[dict], dest: Path, opset: int, optimize: bool, quantization: str, log
) -> dict:
    """Trace the graph, fuse it (kept only within ``FUSED_TOLERANCE`` of PyTorch), quantise it, and write
    the result to ``dest``. Returns what the export record says of these steps: ``exporter``,
    ``inputs`` (those the traced graph reads: MPNet reads no token types), ``fusions``, ``quantization_details``
    and ``max_abs_diff_fp32_vs_torch``."""
    work = Path(tempfile.mkdtemp(prefix="retort-export-"))
    try:
        raw = work / "raw.onnx"
        exporter = torch_export(graph, raw, opset)
        inputs = [i.name for i in runtime.session(raw).get_inputs()]
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
            shutil.copyfile(fp32, dest)
        else:
            qinfo = quantize(fp32, dest, quantization, [{n: f[n] for n in inputs} for f in feeds])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "exporter": exporter,
        "inputs": inputs,
        "fusions": fusions,
        "quantization_details": qinfo,
        "max_abs_diff_fp32_vs_torch": {"unfused": diff_raw, "fused": diff_fused},
    }
