"""Issue #14's numbers: exported students against their teacher, as they will run on a CPU.

Parts (each resumable: an export that exists is reused, its record read back):

* ``stsb``: the STS-B teacher and the 3x384 multilevel student, each as PyTorch fp32, ONNX fp32 and ONNX
  int8 (dynamic, and static), plus the student through the plain recipe (``plain_onnx.py``), in ONE
  ``retort bench`` command (threads 2 and 1, batch 1 and 32, tokenisation included, each model in its
  own process, smallest memory cap); dev Pearson of every exported file through onnxruntime.
* ``cls``: the same for a classification task (MRPC teacher and student; accuracy and F1).
* ``dse``: a DSE bi-encoder exported to int8: dev Spearman against the PyTorch bi-encoder, and
  ``retort dse index`` / ``search`` over 10,000 candidates (STS-B and MNLI dev sentences).
* ``temperature``: students distilled at T = 1, 3, 5, PyTorch and int8, each listed twice in one bench
  command, so the table shows the run-to-run spread beside any difference between temperatures.

    python experiments/deploy_study.py --glue-dir ../shared/data/glue --out runs/deploy \\
        --json docs/data/deploy.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from harness import Option, add, parser

from retort.report.tables import table as text_table

RETORT = [sys.executable, "-m", "retort"]
HERE = Path(__file__).resolve().parent


def sh(args: list, log: Path | None = None) -> str:
    """Run a command, printed first; its output kept in ``log`` if given. Stops the script if it fails;
    returns its stdout."""
    print("$ " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True)
    if log:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(map(str, args))}\n{done.stderr[-3000:]}")
    return done.stdout


def export(model: Path, out: Path, quantize: str, glue_dir: str, threads: int) -> dict:
    """``retort export`` of ``model`` into ``out`` (once); its export record."""
    if not (out / "retort_export.json").is_file():
        sh([*RETORT, "export", "--model", model, "--out", out, "--quantize", quantize, "--glue-dir", glue_dir,
            "--threads", threads])  # fmt: skip
    return json.loads((out / "retort_export.json").read_text())


def plain(model: Path, out: Path) -> dict:
    """The plain recipe's export (``plain_onnx.py``) of ``model`` into ``out`` (once); its record."""
    if not (out / "retort_export.json").is_file():
        sh([sys.executable, HERE / "plain_onnx.py", "--model", model, "--out", out])
    return json.loads((out / "retort_export.json").read_text())


def evaluate(model: Path, task: str, glue_dir: str, out: Path) -> dict:
    """``retort eval`` of ``model`` on ``task`` (once, kept in ``out``); its results by split."""
    if not out.is_file():
        sh([*RETORT, "eval", "--task", task, "--model", model, "--glue-dir", glue_dir, "--threads", "2", "--json", out])
    return json.loads(out.read_text())["results"]


def bench(models: list[Path], task: str, glue_dir: str, out: Path, extra: list[str]) -> dict:
    """One ``retort bench`` of ``models`` (once, kept in ``out``); its record."""
    if not out.is_file():
        sh([*RETORT, "bench", "--model", *models, "--task", task, "--glue-dir", glue_dir, "--json", out, *extra])
    return json.loads(out.read_text())


def latency(result: dict, model: Path, threads: int, batch: int) -> float:
    """A bench record's ms/sample (p50) of one model at one thread count and batch size; nan if absent."""
    for r in result["runs"]:
        if r["model"] == str(model) and r["environment"]["threads"] == threads:
            for lat in r["latency"]:
                if lat["batch_size"] == batch:
                    return lat["ms_per_sample_p50"]
    return float("nan")


def model_table(set_name, rows, result, task_metric, base: Path) -> list[dict]:
    """One row per model: dev score(s), ms/sample at (2, 1) threads x (1, 32), peak MiB, file MiB, cap."""
    table = []
    for name, folder, scores in rows:
        run = next(r for r in result["runs"] if r["model"] == str(folder))
        row = {"set": set_name, "model": name, "folder": str(folder), "scores": scores}
        for t in (2, 1):
            for b in (1, 32):
                row[f"ms_t{t}_b{b}"] = latency(result, folder, t, b)
                row[f"speedup_t{t}_b{b}"] = latency(result, base, t, b) / row[f"ms_t{t}_b{b}"]
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in result["runs"] if r["model"] == str(folder))
        row["file_mb"] = run["file_mb"]
        row["memory_cap_mb"] = (run.get("memory_cap") or {}).get("smallest_cap_mb")
        table.append(row)
    return table


