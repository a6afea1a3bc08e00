"""Every declared option of every command, fuzzed (issue #28). Hypothesis draws one command, one of its
declared options and a value for it, from the option's type and beyond its range (negative, zero, huge,
NaN, inf, empty, unicode, over-long, the command's own inputs, a FIFO, a device node, ``-``), adds it to a
small valid command line on the tiny models, and runs ``retort.cli.main``. What must hold, every time:

- the command runs normally (a training run is stopped after its first optimizer step, and anything is
  stopped after ``SECONDS``: both count as a normal run), or it exits 2 with exactly one
  ``retort CMD: error:`` line;
- no traceback on stderr, no exception out of ``main``;
- no file that existed before (data, models, runs, the index, the corpus, the special files) changed.

The default profile is a fixed seed (``derandomize``) and ``RETORT_FUZZ_EXAMPLES`` examples (default 15;
30 took 97 s on 2 AVX2 cores, too much of CI's 15 minutes). The longer profile (docs/results.md, "Issue #28"):
``RETORT_FUZZ_EXAMPLES=2000 RETORT_FUZZ_RANDOM=1 pytest tests/test_fuzz.py`` (random seeds).
``test_every_option_at_its_edges`` runs the parser and the config check alone (no run) on every option
of every command with a fixed list of bad values, so no option is left out of any profile.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import itertools
import os
import stat
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import alarm, error_lines, train_tiny_teacher
from retort import options
from retort.cli import build_parser, main
from retort.commands.train import train_config_from_args
from retort.config import ObjectiveConfig, TrainConfig
from retort.errors import RetortError
from retort.training.hooks import Hooks, install_hooks

EXAMPLES = int(os.environ.get("RETORT_FUZZ_EXAMPLES", "15"))
SECONDS = 4  # a run still going after this long is a normal run
SKIPPED = {("models", "get")}  # reads pip packages of 440 MB; its options are in the edge sweep
EDGES = ["0", "-1", "-0.5", "nan", "inf", "-inf", "1e308", "18446744073709551616", "", " ", "ü∂ß", "-", "x" * 300,
         "/".join(["y" * 200] * 23)]  # fmt: skip


class Enough(BaseException):  # noqa: N818  (not an error: the run went on long enough to count as normal)
    """Raised into a run that has shown it runs: after its first optimizer step, or after ``SECONDS``."""


def _stop(*_) -> None:
    raise Enough


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every command that runs, ``dse train`` and ``cache list`` included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaves(sub, (*path, name))
            return
    yield path, parser


def declared(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's actions that come from a declaration (every one but --help)."""
    return [a for a in parser._actions if getattr(a, options.DECLARATION, None) is not None]


COMMANDS = {path: declared(p) for path, p in leaves(build_parser()) if path not in SKIPPED}


