"""Latency and memory of model folders on real dev sentences (the ``retort bench`` command).

One harness for both backends: a PyTorch folder (teacher, student, DSE bi-encoder) runs in torch, an
export folder (``retort export``) in onnxruntime, and both are fed by the same fast tokenizer
(``runtime.TextEncoder``), so a timing covers what a server does per request: tokenise, pad the batch to
its own longest member, run the model. Batches are consecutive dev examples in file order; each
configuration gets untimed warm-up batches, then every batch is timed on its own. We report
milliseconds per sample (batch time / batch size) at p50, p90 and p99, and throughput (samples over the
summed batch times). ``--fill`` packs consecutive dev texts into inputs of exactly ``--max-length``
tokens, to measure long inputs.

Peak memory is the process's high-water mark (``VmHWM``: model, runtime, tokenizer, data, activations).
Several models (or thread counts) in one command each run in a fresh process, so every peak is its own;
ratios are against the first model. ``--memory-cap`` also finds, per model, the smallest memory limit
under which a short run still succeeds (``deploy/memory.py``: a cgroup limit where this machine lets us
make one, else an address-space limit; the JSON says which). The table and plot of the results are
``report/speed.py``'s. This module imports torch only for torch folders.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retort.data.spec import folder_task
from retort.data.tasks import get_task, load_split
from retort.deploy import runtime
from retort.deploy.memory import smallest_cap
from retort.errors import RetortError
from retort.machine import environment, peak_rss_mb, rss_mb
from retort.models.check import check_model_folder

# --------------------------------------------------------------------------------------------
# runners: examples in, logits out, tokenisation included


class OnnxRunner:
    """An export folder run by onnxruntime: called with a batch of examples, it tokenises, pads and runs
    them; ``info`` describes the model for the JSON."""

    backend = "onnxruntime"

    def __init__(self, folder: str, threads: int, max_length: int | None):
        self.model = runtime.OnnxModel(folder, threads, max_length)
        self.max_length = self.model.max_length
        self.info = {
            "quantization": self.model.meta.get("quantization"),
            "source_model": self.model.meta.get("source_model"),  # the folder it was exported from
            "kind": self.model.kind,
            "layers": self.model.meta.get("layers"),
            "hidden": self.model.meta.get("hidden"),
            "file_mb": self.model.file_bytes / 2**20,
            "scores": "cosine" if runtime.embeds_only(self.model.meta) else None,
        }

    def __call__(self, examples: list[tuple[str, ...]]) -> np.ndarray:
        if self.info["scores"] == "cosine":
            # a sentence-transformers export: what serving it costs, each text embedded, a pair's cosine
            vectors = [self.model.embed_batch([ex[i] for ex in examples]) for i in range(len(examples[0]))]
            return vectors[0] if len(vectors) == 1 else (vectors[0] * vectors[1]).sum(-1, keepdims=True)
        return self.model.logits(examples)


def _stored_dtypes(files: list[Path]) -> set[str]:
    """The dtypes of the floating-point tensors in safetensors files (``F32``, ``F16``, ``BF16``), from headers."""
    from safetensors import safe_open  # noqa: PLC0415

    found = set()
    for f in files:
        with safe_open(str(f), "np") as st:
            found |= {d for k in st.keys() if (d := st.get_slice(k).get_dtype()).startswith(("F", "BF"))}
    return found


class TorchRunner:
    """A PyTorch folder (classifier or DSE bi-encoder) run by torch on the CPU, fed by the same fast
    tokenizer as ``OnnxRunner`` (``runtime.TextEncoder``); ``info`` describes the model for the JSON."""

    backend = "torch"

    def __init__(self, folder: str, task, threads: int, max_length: int | None):
        import torch  # noqa: PLC0415

        from retort.models.biencoder import BiEncoder  # noqa: PLC0415
        from retort.models.hf import load_classifier, settle_max_length  # noqa: PLC0415

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = load_classifier(folder, task).eval()
        self.biencoder = isinstance(self.model, BiEncoder)
        config = self.model.config
        max_length = self.max_length = settle_max_length(max_length, config, folder)
        tok_dir = Path(folder)
        if not (tok_dir / "tokenizer.json").is_file():
            raise RetortError(f"{folder}: no tokenizer.json (save the model with its fast tokenizer)")
        self.encoder = runtime.TextEncoder(tok_dir, max_length, getattr(config, "pad_token_id", None) or 0)
        files = sorted(Path(folder).rglob("*.safetensors"))
        weights = sum(p.stat().st_size for p in files)
        stored = _stored_dtypes(files)  # run in fp32 whatever the file holds; its size is the file's
        self.info = {
            "quantization": "none (fp32)" if stored <= {"F32"} else f"none (fp32; file {'/'.join(sorted(stored))})",
            "kind": "biencoder" if self.biencoder else "classifier",
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "file_mb": weights / 2**20,
        }

    def __call__(self, examples: list[tuple[str, ...]]):
        from retort.models.outputs import forward  # noqa: PLC0415

        t = self.torch
        with t.inference_mode():
            if self.biencoder:
                a = self.encoder([(ex[0],) for ex in examples])
                b = self.encoder([(ex[1],) for ex in examples])
                batch = {k: t.from_numpy(v) for k, v in a.items()}
                batch["b_input_ids"] = t.from_numpy(b["input_ids"])
                batch["b_attention_mask"] = t.from_numpy(b["attention_mask"])
            else:
                batch = {k: t.from_numpy(v) for k, v in self.encoder(examples).items()}
            return forward(self.model, batch).logits.numpy()


def fill_to_length(examples: list[tuple[str, ...]], encoder: runtime.TextEncoder, length: int, count: int):
    """``count`` single texts of about ``length`` tokens each, made by joining consecutive dev texts."""
    texts, out, i = [t for ex in examples for t in ex], [], 0
    while len(out) < count:
        parts, n = [], 2
        while n < length:
            parts.append(texts[i % len(texts)])
            n += len(encoder.tokenizer.encode(parts[-1], add_special_tokens=False).ids)
            i += 1
        out.append((" ".join(parts),))
    return out


def time_batches(run, examples: list, batch_size: int, n_batches: int, warmup: int, encoder) -> dict:
    """Time ``n_batches`` batches of consecutive examples, one at a time, after ``warmup`` untimed ones:
    milliseconds per sample at p50, p90, p99 and on average, samples per second, and the padded lengths."""
    n = len(examples)
    starts = [(i * batch_size) % max(1, n - batch_size + 1) for i in range(warmup + n_batches)]
    times, lengths = [], []
    for j, s in enumerate(starts):
        batch = examples[s : s + batch_size]
        t0 = time.perf_counter()
        run(batch)
        dt = time.perf_counter() - t0
        if j >= warmup:
            times.append(dt)
            lengths.append(max(len(e.ids) for e in encoder.encode(batch)))
    t = np.asarray(times) * 1000 / batch_size
    return {
        "batch_size": batch_size,
        "batches": len(times),
        "ms_per_sample_p50": float(np.percentile(t, 50)),
        "ms_per_sample_p90": float(np.percentile(t, 90)),
        "ms_per_sample_p99": float(np.percentile(t, 99)),
        "ms_per_sample_mean": float(t.mean()),
        "samples_per_s": float(batch_size * len(times) / np.sum(times)),
        "seq_len_mean": float(np.mean(lengths)),
        "seq_len_max": int(max(lengths)),
    }


def bench_folder(
    model_dir: str,
    task_name: str = "STS-B",
    glue_dir: str | None = None,
    threads: int = 2,
    batch_sizes: list[int] = (1, 32),
    samples: int = 256,
    warmup: int = 5,
    max_lengths: list[int | None] = (None,),
    fill: bool = False,
) -> dict:
    """Every (max length, batch size) of one model in this process."""
    model_dir = check_model_folder(model_dir, "--model", "model")  # a run folder: its model, said on stderr
    if not Path(model_dir).is_dir():
        raise RetortError(f"--model {model_dir}: no such model folder")
    folder_task(model_dir)  # a task of the user's: registered from the folder's spec, for get_task
    task = get_task(task_name)
    split = load_split(task, task.dev_splits[0], glue_dir)
    if not split.examples:
        raise RetortError(f"{split.source}: no examples to time")
    examples = [ex.texts for ex in split.examples]
    rss_before = rss_mb()
    latency, info, backend = [], {}, None
    for length in max_lengths:
        if runtime.is_export_folder(model_dir):
            run = OnnxRunner(model_dir, threads, length)
            encoder = run.model.encoder
        else:
            run = TorchRunner(model_dir, task, threads, length)
            encoder = run.encoder
        if not info:
            info, backend, rss_loaded = run.info, run.backend, rss_mb()
        length = run.max_length
        inputs = fill_to_length(examples, encoder, length, max(samples, max(batch_sizes))) if fill else examples
        if fill and info.get("kind") == "biencoder":
            inputs = [(t[0], t[0]) for t in inputs]
        for bs in batch_sizes:
            row = time_batches(run, inputs, bs, max(samples // bs, 10), warmup, encoder)
            latency.append({"max_length": length, **row})
    return {
        "model": str(model_dir),
        "backend": backend,
        **info,
        "task": task.name,
        "split": split.name,
        "fill": fill,
        "latency": latency,
        "rss_model_mb": rss_loaded - rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "environment": environment(threads),
    }


# --------------------------------------------------------------------------------------------
# several models, each in its own process


def _bench_cmd(model, task, glue_dir, threads, batch_sizes, samples, warmup, max_lengths, fill, out) -> list[str]:
    cmd = [sys.executable, "-m", "retort", "bench", "--model", str(model), "--task", task, "--threads", str(threads)]
    cmd += ["--batch-sizes", *map(str, batch_sizes), "--samples", str(samples), "--warmup", str(warmup)]
    if any(max_lengths):
        cmd += ["--max-length", *map(str, max_lengths)]
    cmd += ["--json", str(out)]
    if fill:
        cmd.append("--fill")
    if glue_dir:
        cmd += ["--glue-dir", str(glue_dir)]
    return cmd


def bench_in_subprocess(
    model_dir,
    task: str = "STS-B",
    glue_dir: str | None = None,
    threads: int = 2,
    samples: int = 256,
    out=None,
    batch_sizes=(1, 32),
    warmup: int = 5,
    max_lengths=(None,),
    fill: bool = False,
    preexec_fn=None,
) -> dict:
    """``retort bench`` of one model in a fresh process, so that the peak memory it reports is this
    model's alone. Writes and returns ``out`` (default: MODEL/../bench.json)."""
    out = Path(out) if out else Path(model_dir).parent / "bench.json"
    cmd = _bench_cmd(model_dir, task, glue_dir, threads, batch_sizes, samples, warmup, max_lengths, fill, out)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RetortError(f"bench of {model_dir} failed: {last}")
    return json.loads(out.read_text())


