"""A text corpus for general distillation, tokenised once into memory-mapped shards.

Input: a text file or a folder of them (read recursively, in name order): plain text, or WikiExtractor
output (``<doc ...>`` / ``</doc>`` lines mark documents and are dropped). Each document's tokens are
packed into sequences ``[CLS] t1 ... tk [SEP]`` of at most ``max_length`` tokens; a document's last
piece is kept when it has at least ``min_tokens`` tokens. Sequences never cross documents.

Shards: ``$RETORT_CACHE/corpus/KEY/shard_NNNNN.{tokens,offsets}.npy`` (int32 token ids, flat, and int64
sequence offsets), each written under a temporary name and renamed, plus ``meta.json`` listing the
complete shards and where the next one starts (file, line). The key is the sha256 of the files' names,
sizes and modification times, the tokenizer and the packing settings, so a second run reads the shards
and an interrupted tokenisation resumes after its last complete shard. Nothing holds the corpus in
memory: lines stream from the files, sequences are read back through ``np.load(mmap_mode="r")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retort.cachedir import touch
from retort.data.batching import Encoded
from retort.data.files import check_text, describe, exists, refusal
from retort.errors import DataError

SHARD_TOKENS = 4_000_000  # about 16 MB of int32 per shard
CORPUS_VERSION = 1


def corpus_files(path: str | Path) -> list[Path]:
    """The corpus's files: ``path`` itself, or every file under it (hidden ones skipped), in name order."""
    p = Path(path)
    if not exists(p):
        raise DataError(f"--corpus {path}: no such file or folder")
    found = describe(p)  # what is there, without opening it (a FIFO would block)
    if found not in (None, "a folder"):
        raise DataError(f"--corpus {path}: {refusal(found, 'a file or folder')}")
    files = [p] if found is None else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    if not files:
        raise DataError(f"--corpus {path}: the folder holds no files")
    for f in files:
        if f.stat().st_size == 0:
            raise DataError(f"{f}: empty file (no text)")
    return files


