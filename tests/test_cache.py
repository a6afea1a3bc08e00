"""``retort cache list|clear``: what $RETORT_CACHE holds, and removing entries by kind and age, leftovers
of stopped writes included; a cache opened again counts as used now."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from retort.cachedir import cache_dir, entries, touch
from retort.cli import main
from retort.data.batching import Encoded
from retort.distill.teacher_cache import TeacherOutputCache

DAY = 86400


def _entry(root, kind: str, name: str, days_ago: float, nbytes: int = 4096, meta: bool = True):
    folder = root / kind / name
    folder.mkdir(parents=True)
    (folder / "data.npy").write_bytes(b"\1" * nbytes)
    if meta and kind == "corpus":
        shards = [{"name": "shard_00000", "sequences": 1200, "tokens": 150000}]
        (folder / "meta.json").write_text(json.dumps({"shards": shards, "next": [1, 0], "done": True}))
    elif meta:
        (folder / "meta.json").write_text("{not json")  # a damaged meta.json is listed, not fatal
    when = time.time() - days_ago * DAY
    for p in [*folder.iterdir(), folder]:
        os.utime(p, (when, when))
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("RETORT_CACHE", str(root))
    assert cache_dir() == root
    return {
        "old": _entry(root, "teacher_outputs", "aaaa", 40, 1 << 20),
        "new": _entry(root, "teacher_outputs", "bbbb", 1),
        "corpus": _entry(root, "corpus", "cccc", 40),
        "stopped": _entry(root, "teacher_outputs", "dddd.123.tmp", 0.5, meta=False),  # a writer gone 12 h ago
        "writing": _entry(root, "teacher_outputs", "eeee.456.tmp", 0.001, meta=False),  # perhaps still writing
    }


def test_list_shows_every_entry_and_writes_json(cache, tmp_path, capsys):
    out = tmp_path / "list.json"
    assert main(["cache", "list", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("teacher_outputs/aaaa", "teacher_outputs/bbbb", "corpus/cccc", "dddd.123.tmp"):
        assert name in text
    assert "5 entries" in text and "left by a stopped write" in text and "1,200 sequences, 150,000 tokens" in text
    rec = json.loads(out.read_text())
    assert rec["entries"][0]["entry"] in ("teacher_outputs/aaaa", "corpus/cccc")  # the oldest use first
    assert {e["entry"]: e["leftover"] for e in rec["entries"]}["teacher_outputs/dddd.123.tmp"] is True
    assert next(e for e in rec["entries"] if e["entry"] == "teacher_outputs/aaaa")["bytes"] >= 1 << 20


def test_clear_by_age_and_kind_and_dry_run(cache, capsys):
    assert main(["cache", "clear", "--older-than", "30", "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out
    assert all(p.exists() for p in cache.values())  # a dry run removes nothing
    assert main(["cache", "clear", "--older-than", "30", "--kind", "teacher_outputs"]) == 0
    assert not cache["old"].exists() and not cache["stopped"].exists()  # old, and a stopped write's leftover
    assert cache["new"].exists() and cache["corpus"].exists() and cache["writing"].exists()
    assert main(["cache", "clear"]) == 0
    assert [e.path for e in entries()] == [cache["writing"]]  # a write of the last hour is left alone
    assert "removing" not in str(list((cache_dir() / "teacher_outputs").iterdir()))


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--older-than", "-1"], "--older-than -1"), (["--older-than", "nan"], "--older-than nan"),
     (["--kind", "models"], "--kind models")],
)  # fmt: skip
def test_bad_options_are_one_line_and_remove_nothing(cache, capsys, args, needle):
    assert main(["cache", "clear", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("retort cache: error:") and needle in err[0]
    assert all(p.exists() for p in cache.values())


def test_a_cache_that_is_a_file(tmp_path, monkeypatch, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("RETORT_CACHE", str(f))
    assert main(["cache", "list"]) == 2
    assert "not a folder" in capsys.readouterr().err and f.read_text() == "x"


def test_opening_a_teacher_cache_marks_it_used(tmp_path):
    data = Encoded(
        input_ids=[[2, 5, 3], [2, 6, 7, 3]], token_type_ids=[[0] * 3, [0] * 4], labels=[0, 1], regression=False
    )
    shapes = {"heads": 1, "width": 4, "layers": 1, "classes": 2}
    root = tmp_path / "teacher_outputs" / "k"
    TeacherOutputCache(root, data, "logits", {}, shapes, "float32", source="runs/t/model")
    assert entries(tmp_path)[0].holds == "logits (float32), 2 rows, runs/t/model"  # what 'cache list' shows
    old = time.time() - 10 * DAY
    os.utime(root / "meta.json", (old, old))
    TeacherOutputCache(root, data, "logits", {}, shapes, "float32")  # a later run opens it again
    assert time.time() - (root / "meta.json").stat().st_mtime < 60
    touch(tmp_path / "nothing-here")  # no meta.json: nothing to do, no error
    assert np.load(root / "filled.npy").shape == (2,)


def test_making_room_removes_idle_entries_oldest_first_and_keeps_those_in_use(cache, monkeypatch, capsys):
    """``$RETORT_CACHE_MAX_GIB`` caps the teacher-output entries: idle ones go, least recently used first;
    one a process holds open stays, and so do leftovers and other kinds."""
    import subprocess
    import sys

    import retort.cachedir as cachedir

    held = _entry(cache_dir(), "teacher_outputs", "ffff", 50, 1 << 20)  # the oldest, but a run has it open
    meta, when = cache["old"] / "meta.json", time.time() - 40 * DAY
    meta.write_text(json.dumps({"examples": 3, "what": "all", "dtype": "float32", "source": "t/model"}))
    os.utime(meta, (when, when))
    code = (f"import pathlib, time; from retort.cachedir import hold; hold(pathlib.Path(r'{held}')); "
            "print('held', flush=True); time.sleep(60)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cachedir.in_use(held) and not cachedir.in_use(cache["old"])
        assert main(["cache", "list"]) == 0  # 'in use' shown
        listed = {line.split()[0]: line.split()[4] for line in capsys.readouterr().out.splitlines()[2:-1]}
        assert listed["teacher_outputs/ffff"] == "yes" and listed["teacher_outputs/aaaa"] == "-"
        monkeypatch.setenv("RETORT_CACHE_MAX_GIB", str(2.5 / 1024))  # 2.5 MiB: the held 1 MiB and one more fit
        assert cachedir.make_room(1 << 20)
        assert held.exists() and not cache["old"].exists() and cache["new"].exists()  # the oldest idle one went
        assert cache["corpus"].exists() and cache["stopped"].exists() and cache["writing"].exists()
        err = capsys.readouterr().err
        assert "note: cache: removed teacher_outputs/aaaa" in err and "ffff" not in err
        assert "all (float32), 3 rows, t/model" in err  # what it held, read before it went
        assert not cachedir.make_room(2 << 20)  # no room without the held one: nothing goes, and that is said
        assert held.exists() and cache["new"].exists()
        assert not cachedir.make_room(3 << 20) and cache["new"].exists()  # more than the cap: nothing goes
    finally:
        holder.kill()
        holder.wait()
    assert not cachedir.in_use(held)  # its process ended: idle
    assert cachedir.make_room(2 << 20) and not held.exists()


def test_an_open_teacher_cache_is_held_until_its_process_ends(tmp_path):
    import retort.cachedir as cachedir

    data = Encoded(input_ids=[[2, 5, 3]], token_type_ids=[[0] * 3], labels=[0], regression=False)
    root = tmp_path / "teacher_outputs" / "k"
    c = TeacherOutputCache(root, data, "logits", {}, {"heads": 1, "width": 4, "layers": 1, "classes": 2}, "float32")
    assert cachedir.in_use(root)
    c.close()  # what the end of training (or of the process) does
    assert not cachedir.in_use(root) and not c.arrays  # let go and unmapped
    c.close()
    c.flush()  # twice, and a flush after: nothing happens


@pytest.mark.parametrize("value", ["0", "-3", "lots", "nan", "inf"])
def test_a_bad_cache_cap_is_one_line_before_anything_runs(cache, monkeypatch, capsys, value):
    monkeypatch.setenv("RETORT_CACHE_MAX_GIB", value)
    assert main(["cache", "clear"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"RETORT_CACHE_MAX_GIB={value}: a number of GiB greater than 0" in err[0]
    assert all(p.exists() for p in cache.values())


def test_a_teacher_cache_over_the_cap_is_not_made_and_the_run_is_told(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from retort.distill.teacher_cache import open_output_cache

    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETORT_CACHE_MAX_GIB", "1e-9")  # about one byte: nothing fits
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    data = Encoded(input_ids=[[2, 5, 3]], token_type_ids=[[0] * 3], labels=[0], regression=False)
    config = SimpleNamespace(num_attention_heads=1, hidden_size=4, num_hidden_layers=1)
    assert open_output_cache(str(teacher), config, data, "logits", {}, "float32", 2) is None
    out = capsys.readouterr().out
    assert "teacher outputs not cached" in out and "RETORT_CACHE_MAX_GIB=1e-9 caps its entries" in out
    monkeypatch.delenv("RETORT_CACHE_MAX_GIB")
    assert open_output_cache(str(teacher), config, data, "logits", {}, "float32", 2) is not None


def test_a_run_taking_up_an_entry_while_it_is_removed_gets_a_fresh_one(tmp_path):
    """The race ``hold`` closes: a removal has the entry locked when a run opens it; the run waits, then
    finds the folder gone and makes and holds a new one, never a lock on the removed folder's file."""
    import threading

    import retort.cachedir as cachedir

    entry = tmp_path / "teacher_outputs" / "k"
    os.close(cachedir.hold(entry))  # a run made it and ended
    remover = cachedir._lock_idle(entry)
    assert remover is not None and remover >= 0 and cachedir.in_use(entry)  # the removal holds it
    got = {}
    opener = threading.Thread(target=lambda: got.update(fd=cachedir.hold(entry)))
    opener.start()
    opener.join(0.3)
    assert opener.is_alive()  # waits for the removal
    entry.rename(tmp_path / "gone")  # what remove does first
    os.close(remover)
    opener.join(5)
    assert not opener.is_alive() and entry.is_dir() and cachedir.in_use(entry)
    assert os.fstat(got["fd"]).st_ino == os.stat(entry / "in-use.lock").st_ino
    os.close(got["fd"])


