"""Is OpenVINO faster than onnxruntime for an exported student on this CPU? (issue #14: measure before
offering ``--format openvino``). Times the same export folder's ONNX graph in both runtimes, same
tokenised STS-B dev pairs, batch 1 and 32, tokenisation excluded (the graphs alone), in one process.

    pip install openvino
    python experiments/openvino_check.py --export runs/deploy/stsb/student-none runs/deploy/stsb/student-int8-dynamic \
        --glue-dir ../shared/data/glue --threads 2
"""

from __future__ import annotations

import json
import time

import numpy as np
from harness import Option, add, parser

from retort.data.tasks import load_split
from retort.deploy import runtime
from retort.machine import cpu_info

EXPORT = Option("--export", "export folders ('retort export')", metavar="DIR")
PRECISION = Option("--precision", "OpenVINO INFERENCE_PRECISION_HINT, e.g. f32 (default: its own)")


def timed(fn, feeds, warmup=5):
    """Median ms of ``fn`` over ``feeds``, after ``warmup`` untimed calls."""
    for f in feeds[:warmup]:
        fn(f)
    out = []
    for f in feeds:
        t0 = time.perf_counter()
        fn(f)
        out.append(time.perf_counter() - t0)
    return float(np.percentile(out, 50) * 1000)


def main(argv: list[str] | None = None) -> int:
    """Time every export folder in both runtimes at batch 1 and 32, print each row, write the JSON."""
    p = parser(__doc__)
    add(p, EXPORT, "glue_dir", "threads", "samples", PRECISION, "json", required=["export", "glue_dir"],
        many=["export"], defaults={"threads": 2})  # fmt: skip
    args = p.parse_args(argv)
    import openvino as ov  # noqa: PLC0415  (optional: pip install openvino)

    rows = [ex.texts for ex in load_split("STS-B", "dev", args.glue_dir).examples]
    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": args.threads})
    env = {**cpu_info(), "threads": args.threads, "openvino": ov.__version__, "precision_hint": args.precision}
    env["openvino_default_precision"] = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    result = {"environment": env, "rows": []}
    for folder in args.export:
        model = runtime.OnnxModel(folder, args.threads)
        try:  # the onnxruntime-fused contrib ops (QAttention, EmbedLayerNormalization...) are not OpenVINO's
            compiled = core.compile_model(
                str(model.folder / runtime.MODEL_NAME), "CPU", {"PERFORMANCE_HINT": "LATENCY"}
            )
            request = compiled.create_infer_request()
            names = [i.get_any_name() for i in compiled.inputs]
        except RuntimeError as e:
            request, note = None, str(e).strip().splitlines()[-1]
        for bs in (1, 32):
            feeds = [
                model.encoder(rows[s : s + bs])
                for s in range(0, min(len(rows) - bs + 1, max(args.samples, bs * 10)), bs)
            ]
            ort_ms = timed(model.run, feeds) / bs
            if request is None:
                row = {
                    "export": folder,
                    "quantization": model.meta.get("quantization"),
                    "batch": bs,
                    "onnxruntime_ms": ort_ms,
                    "openvino_ms": None,
                    "openvino_error": note,
                }
                result["rows"].append(row)
                print(f"{folder} b{bs}: onnxruntime {ort_ms:.3f} ms/sample, openvino cannot read it ({note})")
                continue
            ov_ms = timed(lambda f, r=request, ns=names: r.infer({n: f[n] for n in ns}), feeds) / bs
            diff = max(
                float(np.abs(model.run(f) - next(iter(request.infer({n: f[n] for n in names}).values()))).max())
                for f in feeds[:5]
            )
            row = {
                "export": folder,
                "quantization": model.meta.get("quantization"),
                "batch": bs,
                "onnxruntime_ms": ort_ms,
                "openvino_ms": ov_ms,
                "max_abs_diff": diff,
            }
            result["rows"].append(row)
            print(
                f"{folder} b{bs}: onnxruntime {ort_ms:.3f} ms/sample, openvino {ov_ms:.3f} ms/sample, "
                f"max |diff| {diff:.2e}"
            )
    print(result["environment"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
