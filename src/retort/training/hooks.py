"""Hooks into the training loop: code a caller runs at fixed points of a run, without the loop reading
anything from the environment. The tests use them to kill a run at a chosen moment (``kill_hooks``) and
check that ``--resume`` ends exactly like an unbroken run.

``fit(setup, hooks=Hooks(...))`` takes them directly. A run started from the command line gets the hooks
installed in its process with ``install_hooks`` before ``retort.cli.main(argv)`` is called, for example
as the entry script of ``python -c`` or ``torchrun``::

    import sys
    from retort.training.hooks import install_hooks, kill_hooks
    install_hooks(kill_hooks(at_step=5))
    from retort.cli import main
    sys.exit(main(sys.argv[1:]))
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

SAVE_POINTS = ("files", "swap")  # inside a checkpoint save: model written, the rest not / between the renames


@dataclass(frozen=True)
class Hooks:
    """What runs at fixed points of a run; a hook left as None does nothing.

    ``after_step(step)``: after optimizer step ``step`` (1-based) and the logging, evaluation and
    checkpoint that follow it. ``inside_save(step, point)``: inside the checkpoint save of step ``step``,
    at ``point`` ``"files"`` (the model's weights written, the rest of the checkpoint not yet) and
    ``"swap"`` (between the two renames that put the new checkpoint in place of the old one).
    """

    after_step: Callable[[int], None] | None = None
    inside_save: Callable[[int, str], None] | None = None


_installed = Hooks()


def install_hooks(hooks: Hooks | None) -> None:
    """Make ``hooks`` those of every later ``fit`` in this process that is given none (None: no hooks);
    the way in for a run started through ``retort.cli.main``."""
    global _installed  # noqa: PLW0603  (the one documented way in for a command-line run)
    _installed = hooks if hooks is not None else Hooks()


def installed_hooks() -> Hooks:
    """The hooks ``install_hooks`` installed in this process (no hooks by default)."""
    return _installed


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # no clean exit: nothing flushed, no handler runs


def kill_hooks(at_step: int = 0, save_step: int = 0, save_point: str = "files") -> Hooks:
    """Fault injection for the resume tests: hooks that kill this process with SIGKILL right after step
    ``at_step``, or inside the checkpoint save of step ``save_step`` at ``save_point`` (see ``Hooks``);
    0 leaves that hook out."""
    if save_point not in SAVE_POINTS:
        raise ValueError(f"save_point {save_point!r}: choose from {', '.join(SAVE_POINTS)}")

    def after_step(step: int) -> None:
        if step == at_step:
            _sigkill()

    def inside_save(step: int, point: str) -> None:
        if step == save_step and point == save_point:
            _sigkill()

    return Hooks(after_step if at_step else None, inside_save if save_step else None)
