"""``retort compress`` (issue #30), the part built so far: the plan from timings taken on this machine."""

from __future__ import annotations

import json
import random
from pathlib import Path
from statistics import median

import pytest

from conftest import error_lines, sentence, train_tiny_teacher
from retort.cli import main
from retort.commands import compress_probes


@pytest.fixture(scope="module")
def teacher(glue_dir, tiny_model, tmp_path_factory):
    return train_tiny_teacher(glue_dir, tiny_model, tmp_path_factory.mktemp("compress") / "t", "RTE")


@pytest.fixture(autouse=True)
def time_plans_here(request, monkeypatch):
    """A plan times its models each in a fresh process (as the final bench does); the tests that need a plan but
    not that protocol time in this process, which is faster. The planner's own test (one backend) keeps it."""

    if request.node.name != "test_a_plan_from_timings_taken_here[onnx-int8]":
        monkeypatch.setattr(compress_probes.Probes, "fresh_process", False)


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_a_plan_from_timings_taken_here(teacher, glue_dir, tmp_path, capsys, backend):
    out = tmp_path / "c"
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(out), "--latency-ms",
            "1000", "--backend", backend, "--probe-samples", "8", "--threads", "1", "--dry-run"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    assert plan["task"] == "RTE" and plan["backend"] == backend and plan["teacher"]["name"] == "4x32-f64"
    assert plan["target_ms"] == 1000 and plan["met"] and plan["train"]  # timing noise of tiny models aside
    assert len(plan["points"]) >= 4 and all(p["measured_ms"] > 0 for p in plan["points"])
    timed = {p["shape"]: p["measured_ms"] for p in plan["points"][4:]}  # the shortlist, timed as probes
    for c in plan["candidates"]:
        assert (c["latency_from"] == "timed probe") == (c["name"] in timed)
        assert c["predicted_ms"] == timed.get(c["name"], c["predicted_ms"])
    assert all(c["latency_from"] == "timed probe" for c in plan["candidates"] if c["chosen"])
    assert all(c["why_not"] for c in plan["candidates"] if not c["chosen"])
    assert "to train" in printed or "nothing to train" in printed
    assert main(args) == 0  # again: the probes are reused
    if backend == "onnx-int8":  # the shortlist timed in one bench run beside the teacher and its export, kept
        assert (out / "probes" / "teacher" / "onnx-int8" / "model.onnx").is_file()
        bench = json.loads((out / "probes" / "shortlist-0.json").read_text())
        assert bench["rounds"] == 3 and bench["models"][1] == str(out / "probes/teacher/onnx-int8")
        assert len(bench["models"]) > 2 and len(plan["teacher_timings"]["backend"]) >= 2
        assert plan["teacher_backend_ms"] == median(plan["teacher_timings"]["backend"])  # its typical time


@pytest.mark.parametrize(
    "extra,needle",
    [
        ([], "give a budget: --speedup, --speedup-backend, --latency-ms or --max-params"),
        (["--speedup", "0"], "--speedup 0: must be > 0"),
        (["--speedup", "2", "--task", "RTE", "--data", "x.csv"], "--task and --data: give one"),
        (["--speedup", "2", "--max-drop", "0.01", "--max-drop-percent", "3"], "--max-drop and --max-drop-percent"),
        (["--speedup", "2", "--max-drop", "3%", "--max-drop-percent", "3"], "--max-drop and --max-drop-percent"),
        (["--speedup", "2", "--max-drop", "3pc"], "--max-drop 3pc: not a number or a percentage, e.g. 0.01 or 3%"),
        (["--speedup", "2", "--max-drop", "150%"], "--max-drop 150%: must be >= 0, <= 100"),
    ],
)
def test_budgets_refused_in_one_line(teacher, glue_dir, tmp_path, capsys, extra, needle):
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(tmp_path / "c"),
            "--backend", "torch", "--probe-samples", "8", "--threads", "1", "--dry-run", *extra]  # fmt: skip
    assert main(args) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and needle in err[0] and err[0].startswith("retort compress: error: "), err


