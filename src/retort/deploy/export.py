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
4. **Evaluate** the exported file through onnxruntime on the task's dev set beside the source model's
   score, both through ``evaluation.folder.evaluate_folder`` (the code path ``retort eval`` uses);
   ``--max-drop X`` refuses an export whose score falls more than X below the source's.

A sentence-transformers folder (``modules.json``: Transformer, Pooling, Dense, Normalize; ``models/st_folder.py``)
exports as a bi-encoder with no task and no pair head: its graph runs the folder's own modules, its record
says it scores by cosine, and its evaluation compares its vectors with ``SentenceTransformer.encode``
(``deploy/st_export.py``).

Steps 1 to 3 make the ONNX file (``deploy/graph.py``); this module loads the source, writes the record,
gates on the evaluation, and publishes. Everything is written to a temporary folder beside ``--out`` and
renamed into place only when every step, the quality check included, has passed: a failed export leaves
nothing behind.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from retort import __version__
from retort.data.glue import Task
from retort.data.spec import folder_task
from retort.data.tasks import get_task, load_split, task_inputs
from retort.deploy import runtime, st_export

# sample_inputs is imported from here by experiments/plain_onnx.py
from retort.deploy.graph import ExportGraph, sample_inputs, write_graph  # noqa: F401
from retort.errors import RetortError
from retort.evaluation.evaluator import selection_score
from retort.evaluation.folder import evaluate_folder
from retort.models.biencoder import BiEncoder, is_dse_folder
from retort.models.check import check_model_folder, is_st_folder
from retort.models.families import usable_positions
from retort.models.hf import check_finite, load_classifier, load_tokenizer, settle_max_length
from retort.models.st_folder import StFolder, load_st_encoder, read_st_folder
from retort.outputs import check_output, local
from retort.paths import clean_leftovers, publish_dir, saving, temp_dir

QUANTIZATIONS = ("none", "int8-dynamic", "int8-static")
FORMATS = ("onnx",)
OPSET = 17


def check_out_dir(out: Path, force: bool, reads=()) -> None:
    """Refuse before any work, by the output rule (``retort.outputs``): the model or data exported (or a
    folder holding one), a place inside a model or a run, a folder holding a model or a run (``--force``
    replaces only an export or other files), a file, a place we cannot write to; and an existing
    non-empty folder without ``--force``."""
    check_output(out, "--out", reads=reads, folder=True, makes="export")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RetortError(f"--out {out}: folder exists and is not empty (use --force to replace it)")


def _source_task(model_dir: Path, task: str | None) -> str:
    meta = model_dir / ("retort_dse.json" if is_dse_folder(model_dir) else "config.json")
    if not meta.is_file():
        raise RetortError(f"{model_dir}: no config.json (not a model folder)")
    own = folder_task(str(model_dir))  # a task of the user's: registered from the folder's spec
    trained_for = own.name if own is not None else json.loads(meta.read_text()).get("retort_task")
    if task and trained_for and get_task(task).name != trained_for:
        raise RetortError(f"{model_dir}: this model was trained for {trained_for}, not {get_task(task).name}")
    if not (task or trained_for):
        raise RetortError(f"{model_dir}: the folder does not say its task; give --task")
    return get_task(task or trained_for).name


def load_source(model_dir: Path, task_name: str | None = None) -> tuple[nn.Module, str]:
    """The model in eval mode with eager attention (the graph the fusions recognise), and its kind: a
    sentence-transformers folder (no task) or a DSE folder is a ``biencoder``, anything else a ``classifier``."""
    if is_st_folder(model_dir):
        return load_st_encoder(read_st_folder(model_dir)), "biencoder"
    if is_dse_folder(model_dir):
        model = BiEncoder.from_pretrained(model_dir)
        if hasattr(model.encoder, "set_attn_implementation"):
            model.encoder.set_attn_implementation("eager")
        return model.eval(), "biencoder"
    task = get_task(task_name)
    return load_classifier(str(model_dir), task, attn_implementation="eager", trained_head=True).eval(), "classifier"


def sample_feeds(examples: list[tuple[str, ...]], encoder: runtime.TextEncoder, kind: str, batch: int = 8):
    """Real rows as graph inputs, in batches with padding (a bi-encoder's graph reads single sentences)."""
    rows = [(ex[0],) for ex in examples] if kind == "biencoder" else examples
    return [encoder(rows[s : s + batch]) for s in range(0, len(rows), batch)]


def check_options(
    fmt: str, quantization: str, calibration_rows: int, max_drop: float | None, evaluate: bool, opset: int
) -> None:
    """Refuse, before any work, a format, quantisation, calibration size, ``--max-drop`` or opset that
    ``retort export`` cannot honour."""
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


