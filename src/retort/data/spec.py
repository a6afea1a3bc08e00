"""A task is data: ``--data`` names a task spec (YAML or JSON), a data file (CSV, TSV, JSON Lines, Parquet), a
folder of split files (``train.csv``, ``dev.csv`` or ``validation.csv``, ``test.csv``), a ``datasets``
``save_to_disk`` folder, or ``hf:NAME[:CONFIG]``. What the spec does not say is inferred from the training
rows and written into the resolved spec, which every run, model and export keeps (``task.json``,
``config.json``'s ``retort_task_spec``), so a folder is evaluated and exported without the spec file.

A spec's fields (all but ``train`` optional)::

    name: trec                  # default: the spec's or the folder's name
    train: train.csv            # paths relative to the spec file
    dev: dev.csv                # missing: carved from train (dev_size rows or share, seeded, stratified)
    test: test.csv
    format: csv                 # csv | tsv | jsonl | parquet | arrow | hf (default: from the name)
    text: text                  # one column, or two for a pair: [question1, question2]
    label: label_coarse
    type: classification        # classification | multi_label (a row holds a list of labels) | regression
    labels: [ABBR, DESC, ...]   # names in id order (default: as sorted from the training rows)
    label_sep: ","              # multi_label: what separates a row's labels written as text ("a,b")
    metrics: [accuracy, macro_f1]
    primary: accuracy           # what picks the best checkpoint
    dev_size: 0.1
    seed: 0                     # the carve's seed
    quoting: csv                # csv: RFC 4180 quotes | none: every character is text (one row per line)
    columns: [id, label, text]  # a header-less CSV/TSV: its columns' names by position
    label_values: ["0", "1"]    # how the files write each label, in the order of labels (default: as labels)
    range: [0, 5]               # regression: the scores allowed (a row outside is a bad row)
    dev_matched: dev_m.tsv      # more splits: any dev_NAME or test_NAME (a task with several dev sets)

The nine GLUE tasks are built-in specs in these same fields (``data/glue.py``'s ``GLUE_SPECS``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from retort.data import tables
from retort.data.files import describe, refusal
from retort.data.glue import Task
from retort.data.tasks import get_task, is_task_name, label_list, label_text, register_task
from retort.errors import DataError

KEYS = ("name", "train", "dev", "test", "format", "text", "label", "type", "labels", "label_sep", "metrics",
        "primary", "dev_size", "seed", "quoting", "columns", "label_values", "range")  # fmt: skip
TYPES = ("classification", "multi_label", "regression")
DEFAULT_METRICS = {"classification": ("accuracy", "macro_f1"), "multi_label": ("micro_f1", "macro_f1", "exact_match"),
                   "regression": ("pearson", "spearman")}  # fmt: skip
TYPE_METRICS = {  # the metrics each type may ask for
    "classification": ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1", "mcc"),
    "multi_label": ("micro_f1", "macro_f1", "weighted_f1", "exact_match"),
    "regression": ("pearson", "spearman"),
}
TEXT_COLUMNS = ("text", "sentence", "question", "query", "content", "review", "utterance", "document", "input")
PAIR_COLUMNS = (("sentence1", "sentence2"), ("text1", "text2"), ("text_a", "text_b"), ("question1", "question2"),
                ("premise", "hypothesis"), ("query", "passage"), ("question", "sentence"))  # fmt: skip
LABEL_COLUMNS = ("label", "labels", "score", "target", "class", "category", "y")
SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "validation", "valid", "val"), "test": ("test",)}
MAX_CLASSES = 1000  # more distinct values than this in a label column is not a classification task


_RESOLVED: dict[tuple, Task] = {}  # (data, its modification time): resolved once per process


def load_task(data: str, option: str = "--data") -> Task:
    """The task ``data`` describes (see the module docstring), resolved and registered under its name; a model,
    run or export folder that keeps a resolved spec (a teacher's) describes the task it was trained for."""
    kept = folder_task(data) if Path(data).is_dir() and not data.startswith("hf:") else None
    if kept is not None and not kept.is_glue:
        return kept
    try:
        key = (data, Path(data).stat().st_mtime_ns)
    except OSError:
        key = (data, None)
    if key not in _RESOLVED:
        spec, base = read_spec(data, option)
        _RESOLVED[key] = task_from_spec(resolve(spec, base, option))
    return register_task(_RESOLVED[key])


def read_spec(data: str, option: str = "--data") -> tuple[dict, Path]:
    """The spec as given, and the folder its relative paths start from."""
    if data.startswith("hf:"):
        return {"train": data, "format": "hf"}, Path.cwd()
    path = Path(data)
    if not path.exists():
        raise DataError(f"{option} {data}: no such file or folder")
    if (
        path.is_file()
        and path.suffix.lower() in (".yaml", ".yml")
        or path.suffix.lower() == ".json"
        and is_spec_file(path)
    ):
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise DataError(f"{option} {data}: not a readable YAML/JSON spec ({str(e).splitlines()[0]})") from None
        if not isinstance(spec, dict):
            raise DataError(f"{option} {data}: a spec is a mapping of fields ({', '.join(KEYS)})")
        spec.setdefault("name", path.stem)
        return spec, path.parent.resolve()
    if path.is_dir() and not tables.is_arrow_folder(path):
        found = {}
        for split, names in SPLIT_NAMES.items():
            for f in sorted(path.iterdir()):
                if f.stem.lower() in names and f.suffix.lower() in tables.EXTENSIONS and split not in found:
                    found[split] = f.name
        if "train" not in found:
            raise DataError(
                f"{option} {data}: no train file in the folder (train.csv, .tsv, .jsonl, .json or .parquet)"
            )
        return {"name": path.resolve().name, **found}, path.resolve()
    name = path.resolve().parent.name if path.stem.lower() == "train" else path.stem
    return {"name": name, "train": path.name if path.is_file() else str(path)}, path.resolve().parent


def is_spec_file(path: Path) -> bool:
    """A ``.json`` file is a spec when it holds one object with a ``train`` field (else JSON Lines data)."""
    try:
        return "train" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return False


def resolve(spec: dict, base: Path, option: str = "--data") -> dict:
    """Every field filled in: paths absolute, the format, columns, type, labels and metrics inferred from the
    training rows where not given. Each fault is one line naming the field or the file and row."""
    splits = [
        "train",
        "dev",
        "test",
        *sorted(k for k in spec if isinstance(k, str) and k not in KEYS and _more_split(k)),
    ]
    unknown = sorted(set(spec) - set(KEYS) - set(splits), key=str)
    if unknown:
        raise DataError(f"{option}: unknown spec field(s) {', '.join(map(str, unknown))}; the fields are "
                        f"{', '.join(KEYS)}, and dev_NAME or test_NAME for more splits")  # fmt: skip
    name = _text_field(spec, "name", option)
    if is_task_name(name):
        raise DataError(f"{option}: name {name!r} is a GLUE task's; give the spec another name")
    out: dict = {"name": name}
    for split in splits:
        if split in spec:
            source = _text_field(spec, split, option)
            out[split] = source if source.startswith("hf:") or Path(source).is_absolute() else str(base / source)
    if "train" not in out:
        raise DataError(f"{option}: the spec has no train field (the training file)")
    fmt = spec.get("format") or tables.format_of(out["train"])
    if fmt not in tables.FORMATS:
        raise DataError(f"{option}: format {fmt!r} is not one of {', '.join(tables.FORMATS)}")
    out["format"] = fmt
    out.update(_layout(spec, fmt, option))
    located = []
    for where, row in tables.rows(out["train"], fmt, "train", out.get("quoting", "csv"), tuple(out.get("columns", ()))):
        if isinstance(row, tables.Fault):
            raise DataError(f"{where}: {row}")
        located.append((where, row))
    if not located:
        raise DataError(f"{out['train']}: no rows")
    columns = list(located[0][1])
    out["text"] = text_columns(spec.get("text"), columns, out["train"], option)
    out["label"] = _label(spec.get("label"), columns, out["text"], out["train"], option)
    values = [(where, row.get(out["label"])) for where, row in located]
    kind = spec.get("type")
    kind = "multi_label" if kind == "multi-label" else kind
    if kind is not None and kind not in TYPES:
        raise DataError(f"{option}: type {kind!r} is not one of {', '.join(TYPES)}")
    out["type"] = _infer_type(values, kind)
    out.update(_label_fields(spec, out, values, option))
    metrics = spec.get("metrics") or list(DEFAULT_METRICS[out["type"]])
    allowed = TYPE_METRICS[out["type"]]
    if not isinstance(metrics, list) or not metrics or any(m not in allowed for m in metrics):
        raise DataError(f"{option}: metrics {metrics!r}: a list of {', '.join(allowed)} (for type {out['type']})")
    out["metrics"] = metrics
    out["primary"] = spec.get("primary") or metrics[0]
    if out["primary"] not in metrics:
        raise DataError(f"{option}: primary {out['primary']!r} is not one of the metrics ({', '.join(metrics)})")
    if not any(k == "dev" or k.startswith("dev_") for k in out):
        size = spec.get("dev_size", 0.1)
        if not isinstance(size, (int, float)) or isinstance(size, bool) or not (0 < size < len(located)):
            raise DataError(f"{option}: dev_size {size!r}: a share in (0, 1) or a row count below {len(located)}")
        seed = spec.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DataError(f"{option}: seed {seed!r}: a whole number >= 0")
        out["dev"] = {"carved_from": "train", "size": size, "seed": seed}
    return out


def _more_split(key: str) -> bool:
    """``dev_NAME`` or ``test_NAME``: a further dev or test split (MNLI's dev_matched and dev_mismatched)."""
    head, _, name = key.partition("_")
    return head in ("dev", "test") and name.replace("_", "").isalnum()


def _layout(spec: dict, fmt: str, option: str) -> dict:
    """``quoting`` and ``columns``, checked: how a CSV or TSV is laid out."""
    out: dict = {}
    for key in ("quoting", "columns"):
        if key in spec and fmt not in ("csv", "tsv"):
            raise DataError(f"{option}: {key} is for format csv or tsv, not {fmt}")
    if "quoting" in spec:
        if spec["quoting"] not in tables.QUOTING:
            raise DataError(f"{option}: quoting {spec['quoting']!r} is not one of {', '.join(tables.QUOTING)}")
        out["quoting"] = spec["quoting"]
    if "columns" in spec:
        cols = spec["columns"]
        if (not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c.strip() for c in cols)
                or len(set(cols)) != len(cols)):  # fmt: skip
            raise DataError(f"{option}: columns {cols!r}: a list of distinct column names, by position")
        out["columns"] = cols
    return out