def test_max_drop_as_a_percentage_is_the_share_floor(teacher, glue_dir, tmp_path, capsys):
    """``--max-drop 3%`` (the issue's spelling) is ``--max-drop-percent 3``: the same search, its plan reused."""
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(tmp_path / "c"),
            "--backend", "torch", "--probe-samples", "8", "--threads", "1", "--dry-run", "--speedup", "2"]  # fmt: skip
    assert main([*args, "--max-drop-percent", "3"]) == 0
    plan = json.loads((tmp_path / "c" / "plan.json").read_text())
    assert plan["argv"][plan["argv"].index("--max-drop-percent") + 1] == "3.0" and "--max-drop" not in plan["argv"]
    capsys.readouterr()
    assert main([*args, "--max-drop", "3%"]) == 0
    assert "reusing" in capsys.readouterr().out


def test_a_two_candidate_search_end_to_end(teacher, glue_dir, tmp_path, capsys):
    """Plan, distil two candidates (held-out rows carved from train), bench them beside the teacher, ship the
    smallest that meets the budget with its model card; a second run trains nothing again. A size budget prunes
    the students' vocabulary to the training rows' tokens (``--vocab auto``)."""
    out = tmp_path / "c"
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(out), "--latency-ms",
            "1000", "--max-params", "100000000", "--max-drop-percent", "100", "--backend", "torch", "--shapes", "2",
            "--epochs", "1", "--rounds", "1", "--probe-samples", "8", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    frontier = json.loads((out / "frontier.json").read_text())
    assert len(frontier["candidates"]) == 2 and frontier["shipped"] in {c["name"] for c in frontier["candidates"]}
    shipped = min(frontier["candidates"], key=lambda c: c["parameters"])
    assert frontier["shipped"] == shipped["name"] and (out / "model" / "config.json").is_file()
    assert frontier["scored_once"]["split"] == "dev" and frontier["scored_once"]["results"]["dev"]
    errors = frontier["cost_model_errors_drift_corrected"]  # the planner's errors, the teacher's drift taken out
    assert errors.keys() == frontier["cost_model_errors"].keys() == {c["name"] for c in frontier["candidates"]}
    assert frontier["heldout_rows"] > 0  # the stages chose on held-out rows and none scored dev: only the shipped one
    for c in frontier["candidates"]:  # no stage scored dev, at the end or at any evaluation
        metrics = json.loads((out / "candidates" / c["name"] / "metrics.json").read_text())
        assert "dev_once" not in metrics and all(set(e["results"]) == {"val"} for e in metrics["evals"])
    card = (out / "README.md").read_text()
    assert shipped["name"] in card and "Scored once" in card and "retort compress --teacher" in card
    assert "--threads 1 --probe-samples 8 --rounds 1`" in card  # the remake line carries the timing options
    assert "Training:" in card and (out / "frontier.png").is_file() and "pareto" in frontier["candidates"][0]
    words = json.loads((out / "plan.json").read_text())["vocabulary"]
    assert words["mode"] == "task" and words["used"] <= words["kept"] <= words["of"] and "Vocabulary:" in card
    assert json.loads((out / "model" / "config.json").read_text())["vocab_size"] == words["kept"]  # tiny: all used
    before = {c["name"]: (out / "candidates" / c["name"] / "metrics.json").stat().st_mtime_ns
              for c in frontier["candidates"]}  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0  # resumed: the finished candidates are kept as they are, their bench too
    again = capsys.readouterr()
    assert "[compress] stage" not in again.out and "[bench]" not in again.err
    assert before == {n: (out / "candidates" / n / "metrics.json").stat().st_mtime_ns for n in before}


