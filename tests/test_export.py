"""retort export: ONNX equals PyTorch, int8 keeps the predictions, the export folder is evaluated and
searched without torch, and bad targets leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import error_lines, train_tiny_teacher
from retort.cli import main
from retort.data.tasks import load_split
from retort.deploy import runtime
from retort.errors import RetortError

pytestmark = pytest.mark.filterwarnings("ignore")


def _distill(glue_dir, teacher, out, task, command, *extra) -> Path:
    args = [*command, "--task", task, "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--student", "2x32"]
    args += ["--epochs", "1", "--threads", "1", "--no-progress", "--out", str(out), *extra]
    assert main(args) == 0
    return out / "model"


@pytest.fixture(scope="module")
def models(tmp_path_factory, glue_dir, tiny_model) -> dict[str, Path]:
    """Tiny trained folders of every kind retort exports."""
    root = tmp_path_factory.mktemp("export-models")
    found = {}
    for task in ("STS-B", "MRPC"):
        train_tiny_teacher(glue_dir, tiny_model, root / f"teacher-{task}", task)
        found[f"teacher-{task}"] = root / f"teacher-{task}" / "model"
    t = found["teacher-MRPC"]
    found["student"] = _distill(glue_dir, t, root / "student", "MRPC", ["distill"], "--method", "multilevel")
    found["linear"] = _distill(
        glue_dir, t, root / "linear", "MRPC", ["distill"], "--attention", "linear", "--feature-map", "hedgehog"
    )
    found["dse-STS-B"] = _distill(glue_dir, found["teacher-STS-B"], root / "dse-sts", "STS-B", ["dse", "train"])
    found["dse-MRPC"] = _distill(glue_dir, t, root / "dse-mrpc", "MRPC", ["dse", "train"])
    return found


def export(model: Path, out: Path, glue_dir: Path, *extra: str) -> int:
    return main(["export", "--model", str(model), "--out", str(out), "--glue-dir", str(glue_dir), *extra])


def padded_batches(glue_dir, task, encoder, pairs=True):
    rows = [ex.texts for ex in load_split(task, "dev", glue_dir).examples]
    rows = rows if pairs else [(r[0],) for r in rows]
    return [encoder(rows[s : s + 7]) for s in range(0, len(rows), 7)]


@pytest.mark.parametrize("name", ["teacher-STS-B", "student", "linear", "dse-STS-B", "dse-MRPC"])
def test_onnx_fp32_equals_pytorch_on_padded_batches(models, glue_dir, tmp_path, name):
    from retort.deploy.export import ExportGraph, load_source

    out = tmp_path / "x"
    assert export(models[name], out, glue_dir, "--no-eval") == 0
    meta = json.loads((out / runtime.META_NAME).read_text())
    task = meta["task"]
    model, kind = load_source(models[name], task)
    graph = ExportGraph(model).eval()
    onnx_model = runtime.OnnxModel(out)
    batches = padded_batches(glue_dir, task, onnx_model.encoder, pairs=kind == "classifier")
    assert any((b["attention_mask"] == 0).any() for b in batches)  # padding is exercised
    with torch.inference_mode():
        for b in batches:
            ref = graph(*(torch.from_numpy(b[n]) for n in runtime.INPUTS)).numpy()
            np.testing.assert_allclose(onnx_model.run(b), ref, atol=1e-4)
    if name.startswith("dse"):  # the numpy pair head equals BiEncoder.score
        u, v = torch.randn(5, meta["embedding_dim"]), torch.randn(5, meta["embedding_dim"])
        with torch.inference_mode():
            ref = model.score(u, v).numpy()
        np.testing.assert_allclose(onnx_model.score(u.numpy(), v.numpy()), ref, atol=1e-5)
    assert meta["sha256"] == runtime.sha256(out / runtime.MODEL_NAME)
    assert {"opset", "quantization", "versions", "label_names", "source_model"} <= set(meta)


def test_tokenizer_matches_transformers(models, glue_dir):
    from retort.models.hf import load_tokenizer

    folder = models["teacher-MRPC"]
    hf = load_tokenizer(str(folder))
    ours = runtime.TextEncoder(folder, 16)
    rows = [ex.texts for ex in load_split("MRPC", "dev", glue_dir).examples]
    for (a, b), enc in zip(rows, ours.encode(rows)):
        want = hf(a, b, truncation=True, max_length=16)
        assert enc.ids == want["input_ids"] and enc.type_ids == want["token_type_ids"]


@pytest.mark.parametrize("how", ["int8-dynamic", "int8-static"])
@pytest.mark.parametrize("name", ["teacher-MRPC", "student", "linear"])
def test_int8_keeps_the_argmax(models, glue_dir, tmp_path, name, how):
    fp32, q = tmp_path / "fp32", tmp_path / "q"
    assert export(models[name], fp32, glue_dir, "--no-eval") == 0
    assert export(models[name], q, glue_dir, "--quantize", how, "--calibration-rows", "48") == 0
    rows = [ex.texts for ex in load_split("MRPC", "train", glue_dir).examples]
    a = runtime.OnnxModel(fp32).predict_logits(rows).argmax(-1)
    b = runtime.OnnxModel(q).predict_logits(rows).argmax(-1)
    assert (a == b).mean() >= 0.95
    meta = json.loads((q / runtime.META_NAME).read_text())
    assert meta["quantization"] == how and "f1" in meta["evaluation"]["export"]["dev"]


def test_eval_and_dse_of_an_export_never_import_torch(models, glue_dir, tmp_path):
    cls, bi = tmp_path / "cls", tmp_path / "bi"
    assert export(models["student"], cls, glue_dir, "--quantize", "int8-dynamic") == 0
    assert export(models["dse-STS-B"], bi, glue_dir, "--quantize", "int8-dynamic") == 0
    cands = tmp_path / "cands.txt"
    cands.write_text("\n".join(ex.texts[1] for ex in load_split("STS-B", "dev", glue_dir).examples) + "\n")
    code = f"""
