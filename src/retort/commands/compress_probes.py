"""The timings ``retort compress`` plans from: the teacher and random probe shapes, built under
``OUT/probes``, exported to the backend that will ship and timed at batch 1 on the task's dev rows, each
timing in a fresh process as the final bench times, and the shapes that decide a plan timed together
beside the teacher's export in one bench run with rounds (``Probes.shortlist``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from retort.commands import bench as bench_command
from retort.commands.compress_search import BACKENDS, least_medians
from retort.data.tasks import load_split
from retort.deploy.plan import Shape
from retort.machine import cpu_label


def probe_shapes(teacher: Shape, head_size: int) -> list[Shape]:
    """Three shapes to time besides the teacher, of three depths and two widths, all well inside it: enough
    points for the cost model's three coefficients, cheap to build and export."""
    step = 2 * head_size
    mid = max(step, (teacher.hidden // 2) // step * step)
    small = step
    deep = max(2, teacher.layers // 2)
    shapes = [Shape(1, mid, mid // head_size, 4 * mid), Shape(2, small, small // head_size, 4 * small),
              Shape(deep + (deep == 2), mid, mid // head_size, 4 * mid)]  # fmt: skip
    return [s for s in dict.fromkeys(shapes) if s != teacher]


class Probes:
    """The teacher and random models of probe shapes, saved under ``OUT/probes`` (reused when there), exported
    to the backend, and timed at batch 1 on the task's dev rows, each timing in its own process."""

    fresh_process = True  # False: time in this process (tests that need a plan, not its timing protocol)

    def __init__(self, teacher: str, task, out: Path, glue_dir, backend: str, threads: int, samples: int):
        from retort.models.families import width  # noqa: PLC0415
        from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415

        self.teacher, self.task, self.out, self.glue_dir = teacher, task, out, glue_dir
        self.backend, self.threads, self.samples = backend, threads, samples
        self.model = load_classifier(teacher, task, option="--teacher", kind="teacher")
        self.tokenizer = load_tokenizer(teacher, "--teacher")
        self.teacher_config = self.model.config
        layers, hidden, heads, ffn = width(self.teacher_config)
        self.teacher_shape = Shape(layers, hidden, heads, ffn)
        self.head_size = hidden // heads
        self.cpu = ""

    def build(self, shape) -> str:
        """A random model of ``shape`` with the teacher's vocabulary and head, saved (once) for timing.

        Every parameter is jittered: a fresh model's LayerNorm and bias tensors are equal (ones, zeros),
        the ONNX exporter shares equal initializers, and int8 quantisation then quantised the one shared
        LayerNorm bias for the embedding's fused op and dequantised it on every call for all the others
        (25 DequantizeLinear calls, 15% of a random 4x256's kernel time, in no trained model)."""
        import torch  # noqa: PLC0415

        from retort.models.hf import save_model  # noqa: PLC0415
        from retort.models.student import StudentShape, build_student  # noqa: PLC0415

        folder = self.out / "probes" / shape.name / "model"
        if not (folder / "config.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            student = build_student(self.model, StudentShape(shape.layers, shape.hidden, shape.heads, shape.ffn),
                                    init="random")  # fmt: skip
            with torch.no_grad():
                for p in student.parameters():
                    p.add_(torch.randn_like(p), alpha=1e-3)
            save_model(student, self.tokenizer, folder)
        return str(folder)

    def train_rate(self, batch: int = 16, steps: int = 3) -> float:
        """Seconds per million multiply-adds of training, from timed forward and backward passes of the teacher
        (the median of ``steps``, after one to warm up) on a batch of the task's training rows."""
        import torch  # noqa: PLC0415

        rows = load_split(self.task, "train", self.glue_dir, max_samples=batch).examples
        columns = list(zip(*(ex.texts for ex in rows)))
        enc = self.tokenizer(*columns, padding=True, truncation=True, max_length=128, return_tensors="pt")
        tokens = float(enc["attention_mask"].sum()) / len(rows)
        model = self.model.train()
        times = []
        with torch.enable_grad():
            for _ in range(steps + 1):
                start = time.perf_counter()
                model(**enc).logits.float().sum().backward()
                times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        model.eval()
        seconds = sorted(times[1:])[len(times[1:]) // 2]
        return seconds / (len(rows) * 3 * self.teacher_shape.macs(tokens) / 1e6)

    def time_in_backend(self, name: str, folder: str) -> dict:
        """``folder``'s batch-1 latency in the backend that will be shipped (``exported``)."""
        return self.time(self.exported(name, folder))

    def exported(self, name: str, folder: str) -> str:
        """``folder`` in the backend that will be shipped: exported once, under ``OUT/probes/NAME/BACKEND``
        (the folder itself for torch)."""
        if BACKENDS[self.backend] is None:
            return folder
        from retort.deploy.export import export_model  # noqa: PLC0415  (torch, onnx)
        from retort.deploy.runtime import is_export_folder  # noqa: PLC0415

        target = self.out / "probes" / name / self.backend
        if not is_export_folder(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            export_model(folder, str(target), "onnx", BACKENDS[self.backend], self.task.name, self.glue_dir,
                         calibration_rows=32, evaluate=False, force=True, threads=self.threads,
                         log=lambda *_: None)  # fmt: skip
        return str(target)

    def shortlist(self, shapes: list, teacher: str, k: int, rounds: int = 3) -> dict:
        """``shapes`` built as probes and timed in one ``retort bench`` run with rounds beside the teacher and its
        export, as the verdict times (``OUT/probes/shortlist-K.json``). Returns each one's least round median:
        ``{"shapes": name -> ms, "teacher_backend_ms": ms, "teacher_torch_ms": ms}``. This machine's speed
        drifts by minutes (the same teacher export at 1.97 and 1.32 ms in one plan), so a shape's time is read
        as a ratio to the teacher's export beside it (``make_plan``)."""
        folders = {s.name: self.exported(s.name, self.build(s)) for s in shapes}
        ref_folder = self.exported("teacher", teacher)
        models = list(dict.fromkeys([teacher, ref_folder, *folders.values()]))  # torch: the export is the teacher
        if self.fresh_process:
            ms = least_medians(bench_command.bench(
                models, task=self.task.name, glue_dir=self.glue_dir, threads=[self.threads], batch_sizes=[1],
                samples=self.samples, rounds=rounds, json_out=str(self.out / "probes" / f"shortlist-{k}.json"),
                png=str(self.out / "probes" / f"shortlist-{k}.png")))  # fmt: skip
        else:  # tests: in this process
            ms = {f: self.time(f, repeats=1)["ms"] for f in models}
        return {"shapes": {n: ms[f] for n, f in folders.items()}, "teacher_backend_ms": ms[ref_folder],
                "teacher_torch_ms": ms[teacher]}  # fmt: skip

    def time(self, folder: str, repeats: int = 3) -> dict:
        """Milliseconds per call at batch 1 on the task's dev rows, each timing in a fresh process as the final
        bench times the candidates (a model timed in a long-lived process ran up to 14% faster than in its
        own), the least of ``repeats`` medians (on a shared machine noise only adds time: one disturbed timing
        of the PyTorch teacher, 32.4 ms against 21.6 ms quiet, once set a 10x target 50% too loose), and their
        mean length in tokens."""
        from retort.deploy.bench import bench_folder, bench_in_subprocess  # noqa: PLC0415

        task, glue_dir, threads, samples = self.task.name, self.glue_dir, self.threads, self.samples
        with tempfile.TemporaryDirectory() as tmp:
            rows = [(bench_in_subprocess(folder, task, glue_dir, threads, samples, Path(tmp) / f"{i}.json", (1,), 5)
                     if self.fresh_process else bench_folder(folder, task, glue_dir, threads, [1], samples, 5)
                     )["latency"][0] for i in range(repeats)]  # fmt: skip
        self.cpu = cpu_label()
        return {"ms": min(r["ms_per_sample_p50"] for r in rows), "tokens": rows[0]["seq_len_mean"],
                "repeats": [r["ms_per_sample_p50"] for r in rows]}  # fmt: skip