@pytest.mark.parametrize("corpus", [False, True])
def test_a_budget_not_met_as_measured_exits_3(teacher, glue_dir, tmp_path, capsys, monkeypatch, corpus):
    """Every candidate below the quality floor on the held-out rows (made so: the teacher scores 1, they 0), after
    a task stage over its rows and a transfer set: word-edited copies, and with a corpus (RTE is a pair task)
    pairs mined from it."""
    from retort.commands import compress_search as compress

    monkeypatch.setattr(compress, "heldout_score", lambda folder, task, split: {
        "accuracy": 0.0 if "candidates" in str(folder) else 1.0})  # fmt: skip
    monkeypatch.setattr(compress, "_timed", lambda models, *_: {  # the bench's processes: the test above has them
        "runs": [{"model": m, "latency": [{"ms_per_sample_p50": 1.0}]} for m in models]})  # fmt: skip
    out = tmp_path / "c"
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(out), "--latency-ms",
            "1000", "--max-drop", "0.01", "--backend", "torch", "--shapes", "1", "--epochs", "1", "--rounds", "1",
            "--probe-samples", "8", "--threads", "1"]  # fmt: skip
    if corpus:
        rng = random.Random(0)
        (tmp_path / "corpus.txt").write_text("\n".join(" ".join(sentence(rng, 8) for _ in range(3)) for _ in range(80)))
        args += ["--corpus", str(tmp_path / "corpus.txt")]
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "no candidate met the budget as measured" in captured.err
    frontier = json.loads((out / "frontier.json").read_text())
    assert frontier["shipped"] is None and not (out / "model").exists()
    # below the floor after its task stage as it ships (the teacher's held-out 1.0), the candidate took a second
    # transfer round on from its task model; that did not improve as shipped (0 again), so no third; of equal
    # scores the earlier stage is kept
    (row,) = frontier["candidates"]
    assert "transfer round 2 with aug:RTE:" in captured.out and set(row["stage_scores"]) == {"task", "round 2"}
    assert row["stage_scores_shipped"] == {"task": 0.0, "round 2": 0.0} and row["kept_stage"] == "task"
    assert row["heldout"] == {"accuracy": 0.0}  # the judged score passed on, not scored again
    ran = json.loads((out / "candidates" / f"{row['name']}+round2" / "metrics.json").read_text())
    assert ran["transfer_examples"] > 0 and ran["config"]["student_init"].endswith(f"{row['name']}/model")
    assert row["run"].endswith(f"candidates/{row['name']}") and row["start"].endswith("transfer set")
    task = json.loads((out / "candidates" / row["name"] / "metrics.json").read_text())
    assert task["transfer_examples"] > task["train_examples"] / 2 and task["config"]["cache_teacher"] == "none"
    if corpus:  # copies and mined pairs in both rounds; the second adds pairs of the next seed; no general stage
        assert len(task["config"]["transfer"]) == 2 and task["config"]["transfer"][1].endswith(".tsv")
        assert len(ran["config"]["transfer"]) == 3 and ran["config"]["transfer"][2].endswith("-draw1.tsv")
        assert not (out / "candidates" / row["name"] / "general").exists()
    else:  # copies only, more of them in the second round
        assert [t.rsplit(":", 1)[0] for t in task["config"]["transfer"] + ran["config"]["transfer"]] == ["aug:RTE"] * 2
    assert row["folder"] == str(Path(row["run"]) / "model")  # --backend torch ships the kept stage's own model
    card = (out / "README.md").read_text()
    assert "No candidate met the budget" in card and "held-out accuracy 0.0000 < floor 0.9900" in card