def _label_values(given, values: list, option: str) -> list[str]:
    """``label_values``: how the files write each label, in id order; every training row's label among them."""
    if not isinstance(given, list) or not given or len({label_text(v) for v in given}) != len(given):
        raise DataError(f"{option}: label_values {given!r}: a list of distinct values")
    written = [label_text(v) for v in given]
    missing = sorted({label_text(v) for _, v in values} - set(written))
    if missing:
        raise DataError(f"{option}: label value(s) {', '.join(missing[:5])} in train are not among label_values")
    return written


def _named(labels, written: list[str], option: str) -> list[str]:
    """The label names beside ``label_values``: one distinct name per value (default: the values themselves)."""
    if labels is None:
        return written
    if not isinstance(labels, list) or len({str(x) for x in labels}) != len(labels) or len(labels) != len(written):
        raise DataError(f"{option}: labels {labels!r}: {len(written)} distinct names, one per label_values entry")
    return [str(x) for x in labels]


def _range(given, values: list, option: str) -> list[float]:
    """``range: [low, high]``: the scores a regression row may hold."""
    ok = isinstance(given, list) and len(given) == 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in given)  # fmt: skip
    if not ok or given[0] >= given[1]:
        raise DataError(f"{option}: range {given!r}: [low, high], two finite numbers, low below high")
    return [float(given[0]), float(given[1])]