import json, sys
from retort.cli import main
assert main(["eval", "--task", "MRPC", "--model", {str(cls)!r}, "--glue-dir", {str(glue_dir)!r}]) == 0
assert main(["dse", "index", "--model", {str(bi)!r}, "--candidates", {str(cands)!r},
             "--out", {str(tmp_path / "idx")!r}]) == 0
assert main(["dse", "search", "--index", {str(tmp_path / "idx")!r}, "--query", "A cat plays.", "-k", "3",
             "--json", {str(tmp_path / "hits.json")!r}]) == 0
assert main(["bench", "--model", {str(cls)!r}, "--task", "MRPC", "--glue-dir", {str(glue_dir)!r}, "--threads", "1",
             "--batch-sizes", "1", "4", "--samples", "8", "--json", {str(tmp_path / "b.json")!r}]) == 0
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(json.dumps(leaked))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    ev = json.loads((cls / "eval_dev.json").read_text())
    meta = json.loads((cls / runtime.META_NAME).read_text())
    assert ev["results"]["dev"] == pytest.approx(meta["evaluation"]["export"]["dev"])
    hits = json.loads((tmp_path / "hits.json").read_text())["results"][0]
    assert len(hits) == 3 and hits[0]["score"] >= hits[2]["score"]
    # the same index searched through the PyTorch bi-encoder ranks alike (fp32 vs int8 embeddings)
    assert main(["dse", "index", "--model", str(models["dse-STS-B"]), "--candidates", str(cands), "--out",
                 str(tmp_path / "idx-torch")]) == 0  # fmt: skip
    bench = json.loads((tmp_path / "b.json").read_text())
    assert bench["backend"] == "onnxruntime" and [r["batch_size"] for r in bench["latency"]] == [1, 4]


def test_max_drop_refuses_and_writes_nothing(models, glue_dir, tmp_path, monkeypatch, capsys):
    from retort.deploy import export as exporting

    real = exporting.evaluate_folder

    def worse(folder, *a, **k):  # the export scores half a point below what it does
        out = real(folder, *a, **k)
        if runtime.is_export_folder(folder):
            for r in out["results"].values():
                r["f1"] -= 0.5
        return out

    monkeypatch.setattr(exporting, "evaluate_folder", worse)
    out = tmp_path / "x"
    assert export(models["student"], out, glue_dir, "--quantize", "int8-dynamic", "--max-drop", "0.01") == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--max-drop 0.01" in err[0] and "Traceback" not in err[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_one_evaluation_path_for_pytorch_and_export_folders(models, glue_dir, tmp_path):
    """``evaluate_folder`` takes either kind: the same record (an export adds its backend and quantisation),
    the export's own task and length when none are given, and fp32 scores equal to PyTorch's."""
    from retort.evaluation.folder import evaluate_folder

    out = tmp_path / "x"
    assert export(models["student"], out, glue_dir, "--no-eval", "--max-length", "64") == 0
    torch_ev = evaluate_folder(str(models["student"]), "MRPC", glue_dir=str(glue_dir), max_length=64, threads=1)
    onnx_ev = evaluate_folder(str(out), None, glue_dir=str(glue_dir), threads=1)
    assert list(torch_ev) == ["task", "model", "split", "results", "baseline", "examples", "seconds", "threads"]
    assert list(onnx_ev) == ["task", "model", "backend", "quantization", *list(torch_ev)[2:]]
    assert (onnx_ev["task"], onnx_ev["backend"], onnx_ev["quantization"]) == ("MRPC", "onnxruntime", "none")
    assert onnx_ev["examples"] == torch_ev["examples"] and onnx_ev["threads"] == torch_ev["threads"] == 1
    assert onnx_ev["results"]["dev"] == pytest.approx(torch_ev["results"]["dev"], abs=1e-6)
    with pytest.raises(RetortError, match="exported for MRPC, not RTE"):
        evaluate_folder(str(out), "RTE", glue_dir=str(glue_dir))