def test_hours_left_go_to_rounds_for_the_student_that_would_ship(teacher, glue_dir, tmp_path, capsys, monkeypatch):
    """With --hours left after every candidate, the one that would ship (over the floor, fewest parameters)
    takes a transfer round too; a round that does not improve on it as shipped ends them and the earlier stage
    is kept. Without --hours nothing more is trained."""
    from retort.commands import compress_search as compress

    monkeypatch.setattr(compress, "heldout_score", lambda folder, task, split: {"accuracy": 1.0})
    monkeypatch.setattr(compress, "_timed", lambda models, *_: {
        "runs": [{"model": m, "latency": [{"ms_per_sample_p50": 1.0}]} for m in models]})  # fmt: skip
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--latency-ms", "1000",
            "--max-drop", "0.01", "--backend", "torch", "--shapes", "1", "--epochs", "1", "--rounds", "1",
            "--probe-samples", "8", "--threads", "1"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert "transfer round" not in capsys.readouterr().out  # over the floor, no --hours: no round
    out = tmp_path / "c"
    assert main([*args, "--out", str(out), "--hours", "100"]) == 0
    printed = capsys.readouterr().out
    frontier = json.loads((out / "frontier.json").read_text())
    row = next(r for r in frontier["candidates"] if r["name"] == frontier["shipped"])
    assert f"{row['name']}: held-out accuracy 1.0000 over the floor, the one that would ship" in printed
    assert "transfer round 2" in printed and "transfer round 3" not in printed  # round 2 did not improve: no 3
    assert set(row["stage_scores_shipped"]) == {"task", "round 2"} and row["kept_stage"] == "task"
    others = [r for r in frontier["candidates"] if r["name"] != row["name"]]
    assert all(not (out / "candidates" / f"{r['name']}+round2").exists() for r in others)


def test_the_card_says_the_budget_and_scores_in_words():
    from retort.commands.compress_card import _scores, budget_words

    frontier = {"backend": "onnx-int8", "budget": {"speedup": 10.0, "latency_ms": None, "max_params": 5000000,
                                                   "speedup_backend": 3.0}}  # fmt: skip
    assert budget_words(frontier) == ("10x the teacher's PyTorch speed, 3x its onnx-int8 export's, "
                                      "at most 5,000,000 parameters")  # fmt: skip
    scores = {"dev": {"pearson": 0.83731, "spearman": 0.8403, "score": 0.8388}}
    assert _scores(scores) == "dev: pearson 0.8373, spearman 0.8403" and _scores(None) == "none"


def test_the_cards_example_call_takes_the_tasks_inputs():
    from retort.commands.compress_card import _inputs

    assert _inputs("STS-B") == "[('a sentence', 'another sentence')]" and _inputs("SST-2") == "['a text']"
    assert _inputs("a task of a session gone") == "['a text']"


def test_the_card_names_the_stage_the_search_kept():
    from retort.commands.compress_card import _transfer_line

    row = {"stage_scores": {"task": 0.80, "round 2": 0.82}, "stage_scores_shipped": {"task": 0.79, "round 2": 0.81},
           "kept_stage": "round 2"}  # fmt: skip
    (line,) = _transfer_line(row)
    assert "after the task stage 0.8000 (0.7900 as shipped)" in line and "the transfer round 2 is the one kept" in line
    assert _transfer_line({"stage_scores": {"task": 0.8}}) == []  # no rounds: nothing to say


def test_a_pruned_candidate_with_a_corpus_starts_from_its_general_stage(tmp_path):
    """A single-text task mines no pairs from the corpus: a pruned candidate takes TinyBERT's general stage."""
    from retort.commands.compress_stages import stage_config, stages

    cand = {"name": "2x64", "layers": 2, "hidden": 64, "heads": 2, "ffn": 128, "start": "pruned from the teacher"}
    wide = {**cand, "name": "2x128", "hidden": 128, "heads": 4, "ffn": 512, "start": "teacher layers"}
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Some text. More text.\n")
    root = tmp_path / "candidates"
    assert stages(cand, tmp_path, None) == [("task", root / "2x64")]
    assert stages(wide, tmp_path, str(corpus)) == [("task", root / "2x128")]
    (general, g_dir), (task, t_dir) = stages(cand, tmp_path, str(corpus))
    assert (general, task) == ("general", "task") and g_dir == root / "2x64" / "general"
    plan = {"task": "SST-2", "teacher_folder": str(tmp_path / "t")}
    s = {"data": None, "glue_dir": None, "epochs": 2, "threads": 1, "seed": 42, "val_split": 0.1,
         "corpus": str(corpus), "corpus_sequences": 100}  # fmt: skip
    g = stage_config(cand, "general", g_dir, plan, s)
    assert g.general and g.corpus == str(corpus) and g.student_init == "prune" and g.student_heads == 2
    assert g.student_intermediate == 128 and g.corpus_sequences == 100 and g.epochs == 1
    assert stage_config(cand, "task", t_dir, plan, s).student_init == "prune"  # no general model yet
    (g_dir / "model").mkdir(parents=True)
    t = stage_config(cand, "task", t_dir, plan, s)
    assert t.student_init == str(g_dir / "model") and t.val_split == 0.1 and t.epochs == 2 and not t.general
    assert stage_config(wide, "task", root / "2x128", plan, s).student_init == "teacher"