def memory_cap(model, task: str, glue_dir: str | None, threads: int) -> dict:
    """The smallest memory limit (MiB) under which a short batch-1 ``retort bench`` of ``model`` still
    succeeds, found by ``memory.smallest_cap``; the record says how the limit was set."""
    with tempfile.TemporaryDirectory() as tmp:

        def succeeds(preexec) -> bool:
            try:
                bench_in_subprocess(model, task, glue_dir, threads, 16, Path(tmp) / "b.json", (1,), 2, (None,), False,
                                    preexec)  # fmt: skip
            except RetortError:
                return False
            return True

        return smallest_cap(succeeds)


def run_bench(
    models: list[str],
    task: str,
    glue_dir: str | None,
    threads: list[int],
    batch_sizes: list[int],
    samples: int,
    warmup: int,
    max_lengths: list[int],
    fill: bool = False,
    memory_cap: bool = False,
    log=print,
    rounds: int = 1,
) -> dict:
    """Each (model, threads) in its own process, one after another; ratios against the first model.

    ``rounds`` > 1 runs the whole sequence that many times: on a shared or virtual machine one process can be
    a third slower than the next for the same model, so each number is the median over the rounds and each
    ratio the median of the ratios measured in the same round (side by side in time)."""
    for m in models:
        if not Path(m).is_dir():
            raise RetortError(f"--model {m}: no such model folder")
    per_round = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            runs = []
            for i, m in enumerate(models):
                for t in threads:
                    log(
                        f"[bench] {m} ({t} thread{'s' * (t > 1)})"
                        + (f", round {r + 1} of {rounds}" if rounds > 1 else "")
                    )
                    out = Path(tmp) / f"{r}-{i}-{t}.json"
                    runs.append(
                        bench_in_subprocess(m, task, glue_dir, t, samples, out, batch_sizes, warmup, max_lengths, fill)
                    )
            _ratios(runs, models[0])
            per_round.append(runs)
    runs = _merge_rounds(per_round) if rounds > 1 else per_round[0]
    caps = {}
    if memory_cap:
        for m in models:
            log(f"[bench] smallest memory cap for {m}")
            try:
                caps[m] = memory_cap(m, task, glue_dir, threads[0])
            except OSError as e:  # the timings above stand; say why the cap is missing
                caps[m] = {"method": "failed", "smallest_cap_mb": None, "note": str(e)}
    for r in runs:
        r["memory_cap"] = caps.get(r["model"])
    return {
        "task": task,
        "models": list(map(str, models)),
        "rounds": rounds,
        "runs": runs,
        "environment": runs[0]["environment"],
    }