@dataclasses.dataclass
class Workspace:
    """Everything a command reads, in one folder whose every file is hashed before and after."""

    root: Path
    glue: Path
    model: Path
    teacher_run: Path
    dse_model: Path
    index: Path
    export: Path
    corpus: Path
    candidates: Path
    fifo: Path
    device: Path | None

    @property
    def teacher(self) -> Path:
        return self.teacher_run / "model"

    def paths(self) -> list[str]:
        """Paths worth drawing for a path option: inputs, special files, new names."""
        kept = [self.glue, self.glue / "RTE", self.glue / "RTE" / "dev.tsv", self.model, self.teacher,
                self.teacher / "model.safetensors", self.teacher_run, self.dse_model, self.index,
                self.index / "embeddings.safetensors", self.export, self.export / "model.onnx", self.corpus,
                self.candidates, self.fifo, self.root / "new", self.root / "new.json",
                self.root / "no" / "such" / "dir" / "x.json"]  # fmt: skip
        return [str(p) for p in kept + ([self.device] if self.device else [])] + ["-", "new.json"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, glue_dir, tiny_model) -> Workspace:
    root = tmp_path_factory.mktemp("fuzz")
    glue = root / "glue"
    glue.mkdir()
    for task in ("RTE", "STS-B"):
        (glue / task).mkdir()
        for f in (glue_dir / task).iterdir():
            (glue / task / f.name).write_bytes(f.read_bytes())
    model = root / "tiny"
    model.mkdir()
    for f in tiny_model.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    teacher_run = train_tiny_teacher(glue, model, root / "teacher", "RTE")
    dse_run = root / "dse"
    assert main(["dse", "train", "--task", "RTE", "--glue-dir", str(glue), "--teacher", str(teacher_run / "model"),
                 "--out", str(dse_run), "--epochs", "1", "--threads", "1", "--no-progress"]) == 0  # fmt: skip
    candidates = root / "candidates.txt"
    candidates.write_text("a cat plays the piano.\nthe dog runs.\na man eats food.\n")
    index = root / "index"
    assert main(["dse", "index", "--model", str(dse_run / "model"), "--candidates", str(candidates),
                 "--out", str(index), "--threads", "1"]) == 0  # fmt: skip
    export = root / "export"  # also loads onnx and onnxruntime: an import that a stop cut short would break later ones
    assert (
        main(
            [
                "export",
                "--model",
                str(teacher_run / "model"),
                "--glue-dir",
                str(glue),
                "--out",
                str(export),
                "--no-eval",
                "--threads",
                "1",
            ]
        )  # fmt: skip
        == 0
    )
    import matplotlib.pyplot  # noqa: F401, PLC0415  (the report's figures: imported whole, before any stop)

    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"The {w} cat plays with the big red dog near the river today.\n" for w in "abcdefghij"))
    fifo = root / "fifo"
    os.mkfifo(fifo)
    device = root / "full"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full's numbers, made here
    except OSError:  # not root: no device node
        device = None
    return Workspace(root, glue, model, teacher_run, dse_run / "model", index, export, corpus, candidates, fifo, device)


def base_argv(path: tuple[str, ...], w: Workspace, out: Path) -> list[str]:
    """A valid, small command line of each command on the tiny models (the drawn option comes after; the
    temporary paths hold no spaces)."""
    g, t = f"--glue-dir {w.glue}", w.teacher
    train = f"--epochs 1 --max-train-samples 16 --max-eval-samples 8 --threads 1 --no-progress --out {out}"
    return {
        ("teacher",): f"--task RTE {g} --base {w.model} {train}",
        ("distill",): f"--task RTE {g} --teacher {t} --student 2x32 {train}",
        ("dse", "train"): f"--task RTE {g} --teacher {t} --student 2x32 {train}",
        ("dse", "index"): f"--model {w.dse_model} --candidates {w.candidates} --out {out / 'i'}",
        ("dse", "search"): f"--index {w.index} --query cat --json {out / 's.json'}",
        ("dse", "export"): f"--model {w.dse_model} --out {out / 'st'}",
        ("embed", "static"): f"--model {w.model} --out {out / 'm2v'}",
        ("embed", "distill"): f"--corpus {w.corpus} --student 1x32 --held-out 10 --threads 1 --out {out / 'ed'}",
        ("embed", "eval"): f"--model {w.dse_model} {g} --threads 1 --json {out / 'e.json'}",
        ("mine-pairs",): f"--corpus {w.corpus} --out {out / 'p.tsv'} --pairs 4 --model {w.model} --min-words 3",
        ("cache", "list"): f"--json {out / 'c.json'}",
        ("cache", "clear"): "--dry-run",
        ("report",): f"{w.teacher_run} --out {out / 'r'} --resamples 20",
        ("eval",): f"--task RTE {g} --model {t} --max-eval-samples 8 --threads 1 --json {out / 'e.json'}",
        ("predict",): f"--task RTE {g} --model {t} --out {out / 'p.tsv'} --threads 1",
        ("export",): f"--model {t} {g} --out {out / 'x'} --no-eval --calibration-rows 8 --threads 1",
        ("bench",): f"--model {t} --task RTE {g} --samples 4 --batch-sizes 1 --warmup 0 --json {out / 'b.json'}",
        ("compress",): f"--teacher {t} {g} --out {out} --latency-ms 1000 --backend torch --probe-samples 8 --threads 1 "
        "--dry-run",
        ("demo",): f"--out {out} {g} --base {w.model} --max-train-samples 8 --max-eval-samples 4 --teacher-epochs 1 "
        "--student-epochs 1 --schedule-epochs 1 --student 2x32 --threads 1 --bench-samples 4",
    }[path].split()


