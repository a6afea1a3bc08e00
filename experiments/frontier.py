"""The speed-quality frontier: students of several shapes, each from its best available start, task-
distilled with ``multilevel`` on STS-B, MRPC and SST-2, then timed at batch 1 beside their teacher in one
``retort bench`` run (PyTorch fp32; ONNX int8 timings are not in it yet). Prints a table per task,
marks the Pareto-optimal points (no other point is both faster and better), writes JSON and a PNG.

    python experiments/frontier.py --teachers runs/teachers --glue-dir ../shared/data/glue \\
        --general runs/narrow --out runs/frontier --json docs/data/frontier.json --png docs/img/frontier.png

``--teachers DIR`` holds one fine-tuned teacher per task (``DIR/TASK/model``). Starts: a student as wide as
the teacher is initialised from its layers; a narrower one is pruned from them (``--student-init prune``),
or, when ``--general DIR`` holds ``general-prune-LxH/model`` (a general-distilled pruned student of that
shape, from ``experiments/narrow.py``), starts from that. Every run: ``--epochs 3``, 2 threads, the
teacher's outputs cached, the epoch kept on 10% of the training rows (``--val-split 0.1``) and the GLUE dev
set scored once on the kept model; SST-2 is capped at ``--sst2-rows`` training rows (say so with the
table). The teacher's own score is its run's (its epoch was chosen on dev: marked).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runs import retort  # noqa: E402

from retort.bench import cpu_label  # noqa: E402
from retort.report import table  # noqa: E402

SHAPES = ["4x384", "3x384", "2x384", "4x312", "4x256", "6x192"]
SCORE = {"STS-B": "pearson", "MRPC": "f1", "SST-2": "accuracy"}


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """(ms, score) points: True where no other point is at least as fast and as good, and better in one."""
    return [
        not any(m2 <= m and s2 >= s and (m2 < m or s2 > s) for j, (m2, s2) in enumerate(points) if j != i)
        for i, (m, s) in enumerate(points)
    ]


def bench(models: list[str], task: str, glue_dir: str, out: Path, threads: str) -> dict[str, float]:
    """ms/sample (p50) at batch 1 of every model, timed in one ``retort bench`` run."""
    if not out.exists():
        cmd = [sys.executable, "-m", "retort", "bench", "--model", *models, "--task", task, "--glue-dir", glue_dir,
               "--threads", threads, "--batch-sizes", "1", "--samples", "256", "--json", str(out)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {
        r["model"]: next(x["ms_per_sample_p50"] for x in r["latency"] if x["batch_size"] == 1) for r in data["runs"]
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teachers", required=True)
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--general", default=None)
    p.add_argument("--out", default="runs/frontier")
    p.add_argument("--tasks", nargs="+", default=["STS-B", "MRPC", "SST-2"])
    p.add_argument("--shapes", nargs="+", default=SHAPES)
    p.add_argument("--sst2-rows", type=int, default=20000)
    p.add_argument("--threads", default="2")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    a = p.parse_args()
    out = Path(a.out)
    result = {"cpu": cpu_label(), "args": vars(a), "tasks": {}}
    for task in a.tasks:
        teacher = str(Path(a.teachers) / task / "model")
        t_width = json.loads((Path(teacher) / "config.json").read_text())["hidden_size"]
        rows = []
        for shape in a.shapes:
            width = int(shape.split("x")[1])
            general = Path(a.general or "-") / f"general-prune-{shape}" / "model"
            init = "teacher" if width == t_width else (str(general) if general.is_dir() else "prune")
            start = {"teacher": "teacher layers", "prune": "pruned"}.get(init, "pruned + general")
            args = ["distill", "--task", task, "--glue-dir", a.glue_dir, "--teacher", teacher, "--student", shape,
                    "--student-init", init, "--method", "multilevel", "--epochs", "3", "--cache-teacher", "all",
                    "--threads", a.threads, "--val-split", "0.1"]  # fmt: skip
            if task == "SST-2":
                args += ["--max-train-samples", str(a.sst2_rows)]
            m = retort(args, out / task / shape)
            rows.append({"shape": shape, "start": start, "model": str(out / task / shape / "model"),
                         "score": m["dev_once"]["dev"][SCORE[task]], "parameters": m["parameters"]})  # fmt: skip
        t_metrics = json.loads((Path(a.teachers) / task / "metrics.json").read_text())
        models = [teacher, *(r["model"] for r in rows)]
        ms = bench(models, task, a.glue_dir, out / task / "bench-torch.json", a.threads)
        entries = [{"shape": "teacher", "start": "-", "model": teacher, "score": t_metrics["best"]["dev"][SCORE[task]],
                    "parameters": t_metrics["parameters"]}, *rows]  # fmt: skip
        for e in entries:
            e["ms_torch_b1"] = ms[e["model"]]
            e["speedup_torch"] = ms[teacher] / ms[e["model"]]
            e["share_of_teacher"] = e["score"] / entries[0]["score"]
        for e, best in zip(entries, pareto([(e["ms_torch_b1"], e["score"]) for e in entries])):
            e["pareto_torch"] = best
        result["tasks"][task] = entries
        print(f"\n{task} dev {SCORE[task]} (students: kept on --val-split, dev once; teacher: dev-selected) against "
              f"ms/sample at batch 1, {a.threads} "
              f"threads, PyTorch fp32 ({cpu_label()}); * Pareto-optimal")  # fmt: skip
        print(table(["student", "start", "score", "% of teacher", "ms b1", "speed-up", "params M"],
                    [[e["shape"] + (" *" if e["pareto_torch"] else ""), e["start"], f"{e['score']:.4f}",
                      f"{100 * e['share_of_teacher']:.1f}", f"{e['ms_torch_b1']:.2f}", f"{e['speedup_torch']:.2f}x",
                      f"{e['parameters'] / 1e6:.1f}"] for e in entries]))  # fmt: skip
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=2))
    if a.png:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, axes = plt.subplots(1, len(result["tasks"]), figsize=(5 * len(result["tasks"]), 4), squeeze=False)
        for ax, (task, entries) in zip(axes[0], result["tasks"].items()):
            for e in entries:
                ax.scatter(e["ms_torch_b1"], e["score"], marker="*" if e["shape"] == "teacher" else "o",
                           color="C3" if e["pareto_torch"] else "C0")  # fmt: skip
                ax.annotate(e["shape"], (e["ms_torch_b1"], e["score"]), fontsize=8)
            ax.set_xlabel("ms/sample, batch 1, PyTorch fp32")
            ax.set_ylabel(f"dev {SCORE[task]}")
            ax.set_title(task)
        fig.suptitle(f"students of retort ({cpu_label()}); red: Pareto-optimal")
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)


if __name__ == "__main__":
    main()