@dataclass
class Source:
    """The model folder being exported, loaded for tracing: the model in eval mode with eager attention,
    its kind, its (encoder's) transformers config, its tokenizer, and the sequence length checks run at. A
    sentence-transformers folder has ``st`` (what its modules.json says) and a task only where ``--task`` or
    ``--data`` lends its sentences."""

    path: Path
    task: Task | None
    model: nn.Module
    kind: str  # "classifier" or "biencoder"
    config: Any
    tokenizer: Any
    max_length: int
    max_positions: int  # the model's position table
    st: StFolder | None = None


def open_source(model_dir: Path, task_name: str, max_length: int | None) -> Source:
    """Load the folder (weights checked finite) and settle ``--max-length`` (default: 128, or the model's
    position table if shorter)."""
    if is_st_folder(model_dir):
        return open_st_source(model_dir, task_name, max_length)
    task = get_task(task_name)
    model, kind = load_source(model_dir, task_name)
    check_finite(model, str(model_dir))
    config = model.config  # a bi-encoder's is its encoder's
    max_length = settle_max_length(max_length, config, str(model_dir))
    limit = usable_positions(config)
    return Source(model_dir, task, model, kind, config, load_tokenizer(str(model_dir)), max_length, limit)


def open_st_source(model_dir: Path, task_name: str | None, max_length: int | None) -> Source:
    """A sentence-transformers folder checked (``read_st_folder``; its transformer as a model folder) and
    loaded; ``--max-length`` defaults to where sentence-transformers truncates (``max_seq_length``), capped
    at the position table (another length is set on the loaded model too, so that the vectors it is checked
    against are truncated alike). Its tokenizer is the one sentence-transformers encodes with."""
    parts = read_st_folder(model_dir)
    check_model_folder(str(parts.transformer), "--model", "export-source")
    model = load_st_encoder(parts)
    check_finite(model, str(model_dir))
    limit = usable_positions(model.config)
    length = settle_max_length(max_length or min(model.max_seq_length or limit, limit), model.config, str(model_dir))
    model.st.max_seq_length = length
    task = get_task(task_name) if task_name else None
    return Source(model_dir, task, model, "biencoder", model.config, model.st.tokenizer, length, limit, parts)


def check_feeds(folder: Path, source: Source, glue_dir: str | None, calibration_rows: int) -> list[dict]:
    """Up to ``calibration_rows`` training rows of the task as graph inputs, encoded by the tokenizer as
    saved in ``folder`` (the one shipped): they check the graphs and calibrate static quantisation."""
    encoder = runtime.TextEncoder(folder, source.max_length, source.tokenizer.pad_token_id)
    if source.st is not None:  # single sentences: the task's, or a built-in sample
        texts, _ = st_export.sentences(source.task, glue_dir, "train", calibration_rows)
        return sample_feeds([(t,) for t in texts], encoder, source.kind)
    rows = load_split(source.task, "train", glue_dir, max_samples=calibration_rows).examples
    if not rows:
        raise RetortError(f"{source.task.name}: no training rows for calibration and checks")
    return sample_feeds([ex.texts for ex in rows], encoder, source.kind)


