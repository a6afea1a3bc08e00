"""The page's last section: every run of the comparison with its folder, seed, temperature, selection,
score, its config (written into the report's ``configs/``) and the command that remakes it."""

from __future__ import annotations

import re

import yaml

from retort.report.render import Page
from retort.report.stats import order_labels


def section(page: Page, ev, data: dict) -> None:
    """Every run compared: folder, task, method, seed, temperature (students only), selection, score, its saved
    config (written into ``configs/``) and the command that remakes it."""
    runs = ev.runs
    data["run_list"] = [{"path": str(r.path), "task": r.task, "label": r.label, "seed": r.seed, "T": r.temperature,
                         "selection": r.selection, "dev": r.dev, "command": r.command} for r in runs]  # fmt: skip
    if not runs:
        return
    page.h(2, "Runs compared: configs and commands")
    page.p("Every run of the comparison above; its config is in `configs/` (remake a run with `retort KIND --config "
           "FILE`). T: the soft term's temperature, a student's setting (a teacher has none).")  # fmt: skip
    rows = []
    in_order = sorted(runs, key=lambda r: (r.task, order_labels([r.label]), r.label, r.temperature or 0.0, r.seed))
    for i, r in enumerate(in_order):
        t = f"{r.temperature:g}" if r.temperature is not None else "-"
        name = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{i:03d}-{r.task}-{r.label}" + (f"-T{t}" if t != "-" else "") +
                      f"-s{r.seed}") + ".yaml"  # fmt: skip
        (page.out / "configs" / name).write_text(yaml.safe_dump(r.config, sort_keys=False))
        split, metric, value = r.primary()
        rows.append([str(r.path), r.task, r.label, r.seed, t,
                     "epoch kept on held-out rows, dev scored once" if r.selection == "val" else "dev-selected †",
                     f"{split} {metric} {100 * value:.2f}", f"[config](configs/{name})", f"`{r.command}`"])  # fmt: skip
    page.table(["run", "task", "method", "seed", "T", "selection", "score", "config", "command"], rows)
