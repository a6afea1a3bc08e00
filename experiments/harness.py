"""The one harness of the experiment scripts: their options, their runs as data, the runner that makes
each run once (resumably, from one or more processes at a time), and the shared table and figure helpers.

A script declares its runs as data, ``Run(out, args)``: the run folder and the ``retort`` command words and
options that make it (``command("distill", task=..., epochs=3)``), and hands them (or small functions that
chain them, e.g. a two-stage method) to the same runner: ``Run.make``/``retort`` for one run, ``work_through``
for a set of jobs shared by side-by-side processes.

Each run directory is guarded by a file lock (``OUT.lock``, released by the kernel if the process dies), so
two copies of an experiment script started side by side never train the same run twice: the second one
skips runs the first is busy with (``work_through``), or waits for them (``retort``). The command a run was
made with is kept in ``OUT/command.json``; asking for the same run directory with different arguments is
an error instead of silently reusing a result made with other settings.

Options are declared once. The options retort's own commands take (``--glue-dir``, ``--threads``...) come
from ``retort.options``; the options only experiments take (``--tasks``, ``--teachers``, ``--seeds``...) are
declared here, in ``OPTIONS``; an option of one script alone is an ``Option`` in that script. ``add(parser,
"glue_dir", "tasks", MY_OPTION, ...)`` puts any of them on a parser, where a script may set its own
default. ``check_options`` checks what a parser cannot (a task's data is there) before any run starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retort import options as retort_options
from retort.data.glue import split_file
from retort.data.spec import load_task
from retort.data.tasks import TASKS, get_task, is_task_name
from retort.data.transfer import parse_spec
from retort.errors import RetortError
from retort.options import Option
from retort.report.tables import table

# the help of a retort option whose default an experiment sets (retort's own help names retort's default)
HELP_WITH_DEFAULT = {"threads": "CPU threads of each process"}
# arguments that change how fast a run goes, not what it computes
_NEUTRAL = {"--threads", "--no-progress"}


# ----------------------------------------------------------------------------------------------
# options


class OneLineParser(argparse.ArgumentParser):
    """An experiment script's options: a mistake is one line and exit 2, like retort's own commands."""

    def error(self, message: str):
        """Print ``PROG: error: MESSAGE (see PROG --help)`` as one line and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """The options, with the user's own data given to ``--tasks`` read and named (``own_tasks``)."""
        a = super().parse_args(args, namespace)
        own_tasks(self, a)
        return a


def parser(doc: str | None) -> OneLineParser:
    """A script's parser, described by the first paragraph of its module docstring ``doc``."""
    return OneLineParser(description=(doc or "").split("\n\n")[0])


def number_text(text: str) -> str:
    """A number kept as the user wrote it (``2e-4`` stays ``2e-4``: it names run folders and is passed on
    to retort as written); ``ValueError`` when it is not a number."""
    float(text)
    return text


OPTIONS: dict[str, Option] = {}


def declare(*declared: Option) -> None:
    """Put experiment-only options into ``OPTIONS`` under their keys; a key declared twice is an error at
    import. (``add`` looks a key up here first, then in ``retort.options``.)"""
    retort_options.declare(*declared, into=OPTIONS)