def engine(run: dict) -> str:
    """How a run executes, as its ratios name it: ``torch fp32``, ``onnxruntime int8-dynamic``, ..."""
    quant = str(run.get("quantization") or "none")
    return f"{run.get('backend', '?')} {'fp32' if quant.startswith('none') else quant}"


def _ratios(runs: list[dict], first_model: str) -> None:
    """``speedup_vs_first`` of every latency row: the first model's p50 at the same threads, length and batch
    over this one's; ``mixed`` when the two run on different engines (backend or quantization), and then
    ``speedup_same_engine``: the same ratio against the first model listed that runs on this one's engine
    (None when none does, or when that is this model itself)."""
    key = lambda r, lat: (r["environment"]["threads"], lat["max_length"], lat["batch_size"])  # noqa: E731
    first_of = {}  # engine -> its first model's p50 per key
    for r in runs:
        if engine(r) not in first_of or r["model"] in first_of[engine(r)]["model"]:
            entry = first_of.setdefault(engine(r), {"model": [r["model"]]})
            entry.update({key(r, lat): lat["ms_per_sample_p50"] for lat in r["latency"]})
    first_run = next((r for r in runs if r["model"] == str(first_model)), None)
    first = first_of.get(engine(first_run), {}) if first_run else {}
    for r in runs:
        mixed = first_run is not None and engine(r) != engine(first_run)
        for lat in r["latency"]:
            base = first.get(key(r, lat))
            lat["speedup_vs_first"] = base / lat["ms_per_sample_p50"] if base else None
            lat["mixed"] = mixed
            own = r["model"] in first_of[engine(r)]["model"]  # the reference of its engine: nothing to compare
            same = (None if own else first_of[engine(r)].get(key(r, lat))) if mixed else base
            lat["speedup_same_engine"] = same / lat["ms_per_sample_p50"] if same else None


