"""``retort report RUNS --out DIR``: the evidence page from run folders (made here by hand, small and
exact) and one real tiny run; the HTML references only files the report wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import error_lines
from retort.cli import main


def make_run(root: Path, task: str, label: str, seed: int, temperature: float = 2.0, quality: float = 0.8,
             kind: str = "distill", tag: str | None = None) -> Path:  # fmt: skip
    """A finished run folder as the trainer writes it: metrics (kept on --val-split, dev once), config,
    per-example dev predictions, a log with learned layer weights and per-evaluation losses."""
    rng = np.random.default_rng(seed * 100 + int(quality * 1000) + int(temperature * 10))
    path = root / f"{task}-{tag or label}-T{temperature:g}-s{seed}"
    path.mkdir(parents=True)
    gold = np.random.default_rng(0).integers(0, 2, 200)
    pred = np.where(rng.random(200) < quality, gold, 1 - gold)
    acc = float((pred == gold).mean())
    evals = [{"step": 10 * e, "epoch": e, "results": {"val": {"accuracy": acc, "score": acc}},
              "train_loss": 1.0 / e, "val_loss": {"loss": 1.2 / e, "loss/soft": 1.0 / e}}
             for e in (1, 2, 3)]  # fmt: skip
    cfg = {"task": task, "kind": kind, "seed": seed, "tag": tag, "student": "3x384",
           "objective": {"method": label, "temperature": temperature, "stage": "all"}}  # fmt: skip
    metrics = {"task": task, "kind": kind, "primary_metric": "accuracy", "best": evals[-1]["results"],
               "evals": evals, "dev_once": {"dev": {"accuracy": acc, "score": acc}}, "config": cfg}  # fmt: skip
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "dev_predictions.json").write_text(json.dumps({"dev": {"pred": pred.tolist(), "gold": gold.tolist()}}))
    if label == "multilevel":
        (path / "log.jsonl").write_text(json.dumps({"step": 30, "layer_weight/hidden/0": 0.8,
                                                    "layer_weight/hidden/1": 1.2}) + "\n")  # fmt: skip
    return path


def with_baseline(paths: list[Path], accuracy: float) -> None:
    """Give each run's metrics the majority-class dev accuracy the trainer records beside its scores."""
    for path in paths:
        m = json.loads((path / "metrics.json").read_text())
        m["baseline"] = {"dev": {"accuracy": accuracy}}
        (path / "metrics.json").write_text(json.dumps(m))


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "RTE", "teacher", 42, quality=0.9, kind="teacher")
    for seed in (42, 43, 44):
        make_run(root, "RTE", "multilevel", seed, quality=0.85)
        make_run(root, "RTE", "kd", seed, quality=0.7)
        for t in (1.0, 4.0):
            make_run(root, "RTE", "kd", seed, temperature=t, quality=0.7)
    make_run(root, "RTE", "multilevel", 42, quality=0.8, tag="multilevel-2stage")
    return root