declare(
    # where things are
    Option("--out", "folder of the runs and of the results", metavar="DIR"),
    Option("--out", "where to write the results (JSON)", key="out_json", dest="out", metavar="FILE"),
    Option("--json", "also write the results here (JSON)", metavar="FILE"),
    Option("--png", "draw the figure here (PNG)", key="figure", dest="png", metavar="FILE"),
    Option("--teachers", "folder of fine-tuned teachers, one TASK/model each", default="runs/teachers", metavar="DIR"),
    Option("--teacher", "a fine-tuned teacher's model folder", metavar="DIR"),
    # what runs
    Option(
        "--tasks",
        "GLUE tasks, or your own data (what retort's --data takes: a spec, a data file or folder, hf:NAME)",
        metavar="TASK",
    ),
    Option("--methods", "distillation method presets", metavar="METHOD"),
    Option("--shapes", "student shapes, LxH", metavar="SHAPE"),
    Option("--seed", "the runs' seed", type=int, default=42),
    Option("--seeds", "seeds; every run once per seed", type=int),
    Option("--epochs", "training epochs of each student", type=int, default=3, low=1),
    Option("--epochs-for", "another number of epochs for one task (repeatable)", repeat=True, metavar="TASK=E"),
    Option("--cap", "cap a task's training rows (repeatable)", repeat=True, metavar="TASK=N"),
    Option("--transfer", "transfer sets, as 'retort distill --transfer' takes them", metavar="SPEC"),
    Option("--batch-size", "training batch size", type=int, low=1, key="train_batch_size"),
    Option("--lengths", "input lengths in tokens", type=int, low=1),
    Option("--hidden", "hidden size of the students", type=int, default=384, low=1),
    Option("--feature-map", "linear attention's feature map (hedgehog: learned)", default="elu", metavar="NAME"),
    Option("--attention-epochs", "hedgehog: attention-transfer epochs", type=int, low=1),
    Option(
        "--attention-lr", "hedgehog: attention-transfer learning rate", type=number_text, default="5e-3", metavar="LR"
    ),
    Option("--corpus-sequences", "corpus sequences of a general-distillation run", type=int, default=8000, low=1),
    Option("--repeats", "timed repetitions of each measurement", type=int, low=1),
    Option("--bootstrap", "bootstrap resamples", type=int, low=1),
)


def add(
    p: argparse.ArgumentParser,
    *items: str | Option,
    required: Iterable[str] = (),
    many: Iterable[str] = (),
    any_number: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
    own: Iterable[Option] = (),
) -> None:
    """Put options on ``p``, in order: each item a key (of the script's ``own`` options, of ``OPTIONS``:
    experiment-only, or of ``retort.options.OPTIONS``) or an ``Option``. Among their keys, ``required``
    must be given, ``many`` take one or more values, ``any_number`` zero or more; ``defaults`` sets a
    script's own default of an option (its rule stays)."""
    required, many, any_number, defaults = set(required), set(many), set(any_number), defaults or {}
    mine = {o.key or o.name: o for o in own}
    for item in items:
        if isinstance(item, Option):
            option = item
        else:
            option = mine.get(item) or OPTIONS.get(item) or retort_options.OPTIONS[item]
        key = item if isinstance(item, str) else (option.key or option.name)
        if key in defaults:
            option = dataclasses.replace(option, default=defaults[key], help=HELP_WITH_DEFAULT.get(key, option.help))
        action = option.add(p, required=key in required, many=key in many or key in any_number)
        if key in any_number:
            action.nargs = "*"  # zero values allowed: "--variants" alone means none
        if (key in many or key in any_number) and option.default is None:
            action.default = None  # not given: None (the script fills it in), not [None]


DATA: dict[str, str] = {}  # a task of the user's given to --tasks: its name -> what retort's --data reads


