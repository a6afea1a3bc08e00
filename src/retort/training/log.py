"""A run's log: every logged value to ``OUT/log.jsonl`` and to TensorBoard under ``OUT/tb/``."""

from __future__ import annotations

import json
from pathlib import Path


class TrainingLog:
    """Every logged value goes to ``log.jsonl`` and to TensorBoard under ``tb/``."""

    def __init__(self, out: Path, resume_step: int | None):
        self.path = out / "log.jsonl"
        if resume_step is not None and self.path.exists():  # drop what came after the checkpoint
            keep = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in keep))
        elif self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (slow import)

        self.tb = SummaryWriter(str(out / "tb"), purge_step=(resume_step + 1) if resume_step is not None else None)
        self.file = self.path.open("a")

    def write(self, record: dict) -> None:
        """Append ``record`` as one JSON line (flushed) and each of its numbers to TensorBoard at its step."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        step = record["step"]
        for key, value in _flatten(record).items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        """Close the log file and the TensorBoard writer (its thread)."""
        self.file.close()
        self.tb.close()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
