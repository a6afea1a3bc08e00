"""retort: knowledge distillation for transformer language models, with measured results.

Importing retort makes transformers' ``AutoConfig`` and ``AutoModelForSequenceClassification`` know
retort's linear-attention student (``retort.models.linear``), so a saved student loads with
``AutoModelForSequenceClassification.from_pretrained(folder)``. The registration happens when
transformers' auto classes are loaded (at once if they already are), not here: the ONNX paths
(``retort eval`` of an export, ``dse index``, ``bench``) never import torch or transformers.

The Python API (``retort.api``) is reachable from here: ``retort.teacher``, ``retort.student``,
``retort.export``, ``retort.evaluate``, ``retort.predict`` and ``retort.bench``, loaded on first use so
that ``import retort`` stays light.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

__version__ = "0.1.0"
__all__ = ["teacher", "student", "export", "evaluate", "predict", "bench", "__version__"]
_API = {"teacher", "student", "export", "evaluate", "predict", "bench", "TrainResult", "EvalResult", "ExportResult",
        "BenchResult"}  # fmt: skip


def __getattr__(name: str):
    """The API's functions and result classes, imported from ``retort.api`` when first asked for."""
    if name in _API:
        import retort.api  # noqa: PLC0415  (the commands' modules: numpy, yaml)

        return getattr(retort.api, name)
    raise AttributeError(f"module 'retort' has no attribute {name!r}")


_AUTO = "transformers.models.auto.modeling_auto"


def _register() -> None:
    if "retort.models.linear" not in sys.modules:  # (being imported: it registers itself at its end)
        import retort.models.linear  # noqa: F401, PLC0415  (registers on import)


class _RegisterAfterAuto(importlib.abc.MetaPathFinder):
    """Runs ``_register`` right after transformers' auto-model module has been executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _AUTO:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterAuto)]
            _register()

        spec.loader.exec_module = exec_then_register
        return spec


if _AUTO in sys.modules:
    _register()
elif not any(isinstance(f, _RegisterAfterAuto) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterAuto())
