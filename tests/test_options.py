"""Every option is declared once (retort/options.py, or a config field in retort/config.py): each action of
every parser and subparser of ``retort`` was made from a declaration and has help, and two declarations
of one flag agree on type, range and choices unless the flag is in ``MEANINGS`` (one flag, two meanings,
each declared once). A value outside a declared range is one line and exit code 2, before any work."""

from __future__ import annotations

import argparse

import pytest

from conftest import error_lines
from retort import options
from retort.cli import build_parser, main
from retort.config import MAX_THREADS

# flags whose declarations legitimately differ, and why
MEANINGS = {
    "--max-length": "training truncation (TrainConfig.max_length, >= 2: a pair needs [CLS] and [SEP]) vs the "
    "truncation a saved model is evaluated, exported or timed at (>= 1, as those commands always accepted)",
    "--max-drop": "the drop an export may have on dev before it is refused (points) vs compress's quality floor on "
    "held-out rows (points, or 3% of the teacher's score)",
}


def _parsers(parser: argparse.ArgumentParser, path: str = "retort"):
    """(command path, parser) for the parser and every subparser under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _actions():
    """(command path, action) of every option and positional argument of every parser."""
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                yield path, action


def test_every_action_is_declared_and_has_help():
    assert len(list(_actions())) > 100
    undeclared = [f"{p}: {a.option_strings or a.dest}" for p, a in _actions() if not hasattr(a, options.DECLARATION)]
    assert not undeclared, undeclared
    helpless = [f"{p}: {a.option_strings or a.dest}" for p, a in _actions() if not (a.help or "").strip()]
    assert not helpless, helpless


def test_declarations_of_one_flag_agree():
    rules: dict[str, dict[tuple, list[str]]] = {}
    for path, action in _actions():
        rule = options.rule_of(getattr(action, options.DECLARATION))
        for flag in action.option_strings or [action.dest]:
            if flag.startswith("--no-") and isinstance(action, argparse.BooleanOptionalAction):
                continue
            rules.setdefault(flag, {}).setdefault(rule, []).append(path)
    disagree = {flag: by_rule for flag, by_rule in rules.items() if len(by_rule) > 1 and flag not in MEANINGS}
    assert not disagree, disagree
    assert all(len(rules[flag]) > 1 for flag in MEANINGS), "a flag in MEANINGS no longer has two meanings"


def test_the_parsers_use_the_declared_types():
    """The declaration is what argparse calls: a range cannot be left out at one use site."""
    for _, action in _actions():
        decl = getattr(action, options.DECLARATION)
        if isinstance(decl, options.Option) and decl.type is not None:
            assert action.type == decl.parse, action.option_strings


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["eval", "--task", "RTE", "--model", "m", "--batch-size", "0"], "--batch-size 0: must be >= 1"),
        (
            ["eval", "--task", "RTE", "--model", "m", "--threads", "2000"],
            f"--threads 2000: must be >= 1, <= {MAX_THREADS}",
        ),
        (["bench", "--model", "m", "--warmup", "-1"], "--warmup -1: must be >= 0"),
        (["bench", "--model", "m", "--batch-sizes", "1,0"], "--batch-sizes 1,0: must be >= 1"),
        (["bench", "--model", "m", "--samples", "many"], "--samples many: not a whole number"),
        (["export", "--model", "m", "--out", "x", "--quantize", "int4"], "--quantize int4: choose from none"),
        (["export", "--model", "m", "--out", "x", "--max-drop", "nan"], "--max-drop nan: must be a finite number"),
        (["dse", "search", "--index", "i", "--query", "q", "-k", "0"], "-k 0: must be >= 1"),
        (["dse", "train", "--teacher", "t", "--out", "o", "--c", "1.5"], "--c 1.5: must be >= 0, <= 1"),
        (["cache", "clear", "--kind", "models"], "--kind models: choose from teacher_outputs, corpus"),
        (["demo", "--method", "best"], "--method best: choose from kd,"),
    ],
)
def test_a_value_out_of_range_is_one_line_and_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"retort {argv[0]}: error: {needle}"), err
    with pytest.raises(SystemExit) as stop:  # the parser on its own exits the same way
        build_parser().parse_args(argv)
    assert stop.value.code == 2


def test_the_api_checks_against_the_same_declarations():
    from retort.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"threads=0: must be >= 1"):
        options.check_option(options.OPTIONS["threads"], 0, "threads=")
    options.check_option(options.OPTIONS["quantize"], "int8-static")
    with pytest.raises(ConfigError, match=r"--quantize int4: choose from none, int8-dynamic, int8-static"):
        options.check_option(options.OPTIONS["quantize"], "int4")


def test_a_default_and_a_rule_reach_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "untimed batches first (default 5; >= 0)" in text and "e.g. 1 8 32 (or 1,8,32) (default 1 32; >= 1)" in text
    assert "CPU threads, by default all" in text
