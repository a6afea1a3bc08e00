"""Shared by the experiment scripts: run a retort training command once, resumably."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def retort(args: list[str], out: Path, quiet: bool = True) -> dict:
    """Run ``retort ARGS --out OUT`` unless OUT/metrics.json exists; resume from OUT/checkpoint if one
    is there. Returns OUT/metrics.json."""
    out = Path(out)
    if not (out / "metrics.json").exists():
        cmd = [sys.executable, "-m", "retort", *args, "--out", str(out), "--no-progress"]
        if (out / "checkpoint" / "trainer_state.json").exists():
            cmd = [sys.executable, "-m", "retort", args[0], "--out", str(out), "--resume", "--no-progress"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
    return json.loads((out / "metrics.json").read_text())
