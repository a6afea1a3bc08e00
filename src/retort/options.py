"""Every command-line option, declared once: its flag, type, default, allowed range or choices, and help.

Two kinds of declaration, one mechanism:

- the fields of the run config (``config.TrainConfig``, ``config.ObjectiveConfig``) are declared in
  ``config.py`` with ``opt(...)``; ``add_config_flags`` turns those tagged for a command into flags;
- every other option (what a model is evaluated on, how many threads, where a JSON goes) is an
  ``Option`` below, in ``OPTIONS``; a command or an experiment script asks for it by name with
  ``add(parser, "threads", "glue_dir", ...)``.

A value is checked where it is declared: the ``type`` argparse calls is ``Option.parse``, which converts
the text and checks the range (finite numbers, low/high bounds, choices), so a bad value is one line and
exit 2 from the parser, before any work. A command never re-checks a range by hand. Use sites may say
only ``required`` and ``many`` (one value or several); everything else comes from the declaration, so
two parsers cannot disagree about one option (``tests/test_options.py`` walks every parser to hold that).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from retort.config import ObjectiveConfig, TrainConfig, flag_name

DECLARATION = "_retort_declaration"  # the attribute each argparse action carries: where it was declared


@dataclass(frozen=True)
class Option:
    """One command-line option. ``type`` None means an on/off flag (``store_true``); ``positional`` a
    positional argument (``flag`` is then its name)."""

    flag: str
    help: str
    type: Callable[[str], Any] | None = str
    default: Any = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    positional: bool = False
    dest: str | None = None

    @property
    def name(self) -> str:
        """The attribute argparse stores the value under."""
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    def allowed(self) -> str:
        """The rule in words, for help and errors: ``>= 1, <= 1024`` or ``one of a, b``."""
        parts = []
        if self.low is not None:
            parts.append(f"> {self.low}" if self.open_low else f">= {self.low}")
        if self.high is not None:
            parts.append(f"<= {self.high}")
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        return ", ".join(parts)

    def parse(self, text: str) -> Any:
        """Text to value, the range checked; ``argparse.ArgumentTypeError`` (one line) otherwise."""
        kind = self.type or str
        try:
            value = kind(text)
        except (TypeError, ValueError):
            noun = {int: "a whole number", float: "a number"}.get(kind, "a value")
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        check_value(value, self.low, self.high, self.open_low, self.choices, self.allowed)
        return value

    def add(self, parser: argparse.ArgumentParser, *, required: bool = False, many: bool = False) -> argparse.Action:
        """Add this option to ``parser``; ``many``: one or more values (a list)."""
        rule = self.allowed()
        default = self.default
        extra = [f"default {default}"] if default not in (None, False, []) else []
        text = (self.help + (f" ({'; '.join(extra + ([rule] if rule else []))})" if extra or rule else ""))
        kw: dict[str, Any] = {"help": text.replace("%", "%%")}
        if self.type is None:
            kw.update(action="store_true")
        else:
            kw.update(type=self.parse, metavar=self.metavar or _metavar(self.type))
            if many:
                kw["nargs"] = "+"
                default = [default] if default is not None and not isinstance(default, list) else default
        if self.positional:
            kw.pop("metavar", None)
            action = parser.add_argument(self.flag, **kw, **({"nargs": "+"} if many else {}))
        else:
            if self.type is not None or default is not None:
                kw["default"] = default
            action = parser.add_argument(self.flag, dest=self.name, required=required, **kw)
        setattr(action, DECLARATION, self)
        return action


def _metavar(kind: Callable) -> str:
    return {int: "N", float: "X"}.get(kind, "VALUE")


def check_value(value, low, high, open_low, choices, allowed: Callable[[], str]) -> None:
    """The one range rule of options and config fields: finite, within [low, high] (or (low, high]),
    one of ``choices``. Raises ``argparse.ArgumentTypeError`` with the rule in words."""
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value!r}: must be a finite number ({allowed()})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        below = low is not None and (value <= low if open_low else value < low)
        if below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value!r}: must be {allowed()}")
    if choices and value not in choices:
        raise argparse.ArgumentTypeError(f"{value!r}: choose from {', '.join(choices)}")


OPTIONS: dict[str, Option] = {}


def declare(*options: Option) -> None:
    """Put options into ``OPTIONS`` under their names; a name declared twice is an error at import."""
    for o in options:
        if o.name in OPTIONS:
            raise ValueError(f"option {o.name} declared twice")
        OPTIONS[o.name] = o


def add(parser: argparse.ArgumentParser, *names: str, required: tuple[str, ...] = (), many: tuple[str, ...] = ()):
    """Add the declared options ``names`` to ``parser`` (``required``/``many``: names among them)."""
    for name in names:
        OPTIONS[name].add(parser, required=name in required, many=name in many)


# ----------------------------------------------------------------------------------------------
# the declarations shared by commands (and experiment scripts)

declare(
    Option("--glue-dir", "GLUE folder in the official TSV layout (default: $GLUE_DIR, else the hub)", metavar="DIR"),
    Option("--skip-bad-rows", "count, report and skip malformed rows instead of stopping", type=None),
    Option("--threads", "CPU threads (default: torch's / onnxruntime's, all cores)", type=int, low=1, high=1024),
)


# ----------------------------------------------------------------------------------------------
# the run config's fields as flags


def config_fields(groups: set[str]):
    """(dataclass, field) of every config field whose ``cli`` tag is in ``groups``."""
    for cls in (TrainConfig, ObjectiveConfig):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli") in groups:
                yield cls, f


def add_config_flags(p: argparse.ArgumentParser, groups: set[str]) -> None:
    """One flag per config field tagged for ``groups``, generated from its declaration in config.py.
    Flags default to None, meaning "not given", so that --config and a resumed run's config.yaml keep
    their values; ranges are checked when the config is built."""
    for cls, f in config_fields(groups):
        hint = typing.get_type_hints(cls)[f.name]
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint  # X | None: X
        meta = f.metadata
        extra = []
        if f.default is not dataclasses.MISSING and f.default is not None and f.name != "out":
            extra.append(f"default {f.default}")
        elif cls.__name__ == "ObjectiveConfig":
            extra.append("default: the method's")
        if meta.get("range"):
            low, high, open_low = meta["range"]
            extra.append((f"> {low}" if open_low else f">= {low}") + (f", <= {high}" if high is not None else ""))
        if meta.get("choices"):
            extra.append("one of " + ", ".join(meta["choices"]))
        text = (meta["help"] + (f" ({'; '.join(extra)})" if extra else "")).replace("%", "%%")
        kw: dict = {"dest": f.name, "default": None, "help": text}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            item = typing.get_args(base)[0] if typing.get_origin(base) is list else base
            kw.update(type=item, metavar=meta.get("metavar") or {int: "N", float: "X"}.get(item, "NAME"))
            if typing.get_origin(base) is list:
                kw["nargs"] = "+"
        action = p.add_argument(flag_name(f), **kw)
        setattr(action, DECLARATION, f)