def own_tasks(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every ``--tasks``-like list in ``a`` (attributes ending in ``tasks``) with each entry that is not a GLUE
    task read as the user's data (``retort.data.spec.load_task``: one line and exit 2 if it cannot be) and
    replaced by its task's name, which runs then pass to retort as ``--data`` (``command``, ``task_words``)."""
    for attr, values in vars(a).items():
        if not attr.endswith("tasks") or not isinstance(values, list):
            continue
        names = []
        for entry in values:
            if is_task_name(entry) or entry in DATA:
                names.append(entry)
                continue
            if not (entry.startswith("hf:") or Path(entry).exists() or "/" in entry or Path(entry).suffix):
                p.error(f"--{attr.replace('_', '-')}: unknown task {entry!r}; a GLUE task ({', '.join(TASKS)}) or "
                        "your own data (a spec, a data file or folder, hf:NAME)")  # fmt: skip
            try:
                task = load_task(entry, f"--{attr.replace('_', '-')}")
            except RetortError as e:
                p.error(str(e))
            DATA[task.name] = entry
            names.append(task.name)
        setattr(a, attr, names)


def task_words(task: str) -> list[str]:
    """``--task NAME`` for a GLUE task, ``--data SOURCE`` for one of the user's given to ``--tasks``."""
    return ["--data", DATA[task]] if task in DATA else ["--task", task]


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace, glue_tasks: list[str],
                  at_least_1: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Before any run starts: each GLUE task is known and has a training file under ``a.glue_dir`` (a task
    of the user's was read by ``own_tasks``); each option named in ``at_least_1`` (attribute names) is
    unset or 1 or more. ``p.error`` otherwise."""
    for name in at_least_1:
        value = getattr(a, name)
        if value is not None and int(value) < 1:
            p.error(f"--{name.replace('_', '-')} {value}: at least 1")
    for task in dict.fromkeys(t for t in glue_tasks if t not in DATA):
        try:
            known = get_task(task)
        except RetortError as e:
            p.error(f"--tasks: {e}")
        try:
            split_file(known, Path(a.glue_dir), "train")
        except RetortError as e:
            p.error(f"--glue-dir {a.glue_dir}: {e}")


def per_task(pairs: list[str]) -> dict[str, str]:
    """``["SST-2=10000", ...]`` (a repeatable ``TASK=VALUE`` option) as ``{"SST-2": "10000"}``."""
    return dict(c.split("=", 1) for c in pairs)


# ----------------------------------------------------------------------------------------------
# runs as data, and the runner


def command(*words: str, **options: Any) -> list[str]:
    """``retort`` arguments: ``words`` as given (subcommand words, or flags written out), then one
    ``--flag VALUE`` per option (``glue_dir`` -> ``--glue-dir``; True: the bare flag; None or False: left
    out; a list: the flag once, then its values; ``task`` of the user's: ``--data``). Values are written with
    ``str``."""
    args = list(words)
    for name, value in options.items():
        if value is None or value is False:
            continue
        if name == "task" and value in DATA:  # a task of the user's: retort reads its data
            args += task_words(value)
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args


@dataclass(frozen=True)
class Run:
    """One training run as data: the folder it lives in and the ``retort`` arguments that make it
    (everything but ``--out``)."""

    out: Path
    args: tuple[str, ...]
    quiet: bool = True

    @classmethod
    def of(cls, out: str | Path, *words: str, **options: Any) -> Run:
        """The run in ``out`` made by ``retort WORDS OPTIONS`` (see ``command``)."""
        return cls(Path(out), tuple(command(*words, **options)))

    def also(self, *words: str, **options: Any) -> Run:
        """The same run with more arguments (and the same folder)."""
        return Run(self.out, (*self.args, *command(*words, **options)), self.quiet)

    def make(self) -> dict:
        """Train it unless it is done (``retort``); returns its metrics."""
        return retort(list(self.args), self.out, self.quiet)

    @property
    def model(self) -> Path:
        """The model folder the run keeps."""
        return self.out / "model"


@contextmanager
def locked(path: Path, block: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if needed). Yields False instead of waiting when
    ``block`` is False and another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _identity(args: list[str]) -> list[str]:
    """The command's meaning: subcommand words, then its options sorted, without the neutral ones."""
    words, groups = [], []
    for a in args:
        if a.startswith("--"):
            groups.append([a])
        elif groups:
            groups[-1].append(a)
        else:
            words.append(a)
    return words + [x for g in sorted(groups) if g[0] not in _NEUTRAL for x in g]


def retort(args: list[str], out: Path, quiet: bool = True) -> dict:
    """Run ``retort ARGS --out OUT`` unless OUT/metrics.json exists; resume from OUT/checkpoint if one
    is there. Waits while another process works on OUT. Returns OUT/metrics.json."""
    out = Path(out)
    with locked(out.with_name(out.name + ".lock")):
        record = out / "command.json"
        if record.exists():
            before = json.loads(record.read_text())
            if before != _identity(args):
                raise SystemExit(f"{out} was made by a different command:\n  {before}\nnow asked:\n  {_identity(args)}")
        if not (out / "metrics.json").exists():
            cmd = [sys.executable, "-m", "retort", *args, "--out", str(out), "--no-progress", "--overwrite"]
            if (out / "checkpoint" / "trainer_state.json").exists():
                cmd = [sys.executable, "-m", "retort", args[0], "--out", str(out), "--resume", "--no-progress"]
            print("+", " ".join(cmd), flush=True)
            out.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(_identity(args)))
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        elif not record.exists():  # made before commands were recorded
            record.write_text(json.dumps(_identity(args)))
        return json.loads((out / "metrics.json").read_text())


def call(args: Sequence[Any], quiet: bool = True) -> None:
    """Run ``retort ARGS`` (any command: bench, export, report...) in a child process; its output is
    dropped when ``quiet``. A failure raises ``CalledProcessError``."""
    cmd = [sys.executable, "-m", "retort", *map(str, args)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)


def work_through(jobs: dict[str, Callable[[], Any]], lock_dir: Path, poll_s: float = 20.0) -> dict[str, Any]:
    """Run every job once across all processes calling this with the same jobs and ``lock_dir``.

    A process takes the next job nobody holds; when every remaining job is held elsewhere it waits.
    Returns every job's result (a finished job's function is cheap to call again: its runs exist)."""
    pending = list(jobs)
    while pending:
        progressed = False
        for name in list(pending):
            with locked(lock_dir / f"{name.replace('/', '_')}.job.lock", block=False) as mine:
                if mine:
                    jobs[name]()
                    pending.remove(name)
                    progressed = True
        if pending and not progressed:
            time.sleep(poll_s)
    return {name: fn() for name, fn in jobs.items()}


# ----------------------------------------------------------------------------------------------
# commands the studies share


def transfer_suffix(spec: str | None) -> str:
    """A transfer spec's run-folder suffix: ``MNLI:15000`` -> ``-mnli15k``, ``SST-2:20000`` -> ``-sst-2-20k``,
    ``aug:CoLA:20000`` -> ``-aug-cola20k``, ``data/pairs.tsv`` -> ``-pairs``; None -> ''."""
    if not spec:
        return ""
    name, n = parse_spec(spec)
    aug = "aug-" if name.startswith("aug:") else ""
    stem = Path(name.removeprefix("aug:")).stem.lower()
    count = "" if n is None else (f"{n // 1000}k" if n % 1000 == 0 else str(n))
    join = "-" if count and stem[-1:].isdigit() else ""
    return f"-{aug}{stem}{join}{count}"


def distill_command(task: str, glue_dir: str, teacher: str, student: str, seed: int, threads: int) -> list[str]:
    """``retort distill`` with the arguments every study's runs share; callers add the rest."""
    cmd = ["distill", *task_words(task), "--glue-dir", glue_dir, "--teacher", teacher, "--student", student]
    return cmd + ["--seed", str(seed), "--threads", str(threads)]


def attention_transfer(cmd: list[str], out: Path, epochs: int, lr: float) -> dict:
    """Hedgehog's attention transfer (``--stage attention``: the learned feature maps alone) for the
    linear-student ``distill`` command ``cmd``; returns OUT/metrics.json. Shared by the depth and length
    studies, so the same student makes the same run in either."""
    return retort(command(*cmd, feature_map="hedgehog", stage="attention", epochs=epochs, lr=lr), out)


def dev_predictions(model_dir: Path, glue_dir: str):
    """(predictions, gold) of an STS-B model on the dev set, as numpy arrays; cached beside the model
    (RUN/dev_predictions.json) and read back from there."""
    import numpy as np  # noqa: PLC0415

    cache = model_dir.parent / "dev_predictions.json"
    if cache.exists():
        d = json.loads(cache.read_text())
        return np.asarray(d["pred"]), np.asarray(d["gold"])
    from retort.data.batching import encode  # noqa: PLC0415  (torch, transformers)
    from retort.data.tasks import load_split
    from retort.evaluation.evaluator import predict  # noqa: PLC0415
    from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415

    split = load_split("STS-B", "dev", glue_dir)
    tok = load_tokenizer(str(model_dir))
    pred = predict(load_classifier(str(model_dir), split.task), encode(split, tok))[:, 0]
    gold = np.asarray([e.label for e in split.examples])
    cache.write_text(json.dumps({"pred": pred.tolist(), "gold": gold.tolist()}))
    return pred, gold


# ----------------------------------------------------------------------------------------------
# tables and figures


def print_table(headers: Sequence[str], rows: Sequence[Sequence], markdown: bool = True) -> None:
    """Print a table (Markdown by default) with ``retort.report.tables.table``: floats with 4 decimals."""
    print(table(headers, rows, markdown=markdown))


def figure(*grid: int, **kw: Any):
    """``(fig, axes)`` of ``matplotlib.pyplot.subplots(*grid, **kw)`` on the file-only Agg backend."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt.subplots(*grid, **kw)


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Lay ``fig`` out tightly, write it to ``path`` and free it."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def log2_axes(ax, ylabel: str, xlabel: str = "input tokens", log_y: bool = False) -> None:
    """An axis over input lengths: log2 x, labels, legend and a light grid (log y when ``log_y``)."""
    ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(True, which="both" if log_y else "major", alpha=0.3)
