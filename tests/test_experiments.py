"""The experiment scripts' small pure helpers (run folder names, transfer-set variants)."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import compare_methods  # noqa: E402
import linear_quality  # noqa: E402


def test_linear_quality_run_suffixes():
    assert linear_quality.data_name(None) == ""
    assert linear_quality.data_name("MNLI:15000") == "-mnli15k"
    assert linear_quality.data_name("MNLI:1500") == "-mnli1500"
    assert linear_quality.data_name("data/pairs.tsv") == "-pairs"


def test_compare_methods_transfer_variants():
    args = Namespace(transfer_for=["CoLA=SST-2:20000", "STS-B=MNLI:15000"])
    assert compare_methods.run_name(args, "CoLA", "multilevel+transfer") == (
        "multilevel+transfer",
        ["--transfer", "SST-2:20000"],
    )
    assert compare_methods.run_name(args, "SST-2", "multilevel+transfer") == ("multilevel", [])  # reuses the plain run
    assert compare_methods.run_name(args, "CoLA", "kd") == ("kd", [])
