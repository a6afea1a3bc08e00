"""``retort``: one console script, one subcommand per job. The parsers are built from the command modules
in ``retort.commands`` (each adds its own); ``main`` parses, runs the chosen command, and turns a user's
mistake into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys

from retort.cachedir import limit_bytes
from retort.commands import bench, cache, compress, demo, dse, embed, export, mine_pairs, models, predict, report, train
from retort.commands import eval as eval_command
from retort.errors import RetortError
from retort.paths import DISK_ERRNOS, disk_error

# in the order ``retort --help`` lists them
COMMANDS = (train, dse, embed, mine_pairs, models, cache, report, eval_command, predict, export, bench, compress, demo)


class _Parser(argparse.ArgumentParser):
    """A command-line mistake (a mistyped option, a missing or out-of-range value) is one line and exit
    code 2, like every other bad input, under the command's name (``retort cache: error: ...``); ``--help``
    still shows the whole usage."""

    def error(self, message: str):
        """Print ``message`` as one line and exit 2."""
        head, _, rest = message.partition(": ")
        flag = head.removeprefix("argument ").split("/")[-1]
        if head.startswith("argument ") and rest.startswith(flag + " "):  # a declared option's own message
            message = rest
        command = " ".join(self.prog.split()[:2])
        self.exit(2, f"{command}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, except that a command's own parser (one with no subcommands of its own) refuses
        what it does not know itself, so that ``retort demo --studnet`` is a ``retort demo`` error (argparse
        would hand it up and report it under ``retort``)."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None and " " in self.prog:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    """The ``retort`` parser with every subcommand; each parsed command carries its ``run`` function."""
    parser = _Parser(prog="retort", description="Knowledge distillation with measured results.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2: a problem with the input, 130: interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a usage error, already one line on stderr; --help still exits
        if stop.code != 2:
            raise
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own progress bar and tables say what happens
    if "transformers" in sys.modules:  # already imported (a caller in Python): the variable came too late
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        limit_bytes()  # $RETORT_CACHE_MAX_GIB checked before anything is written, not when a cache is first made
        return args.run(args)
    except RetortError as e:
        print(f"retort {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"retort {args.command}: interrupted (resume with --resume)", file=sys.stderr)
        return 130
    except Exception as e:  # the machine, not the input: a full disk, a read-only or forbidden place (an
        # OSError, or a library's own error that holds one, such as safetensors' SafetensorError): one line
        disk = disk_error(e)
        if disk is None or disk.errno not in DISK_ERRNOS:
            raise
        where = f"{disk.filename}: " if disk.filename else ""
        print(f"retort {args.command}: error: {where}{disk.strerror} (nothing half-written was kept)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
