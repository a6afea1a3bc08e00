"""``retort cache``: what ``$RETORT_CACHE`` holds (teacher outputs, tokenised corpora) and its removal.
``list`` prints every entry with its size, last use and contents; ``clear`` removes entries (all, of one
kind, or unused for some days), renaming each first so that a stop part-way leaves nothing a reader uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from pathlib import Path

from retort import cachedir, options
from retort.paths import check_file_target, write_atomic
from retort.report.tables import table


def add_parser(sub) -> None:
    """``cache`` and its ``list`` and ``clear`` subcommands."""
    p = sub.add_parser("cache", help="what $RETORT_CACHE holds (teacher outputs, tokenised corpora); remove it")
    caches = p.add_subparsers(dest="cache_command", required=True)
    t = caches.add_parser("list", help="every entry: kind, size, last use, what it holds")
    options.add(t, "cache_json")
    t.set_defaults(run=run_list)
    t = caches.add_parser("clear", help="remove entries: all, of one kind, or unused for N days")
    options.add(t, "kind", "older_than", "dry_run")
    t.set_defaults(run=run_clear)


def cache_record(root: Path, found: list[cachedir.Entry]) -> dict:
    """What ``cache list --json`` writes: the root, its size, the free space and every entry."""
    free = shutil.disk_usage(root).free if root.exists() else None
    return {"root": str(root), "bytes": sum(e.bytes for e in found), "free_bytes": free,
            "max_bytes": cachedir.limit_bytes(), "entries": [
        {"entry": e.name, "kind": e.kind, "bytes": e.bytes, "last_used": e.last_used, "leftover": e.leftover,
         "in_use": cachedir.in_use(e.path), "holds": e.holds} for e in found]}  # fmt: skip


def run_list(args: argparse.Namespace) -> int:
    """Print every entry, the total and the free space; ``--json`` also writes them."""
    check_file_target(args.json_out, "--json")
    root = cachedir.cache_dir()
    found = cachedir.entries(root)
    rec = cache_record(root, found)
    rows = [[e.name, f"{e.bytes / 2**20:,.1f}", time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.last_used)),
             "yes" if r["in_use"] else "-", "left by a stopped write" if e.leftover else e.holds]
            for e, r in zip(found, rec["entries"])]  # fmt: skip
    print(table(["entry", "MiB", "last used (UTC)", "in use", "holds"], rows))
    free_s = f"; {rec['free_bytes'] / 2**30:.1f} GiB free on its disk" if rec["free_bytes"] is not None else ""
    cap = f"; teacher outputs capped at {rec['max_bytes'] / 2**30:g} GiB" if rec["max_bytes"] else ""
    print(f"{len(found)} entries, {rec['bytes'] / 2**30:.2f} GiB in {root}{free_s}{cap}")
    if args.json_out:
        write_atomic(Path(args.json_out), json.dumps(rec, indent=2))
    return 0


def run_clear(args: argparse.Namespace) -> int:
    """Remove the chosen entries (or, with ``--dry-run``, say which) and what that frees."""
    root = cachedir.cache_dir()
    found = cachedir.entries(root)
    chosen = cachedir.select(found, args.kind, args.older_than)
    gone = []
    with cachedir.room_lock(root) if chosen and not args.dry_run else contextlib.nullcontext():
        for e in chosen:  # an entry a running process holds is kept: removed, it would free nothing until its
            # run ends, and that run's next start would make it again
            if args.dry_run:
                kept = cachedir.in_use(e.path)
            else:
                kept = not cachedir.remove_idle(e)
            if kept:
                print(f"{'would keep' if args.dry_run else 'kept'} {e.name}: a running process has it open")
                continue
            gone.append(e)
            print(f"{'would remove' if args.dry_run else 'removed'} {e.name} ({e.bytes / 2**20:,.1f} MiB)")
    verb = "would free" if args.dry_run else "freed"
    print(f"{len(gone)} of {len(found)} entries, {verb} {sum(e.bytes for e in gone) / 2**30:.2f} GiB in {root}")
    return 0
