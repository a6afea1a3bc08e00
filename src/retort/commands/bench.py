"""``retort bench``: latency (p50/p90/p99 ms per sample), throughput, peak memory and file size of model
or export folders on real dev sentences, at each batch size, length and thread count asked. One model at
one thread count runs in this process; several each run in a process of their own (so that peak memory
is each one's alone), ratios against the first. Prints a table, writes JSON (and a bar chart for several);
``--json -`` writes the JSON to standard output and the table to stderr (a chart then only with ``--png``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from retort import options, outputs
from retort.data.spec import folder_task, load_task
from retort.data.tasks import get_task, task_inputs
from retort.errors import RetortError
from retort.models.check import resolve_model_path
from retort.paths import write_result


def add_parser(sub) -> None:
    """The ``bench`` subcommand."""
    p = sub.add_parser("bench", help="latency, throughput, peak memory and file size on real dev sentences")
    options.add(p, "glue_dir", "skip_bad_rows", "model", "bench_task", "data", "threads", "batch_sizes", "samples",
                "warmup", "max_length", "fill", "memory_cap", "rounds", "bench_json", "png", required=("model",),
                many=("model", "threads", "batch_sizes", "max_length"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Time the models, print the table, say what was written."""
    if args.task and args.data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    task = load_task(args.data).name if args.data else args.task
    result = bench(args.model, task=task, glue_dir=args.glue_dir, threads=args.threads,
                   batch_sizes=[n for sizes in args.batch_sizes for n in sizes], samples=args.samples,
                   warmup=args.warmup, max_lengths=args.max_length, fill=args.fill, memory_cap=args.memory_cap,
                   rounds=args.rounds, json_out=args.json_out, png=args.png, show=True)  # fmt: skip
    for path in result["_written"]:
        if path != outputs.STDOUT:
            print(f"wrote {path}")
    return 0


def bench(
    models: list[str], *, task: str | None = None, glue_dir: str | None = None, threads: list[int | None] = (None,),
    batch_sizes: list[int] = (1, 32), samples: int = 256, warmup: int = 5, max_lengths: list[int | None] = (None,),
    fill: bool = False, memory_cap: bool = False, rounds: int = 1, json_out: str | None = None,
    png: str | None = None, show: bool = False,
) -> dict:  # fmt: skip
    """Time ``models`` as ``retort bench`` does (``threads`` None: all cores; ``max_lengths`` None: 128)
    and write the JSON (default MODEL/bench.json for one model at one thread count, else bench.json; ``-``:
    standard output) and, for several models or with ``png``, the chart. ``show`` prints the table. Returns
    the result, with ``runs`` (one per model and thread count), ``_path`` (the JSON) and ``_written``
    (every file, ``-`` for standard output)."""
    from retort.report import speed  # noqa: PLC0415  (matplotlib)

    # each model's own task; one of the user's is registered from the folder, for the processes that time them
    own = [folder_task(resolve_model_path(m)) if Path(m).is_dir() else None for m in models]
    if task is None:  # the first model's own task, else STS-B
        task = own[0].name if own[0] is not None else "STS-B"
    threads = [options.all_cores(t) for t in threads]
    sizes, lengths = list(batch_sizes), list(max_lengths)
    single = len(models) == 1 and len(threads) == 1 and not memory_cap and rounds == 1
    out, chart = _targets(models, task, glue_dir, single, json_out, png)
    with outputs.result_stream(out) as stream:
        if single:  # in this process: the child of a multi-model run, or one model on its own
            result = _bench_here(models[0], task, glue_dir, threads[0], sizes, samples, warmup, lengths, fill)
        else:
            from retort.deploy.bench import run_bench  # noqa: PLC0415  (numpy, onnxruntime)

            result = run_bench(models, task, glue_dir, threads, sizes, samples, warmup, lengths, fill, memory_cap,
                               log=lambda m: print(m, file=sys.stderr, flush=True), rounds=rounds)  # fmt: skip
        if show:
            speed.print_bench(result)
    write_result(out, json.dumps(result["runs"][0] if single else result, indent=2), stream)
    written = [str(out)]
    if chart is not None:
        speed.plot(result, chart)
        written.append(str(chart))
    return {**result, "_path": str(out), "_written": written}


def _targets(models: list[str], task: str, glue_dir, single: bool, json_out, png) -> tuple[str | Path, Path | None]:
    """Where the JSON and the chart go (the chart: None for none), checked by the output rule before any
    work: neither may be a model or the data timed, nor be inside a model folder (the one exception: the
    default MODEL/bench.json of one model)."""
    reads = [*(outputs.local(m, "a model timed") for m in models),
             *task_inputs(get_task(task), glue_dir)]  # fmt: skip
    default = Path(models[0]) / "bench.json" if single else Path("bench.json")
    out = json_out or default
    chart = Path(png) if png else None
    if chart is None and not single and str(out) != outputs.STDOUT:
        chart = Path(out).with_suffix(".png")
    checked = out if json_out or not single or Path(models[0]).is_dir() else None  # no folder: the bench says so
    outputs.check_output(checked, "--json", reads=reads, own=[default] if single else (), stdout=True)
    outputs.check_output(chart, "--png", reads=reads)
    return out, chart


def _bench_here(model, task, glue_dir, threads, sizes, samples, warmup, lengths, fill) -> dict:
    """One model at one thread count, in this process, as the record several models make."""
    from retort.deploy.bench import bench_folder  # noqa: PLC0415  (numpy, onnxruntime)

    one = bench_folder(model, task, glue_dir, threads, sizes, samples, warmup, lengths, fill)
    for lat in one["latency"]:
        lat.update(speedup_vs_first=1.0, mixed=False, speedup_same_engine=1.0)
    return {"task": one["task"], "models": [one["model"]], "runs": [one], "environment": one["environment"]}