def _label_fields(spec: dict, out: dict, values: list, option: str) -> dict:
    """The label fields of a spec whose ``type`` is known: names (and how the files write them), a multi-label
    separator, a regression range; each checked against the training rows' ``values``."""
    out = dict(out)
    if out["type"] == "classification":
        if "label_values" in spec:  # the files write labels otherwise than by name (0/1 for neg/pos)
            out["label_values"] = _label_values(spec["label_values"], values, option)
            out["labels"] = _named(spec.get("labels"), out["label_values"], option)
        else:
            out["labels"] = _labels(spec.get("labels"), [v for _, v in values], out["train"], option)
    elif out["type"] == "multi_label":
        sep = spec.get("label_sep", ",")
        if not isinstance(sep, str) or not sep:
            raise DataError(f"{option}: label_sep {sep!r}: a non-empty string")
        out["label_sep"] = sep
        out["labels"] = _multi_labels(spec.get("labels"), values, sep, out["train"], option)
    elif "labels" in spec:
        raise DataError(f"{option}: labels are for classification; a regression task has none")
    if "label_values" in spec and out["type"] != "classification":
        raise DataError(f"{option}: label_values are for type classification, not {out['type']}")
    if "range" in spec:
        if out["type"] != "regression":
            raise DataError(f"{option}: range is for type regression, not {out['type']}")
        out["range"] = _range(spec["range"], values, option)
    if "label_sep" in spec and out["type"] != "multi_label":
        raise DataError(f"{option}: label_sep is for type multi_label, not {out['type']}")
    return {k: out[k] for k in ("labels", "label_values", "label_sep", "range") if k in out}


