"""The experiment scripts' small pure helpers (run folder names, transfer-set variants)."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import compare_methods  # noqa: E402
from _runs import transfer_suffix  # noqa: E402


def test_transfer_run_suffixes():
    assert transfer_suffix(None) == ""
    assert transfer_suffix("MNLI:15000") == "-mnli15k"  # the linear_quality runs' folders
    assert transfer_suffix("MNLI:1500") == "-mnli1500"
    assert transfer_suffix("data/pairs.tsv") == "-pairs"
    assert transfer_suffix("SST-2:20000") == "-sst-2-20k"
    assert transfer_suffix("aug:CoLA:20000") == "-aug-cola20k"


def test_compare_methods_transfer_variants():
    args = Namespace(transfer_for=["CoLA=SST-2:20000", "STS-B=MNLI:15000"])
    assert compare_methods.run_name(args, "CoLA", "multilevel+transfer") == (
        "multilevel+sst-2-20k",
        ["--transfer", "SST-2:20000"],
    )
    assert compare_methods.run_name(args, "STS-B", "kd+aug") == ("kd+mnli15k", ["--transfer", "MNLI:15000"])
    assert compare_methods.run_name(args, "SST-2", "multilevel+transfer") == ("multilevel", [])  # reuses the plain run
    assert compare_methods.run_name(args, "CoLA", "kd") == ("kd", [])