def uncorrected_p_values(md: str) -> list[str]:
    """Every p-value column of every table of the page whose header or cells lack the Holm value beside it, and
    every sentence that states a p-value ("p = 0.03", "p < 0.05", "p 0.001")."""
    blocks = [b.strip("\n") for b in md.split("\n\n")]
    bad, tables = [], [b.splitlines() for b in blocks if b.startswith("|")]
    number, pair = r"\d*\.?\d+(?:e-?\d+)?", r"\d*\.?\d+(?:e-?\d+)? / \d*\.?\d+(?:e-?\d+)?"

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]

    for table in tables:
        header = cells(table[0])
        for i in (i for i, h in enumerate(header) if re.search(r"(?i)(^|\s)p(\b|[-_ ]?values?)", h)):
            if not header[i].endswith("/ Holm"):
                bad.append(f"column {header[i]!r}")
            for line in table[2:]:
                cell = cells(line)[i]
                if not (re.fullmatch(pair, cell) or cell == "-" or cell.startswith("n/a")):
                    bad.append(f"{header[i]!r} cell {cell!r}")
    prose = "\n".join(b for b in blocks if not b.startswith("|"))
    said = rf"(?i)\bp(?:[- ]?values?)?(?:\s+of)?\s*[=<>≤≥≈:]?\s*{number}"
    return bad + [m.group(0) for m in re.finditer(said, prose)]


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_report_page_from_runs(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--resamples", "199"]) == 0
    html = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    refs = referenced(html)
    assert refs and all(not r.startswith(("http:", "https:", "/", "//")) for r in refs), refs
    assert all((out / r).is_file() for r in refs), [r for r in refs if not (out / r).is_file()]
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {"img/stability.png", "img/temperature.png", "img/loss_curves.png"} <= written
    # Table 1: every method at the default temperature, three seeds; the variant by its tag
    assert set(data["table1"]) == {"teacher", "kd", "multilevel", "multilevel-2stage"}
    assert len(data["table1"]["kd"]["scores"]["RTE/dev/accuracy"]) == 3
    assert "± " in md and "Table 1" in md and "Figure 2" in md and "Figure 5" in md
    # the paper's Table 1 beside ours: its five rows, ours where the method ran, what differs said
    paper = data["paper_table1"]
    assert len(paper["paper"]) == 5 and paper["paper"]["TinyBERT"] == {"score": 86.1, "ms": 21.4, "f1": 85.0}
    assert (
        set(paper["ours"]) == {"multi-level alignment (theirs)"}
        and len(paper["ours"]["multi-level alignment (theirs)"]["average_x100"]) == 3
    )
    assert "The paper's Table 1 beside ours" in md and "only the loss differs" in md and "Yang et al." in md
    # paired tests against multilevel: kd on the three seeds both ran, a clear difference
    kd = next(t for t in data["paired_tests"] if t["method"] == "kd")
    seeds, examples = kd["seed_test"], kd["example_test"]
    assert kd["seeds"] == [42, 43, 44] and seeds["difference"] < 0 and examples["p_value"] < 0.05
    assert seeds["sign_flip_floor"] == 0.25 and seeds["holm_p"] >= seeds["t_p"] and examples["p_floor"] == 2 / 200
    assert seeds["sign_flip_holm_p"] >= seeds["sign_flip_p"] and examples["p_value"] >= examples["p_floor"]
    assert seeds["cohen_dz_ci"][0] < seeds["cohen_dz"] < seeds["cohen_dz_ci"][1]
    variant = next(t for t in data["paired_tests"] if t["method"] == "multilevel-2stage")
    assert variant["seeds"] == [42] and variant["seed_test"] is None  # one seed: no seed-level test
    # the page shows no p-value without its correction beside it: in any table, and in no sentence
    assert uncorrected_p_values(md) == [] and md[md.index("## Tests against") :].count("/ Holm") == 3
    assert "resamples: no two-sided p below 0.0100" in md  # 2 / (199 + 1): twice the least of one tail
    # the sweep: kd at T = 1, 2, 4 (multilevel ran at one temperature only)
    assert set(data["temperature"]["RTE"]) == {"kd"} and set(data["temperature"]["RTE"]["kd"]) == {"1.0", "2.0", "4.0"}
    assert data["layer_weights"]["multilevel/RTE/hidden"] == pytest.approx([0.8, 1.2])
    assert len(list((out / "configs").glob("*.yaml"))) == len(data["run_list"]) == 14
    # again: an earlier report is replaced
    assert main(["report", str(runs), "--out", str(out), "--resamples", "199"]) == 0


def test_report_of_a_real_run_has_its_loss_curves(tmp_path, glue_dir, tiny_model):
    from conftest import train_tiny_teacher

    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "teacher")
    for seed in ("1", "2"):
        assert main(["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(teacher / "model"),
                     "--student", "1x32", "--method", "multilevel", "--epochs", "2", "--threads", "1",
                     "--val-split", "12", "--seed", seed, "--no-progress",
                     "--out", str(tmp_path / "runs" / f"ml-{seed}")]) == 0  # fmt: skip
    out = tmp_path / "page"
    assert main(["report", str(tmp_path / "runs"), str(teacher), "--out", str(out), "--resamples", "99"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["curves"]["task"] == "STS-B" and len(data["curves"]["methods"]["multilevel"]) == 2
    assert data["temperature"] == {}  # STS-B: nothing to soften
    assert "†" in (out / "report.md").read_text()  # the teacher was selected on dev: marked
    # the mean predictor's correlations (0) beside the methods, from the runs' metrics.json
    assert data["baseline"] == {"STS-B/dev/pearson": 0.0, "STS-B/dev/spearman": 0.0}
    assert "baseline (majority class / mean)" in (out / "report.md").read_text()
    assert set(json.loads((tmp_path / "runs" / "ml-1" / "metrics.json").read_text())["baseline"]) == {"val", "dev"}


def test_report_refuses_bad_inputs(runs, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"retort report: error: {tmp_path / 'nowhere'}: no such run folder"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["report", str(runs), "--out", str(other)]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--force" in err[0]
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["report", str(runs), "--out", str(tmp_path / "r"), "--resamples", "0"]) == 2


def test_share_of_a_teacher_at_zero_is_not_a_division(tmp_path):
    """A teacher at chance (CoLA's MCC 0 on a small budget) has no share to divide by: the table says so."""
    root = tmp_path / "runs"
    teacher = make_run(root, "RTE", "teacher", 42, kind="teacher")
    metrics = json.loads((teacher / "metrics.json").read_text())
    metrics["dev_once"] = {"dev": {"accuracy": 0.0, "score": 0.0}}
    (teacher / "metrics.json").write_text(json.dumps(metrics))
    make_run(root, "RTE", "multilevel", 42)
    out = tmp_path / "report"
    with np.errstate(all="raise"):
        assert main(["report", str(root), "--out", str(out), "--resamples", "99"]) == 0
    assert "n/a (teacher ≤ 0)" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["share"]["multilevel"]["RTE"] is None


def test_run_folders_are_read_once_for_the_page_and_the_summary(tmp_path):
    """``records`` is the one reader: the summary table (``retort report`` without ``--out``) lists finished
    and unfinished folders, the page's loader keeps only runs with a task score and names rows apart."""
    from retort.errors import RetortError
    from retort.report.records import load_run, load_runs
    from retort.report.tables import summarize_runs

    root = tmp_path / "runs"
    done = make_run(root / "a", "RTE", "kd", 42)
    metrics = json.loads((done / "metrics.json").read_text())
    (done / "metrics.json").write_text(json.dumps({**metrics, "wall_seconds": 90.0, "train_samples_per_s": 12.0}))
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text("task: RTE\n")
    (root / "notes.txt").write_text("not a run")
    text = summarize_runs([str(done), str(root / "unfinished"), str(root / "notes.txt")])
    lines = text.splitlines()[2:]  # under the sentence that says what the summary shows
    assert len(lines) == 4 and lines[0].split()[:5] == ["run", "task", "method", "kind", "scored"]
    assert "best dev" not in text  # the run was kept on held-out rows: its dev score is measured once
    acc = f"{100 * metrics['dev_once']['dev']['accuracy']:.2f}"
    assert lines[2].split()[1:5] == ["RTE", "kd,", "3x384", "student"]
    assert f"accuracy {acc}" in lines[2] and " 1.5 " in lines[2]  # 90 s of training
    assert "(no metrics.json: unfinished?)" in lines[3]

    stage = make_run(root / "a", "RTE", "tinybert", 42)
    metrics = json.loads((stage / "metrics.json").read_text())
    metrics["config"]["objective"]["stage"] = "intermediate"
    (stage / "metrics.json").write_text(json.dumps(metrics))
    assert load_run(stage) is None  # an earlier stage of a two-stage method: not a row
    make_run(root / "b", "RTE", "kd", 42)  # the same label, task, seed and temperature again
    assert sorted(r.label for r in load_runs([str(root)])) == ["kd [RTE-kd-T2-s42]"] * 2
    (done / "metrics.json").write_text("{")
    with pytest.raises(RetortError, match="metrics.json: unreadable"):
        summarize_runs([str(done)])


def test_statistics_of_the_page():
    from retort.report.stats import mean_pm, mean_std, order_labels

    assert order_labels(["zeta", "multilevel", "kd+x", "teacher", "kd", "multilevel"]) == [
        "teacher", "kd", "kd+x", "multilevel", "zeta"]  # fmt: skip
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_pm([]) == "-" and mean_pm([0.5]) == "50.00" and mean_pm([0.5, 0.7]) == "60.00 ± 14.14"


def test_the_page_writes_its_own_caveats(tmp_path):
    """A teacher near the majority baseline, a run that predicts one class, a seed at the baseline: each said."""
    root = tmp_path / "runs"
    paths = [make_run(root, "RTE", "teacher", 42, quality=0.6, kind="teacher"),
             make_run(root, "RTE", "kd", 42, quality=0.9), make_run(root, "RTE", "kd", 43, quality=0.5)]  # fmt: skip
    constant = root / "RTE-kd-T2-s42" / "dev_predictions.json"
    record = json.loads(constant.read_text())
    record["dev"]["pred"] = [1] * len(record["dev"]["pred"])
    constant.write_text(json.dumps(record))
    with_baseline(paths, 0.55)
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--resamples", "19"]) == 0
    said = json.loads((out / "report.json").read_text())["caveats"]
    assert any(
        "RTE: the teacher's accuracy 0.5900 is within 10 points" in c and "no method can be ranked on RTE" in c
        for c in said
    )
    assert any("kd seed 42 predicts the same for every dev example" in c for c in said)
    collapsed = "RTE: 1 run(s) collapsed, their accuracy at or below the majority baseline's 0.5500: kd seed 43"
    assert collapsed + " (0.4550)." in said, said
    assert "What the data say this table cannot show" in (out / "report.md").read_text()


def test_the_temperature_sweep_says_what_it_cannot_show(tmp_path):
    """A sweep on a task whose teacher is near the majority baseline, with one temperature's run at that
    baseline: Figure 2's notes say both, each run named with its temperature."""
    root = tmp_path / "runs"
    paths = [make_run(root, "RTE", "teacher", 42, quality=0.6, kind="teacher"), make_run(root, "RTE", "kd", 42),
             make_run(root, "RTE", "kd", 42, temperature=4.0, quality=0.5)]  # fmt: skip
    with_baseline(paths, 0.55)
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--resamples", "19"]) == 0
    said = json.loads((out / "report.json").read_text())["temperature_caveats"]
    assert any("RTE: its teacher is within 10 points of the majority baseline" in c for c in said), said
    assert any(c.startswith("RTE: 1 run(s) collapsed") and c.endswith(": kd at T 4 seed 42 (0.5400).") for c in said), (
        said
    )
    md = (out / "report.md").read_text()
    assert "What the data say this figure cannot show" in md
    assert "| RTE | baseline (majority class) | - | - | accuracy 55.00 | - | - |" in md  # the floor in the table too


def test_a_task_with_two_dev_sets_says_which_one_each_view_reads(tmp_path):
    """MNLI has two dev sets: Table 1 shows both; the share table, the figures and the tests read the first,
    and each names it; the page says so in words."""
    root = tmp_path / "runs"
    paths = [make_run(root, "MNLI", "teacher", 42, quality=0.95, kind="teacher")]
    methods = (("multilevel", 0.85), ("kd", 0.75))
    paths += [make_run(root, "MNLI", m, s, quality=q) for s in (42, 43) for m, q in methods]
    for path in paths:  # dev_matched as the trainer scored it, dev_mismatched a point lower
        m = json.loads((path / "metrics.json").read_text())
        acc = m["dev_once"]["dev"]["accuracy"]
        m["dev_once"] = {"dev_matched": {"accuracy": acc, "score": acc},
                         "dev_mismatched": {"accuracy": acc - 0.01, "score": acc - 0.01}}  # fmt: skip
        m["baseline"] = {"dev_matched": {"accuracy": 0.35}, "dev_mismatched": {"accuracy": 0.36}}
        (path / "metrics.json").write_text(json.dumps(m))
        pred = json.loads((path / "dev_predictions.json").read_text())["dev"]
        (path / "dev_predictions.json").write_text(json.dumps({"dev_matched": pred, "dev_mismatched": pred}))
        if path.name.startswith("MNLI-kd"):  # kd exactly 5 points under multilevel on every seed: no spread
            ml = json.loads((root / path.name.replace("-kd-", "-multilevel-") / "metrics.json").read_text())
            m["dev_once"]["dev_matched"] = {k: v - 0.05 for k, v in ml["dev_once"]["dev_matched"].items()}
            (path / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--resamples", "19"]) == 0
    md = (out / "report.md").read_text()
    table1 = md[md.index("## Table 1") :]
    assert table1.splitlines()[4].startswith("| method | seeds | MNLI accuracy (dev_matched) | MNLI accuracy (dev_mi")
    assert "| baseline (majority class / mean) | - | 35.00 | 36.00 |" in md
    assert "MNLI has more than one dev set: Table 1 shows each; the share table, the figures, the tests" in md
    assert "| method | MNLI accuracy (dev_matched) |" in md[md.index("### Share") :]
    assert "| kd | MNLI | accuracy (dev_matched) | 2 |" in md[md.index("## Tests against") :]
    assert uncorrected_p_values(md) == [] and "| n/a: no spread over seeds |" in md
    # report.json is strict JSON: the infinite d_z of a difference with no spread is null, not Infinity
    data = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"report.json has {c}"))
    kd = next(t for t in data["paired_tests"] if t["method"] == "kd")["seed_test"]
    assert kd["t_p"] is None and kd["holm_p"] is None and kd["cohen_dz"] is None and kd["sign_flip_comparisons"] == 1


def test_figures_fit_the_page_and_start_at_the_baseline(tmp_path):
    """Six tasks make a 3-column grid no wider than the page (about 1,000 px at 100 dpi), each panel's axis
    starting at or under the majority line it draws; Figure 4 names a bench row by its run and backend."""
    from retort.report import charts
    from retort.report.records import bench_name, load_run

    tasks = ["CoLA", "SST-2", "MRPC", "STS-B", "MNLI", "RTE"]
    runs = {t: load_run(make_run(tmp_path / "r", t, "kd", 42, quality=0.8)) for t in tasks}
    fig = charts.stability({"kd": {t: [runs[t]] for t in tasks}}, {}, tasks, {t: 0.5 for t in tasks})
    width, height = fig.get_size_inches() * 100
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert width <= 1000 and height < width and len(visible) == 6
    for ax in visible:
        lo, _ = ax.get_ylim()
        assert lo <= 0.5 and any(list(line.get_ydata()) == [0.5, 0.5] for line in ax.get_lines())
    bench = {"model": str(runs["RTE"].path / "onnx"), "backend": "onnx", "quantization": "int8-dynamic"}
    assert bench_name(bench, [runs["RTE"]]) == "kd RTE, ONNX int8"
    assert bench_name({**bench, "model": "/x/MRPC/model", "backend": "torch", "quantization": "none"}, []) == (
        "x/MRPC, PyTorch fp32"
    )
    export = {
        "model": "/x/exports/RTE-kd-int8",
        "source_model": str(runs["RTE"].path / "model"),
        "backend": "onnxruntime",
        "quantization": "int8-dynamic",
    }  # an export outside the run: its source's
    assert bench_name(export, [runs["RTE"]]) == "kd RTE, ONNX int8"
    swept = load_run(make_run(tmp_path / "r", "RTE", "kd", 42, temperature=4.0))
    assert bench_name({**export, "source_model": str(swept.path / "model")}, [swept]) == "kd T 4 RTE, ONNX int8"
    for stored in ("none (fp32)", "none (fp32; file F16)"):  # what retort bench writes: run in fp32 either way
        assert bench_name({**bench, "model": "/x/MRPC/model", "backend": "torch", "quantization": stored}, []) == (
            "x/MRPC, PyTorch fp32"
        )


def test_a_teacher_near_the_baseline_in_a_metric_it_is_not_ranked_by_is_said(tmp_path):
    """Runs ranked by accuracy (their primary metric here; real MRPC runs keep their epoch on F1 and are ranked
    by it): a teacher 10+ points above the majority class there but not in F1 is ranked, and the page says that
    its F1 column cannot tell methods apart."""
    root = tmp_path / "runs"
    for path in [make_run(root, "MRPC", "teacher", 42, quality=0.9, kind="teacher"),
                 make_run(root, "MRPC", "kd", 42, quality=0.85)]:  # fmt: skip
        m = json.loads((path / "metrics.json").read_text())
        m["dev_once"]["dev"]["f1"] = 0.83
        m["baseline"] = {"dev": {"accuracy": 0.68, "f1": 0.81}}
        (path / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--resamples", "19"]) == 0
    said = json.loads((out / "report.json").read_text())["caveats"]
    assert any("MRPC: the teacher's f1 0.8300 is within 10 points of the majority baseline's 0.8100" in c and
               "ranked by accuracy" in c for c in said), said  # fmt: skip
    assert not any("no method can be ranked on MRPC" in c for c in said)


def test_a_task_with_a_weak_teacher_is_left_out_of_the_tests_and_the_average(tmp_path):
    """RTE's teacher is within 10 points of the majority class, SST-2's is not: the tests (and their Holm
    family) and the average are over SST-2 only; RTE's column stays in Table 1 and the page says why."""
    root = tmp_path / "runs"
    paths = [make_run(root, "RTE", "teacher", 42, quality=0.6, kind="teacher"),
             make_run(root, "SST-2", "teacher", 42, quality=0.95, kind="teacher")]  # fmt: skip
    for seed in (42, 43):
        for task in ("RTE", "SST-2"):
            paths += [make_run(root, task, "multilevel", seed, quality=0.85), make_run(root, task, "kd", seed,
                                                                                       quality=0.75)]  # fmt: skip
    with_baseline(paths, 0.55)
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--resamples", "19"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["unranked"] == ["RTE"]
    assert {t["task"] for t in data["paired_tests"]} == {"SST-2"}
    assert all(t["seed_test"]["comparisons"] == 1 for t in data["paired_tests"])
    sst2 = {s: json.loads((root / f"SST-2-kd-T2-s{s}" / "metrics.json").read_text())["dev_once"]["dev"]["accuracy"]
            for s in (42, 43)}  # fmt: skip
    assert data["table1"]["kd"]["average"] == pytest.approx(list(sst2.values()))  # RTE not averaged in
    page = (out / "report.md").read_text()
    assert "average (ranked tasks)" in page and "Not tested, and not in the correction's family: RTE" in page
    assert "| teacher (RTE, not ranked) |" in page and "| teacher (SST-2) |" in page


def test_a_run_kept_without_its_model_shows_the_timing_of_a_run_of_its_shape(tmp_path):
    """Every method's student has one shape: a run whose weights were not kept takes the bench timing of a
    timed run of its task with the same student options and parameters (a task head apart), which it names;
    another task (other texts) or another shape does not."""
    from retort.report.records import attach_bench, load_run

    root = tmp_path / "r"
    runs = [load_run(make_run(root, "RTE", m, 42)) for m in ("kd", "multilevel")] + [
        load_run(make_run(root, "MRPC", "kd", 43))]  # fmt: skip
    other = load_run(make_run(root, "RTE", "tinybert", 42))
    for r, n in zip([*runs, other], (17_390_209, 17_390_209, 17_390_594, 11_000_000)):
        r.metrics["parameters"] = n
    bench = [{"model": str(runs[0].model), "backend": "torch", "ms": {(1, 1): 4.0}, "peak_rss_mb": 300.0,
              "cpu": "X", "threads": 1}]  # fmt: skip
    attach_bench([*runs, other], bench)
    assert runs[0].bench == {"ms_b1": 4.0, "peak_rss_mb": 300.0, "cpu": "X", "threads": 1}
    assert runs[1].bench["ms_b1"] == 4.0 and runs[1].bench["stand_in"] == "kd RTE seed 42"
    assert runs[2].bench == {} and other.bench == {}  # another task's texts; another shape
    linear = load_run(make_run(root, "RTE", "distilbert", 42))
    linear.config["attention"], linear.metrics["parameters"] = "linear", 17_390_209  # same parameters, other speed
    attach_bench([runs[0], linear], bench)
    assert linear.bench == {}