# ----------------------------------------------------------------------------------------------
# values


def _kind(action: argparse.Action):
    """(python type, choices) the action's declaration gives its values."""
    decl = getattr(action, options.DECLARATION)
    if isinstance(decl, options.Option):
        return decl.type, decl.choices
    cls = next(c for c in (TrainConfig, ObjectiveConfig) if decl in dataclasses.fields(c))
    return options._base_type(cls, decl), decl.metadata.get("choices")


INTS = st.one_of(st.integers(-3, 70), st.sampled_from([0, -1, 2**31, 2**32, 2**63, 10**30]), st.integers())
FLOATS = st.one_of(st.floats(), st.sampled_from(["nan", "inf", "-inf", "1e308", "-0", "1e-320"]))
JUNK = st.one_of(st.sampled_from(EDGES + ["a=b", "1,2", "true", "null", "[1, 2]", "{a: 1}"]), st.text(max_size=12))
CONFIG_KEYS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "objective"] + [
    f"objective.{f.name}" for f in dataclasses.fields(ObjectiveConfig)
]


def values(action: argparse.Action, w: Workspace):
    """A strategy for the text of one value of ``action``."""
    kind, choices = _kind(action)
    if action.dest == "set":
        return st.tuples(st.sampled_from(CONFIG_KEYS), st.one_of(INTS.map(str), FLOATS.map(str), JUNK)).map("=".join)
    if kind is int:
        return st.one_of(INTS.map(str), JUNK)
    if kind is float:
        return st.one_of(FLOATS.map(str), INTS.map(str), JUNK)
    if kind is options.whole_numbers:
        return st.one_of(st.lists(INTS.map(str), min_size=1, max_size=3).map(",".join), JUNK)
    if choices:
        return st.one_of(st.sampled_from(list(choices)), JUNK)
    return st.one_of(st.sampled_from(w.paths()), JUNK)


@st.composite
def invocations(draw, w: Workspace, out: Path):
    """One command line: a command, its base arguments and one drawn option."""
    path = draw(st.sampled_from(sorted(COMMANDS)))
    action = draw(st.sampled_from(COMMANDS[path]))
    argv = [*path, *base_argv(path, w, out)]
    if not action.option_strings:  # a positional: the report's run folders
        return [*path, draw(values(action, w)), *base_argv(path, w, out)[1:]]
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [*argv, draw(st.sampled_from(action.option_strings))]
    if action.nargs == 0:
        return [*argv, flag]
    if action.nargs == "+":
        many = draw(st.lists(values(action, w), min_size=1, max_size=3))
        return [*argv, flag, *many] if not any(v.startswith("-") for v in many) else [*argv, f"{flag}={many[0]}"]
    return [*argv, f"{flag}={draw(values(action, w))}"]


# ----------------------------------------------------------------------------------------------
# the checks