def test_hours_leave_out_a_candidate_that_cannot_finish(tmp_path, capsys):
    from retort.commands.compress_stages import train_candidates

    cands = [{"name": n, "layers": 2, "hidden": 64, "heads": 2, "ffn": 128, "start": "teacher layers",
              "train_s": {"task": 5000.0}} for n in ("a", "b")]  # fmt: skip
    plan = {"train": ["a", "b"], "candidates": cands}
    finished, skipped = train_candidates(plan, tmp_path, {"corpus": None, "hours": 1.0})
    assert finished == [] and set(skipped) == {"a", "b"}
    assert "would not finish inside --hours 1" in skipped["a"] and "not trained" in capsys.readouterr().out


def test_a_search_that_can_train_nothing_in_its_hours_exits_3(teacher, glue_dir, tmp_path, capsys, monkeypatch):
    from retort.commands import compress

    monkeypatch.setattr(compress, "training_seconds", lambda *a, **k: {"task": 1e7})
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(tmp_path / "c"),
            "--latency-ms", "1000", "--backend", "torch", "--shapes", "1", "--probe-samples", "8", "--threads", "1",
            "--hours", "1"]  # fmt: skip
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "no candidate was trained" in err and "--hours 1" in err and not (tmp_path / "c" / "candidates").exists()


@pytest.mark.parametrize(
    "budget,why",
    [
        (["--max-params", "10"], "; the closest: "),
        (["--speedup", "100000"], " (0.0"),
        (["--latency-ms", "0.000001"], " (0.000"),
    ],
)
def test_a_budget_no_candidate_is_predicted_to_meet_exits_3(teacher, glue_dir, tmp_path, capsys, budget, why):
    """Too small, or faster than an empty call on this machine: exit 3 before any training, the closest named
    with their predictions (a budget is a fact about the machine, not a malformed input)."""
    args = ["compress", "--teacher", str(teacher), "--glue-dir", str(glue_dir), "--out", str(tmp_path / "c"),
            "--backend", "torch", "--probe-samples", "8", "--threads", "1", *budget]  # fmt: skip
    assert main(args) == 3
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "no candidate is predicted to meet the budget" in err[0] and why in err[0], err
    assert "; the closest: " in err[0] and " ms)" in err[0]
    assert json.loads((tmp_path / "c" / "plan.json").read_text())["closest"]
    assert not (tmp_path / "c" / "candidates").exists()