def test_making_room_when_another_process_removed_an_entry_first(cache, monkeypatch, capsys):
    """Two runs making room at once walk the same list: an entry already gone is passed over, not an error."""
    import retort.cachedir as cachedir

    listed = cachedir.entries(describe=False)
    cachedir.remove(next(e for e in listed if e.path == cache["old"]))  # the other process, first
    monkeypatch.setattr(cachedir, "entries", lambda root=None, describe=True: listed)
    monkeypatch.setenv("RETORT_CACHE_MAX_GIB", str(0.25 / 1024))  # 256 KiB, all of it needed: "new" must go too
    assert cachedir.make_room(256 << 10)
    assert not cache["new"].exists() and cache["corpus"].exists()
    err = capsys.readouterr().err
    assert "removed teacher_outputs/bbbb" in err and "aaaa" not in err  # the one it did not remove is not claimed


def test_clear_keeps_an_entry_a_running_process_has_open(cache, capsys):
    import retort.cachedir as cachedir

    fd = cachedir.hold(cache["old"])  # this process stands for a running run
    try:
        assert main(["cache", "clear", "--older-than", "30", "--dry-run"]) == 0
        assert "would keep teacher_outputs/aaaa: a running process has it open" in capsys.readouterr().out
        assert main(["cache", "clear", "--older-than", "30"]) == 0
        out = capsys.readouterr().out
        assert cache["old"].exists() and not cache["corpus"].exists() and "kept teacher_outputs/aaaa" in out
    finally:
        os.close(fd)
    assert main(["cache", "clear", "--older-than", "30"]) == 0 and not cache["old"].exists()


def test_clear_passes_over_an_entry_another_process_removed_first(cache, monkeypatch, capsys):
    import retort.cachedir as cachedir

    listed = cachedir.entries()
    cachedir.remove(next(e for e in listed if e.path == cache["old"]))  # a run making room, first
    monkeypatch.setattr(cachedir, "entries", lambda root=None, describe=True: listed)
    assert main(["cache", "clear", "--kind", "teacher_outputs", "--older-than", "30"]) == 0
    out = capsys.readouterr().out
    assert "removed teacher_outputs/aaaa" not in out and "removed teacher_outputs/dddd.123.tmp" in out


def test_other_ranks_open_only_the_entry_rank_0_made(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from retort.distill.teacher_cache import open_output_cache

    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    data = Encoded(input_ids=[[2, 5, 3]], token_type_ids=[[0] * 3], labels=[0], regression=False)
    config = SimpleNamespace(num_attention_heads=1, hidden_size=4, num_hidden_layers=1)
    args = (str(teacher), config, data, "logits", {}, "float32", 2)
    assert open_output_cache(*args, make=False) is None  # rank 0 made none (no room): neither does rank 1
    first = open_output_cache(*args)
    second = open_output_cache(*args, make=False)
    assert first is not None and second is not None and second.root == first.root