def hashes(root: Path, skip: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` but those under ``skip``, and each special file's kind."""
    out = {}
    for p in root.rglob("*"):
        if skip in p.parents or p == skip:
            continue
        mode = p.lstat().st_mode
        if stat.S_ISREG(mode):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif not stat.S_ISDIR(mode):
            out[str(p)] = f"special {stat.S_IFMT(mode)}"
    return out


@contextlib.contextmanager
def bounded():
    """A run stopped after its first optimizer step or ``SECONDS`` (``Enough``), torch's threads restored."""
    threads = torch.get_num_threads()
    install_hooks(Hooks(after_step=_stop))
    try:
        with alarm(SECONDS, _stop):
            yield
    finally:
        install_hooks(None)
        torch.set_num_threads(threads)


def run_checked(argv: list[str], w: Workspace, out: Path) -> int | None:
    """Run one command line; assert a normal run or one error line, no traceback, no input changed."""
    before = hashes(w.root, out)
    err = io.StringIO()
    rc: int | None = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            with bounded():
                rc = main(argv)
        except Enough:
            rc = None
    text = err.getvalue()
    assert "Traceback" not in text, (argv, text)
    if rc not in (None, 0):
        lines = [x for x in error_lines(text) if " error: " in x]
        assert rc == 2 and len(lines) == 1, (argv, rc, text)
    changed = sorted(p for p, h in before.items() if hashes(w.root, out).get(p) != h and not _asked_for(p, argv))
    assert not changed, (argv, changed)
    return rc


def _asked_for(path: str, argv: list[str]) -> bool:
    """Whether ``path`` is a file the command was asked to write (named by the drawn option) that is not
    one of its inputs (anything the command line names besides it): ``cache list --json corpus.txt`` may
    replace corpus.txt, which it does not read; ``mine-pairs --out corpus.txt`` may not."""
    values = [a.split("=", 1)[-1] for a in argv]
    drawn, others = values[-1], values[:-1]
    inputs = [a for a in others if a.startswith("/") and f"/{_OUTS}/" not in a]
    return drawn == path and not any(path == i or path.startswith(i.rstrip("/") + "/") for i in inputs)


_counter = itertools.count()
_OUTS = "outs"  # under the workspace: each example's own output folder, not hashed


def test_fuzz_every_declared_option(ws, tmp_path_factory):
    """Hypothesis: a drawn option of a drawn command is a normal run or one line and exit 2, nothing lost."""
    outs = ws.root / _OUTS
    outs.mkdir(exist_ok=True)
    cwd = ws.root / "cwd"
    cwd.mkdir(exist_ok=True)

    @settings(
        max_examples=EXAMPLES,
        derandomize=not os.environ.get("RETORT_FUZZ_RANDOM"),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate),
    )  # fmt: skip  (shrinking reruns commands for minutes)
    @given(st.data())
    def one(data):
        out = outs / str(next(_counter))
        out.mkdir()  # the folder the base command line writes into (an empty --out is a new run)
        argv = data.draw(invocations(ws, out))
        run_checked(argv, ws, outs)

    here = os.getcwd()
    os.chdir(cwd)  # a relative path drawn for an output lands here, inside the hashed workspace
    try:
        one()
    finally:
        os.chdir(here)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_option_at_its_edges(path, tmp_path, capsys):
    """Every declared option of every command, each edge value, after a valid command line: through the
    parser and, for a training command, the config's own checks. Accepted, or one line and exit 2.
    Nothing runs (the paths need not exist), so no option is left out of even the shortest profile."""
    w = Workspace(*[tmp_path / n for n in ("r", "g", "m", "t", "d", "i", "x", "c", "k", "f", "v")])
    top = build_parser()
    parser = dict(leaves(top))[path]
    for action in declared(parser):
        if not action.option_strings or action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
            continue
        for value in EDGES:
            argv = [*path, *base_argv(path, w, tmp_path / "out"), f"{action.option_strings[0]}={value}"]
            try:
                args = top.parse_args(argv)
                if path[0] in ("teacher", "distill") or path == ("dse", "train"):
                    train_config_from_args(args, "teacher" if path[0] == "teacher" else "distill")
            except SystemExit as stop:
                assert stop.code == 2
                err = error_lines(capsys.readouterr().err)
                assert len(err) == 1 and "Traceback" not in err[0], (argv, err)
            except RetortError as e:
                assert "\n" not in str(e), (argv, e)