def _text_field(spec: dict, key: str, option: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{option}: {key} must be a non-empty string, not {value!r}")
    return value


def text_columns(given, columns: list[str], source: str, option: str) -> list[str]:
    """The text column, or the two of a pair: as given (each present), else by the usual names."""
    if given is not None:
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not 1 <= len(texts) <= 2 or not all(isinstance(t, str) for t in texts):
            raise DataError(f"{option}: text {given!r}: one column name, or a list of two for a pair")
        for t in texts:
            if t not in columns:
                raise DataError(f"{source}: no column {t!r} (its columns: {', '.join(columns)})")
        return texts
    for pair in PAIR_COLUMNS:
        if all(c in columns for c in pair):
            return list(pair)
    for name in TEXT_COLUMNS:
        if name in columns:
            return [name]
    raise DataError(f"{source}: cannot tell the text column (its columns: {', '.join(columns)}); give text: in a spec")


def _label(given, columns: list[str], texts: list[str], source: str, option: str) -> str:
    """The label column: as given, else a usual name, else the one column that is not text."""
    if given is not None:
        if not isinstance(given, str) or given not in columns:
            raise DataError(f"{source}: no label column {given!r} (its columns: {', '.join(columns)})")
        if given in texts:
            raise DataError(f"{option}: {given!r} is named as both text and label")
        return given
    for name in LABEL_COLUMNS:
        if name in columns and name not in texts:
            return name
    rest = [c for c in columns if c not in texts]
    if len(rest) == 1:
        return rest[0]
    raise DataError(
        f"{source}: cannot tell the label column among {', '.join(rest) or 'no other column'}; give label: in a spec"
    )


def _infer_type(values: list[tuple[str, object]], given: str | None) -> str:
    """The problem type: ``given``, checked against the labels, else inferred. Lists of labels (a list
    value, or a JSON list written as text) are multi-label; numbers that are not all whole, or more than 50
    distinct ones, are regression; anything else is classification. A column that mixes lists and single
    labels is refused at the first row that differs."""
    first_list = next(((w, v) for w, v in values if _is_list(v)), None)
    first_single = next(((w, v) for w, v in values if v not in (None, "") and not _is_list(v)), None)
    if first_list and first_single and given != "multi_label":
        (w1, v1), (w2, v2) = sorted([first_list, first_single], key=lambda x: values.index(x))
        raise DataError(
            f"{w2}: label {v2!r} is {'a list' if _is_list(v2) else 'a single label'} but {w1} holds "
            f"{'a list' if _is_list(v1) else 'a single label'}; a label column holds lists (multi-label) or single "
            "labels, not both"
        )
    if given is not None:
        if given != "multi_label" and first_list:
            raise DataError(
                f"{first_list[0]}: label {first_list[1]!r} is a list; lists of labels need type: multi_label"
            )
        return given
    if first_list:
        return "multi_label"
    numbers = []
    for _, v in values:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            return "classification"
    if any(not float(x).is_integer() for x in numbers if math.isfinite(x)) or len(set(numbers)) > 50:
        return "regression"
    return "classification"


def _is_list(value) -> bool:
    """A list of labels: a list value, or a JSON list written as text."""
    if isinstance(value, str):
        text = value.strip()
        return text.startswith("[") and text.endswith("]") and isinstance(label_list(text), list)
    return isinstance(value, (list, tuple)) or hasattr(value, "tolist")


def _multi_labels(given, values: list[tuple[str, object]], sep: str, source: str, option: str) -> list[str]:
    """A multi-label task's names in id order: as given (every training label among them), else sorted."""
    found: set[str] = set()
    for where, v in values:
        items = label_list(v, sep) if v is not None else None  # an empty cell: no labels
        if items is None:
            raise DataError(f"{where}: label {v!r} is not a list of labels (a list, a JSON list, or names joined "
                            f"by {sep!r})")  # fmt: skip
        found.update(items)
    if given is not None:
        return _given_labels(given, found, source, option)
    if len(found) < 2:
        raise DataError(f"{source}: the rows hold {len(found)} distinct label(s); multi-label needs two or more")
    if len(found) > MAX_CLASSES:
        raise DataError(f"{source}: {len(found)} distinct labels; at most {MAX_CLASSES}")
    return sorted(found)


def _given_labels(given, found: set[str], source: str, option: str) -> list[str]:
    """The spec's ``labels:`` as names in id order: a list of distinct names holding every label ``found``."""
    if not isinstance(given, list) or not given or len(set(map(str, given))) != len(given):
        raise DataError(f"{option}: labels {given!r}: a list of distinct names")
    names = [str(x) for x in given]
    missing = sorted(found - set(names))
    if missing:
        raise DataError(f"{source}: label(s) {', '.join(missing[:5])} are not among labels: {', '.join(names)}")
    return names


def _labels(given, values: list, source: str, option: str) -> list[str]:
    """Label names in id order: as given (every training label among them), else sorted (numerically when all
    are whole numbers)."""
    found = {label_text(v) for v in values}
    if "" in found:
        raise DataError(f"{source}: a row has an empty label")
    if given is not None:
        return _given_labels(given, found, source, option)
    if len(found) < 2:
        raise DataError(f"{source}: every row has the label {next(iter(found))!r}; classification needs two or more")
    if len(found) > MAX_CLASSES:
        raise DataError(f"{source}: {len(found)} distinct labels; give type: regression, or fewer classes")
    try:
        return sorted(found, key=lambda x: float(x))
    except ValueError:
        return sorted(found)


def task_from_spec(resolved: dict) -> Task:
    """The ``Task`` of a resolved spec (as ``resolve`` makes and folders keep), registered under its name."""
    return register_task(Task.from_spec(resolved))


def folder_task(folder: str) -> Task | None:
    """The task a model, run or export folder says it was trained for (its resolved spec registered for a
    task of the user's); None where it says none."""
    base = Path(folder)
    places = [(base / "retort_export.json", "task", "task_spec")]
    places += [(base / sub / "config.json", "retort_task", "retort_task_spec") for sub in ("", "model", "encoder")]
    for path, name_key, spec_key in places:
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # the model check names a damaged file
        if not isinstance(record, dict):
            return None
        spec = record.get(spec_key)
        if isinstance(spec, str):
            spec = json.loads(spec)
        if isinstance(spec, dict):
            return task_from_spec(spec)
        name = record.get(name_key)
        return get_task(name) if isinstance(name, str) and is_task_name(name) else None
    return None


def choose_task(task: str | None, data: str | None, folder: str | None = None, option: str = "--model") -> Task:
    """``--data``, else ``--task``, else the task the model folder (given as ``option``) was trained for."""
    if data:
        return load_task(data)
    own = folder_task(folder) if folder else None
    if task:
        return get_task(task)
    if folder and not Path(folder).is_dir():  # no folder to ask: say what is there, as the model check does
        found = describe(folder) or "a file"
        what = refusal(found, "a model folder").removeprefix("is ")
        raise DataError(f"{option} {folder}: {'no such model folder' if found == 'no such file' else what}")
    if own is None:
        raise DataError("give --task (a GLUE task) or --data (your own); the model folder does not say its task")
    return own
