"""How far a ``retort compress`` plan's predicted latencies are from the measured ones (issue #30), taken close
together: a plan made now (``retort compress --dry-run``), then the trained students of its shapes timed in one
``retort bench`` run with rounds beside the teacher and the teacher's own export, as the search's verdict times.

    retort compress ... --out /tmp/check --dry-run
    python experiments/planner_check.py --plan /tmp/check/plan.json --model 3x256-f512=/work/c/model \
        --samples 64 --json out.json

A search's own planner error spans its training (an hour or more), over which this machine's speed drifts; this
takes the plan and the bench minutes apart. Prints a table and writes the JSON (every timing, the CPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retort.commands import bench as bench_command
from retort.commands.compress_search import least_medians
from retort.machine import cpu_label
from retort.report.tables import table


def main(argv: list[str] | None = None) -> None:
    """Bench the given students beside the plan's teacher and its export, and print and write each shape's
    predicted against measured ms (as is, and with the teacher export's drift since the plan taken out)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", required=True, help="a plan.json that `retort compress --dry-run` wrote")
    p.add_argument("--model", action="append", required=True, metavar="SHAPE=FOLDER",
                   help="a trained student of a shape the plan predicts (the search's shipped folder)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=64, help="dev rows timed: the search's --probe-samples")
    p.add_argument("--json", required=True, help="where the result goes")
    args = p.parse_args(argv)
    plan = json.loads(Path(args.plan).read_text())
    predicted = {c["name"]: c for c in plan["candidates"]}
    models = dict(m.split("=", 1) for m in args.model)
    for shape in models:
        if shape not in predicted:
            p.error(f"--model {shape}: the plan predicts no such shape (one of {', '.join(predicted)})")
    teacher = plan["teacher_folder"]
    export = (
        teacher if plan["backend"] == "torch" else str(Path(args.plan).parent / "probes" / "teacher" / plan["backend"])
    )
    argv = plan["argv"]
    glue = argv[argv.index("--glue-dir") + 1] if "--glue-dir" in argv else None
    data = argv[argv.index("--data") + 1] if "--data" in argv else None
    if data:  # the user's data, registered as a task the bench can read
        from retort.data.spec import choose_task  # noqa: PLC0415

        choose_task(None, data, teacher, "--teacher")
    bench = bench_command.bench(list(dict.fromkeys([teacher, export, *models.values()])), task=plan["task"],
                                glue_dir=glue, threads=[plan["threads"]], batch_sizes=[1], samples=args.samples,
                                rounds=args.rounds,
                                json_out=str(Path(args.json).with_suffix(".bench.json")))  # fmt: skip
    ms = least_medians(bench)
    drift = ms[export] / plan["teacher_backend_ms"]  # the teacher export's time now over its time in the plan
    rows, out = [], {"cpu": cpu_label(), "threads": plan["threads"], "plan": args.plan, "rounds": args.rounds,
                     "samples": args.samples,
                     "teacher": {"plan_torch_ms": plan["teacher_torch_ms"], "torch_ms": ms[teacher],
                                 "plan_backend_ms": plan["teacher_backend_ms"], "backend_ms": ms[export]},
                     "shapes": {}}  # fmt: skip
    for shape, folder in models.items():
        c = predicted[shape]
        error = (c["predicted_ms"] - ms[folder]) / ms[folder]
        corrected = (c["predicted_ms"] * drift - ms[folder]) / ms[folder]
        out["shapes"][shape] = {"predicted_ms": c["predicted_ms"], "latency_from": c["latency_from"],
                                "measured_ms": ms[folder], "error": error, "error_drift_corrected": corrected,
                                "folder": folder}  # fmt: skip
        rows.append([shape, f"{c['predicted_ms']:.3f} ({c['latency_from']})", f"{ms[folder]:.3f}", f"{error:+.1%}",
                     f"{corrected:+.1%}",
                     f"{ms[export] / ms[folder]:.2f}x", f"{ms[teacher] / ms[folder]:.2f}x"])  # fmt: skip
    print(f"teacher: plan {plan['teacher_torch_ms']:.2f} ms PyTorch, {plan['teacher_backend_ms']:.3f} ms "
          f"{plan['backend']}; this bench {ms[teacher]:.2f} and {ms[export]:.3f} ({out['cpu']}, "
          f"{plan['threads']} threads)")  # fmt: skip
    print(table(["shape", "predicted ms", "measured ms", "error", "drift taken out", "vs teacher export",
                 "vs teacher PyTorch"], rows))  # fmt: skip
    Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