def test_without_a_teacher_one_is_fine_tuned_first(glue_dir, tiny_model, tmp_path, capsys):
    """No --teacher: --base is fine-tuned on the task into OUT/teacher (epoch kept on carved rows), once."""
    out = tmp_path / "c"
    args = ["compress", "--base", str(tiny_model), "--teacher-epochs", "1", "--task", "RTE", "--glue-dir",
            str(glue_dir), "--out", str(out), "--latency-ms", "1000", "--backend", "torch", "--probe-samples", "8",
            "--threads", "1", "--dry-run"]  # fmt: skip
    assert main(args) == 0
    assert "no --teacher: fine-tuning" in capsys.readouterr().out
    metrics = json.loads((out / "teacher" / "metrics.json").read_text())
    assert metrics["task"] == "RTE" and "dev_once" in metrics  # selected on held-out rows, dev scored once
    plan = json.loads((out / "plan.json").read_text())
    assert plan["teacher_folder"].endswith("teacher/model") and "--base" in plan["argv"]
    before = (out / "teacher" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0 and "no --teacher" not in capsys.readouterr().out  # made once
    assert (out / "teacher" / "metrics.json").stat().st_mtime_ns == before


def test_the_transfer_set_is_mined_pairs_for_a_pair_task_with_a_corpus(teacher, glue_dir, tmp_path):
    from retort.commands.compress_stages import length_ratio, transfer_set
    from retort.data.tasks import get_task

    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(sentence(rng, 8) for _ in range(3)) for _ in range(40)) + "\n")
    plan = {"task": "MRPC", "teacher_folder": str(teacher)}
    s = {"corpus": str(corpus), "seed": 0}
    mined = transfer_set(plan, tmp_path / "c", s, 20)
    assert mined == str(tmp_path / "c" / "transfer" / "mined-20.tsv")
    assert len(Path(mined).read_text().splitlines()) == 20 and all(
        len(line.split("\t")) == 2 for line in Path(mined).read_text().splitlines())  # fmt: skip
    settings = {"glue_dir": str(glue_dir), "val_split": 0.1, "seed": 0}  # the stage's cost scales by length
    assert length_ratio(mined, get_task("MRPC"), settings) > 1 and length_ratio("aug:MRPC:20", None, settings) == 1
    assert transfer_set({**plan, "task": "SST-2"}, tmp_path / "c", s, 20) == "aug:SST-2:20"  # single texts
    assert transfer_set(plan, tmp_path / "c", {**s, "corpus": None}, 20) == "aug:MRPC:20"
    assert transfer_set(plan, tmp_path / "d", s, 100000) == "aug:MRPC:100000"  # more than the corpus can give


def test_the_plan_waits_for_a_quiet_machine_then_warns(monkeypatch, capsys):
    from retort.commands import compress

    loads = iter(["busy A", "busy B", None])
    monkeypatch.setattr(compress, "busy", lambda threads, seconds=0.5: next(loads))
    monkeypatch.setattr(compress.time, "sleep", lambda s: None)
    monkeypatch.setenv("RETORT_QUIET_WAIT_S", "60")
    assert compress.quiet_machine(2) is None  # it became quiet: no warning
    assert "waiting up to 60 s for a quiet machine: busy A" in capsys.readouterr().err
    monkeypatch.setattr(compress, "busy", lambda threads, seconds=0.5: "still busy")
    clock = iter(range(0, 1000, 20))
    monkeypatch.setattr(compress.time, "monotonic", lambda: next(clock))
    assert compress.quiet_machine(2) == "still busy"  # the wait ran out: planned anyway, with the warning
    assert "warning: still busy" in capsys.readouterr().err