def markdown(table: list[dict], metrics: list[str]) -> str:
    """The rows of ``model_table`` as a Markdown table."""
    head = ["model", *metrics, "ms b1 2t", "x teacher", "ms b32 2t", "ms b1 1t", "ms b32 1t", "peak MiB", "file MiB"]
    head.append("min cap MiB")
    rows = []
    for r in table:
        cells = [r["model"], *(f"{r['scores'].get(m, float('nan')):.4f}" for m in metrics)]
        cells += [f"{r['ms_t2_b1']:.3f}", f"{r['speedup_t2_b1']:.2f}x", f"{r['ms_t2_b32']:.3f}"]
        cells += [f"{r['ms_t1_b1']:.3f}", f"{r['ms_t1_b32']:.3f}", f"{r['peak_rss_mb']:.0f}", f"{r['file_mb']:.1f}"]
        cells.append(str(r["memory_cap_mb"]) if r["memory_cap_mb"] else "-")
        rows.append(cells)
    return text_table(head, rows, markdown=True)


def flat(results: dict) -> dict:
    """{split: {metric: v}} -> {metric: v} (one dev split) or {split/metric: v}."""
    if len(results) == 1:
        return dict(next(iter(results.values())))
    return {f"{s}/{m}": v for s, r in results.items() for m, v in r.items()}


def part_models(name, task, teacher, student, args, metrics, static=True, plain_recipe=True) -> dict:
    """A teacher and its student as PyTorch and every export, scored and timed in one bench; prints the table."""
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for who, folder in (("teacher", teacher), ("student", student)):
        scores = flat(evaluate(folder, task, args.glue_dir, out / f"{who}-torch-eval.json"))
        rows.append((f"{who} PyTorch fp32", folder, scores))
        quants = ["none", "int8-dynamic"] + (["int8-static"] if static else [])
        for q in quants:
            rec = export(folder, out / f"{who}-{q}", q, args.glue_dir, 2)
            rows.append(
                (f"{who} ONNX {'fp32' if q == 'none' else q}", out / f"{who}-{q}", flat(rec["evaluation"]["export"]))
            )
        if who == "student" and plain_recipe:
            plain(folder, out / "student-plain-int8")
            scores = flat(evaluate(out / "student-plain-int8", task, args.glue_dir, out / "student-plain-eval.json"))
            rows.append(("student ONNX int8, plain recipe", out / "student-plain-int8", scores))
    models = [r[1] for r in rows]
    extra = ["--threads", "2", "1", "--batch-sizes", "1", "32", "--samples", str(args.samples)]
    if args.memory_cap:
        extra.append("--memory-cap")
    result = bench(models, task, args.glue_dir, out / "bench.json", extra)
    table = model_table(name, rows, result, metrics, teacher)
    print(markdown(table, metrics))
    return {"task": task, "table": table, "bench": str(out / "bench.json"), "environment": result["environment"]}


def part_dse(args) -> dict:
    """A DSE bi-encoder exported to int8: dev scores of both, index and search over the candidates with both."""
    out = Path(args.out) / "dse"
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(args.dse)
    torch_scores = flat(evaluate(folder, "STS-B", args.glue_dir, out / "torch-eval.json"))
    rec = export(folder, out / "int8", "int8-dynamic", args.glue_dir, 2)
    # 10,000 candidates: distinct dev sentences of STS-B and MNLI (matched, mismatched)
    cands = out / "candidates.txt"
    if not cands.is_file():
        from retort.data.tasks import load_split

        seen, texts = set(), []
        for task, split in (("STS-B", "dev"), ("MNLI", "dev_matched"), ("MNLI", "dev_mismatched")):
            for ex in load_split(task, split, args.glue_dir).examples:
                for t in ex.texts:
                    t = t.strip()
                    if t and t not in seen:
                        seen.add(t)
                        texts.append(t)
        if len(texts) < args.candidates:
            sys.exit(f"only {len(texts)} distinct dev sentences, fewer than --candidates {args.candidates}")
        cands.write_text("\n".join(texts[: args.candidates]) + "\n", encoding="utf-8")
    timings = {}
    for who, model in (("torch", folder), ("onnx-int8", out / "int8")):
        t0 = time.perf_counter()
        sh([*RETORT, "dse", "index", "--model", model, "--candidates", cands, "--out", out / f"index-{who}",
            "--threads", "2"])  # fmt: skip
        timings[f"{who}_index_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sh([*RETORT, "dse", "search", "--index", out / f"index-{who}", "--query", "A man is playing a guitar.",
            "-k", "5", "--threads", "2", "--json", out / f"hits-{who}.json"])  # fmt: skip
        timings[f"{who}_search_command_s"] = time.perf_counter() - t0
    hits = {w: json.loads((out / f"hits-{w}.json").read_text())["results"][0] for w in ("torch", "onnx-int8")}
    n = sum(1 for _ in open(cands, encoding="utf-8"))
    record = {
        "candidates": n,
        "torch": torch_scores,
        "onnx_int8": flat(rec["evaluation"]["export"]),
        "spearman_drop_points": 100 * (torch_scores["spearman"] - flat(rec["evaluation"]["export"])["spearman"]),
        "timings": timings,
        "top5_torch": [h["text"] for h in hits["torch"]],
        "top5_onnx_int8": [h["text"] for h in hits["onnx-int8"]],
    }
    print(json.dumps(record, indent=2))
    return record