@pytest.mark.parametrize(
    "case",
    ["non-empty", "file", "unwritable", "bad-quantize", "bad-format", "bad-length", "no-model", "wrong-task", "drop"],
)
def test_bad_export_targets_are_one_line_and_change_nothing(models, glue_dir, tmp_path, capsys, case):
    target, extra = tmp_path / "out", []
    if case == "non-empty":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif case == "file":
        target.write_text("mine")
    elif case == "unwritable":
        if os.geteuid() == 0:
            target = Path("/proc/retort-export")  # even root cannot write there
        else:
            tmp_path.chmod(0o500)
    extra = {
        "bad-quantize": ["--quantize", "int4"],
        "bad-format": ["--format", "tflite"],
        "bad-length": ["--max-length", "100000"],
        "wrong-task": ["--task", "RTE"],
        "drop": ["--max-drop", "-1"],
    }.get(case, [])
    model = tmp_path / "nope" if case == "no-model" else models["student"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} if case != "unwritable" else {}
    try:
        assert export(model, target, glue_dir, *extra) == 2
    finally:
        tmp_path.chmod(0o700)
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("retort export: error:"), err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary folder left


def test_force_replaces_and_bench_compares_backends(models, glue_dir, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert export(models["student"], out, glue_dir, "--quantize", "int8-dynamic", "--force", "--no-eval") == 0
    assert not (out / "old.txt").exists() and (out / runtime.MODEL_NAME).is_file()
    res = tmp_path / "bench.json"
    args = ["bench", "--model", str(models["student"]), str(out), "--task", "MRPC", "--glue-dir", str(glue_dir)]
    args += ["--threads", "1", "--batch-sizes", "1", "8", "--samples", "8", "--max-length", "32", "--json", str(res)]
    assert main(args) == 0
    data = json.loads(res.read_text())
    assert [r["backend"] for r in data["runs"]] == ["torch", "onnxruntime"]
    first = data["runs"][0]["latency"]
    assert [lat["speedup_vs_first"] for lat in first] == [1.0, 1.0]
    assert all(lat["ms_per_sample_p99"] >= lat["ms_per_sample_p50"] > 0 for r in data["runs"] for lat in r["latency"])
    assert data["runs"][1]["peak_rss_mb"] > 0 and res.with_suffix(".png").is_file()


@pytest.mark.parametrize(
    "bad", [["--batch-sizes", "0"], ["--threads", "0"], ["--samples", "-1"], ["--batch-sizes", "x"], ["--rounds", "0"]]
)
def test_bench_rejects_bad_numbers(models, glue_dir, capsys, bad):
    assert main(["bench", "--model", str(models["student"]), "--task", "MRPC", "--glue-dir", str(glue_dir), *bad]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "error" in err[0]


def test_bench_fill_makes_inputs_of_the_asked_length(models, glue_dir, tmp_path):
    out = tmp_path / "x"
    assert export(models["student"], out, glue_dir, "--no-eval") == 0
    res = tmp_path / "b.json"
    args = ["bench", "--model", str(out), "--task", "MRPC", "--glue-dir", str(glue_dir), "--threads", "1"]
    args += ["--batch-sizes", "1", "--samples", "4", "--max-length", "16", "48", "--fill", "--json", str(res)]
    assert main(args) == 0
    rows = json.loads(res.read_text())["latency"]
    assert [(r["max_length"], r["seq_len_max"]) for r in rows] == [(16, 16), (48, 48)]


def test_bench_ratios_name_their_engines(capsys):
    """A PyTorch teacher against an int8 student is a mixed ratio, said so, with the same-engine ratio beside it
    (against the teacher's own int8 export) and the inputs timed stated."""
    from retort.deploy.bench import _ratios
    from retort.report.speed import print_bench

    def run(model, backend, quant, p50):
        lat = {k: p50 for k in ("ms_per_sample_p50", "ms_per_sample_p90", "ms_per_sample_p99", "ms_per_sample_mean")}
        lat.update(samples_per_s=1000 / p50, batch_size=1, max_length=128, seq_len_mean=10.4)
        return {"model": model, "backend": backend, "quantization": quant, "environment": {"threads": 1},
                "peak_rss_mb": 1, "file_mb": 1, "split": "dev", "latency": [lat]}  # fmt: skip

    runs = [run("t", "torch", "none (fp32)", 28.0), run("t-int8", "onnxruntime", "int8-dynamic", 2.9),
            run("s-int8", "onnxruntime", "int8-dynamic", 1.0)]  # fmt: skip
    _ratios(runs, "t")
    t, ti, si = (r["latency"][0] for r in runs)
    assert not t["mixed"] and t["speedup_vs_first"] == 1.0 and t["speedup_same_engine"] == 1.0
    assert si["mixed"] and si["speedup_vs_first"] == pytest.approx(28.0)
    assert si["speedup_same_engine"] == pytest.approx(2.9) and ti["speedup_same_engine"] is None
    print_bench({"task": "STS-B", "models": ["t", "t-int8", "s-int8"], "runs": runs,
                 "environment": {"cpu": "x", "cores": 2}})  # fmt: skip
    out = capsys.readouterr().out
    assert "28.00x (mixed)" in out and "2.90x" in out and "torch fp32" in out and "mean 10 tokens" in out
    alone = [run("t", "torch", "none (fp32)", 28.0), run("s-int8", "onnxruntime", "int8-dynamic", 1.0)]
    _ratios(alone, "t")
    assert alone[1]["latency"][0]["mixed"] and alone[1]["latency"][0]["speedup_same_engine"] is None


def test_bench_rounds_take_medians_and_ratios_within_a_round():
    from retort.deploy.bench import _merge_rounds, _ratios

    def run(model, p50, rss):
        lat = {k: p50 for k in ("ms_per_sample_p50", "ms_per_sample_p90", "ms_per_sample_p99", "ms_per_sample_mean")}
        lat.update(samples_per_s=1000 / p50, batch_size=1, max_length=128)
        return {"model": model, "environment": {"threads": 1}, "peak_rss_mb": rss, "latency": [lat]}

    # round 2 ran on a slow moment for both models: the ratio within each round is 3, whatever the drift
    rounds = [[run("t", 3.0, 100), run("s", 1.0, 50)], [run("t", 6.0, 110), run("s", 2.0, 40)],
              [run("t", 3.3, 100), run("s", 1.1, 50)]]  # fmt: skip
    for r in rounds:
        _ratios(r, "t")
    teacher, student = _merge_rounds(rounds)
    assert student["latency"][0]["ms_per_sample_p50"] == 1.1 and teacher["latency"][0]["ms_per_sample_p50"] == 3.3
    assert student["latency"][0]["speedup_vs_first"] == pytest.approx(3.0)
    assert student["latency"][0]["rounds_p50"] == [1.0, 2.0, 1.1] and teacher["peak_rss_mb"] == 110


def test_bench_of_a_float16_folder_runs_fp32_and_says_what_the_file_holds(models, glue_dir, tmp_path):
    """A folder saved in float16 (``--save-dtype``) is read and timed in float32; the file's size is the file's,
    and the row says the file holds float16 (beside an fp32 student its size would otherwise mislead)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    half = tmp_path / "half"
    AutoModelForSequenceClassification.from_pretrained(str(models["student"])).half().save_pretrained(half)
    AutoTokenizer.from_pretrained(str(models["student"])).save_pretrained(half)
    res = tmp_path / "b.json"
    args = ["bench", "--model", str(models["student"]), str(half), "--task", "MRPC", "--glue-dir", str(glue_dir),
            "--threads", "1", "--batch-sizes", "1", "--samples", "4", "--json", str(res)]  # fmt: skip
    assert main(args) == 0
    full, stored = json.loads(res.read_text())["runs"]
    assert full["quantization"] == "none (fp32)" and stored["quantization"] == "none (fp32; file F16)"
    assert 0.4 < stored["file_mb"] / full["file_mb"] < 0.6
