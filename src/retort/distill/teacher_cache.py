"""Teacher outputs computed once and cached on disk, keyed by teacher weights, data and settings.

Used where the student's training must not (or cannot) run the teacher: the long-input STS-B variant
(the teacher reads only 512 tokens) and distilled sentence embeddings (a cross-encoder's pair scores),
and during any distillation to save the teacher's run after the first epoch (``--cache-teacher``). One
mechanism for all: ``TeacherOutputCache``, memory-mapped arrays in ``$RETORT_CACHE/teacher_outputs/KEY``
(default ``~/.cache/retort``), the key the sha256 of the teacher's files and of every token id it reads.

Logits computed ahead of training (``teacher_logits``: a student with its own tokenizer, DSE, long inputs) are
kept by row instead (``RowLogits``, ``teacher_outputs/rows-KEY``), so a grown transfer set costs the teacher
only its new rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import weakref
import zipfile
from pathlib import Path

import numpy as np
import torch

from retort.cachedir import LIMIT_ENV, cache_dir, free_bytes, hold, limit_bytes, make_room, room_lock, touch
from retort.data.batching import Encoded, encode
from retort.data.glue import Split
from retort.evaluation.evaluator import eval_batches
from retort.models.hf import load_classifier, resolve_model_path
from retort.models.inference import predict
from retort.models.outputs import ModelOutput
from retort.paths import sha256_file, write_atomic

IDENTITY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def teacher_logits(
    teacher_dir: str, split: Split, tokenizer, max_length: int = 128, batch_size: int = 128, device: str = "cpu"
) -> np.ndarray:
    """The teacher's logits (N, C) for every example of ``split``, each row computed once and kept in the
    teacher's row store (``RowLogits``): a split that shares rows with an earlier one (a transfer set grown
    by another source, the same rows in another order) runs the teacher on its new rows only."""
    data = encode(split, tokenizer, max_length)
    store = RowLogits(teacher_dir, split.task.num_labels)
    hashes = row_hashes(data)
    logits, missing = store.lookup(hashes)
    earlier = _split_entry(teacher_dir, data, store.classes) if missing else None
    if earlier is not None:  # the whole split, as a retort before the row store kept it: its rows join the store
        store.add(hashes[missing], earlier[missing])
        logits[missing], missing = earlier[missing], []
    if missing:
        teacher = load_classifier(teacher_dir, split.task, option="--teacher", kind="teacher").to(device)
        pick = [data.input_ids[i] for i in missing], [data.token_type_ids[i] for i in missing]
        sub = Encoded(*pick, [data.labels[i] for i in missing], data.regression, multi_label=data.multi_label)
        desc = f"teacher outputs {split.task.name} {split.name}: {len(missing)} of {len(data)} rows new (kept)"
        batches = eval_batches(sub, batch_size, tokenizer.pad_token_id or 0, desc)  # one progress line for all
        per_shard = max(1, SHARD_ROWS // batch_size)  # kept as they come: a stop halfway loses one shard at most
        for chunk in iter(lambda: list(itertools.islice(batches, per_shard)), []):
            rows = [i for idx, _ in chunk for i in idx]
            fresh = predict(teacher, chunk, len(sub), device)[rows]
            store.add(hashes[missing][rows], fresh)
            logits[np.asarray(missing)[rows]] = fresh
    return logits


def row_hashes(data: Encoded) -> np.ndarray:
    """One 16-byte digest per example of the token ids and types the teacher reads (``S16`` array)."""
    out = []
    for ids, types in zip(data.input_ids, data.token_type_ids):
        h = hashlib.sha256(
            np.asarray(ids, dtype=np.int64).tobytes() + b"|" + np.asarray(types, dtype=np.int8).tobytes()
        )
        out.append(h.digest()[:16])
    return np.asarray(out, dtype="S16")


SHARD_ROWS = 1024  # rows a shard of the row store holds at most (the teacher's outputs are kept this often)


class RowLogits:
    """One teacher's logits by input row: ``teacher_outputs/rows-KEY/`` (KEY from the teacher's files, as
    ``outputs_key``'s) holds ``meta.json`` and shards, each an ``.npz`` of row digests and their logits, written
    whole under a temporary name and then renamed, so processes that add rows side by side never clash and a
    stopped write leaves nothing half-read. Rows are looked up by the digest of the ids the teacher reads."""

    def __init__(self, teacher_dir: str, classes: int):
        h = hashlib.sha256(json.dumps([CACHE_VERSION, teacher_identity(teacher_dir), "row logits", classes]).encode())
        self.root = cache_dir() / "teacher_outputs" / f"rows-{h.hexdigest()[:24]}"
        self.classes, self.teacher = classes, str(teacher_dir)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The logits of the rows already kept (zeros elsewhere) and the indices of the rows that are not."""
        logits = np.zeros((len(hashes), self.classes), dtype=np.float32)
        found = np.zeros(len(hashes), dtype=bool)
        if self.root.is_dir():
            touch(self.root)
            kept: dict[bytes, np.ndarray] = {}
            for shard in self.shards():
                try:
                    with np.load(shard) as z:
                        kept.update(zip(z["hashes"].tolist(), z["logits"]))
                except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # cut short, or removed
                    print(f"teacher logits: {shard} skipped, unreadable ({type(e).__name__}); its rows run again")
            for i, h in enumerate(hashes.tolist()):
                row = kept.get(h)
                if row is not None:
                    logits[i], found[i] = row, True
        return logits, np.flatnonzero(~found).tolist()

    def shards(self) -> list[Path]:
        """The store's finished shards (a write under way or stopped is a ``.tmp`` file, never listed)."""
        return sorted(self.root.glob("*.npz")) if self.root.is_dir() else []

    def add(self, hashes: np.ndarray, logits: np.ndarray) -> None:
        """Keep new rows' logits as one more shard (nothing is kept when the disk refuses: a cache, not a need)."""
        tmp = self.root / f"{time.time_ns()}-{os.getpid()}.npz.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob("*.tmp"):  # a write that a stop cut short, an hour or more ago
                if time.time() - stale.stat().st_mtime > 3600:
                    stale.unlink(missing_ok=True)
            write_atomic(self.root / "meta.json", json.dumps({"what": "logits by row", "dtype": "float32",
                                                              "teacher": self.teacher}))  # fmt: skip
            with tmp.open("wb") as f:
                np.savez(f, hashes=np.asarray(hashes, dtype="S16"), logits=np.asarray(logits, dtype=np.float32))
            tmp.rename(tmp.with_suffix(""))
        except OSError as e:  # a full or read-only disk
            tmp.unlink(missing_ok=True)
            print(f"teacher logits not kept in {self.root}: {e}", flush=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _split_entry(teacher_dir: str, data: Encoded, classes: int) -> np.ndarray | None:
    """The logits of a complete whole-split entry for this very split (``teacher_outputs/KEY``, written before
    the row store), read without writing to it, or None."""
    root = cache_dir() / "teacher_outputs" / outputs_key(teacher_dir, data, "logits", {}, "float32")
    try:
        filled, logits = (np.load(root / f"{name}.npy", mmap_mode="r") for name in ("filled", "logits"))
    except (OSError, ValueError):
        return None
    if logits.shape != (len(data), classes) or filled.shape != (len(data),) or not filled.all():
        return None
    return np.array(logits, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# teacher outputs during distillation (--cache-teacher)

FIELDS = ("hidden_states", "attention_scores", "attention_probs", "values")
SQUARE = ("attention_scores", "attention_probs")  # (nh, T, T) per example; the others (T, H)
CACHE_VERSION = 1


def teacher_identity(teacher_dir: str) -> list:
    """The teacher's name (for a hub id) and the sha256 of its weights, config and tokenizer files (hashed once
    a process while the files' sizes and modification times stay the same)."""
    root = Path(resolve_model_path(teacher_dir))
    files = sorted(root.glob("*.safetensors")) + [root / n for n in IDENTITY_FILES if (root / n).is_file()]
    stamp = (str(teacher_dir), root.is_dir(), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _IDENTITIES:
        _IDENTITIES[stamp] = [str(teacher_dir) if not root.is_dir() else "", *(f.name for f in files),
                              *(sha256_file(f) for f in files)]  # fmt: skip
    return _IDENTITIES[stamp]


_IDENTITIES: dict[tuple, list] = {}


def outputs_key(teacher_dir: str, data: Encoded, what: str, layers: dict[str, set[int]], dtype: str) -> str:
    """sha256 of the teacher's identity, every input of the split (token ids and types, as the teacher
    reads them) and what is kept."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, teacher_identity(teacher_dir), what, dtype]).encode())
    h.update(json.dumps({k: sorted(v) for k, v in layers.items()}).encode())
    for ids, types in zip(data.input_ids, data.token_type_ids):
        h.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|" + np.asarray(types, dtype=np.int8).tobytes())
    return h.hexdigest()[:24]


class TeacherOutputCache:
    """The frozen teacher's outputs for every training example, kept on disk as memory-mapped arrays and
    read back instead of running the teacher again: epoch 1 computes them (as its batches come), later
    epochs, resumed runs and later runs with the same teacher and data read them.

    ``what`` = ``logits`` keeps the logits only (a teacher run is still needed when the objective reads
    hidden states or attention); ``all`` keeps every tensor the objective reads (``layers``: which
    entries of each tuple), unpadded, one flat array per layer and field with per-example offsets.
    ``dtype`` float32 or float16 (half the disk; the targets rounded to 11 bits).

    Files: ``$RETORT_CACHE/teacher_outputs/KEY/`` with ``meta.json``, ``filled.npy`` (one flag per
    example, set after its tensors are written, so a run killed halfway leaves a usable partial cache)
    and one ``.npy`` per array.
    """

    def __init__(
        self,
        root: Path,
        data: Encoded,
        what: str,
        layers: dict[str, set[int]],
        shapes: dict,
        dtype: str,
        source: str = "",
    ):
        self.root, self.what, self.dtype = root, what, np.dtype(dtype)
        self.layers = {k: sorted(layers.get(k, ())) if what == "all" else [] for k in FIELDS}
        self.lengths = np.asarray([len(x) for x in data.input_ids], dtype=np.int64)
        self.tok_off = np.concatenate([[0], np.cumsum(self.lengths)])
        self.heads, self.width, self.classes = shapes["heads"], shapes["width"], shapes["classes"]
        self.sq_off = np.concatenate([[0], np.cumsum(self.heads * self.lengths**2)])
        self.n_layers = shapes["layers"]
        self.held = hold(root)  # made if new, and in use until ``close``: make_room leaves it
        self._release = weakref.finalize(self, _close_fd, self.held)
        self.arrays: dict[str, np.memmap] = {}
        self.filled = self._open("filled", (len(self.lengths),), np.uint8)
        self.arrays["logits"] = self._open("logits", (len(self.lengths), self.classes), np.float32)
        for field_name in FIELDS:
            for j in self.layers[field_name]:
                size = self.sq_off[-1] if field_name in SQUARE else (self.tok_off[-1], self.width)
                self.arrays[f"{field_name}.{j}"] = self._open(f"{field_name}.{j}", size, self.dtype)
        meta = root / "meta.json"
        if not meta.exists():
            meta.write_text(json.dumps({"examples": len(self.lengths), "what": what, "dtype": str(self.dtype),
                                        "layers": self.layers, "bytes": self.nbytes(),
                                        "source": source}))  # fmt: skip
        touch(root)  # last used now ('retort cache list')

    def _open(self, name: str, shape, dtype) -> np.memmap:
        path = self.root / f"{name}.npy"
        shape = tuple(int(x) for x in np.atleast_1d(shape))
        if path.exists():
            arr = np.load(path, mmap_mode="r+")
            if arr.shape == shape and arr.dtype == dtype:
                return arr
            path.unlink()  # not what this key describes (an older layout): start again
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def close(self) -> None:
        """Write the arrays out, unmap them and let the entry go: idle from now on (``make_room`` may remove it,
        and its space then comes back at once)."""
        if not self._release.alive:
            return
        self.flush()
        self.arrays.clear()
        del self.filled
        self._release()

    def nbytes(self) -> int:
        """The bytes the cache's arrays take on disk (flags included)."""
        return int(sum(a.nbytes for a in self.arrays.values()) + self.filled.nbytes)

    @property
    def complete(self) -> bool:
        """Whether every example's outputs are in the cache."""
        return bool(self.filled.all())

    def has(self, idx: list[int]) -> bool:
        """Whether the outputs of every example of a batch (row indices ``idx``) are in the cache."""
        return bool(self.filled[idx].all())

    def put(self, idx: list[int], out: ModelOutput) -> None:
        """Keep the teacher's outputs of one batch (padded rows are cut back to each example's length)."""
        logits = out.logits.detach().float().cpu().numpy()  # (a bf16 forward's outputs are kept as fp32/fp16)
        for row, i in enumerate(idx):
            if self.filled[i]:
                continue
            n = int(self.lengths[i])
            self.arrays["logits"][i] = logits[row]
            for field_name in FIELDS:
                for j in self.layers[field_name]:
                    t = getattr(out, field_name)[j][row]
                    arr = self.arrays[f"{field_name}.{j}"]
                    if field_name in SQUARE:
                        block = t[:, :n, :n].detach().float().cpu().numpy().astype(self.dtype, copy=False)
                        arr[self.sq_off[i] : self.sq_off[i + 1]] = block.reshape(-1)
                    else:
                        arr[self.tok_off[i] : self.tok_off[i + 1]] = t[:n].detach().float().cpu().numpy()
            self.filled[i] = 1  # after its tensors: a stop halfway leaves the example unfilled

    def get(self, idx: list[int], attention_mask: torch.Tensor) -> ModelOutput:
        """The cached outputs of a batch, padded to ``attention_mask``'s width (pad positions are 0; every
        loss masks them). Entries the objective does not read are None."""
        b, width = attention_mask.shape
        logits = torch.from_numpy(np.stack([self.arrays["logits"][i] for i in idx]))
        fields: dict[str, tuple | None] = {}
        for field_name in FIELDS:
            if not self.layers[field_name]:
                fields[field_name] = None
                continue
            count = self.n_layers + 1 if field_name == "hidden_states" else self.n_layers
            entries: list[torch.Tensor | None] = [None] * count
            for j in self.layers[field_name]:
                arr = self.arrays[f"{field_name}.{j}"]
                if field_name in SQUARE:
                    t = np.zeros((b, self.heads, width, width), dtype=np.float32)
                    for row, i in enumerate(idx):
                        n = int(self.lengths[i])
                        t[row, :, :n, :n] = arr[self.sq_off[i] : self.sq_off[i + 1]].reshape(self.heads, n, n)
                else:
                    t = np.zeros((b, width, self.width), dtype=np.float32)
                    for row, i in enumerate(idx):
                        t[row, : self.lengths[i]] = arr[self.tok_off[i] : self.tok_off[i + 1]]
                entries[j] = torch.from_numpy(t)
            fields[field_name] = tuple(entries)
        return ModelOutput(logits, attention_mask, **fields)

    def flush(self) -> None:
        """Write the memory-mapped arrays out to disk (nothing once closed)."""
        if not self._release.alive:
            return
        for a in (*self.arrays.values(), self.filled):
            a.flush()


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def open_output_cache(
    teacher_dir: str,
    teacher_config,
    data: Encoded,
    what: str,
    layers: dict[str, set[int]],
    dtype: str,
    classes: int,
    make: bool = True,
) -> TeacherOutputCache | None:
    """The cache of this teacher's outputs on ``data`` (created empty, or the one an earlier run left);
    None, with a line saying why, when the disk or ``$RETORT_CACHE_MAX_GIB`` has no room for it even once idle
    entries are removed (``cachedir.make_room``; the run then computes them). ``make=False`` (the other ranks
    of a run whose rank 0 opened it first): open it only if it exists, else None, as rank 0 decided."""
    key = outputs_key(teacher_dir, data, what, layers, dtype)
    root = cache_dir() / "teacher_outputs" / key
    need = estimate_bytes(data, what, layers, teacher_config, np.dtype(dtype).itemsize, classes)
    with room_lock():  # runs that start together make room one at a time, each holding its entry before the next
        if not root.exists() and not make:
            return None
        if not root.exists() and not make_room(need):  # idle entries go first, least recently used
            free = free_bytes(root)
            capped = f" and {LIMIT_ENV}={os.environ[LIMIT_ENV]} caps its entries" if limit_bytes() else ""
            room = f"{free / 2**30:.1f} GiB are free in {cache_dir()}{capped}"
            print(f"teacher outputs not cached: --cache-teacher {what} needs {need / 2**30:.1f} GiB; {room}, and "
                  "removing every idle entry would not make room (set RETORT_CACHE, --cache-dtype float16, or make "
                  "room: 'retort cache list|clear')", flush=True)  # fmt: skip
            return None
        shapes = {
            "heads": teacher_config.num_attention_heads,
            "width": teacher_config.hidden_size,
            "layers": teacher_config.num_hidden_layers,
            "classes": classes,
        }
        return TeacherOutputCache(root, data, what, layers, shapes, dtype, source=str(teacher_dir))


def estimate_bytes(data: Encoded, what: str, layers: dict[str, set[int]], config, itemsize: int, classes: int) -> int:
    """The disk a cache of ``what`` (``logits`` or ``all``: the ``layers`` kept) would take for ``data``,
    checked against the free space before one is made."""
    lengths = np.asarray([len(x) for x in data.input_ids], dtype=np.int64)
    total = len(lengths) * (1 + 4 * classes)
    if what == "all":
        total += len(layers.get("hidden_states", ())) * int(lengths.sum()) * config.hidden_size * itemsize
        total += len(layers.get("values", ())) * int(lengths.sum()) * config.hidden_size * itemsize
        squares = sum(len(layers.get(k, ())) for k in SQUARE)
        total += squares * int((lengths**2).sum()) * config.num_attention_heads * itemsize
    return int(total)