def test_the_transfer_sets_are_copies_and_pairs_mined_from_the_corpus(teacher, glue_dir, tmp_path):
    """The #30 probes' recipe: every task stage over its rows and a transfer set (no teacher cache): copies, and
    for a pair task with a corpus mined pairs instead of a general stage; below the floor a second round over
    more copies, the same pairs and fresh ones, at a lower rate."""
    from retort.commands.compress_stages import TRANSFER, mines_pairs, stage_config, stages, transfer_sets
    from retort.data.tasks import get_task

    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(sentence(rng, 8) for _ in range(3)) for _ in range(60)) + "\n")
    assert mines_pairs(get_task("MRPC"), str(corpus)) and not mines_pairs(get_task("SST-2"), str(corpus))
    assert not mines_pairs(get_task("MRPC"), None)
    cand = {"name": "2x64", "layers": 2, "hidden": 64, "heads": 2, "ffn": 128, "start": "pruned from the teacher"}
    assert stages(cand, tmp_path, str(corpus), True) == [("task", tmp_path / "candidates" / "2x64")]
    plan = {"task": "MRPC", "teacher_folder": str(teacher), "train_rows": 5}
    s = {"data": None, "glue_dir": str(glue_dir), "epochs": 3, "threads": 1, "seed": 42, "val_split": 0.1,
         "corpus": str(corpus), "corpus_sequences": 100, "pairs": True}  # fmt: skip
    first = transfer_sets(plan, tmp_path / "c", s, "task")
    assert first == ["aug:MRPC:20", str(tmp_path / "c" / "transfer" / "mined-15.tsv")]
    t = stage_config(cand, "task", tmp_path / "t", plan, {**s, "transfer": first})
    assert t.transfer == first and t.epochs == 3 and t.cache_teacher == "none"
    assert t.student_init == "prune" and not t.general and not t.score_dev
    second = transfer_sets(plan, tmp_path / "c", s, 2)
    fresh = tmp_path / "c" / "transfer" / "mined-20-draw1.tsv"
    assert second == ["aug:MRPC:30", first[1], str(fresh)]
    assert set(fresh.read_text().splitlines()) != set(Path(first[1]).read_text().splitlines()[:20])  # other pairs
    third = transfer_sets(plan, tmp_path / "c", s, 3)  # the pairs so far and another draw
    assert third == [*second, str(tmp_path / "c" / "transfer" / "mined-20-draw2.tsv")]
    (tmp_path / "t" / "model").mkdir(parents=True)
    (tmp_path / "t" / "metrics.json").write_text(json.dumps({"config": {"lr": 1e-4}}))
    (tmp_path / "r2" / "model").mkdir(parents=True)
    dirs = {"task_dir": tmp_path / "t", "from_dir": tmp_path / "r2"}  # round 3 on from round 2, its rate the task's
    lift = stage_config(cand, "round3", tmp_path / "x", plan, {**s, **dirs, "transfer": third})
    assert lift.transfer == third and lift.epochs == TRANSFER["lift"]["epochs"]
    assert lift.student_init == str(tmp_path / "r2" / "model")
    assert lift.lr == pytest.approx(1e-4 * TRANSFER["lift"]["lr"][1]) and lift.cache_teacher == "none"
    plain = {**s, "pairs": False, "corpus": None}  # no pairs: copies in their place, as many inputs in all
    assert transfer_sets(plan, tmp_path / "c", plain, "task") == ["aug:MRPC:35"]
    assert transfer_sets(plan, tmp_path / "c", plain, 2, 7) == ["aug:MRPC:91"]
    assert transfer_sets(plan, tmp_path / "c", plain, 3, 7) == ["aug:MRPC:119"]


def test_a_stage_stopped_half_way_counts_the_seconds_its_checkpoint_holds(tmp_path):
    """``--hours`` and the ETA count a stopped stage's time from its checkpoint (the trainer nests it in state)."""
    from retort.commands.compress_stages import seconds_of

    assert seconds_of(tmp_path) == 0.0
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "trainer_state.json").write_text(json.dumps({"state": {"wall_seconds": 12.5}}))
    assert seconds_of(tmp_path) == 12.5
    (tmp_path / "metrics.json").write_text(json.dumps({"wall_seconds": 30.0}))  # finished: its metrics
    assert seconds_of(tmp_path) == 30.0


def test_the_plan_reads_shapes_against_the_teachers_typical_time():
    """A teacher's typical time is its median over the plan's timings; a shape timed in a shortlist run is its
    ratio to the teacher's export beside it, times that (TREC's first export timing was 1.63 ms, 0.96 beside)."""
    from retort.commands.compress import teacher_timings, typical_times

    runs = [{"shapes": {"3x256": 0.30}, "teacher_backend_ms": 1.0, "teacher_torch_ms": 8.0},
            {"shapes": {"4x192": 0.40}, "teacher_backend_ms": 0.8, "teacher_torch_ms": 9.0}]  # fmt: skip
    typical, shapes = typical_times(8.5, 1.6, runs)
    assert typical == {"torch": 8.5, "backend": 1.0}
    assert teacher_timings(8.5, 1.6, runs) == {"torch": [8.5, 8.0, 9.0], "backend": [1.6, 1.0, 0.8]}  # in order
    assert shapes["3x256"] == {"ms": pytest.approx(0.30), "own_ms": 0.30, "teacher_beside_ms": 1.0}
    assert shapes["4x192"]["ms"] == pytest.approx(0.50)
    assert typical_times(8.5, 1.6, []) == ({"torch": 8.5, "backend": 1.6}, {})