def text_lines(path: Path, start: int = 0) -> Iterator[tuple[int, str]]:
    """(line number, text) of one file from line ``start`` (0-based; a byte-order mark dropped); a binary file,
    UTF-16 text or a line that is not UTF-8 is one ``DataError`` naming the file and line."""
    with open(path, "rb") as f:
        check_text(path, f.read(65536))
        f.seek(0)
        for number, raw in enumerate(f):
            if b"\0" in raw:
                raise DataError(f"{path}: line {number + 1}: not a text file (binary data)")
            try:
                line = raw.decode("utf-8-sig" if number == 0 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: line {number + 1}: not UTF-8 text ({e.reason})") from None
            if number >= start:
                yield number, line


def documents(files: list[Path], start: tuple[int, int] = (0, 0)) -> Iterator[tuple[tuple[int, int], list[str]]]:
    """Documents as lists of non-empty lines, each with the (file, line) position after it. WikiExtractor
    ``<doc>`` markers end documents; in plain text a blank line does."""
    for fi in range(start[0], len(files)):
        doc: list[str] = []
        first = start[1] if fi == start[0] else 0
        for line_no, line in text_lines(files[fi], first):
            text = line.strip()
            if text.startswith("<doc ") or text == "</doc>" or not text:
                if doc:
                    yield (fi, line_no + 1), doc
                    doc = []
                continue
            doc.append(text)
        if doc:
            yield (fi + 1, 0), doc


@dataclass
class PackedCorpus:
    """Packed sequences across memory-mapped shards: ``len``, ``[i]`` -> int32 token ids of sequence i."""

    shards: list[tuple[np.ndarray, np.ndarray]]  # (tokens, offsets) per shard
    tokens_total: int

    def __post_init__(self) -> None:
        counts = [len(off) - 1 for _, off in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        s = int(np.searchsorted(self.starts, i, side="right")) - 1
        tokens, off = self.shards[s]
        j = i - int(self.starts[s])
        return np.asarray(tokens[off[j] : off[j + 1]])

    def lengths(self) -> list[int]:
        """Every sequence's length in tokens, in corpus order."""
        return [int(x) for _, off in self.shards for x in np.diff(off)]

    def encoded(self, start: int, stop: int) -> Encoded:
        """Sequences ``start..stop-1`` as an ``Encoded`` split (no labels; token types all 0)."""
        return Encoded(
            input_ids=_Slice(self, start, stop),
            token_type_ids=_Zeros(self, start, stop),
            labels=[None] * (stop - start),
            regression=True,
        )


class _Slice:
    """A read-only view of sequences ``start..stop-1`` (what ``Encoded.input_ids`` needs: len and [i])."""

    def __init__(self, corpus: PackedCorpus, start: int, stop: int):
        self.corpus, self.start, self.stop = corpus, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int):
        return self.corpus[self.start + i]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class _Zeros(_Slice):
    def __getitem__(self, i: int):
        return np.zeros(len(self.corpus[self.start + i]), dtype=np.int32)


def corpus_key(files: list[Path], tokenizer_id: str, max_length: int, min_tokens: int) -> str:
    """The cache key (24 hex digits) of a packed corpus: the format version, the tokenizer, the length
    limits and each file's path, size and modification time, so an edited file gets a new entry."""
    h = hashlib.sha256()
    h.update(json.dumps([CORPUS_VERSION, tokenizer_id, max_length, min_tokens]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def tokenizer_identity(tokenizer) -> str:
    """What decides the token ids: the vocabulary (hashed) and the special tokens."""
    vocab = sorted(tokenizer.get_vocab().items())
    h = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]
    return f"{type(tokenizer).__name__}:{h}:{tokenizer.cls_token_id}:{tokenizer.sep_token_id}"


def build(
    path: str | Path,
    tokenizer,
    max_length: int,
    root: Path,
    min_tokens: int = 16,
    shard_tokens: int = SHARD_TOKENS,
    progress: bool = True,
    max_sequences: int | None = None,
) -> PackedCorpus:
    """Tokenise the corpus at ``path`` into shards under ``root/KEY`` (or read the ones there; resume an
    interrupted tokenisation after its last complete shard) and return the packed sequences.
    ``max_sequences`` stops tokenising once that many sequences exist (a budget for a slice of a corpus)."""
    files = corpus_files(path)
    if max_length < min_tokens + 2:
        raise DataError(f"--max-length {max_length}: general distillation packs sequences of at least {min_tokens + 2}")
    key = corpus_key(files, tokenizer_identity(tokenizer), max_length, min_tokens)
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"shards": [], "next": [0, 0], "done": False}
    sequences_so_far = sum(s["sequences"] for s in meta["shards"])
    body = max_length - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    total_bytes = sum(f.stat().st_size for f in files)
    first_bytes = sum(f.stat().st_size for f in files[: meta["next"][0]])  # files done by an earlier call
    started, last_print = time.perf_counter(), 0.0
    tokens_done = 0
    enough = max_sequences is not None and sequences_so_far >= max_sequences
    if not meta["done"] and not enough:
        buf: list[int] = []
        offsets: list[int] = [0]
        for (fi, line), doc in documents(files, tuple(meta["next"])):
            ids = tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"]  # we pack, not truncate
            flat = [t for piece in ids for t in piece]
            for s in range(0, len(flat), body):
                chunk = flat[s : s + body]
                if len(chunk) < min_tokens:
                    continue
                buf.extend([cls_id, *chunk, sep_id])
                offsets.append(len(buf))
            tokens_done += len(flat)
            full = len(buf) >= shard_tokens
            capped = max_sequences is not None and sequences_so_far + len(offsets) - 1 >= max_sequences
            if full or capped:
                _write_shard(folder, meta, buf, offsets, [fi, line])
                sequences_so_far += len(offsets) - 1
                buf, offsets = [], [0]
                if capped:
                    break
            now = time.perf_counter()
            if progress and now - last_print > float(os.environ.get("RETORT_PROGRESS_SECONDS", "10")):
                last_print = now
                done_bytes = sum(f.stat().st_size for f in files[:fi]) - first_bytes  # in this call
                rate = tokens_done / max(now - started, 1e-9)
                share = min(done_bytes / max(total_bytes - first_bytes, 1), 1.0)
                eta = (now - started) * (1 - share) / share if share > 0 else float("nan")
                print(f"tokenising {path}: file {fi + 1}/{len(files)}, {tokens_done:,} tokens, "
                      f"{rate:,.0f} tokens/s, ETA {eta / 60:.0f} min", flush=True)  # fmt: skip
        else:
            if offsets[-1]:
                _write_shard(folder, meta, buf, offsets, [len(files), 0])
                sequences_so_far += len(offsets) - 1
            meta["done"] = True
            _write_meta(folder, meta)
    if not meta["shards"]:
        raise DataError(f"--corpus {path}: no text to distil on (no document of {min_tokens} tokens or more)")
    touch(folder)  # last used now ('retort cache list')
    shards = [
        (np.load(folder / f"{s['name']}.tokens.npy", mmap_mode="r"), np.load(folder / f"{s['name']}.offsets.npy"))
        for s in meta["shards"]
    ]
    return PackedCorpus(shards, sum(s["tokens"] for s in meta["shards"]))


def _write_shard(folder: Path, meta: dict, buf: list[int], offsets: list[int], next_pos: list[int]) -> None:
    name = f"shard_{len(meta['shards']):05d}"
    for suffix, arr in (("tokens", np.asarray(buf, dtype=np.int32)), ("offsets", np.asarray(offsets, np.int64))):
        tmp = folder / f"{name}.{suffix}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, folder / f"{name}.{suffix}.npy")
    meta["shards"].append({"name": name, "sequences": len(offsets) - 1, "tokens": len(buf)})
    meta["next"] = next_pos
    _write_meta(folder, meta)


def _write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "meta.json")