def part_temperature(args) -> dict:
    """Students distilled at several temperatures, PyTorch and int8, each timed twice in one bench."""
    out = Path(args.out) / "temperature"
    out.mkdir(parents=True, exist_ok=True)
    rows, models = [], []
    for folder in map(Path, args.temperature_students):
        cfg = json.loads((folder.parent / "metrics.json").read_text())["config"]
        t = cfg["objective"]["temperature"]
        q = export(folder, out / f"T{t:g}-int8", "int8-dynamic", args.glue_dir, 2)
        rows.append({"temperature": t, "torch": str(folder), "int8": str(out / f"T{t:g}-int8"),
                     "int8_scores": flat(q["evaluation"]["export"]),
                     "torch_scores": flat(q["evaluation"]["source"])})  # fmt: skip
        models += [folder, out / f"T{t:g}-int8"]
    extra = ["--threads", "2", "--batch-sizes", "1", "32", "--samples", str(args.samples)]
    result = bench(models + models, args.temperature_task, args.glue_dir, out / "bench.json", extra)
    for r in rows:
        for kind in ("torch", "int8"):
            runs = [x for x in result["runs"] if x["model"] == r[kind]]
            for b in (1, 32):
                vals = [lat["ms_per_sample_p50"] for x in runs for lat in x["latency"] if lat["batch_size"] == b]
                r[f"{kind}_ms_b{b}"] = vals  # two runs of the same model: the spread
    for r in rows:
        print(
            f"T={r['temperature']}: torch b1 {r['torch_ms_b1']} b32 {r['torch_ms_b32']}; "
            f"int8 b1 {r['int8_ms_b1']} b32 {r['int8_ms_b32']}; int8 {r['int8_scores']}"
        )
    return {"task": args.temperature_task, "rows": rows, "environment": result["environment"]}


OWN_OPTIONS = (
    Option(
        "--parts",
        "parts to measure",
        default=["stsb", "cls", "dse", "temperature"],
        choices=("stsb", "cls", "dse", "temperature"),
    ),  # fmt: skip
    Option(
        "--student", "the STS-B student's model folder", default="runs/demo/student-3x384/model", key="student_model"
    ),  # fmt: skip
    Option("--cls-task", "the classification task", default="MRPC"),
    Option("--cls-teacher", "its teacher's model folder", default="runs/teachers/MRPC/model"),
    Option("--cls-student", "its student's model folder", default="runs/mrpc-multilevel/model"),
    Option("--dse", "a DSE bi-encoder's model folder", default="runs/dse-stsb/model"),
    Option("--candidates", "candidate sentences of the index", type=int, default=10000, low=1, key="candidate_count"),
    Option("--temperature-task", "the task of the temperature students", default="MRPC"),
    Option(
        "--temperature-students",
        "model folders of students distilled at several temperatures",
        default=[f"runs/temp/T{t}/model" for t in (1, 3, 5)],
    ),  # fmt: skip
    Option("--no-memory-cap", "skip the smallest-memory-cap search", type=None),
)


def main(argv: list[str] | None = None) -> int:
    """Measure the parts asked for, update the JSON."""
    p = parser(__doc__)
    add(p, "glue_dir", "out", "json", "parts", "teacher", "student_model", "cls_task", "cls_teacher", "cls_student",
        "dse", "candidate_count", "temperature_task", "temperature_students", "samples", "no_memory_cap",
        own=OWN_OPTIONS, required=["glue_dir"], many=["parts", "temperature_students"],
        defaults={"out": "runs/deploy", "json": "docs/data/deploy.json",
                  "teacher": "runs/demo/teacher/model"})  # fmt: skip
    args = p.parse_args(argv)
    args.memory_cap = not args.no_memory_cap
    path = Path(args.json)
    record = json.loads(path.read_text()) if path.is_file() else {}
    if "stsb" in args.parts:
        record["stsb"] = part_models(
            "stsb", "STS-B", Path(args.teacher), Path(args.student), args, ["pearson", "spearman"]
        )
    if "cls" in args.parts:
        record["cls"] = part_models(
            "cls", args.cls_task, Path(args.cls_teacher), Path(args.cls_student), args, ["accuracy", "f1"],
            static=False, plain_recipe=False,
        )  # fmt: skip
    if "dse" in args.parts:
        record["dse"] = part_dse(args)
    if "temperature" in args.parts:
        record["temperature"] = part_temperature(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