def write_head(model: BiEncoder, path: Path) -> None:
    """A bi-encoder's pair head (every weight outside the encoder) as numpy-readable safetensors."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    head = {k: v.detach().float().numpy() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    save_file(head, str(path))


def export_record(source: Source, folder: Path, fmt: str, opset: int, quantization: str, steps: dict) -> dict:
    """The export's ``retort_export.json`` (before evaluation): what the model is, how the graph was made
    (``steps`` from ``write_graph``), the library versions, and the sha256 and size of ``model.onnx``."""
    import onnxruntime  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    config, model_file = source.config, folder / runtime.MODEL_NAME
    record = {
        "kind": source.kind,
        # a sentence-transformers model: no task, no pair head, scored by cosine; its modules and pooling
        **(_task_fields(source.task) if source.st is None else st_export.record_fields(source.st, source.model)),
        "source_model": str(source.path.resolve()),
        "architecture": getattr(config, "model_type", "bert"),
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "heads": config.num_attention_heads,
        "format": fmt,
        "opset": opset,
        "exporter": steps["exporter"],
        "inputs": steps["inputs"],
        "output": "embeddings" if source.kind == "biencoder" else "logits",
        "fusions": steps["fusions"],
        "quantization": quantization,
        "quantization_details": steps["quantization_details"],
        "max_length": source.max_length,
        "max_positions": source.max_positions,
        "pad_token_id": source.tokenizer.pad_token_id or 0,
        "max_abs_diff_fp32_vs_torch": steps["max_abs_diff_fp32_vs_torch"],
        "versions": {
            "retort": __version__,
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "sha256": runtime.sha256(model_file),
        "bytes": model_file.stat().st_size,
    }
    if source.kind == "biencoder" and source.st is None:
        record["embedding_dim"] = source.model.embedding_dim
        record["pooling"] = source.model.pooling
        record["pair_head"] = True
    return record


def _task_fields(task: Task) -> dict:
    """What the export record says of the task the model was trained for."""
    return {
        "task": task.name,
        "regression": task.is_regression,
        "multi_label": task.multi_label,
        "text_pair": task.is_pair,
        "num_labels": task.num_labels,
        "label_names": list(task.label_names or ("score",)),
        **({"task_spec": json.loads(task.spec)} if task.spec else {}),  # a task of the user's (data/spec.py)
    }


def quality_gate(
    folder: Path, source: Source, glue_dir: str | None, threads: int | None, quantization: str, max_drop, log
) -> dict:
    """Evaluate the export folder as shipped and the source folder on dev through the same path
    (``evaluate_folder``), print both scores, and refuse the export when it falls more than ``max_drop``
    below the source. Returns the record's ``evaluation`` entry. A sentence-transformers source has no task
    score: its vectors are compared instead (``st_export.compare_vectors``, on up to 256 sentences)."""
    if source.st is not None:
        texts, where = st_export.sentences(source.task, glue_dir, "dev", 256)
        return st_export.compare_vectors(folder, source.model, texts, where, quantization, threads, log)
    task, name, length = source.task, source.task.name, source.max_length
    exported = evaluate_folder(folder, name, "dev", glue_dir, max_length=length, threads=threads)
    original = evaluate_folder(str(source.path), name, "dev", glue_dir, max_length=length, threads=threads)
    s_score, e_score = selection_score(task, original["results"]), selection_score(task, exported["results"])
    log(
        f"[export] {name} dev {task.primary_metric}: source {s_score:.4f}, "
        f"export ({quantization}) {e_score:.4f}, drop {s_score - e_score:+.4f}"
    )
    if max_drop is not None and s_score - e_score > max_drop:
        raise RetortError(
            f"export refused: dev {task.primary_metric} fell {s_score - e_score:.4f} "
            f"(from {s_score:.4f} to {e_score:.4f}), more than --max-drop {max_drop}; nothing written"
        )
    return {
        "split": "dev",
        "metric": task.primary_metric,
        "source": original["results"],
        "export": exported["results"],
        "drop": s_score - e_score,
        "max_drop": max_drop,
    }


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
    check_options(fmt, quantization, calibration_rows, max_drop, evaluate, opset)
    st = is_st_folder(model_dir)  # a sentence-transformers folder: checked as it opens (open_st_source)
    src = Path(model_dir if st else check_model_folder(model_dir, "--model", "export-source"))  # a run: its model
    dest = Path(out)
    if not src.is_dir():
        raise RetortError(f"--model {model_dir}: no such model folder")
    if st and max_drop is not None:
        raise RetortError("--max-drop: a sentence-transformers folder has no task score to drop (its export's "
                          "vectors are checked against SentenceTransformer's instead)")  # fmt: skip
    task_name = (get_task(task).name if task else None) if st else _source_task(src, task)  # st: sentences only
    reads = task_inputs(get_task(task_name), glue_dir) if task_name else []
    check_out_dir(dest, force, [local(src, "the model"), *reads])
    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    source = open_source(src, task_name, max_length)
    graph = ExportGraph(source.model).eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    for gone in clean_leftovers(dest):
        log(f"[export] removed {gone}, left by an export that was stopped")
    tmp = temp_dir(dest)
    try:
        with saving(tmp):  # a full disk (SafetensorError, onnx's own errors) is an OSError naming the folder
            source.tokenizer.save_pretrained(tmp)
            feeds = check_feeds(tmp, source, glue_dir, calibration_rows)
            steps = write_graph(graph, source.config, feeds, tmp / runtime.MODEL_NAME, opset, optimize, quantization,
                                log)  # fmt: skip
            if source.kind == "biencoder" and source.st is None:  # sentence-transformers: no pair head
                write_head(source.model, tmp / runtime.HEAD_NAME)
            record = export_record(source, tmp, fmt, opset, quantization, steps)
            _write_json(tmp / runtime.META_NAME, record)  # evaluate_folder reads the folder as shipped
            if evaluate:
                record["evaluation"] = quality_gate(tmp, source, glue_dir, threads, quantization, max_drop, log)
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