def _merge_rounds(per_round: list[list[dict]]) -> list[dict]:
    """One run per (model, threads): every timing the median over the rounds, the ratio the median of the
    per-round ratios, peak memory the highest; each round's p50 and ratio kept beside them."""
    merged = []
    for k, first in enumerate(per_round[0]):
        run = json.loads(json.dumps(first))
        run["peak_rss_mb"] = max(rounds[k]["peak_rss_mb"] for rounds in per_round)
        for j, lat in enumerate(run["latency"]):
            each = [rounds[k]["latency"][j] for rounds in per_round]
            for key in ("ms_per_sample_p50", "ms_per_sample_p90", "ms_per_sample_p99", "ms_per_sample_mean",
                        "samples_per_s"):  # fmt: skip
                lat[key] = float(np.median([e[key] for e in each]))
            ratios = [e["speedup_vs_first"] for e in each]
            lat["speedup_vs_first"] = float(np.median(ratios)) if None not in ratios else None
            same = [e.get("speedup_same_engine") for e in each]
            lat["speedup_same_engine"] = float(np.median(same)) if None not in same else None
            lat["rounds_p50"] = [e["ms_per_sample_p50"] for e in each]
            lat["rounds_speedup_vs_first"] = ratios
        merged.append(run)
    return merged
