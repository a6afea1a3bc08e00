"""Latency and memory of a model folder on real dev sentences (the ``retort bench`` command).

Batches are consecutive dev examples in file order, padded to their own longest member (as a
server would see them). Each batch size gets untimed warm-up batches, then every batch is timed
on its own; we report milliseconds per sample (batch time / batch size) at p50 and p90.
Peak resident memory is the process's high-water mark (``VmHWM``), so run one model per process
when comparing models (``retort demo`` does).
"""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np
import torch

from retort.data.batching import collate, encode, encode_pairs
from retort.data.glue import get_task, load_split
from retort.models.biencoder import BiEncoder
from retort.models.hf import load_classifier, load_tokenizer
from retort.models.outputs import forward
from retort.report import table


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux /proc)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark in MiB.

    Reads ``VmHWM`` from /proc (the peak of this program's own memory). ``ru_maxrss`` is only the
    fallback: on Linux it carries the parent's peak across fork and exec, so a benchmark started
    from a large process would report the parent's memory."""
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def environment(threads: int) -> dict:
    import transformers  # noqa: PLC0415

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }


@torch.inference_mode()
def time_batches(model, data, batch_size: int, n_batches: int, warmup: int, pad_id: int) -> dict:
    n = len(data)
    starts = [(i * batch_size) % max(1, n - batch_size + 1) for i in range(warmup + n_batches)]
    times, lengths = [], []
    for j, s in enumerate(starts):
        batch = collate(data, list(range(s, min(n, s + batch_size))), pad_id)
        batch.pop("labels", None)
        t0 = time.perf_counter()
        forward(model, batch)
        dt = time.perf_counter() - t0
        if j >= warmup:
            times.append(dt * 1000 / batch_size)
            lengths.append(batch["input_ids"].shape[1])
    t = np.asarray(times)
    return {
        "batch_size": batch_size,
        "batches": len(times),
        "ms_per_sample_p50": float(np.percentile(t, 50)),
        "ms_per_sample_p90": float(np.percentile(t, 90)),
        "ms_per_sample_mean": float(t.mean()),
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
    max_length: int = 128,
) -> dict:
    torch.set_num_threads(threads)
    task = get_task(task_name)
    split = load_split(task, task.dev_splits[0], glue_dir)
    rss_before = rss_mb()
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir, task).eval()
    rss_loaded = rss_mb()
    data = (encode_pairs if isinstance(model, BiEncoder) else encode)(split, tokenizer, max_length)
    results = [
        time_batches(model, data, bs, max(samples // bs, 10), warmup, tokenizer.pad_token_id or 0) for bs in batch_sizes
    ]
    return {
        "model": str(model_dir),
        "task": task.name,
        "split": split.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": model.config.num_hidden_layers,
        "hidden": model.config.hidden_size,
        "latency": results,
        "rss_model_mb": rss_loaded - rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "environment": environment(threads),
    }


def print_bench(results: list[dict]) -> None:
    rows = []
    for r in results:
        for lat in r["latency"]:
            rows.append(
                [
                    r["model"],
                    f"{r['parameters'] / 1e6:.1f}M",
                    lat["batch_size"],
                    f"{lat['ms_per_sample_p50']:.2f}",
                    f"{lat['ms_per_sample_p90']:.2f}",
                    f"{lat['seq_len_mean']:.0f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
            )
    print(table(["model", "params", "batch", "ms/sample p50", "ms/sample p90", "mean len", "peak RSS MiB"], rows))
    env = results[0]["environment"] if results else {}
    print(f"torch {env.get('torch')}, {env.get('threads')} threads, {env.get('cpu')}")


def bench_in_subprocess(
    model_dir, task: str = "STS-B", glue_dir: str | None = None, threads: int = 2, samples: int = 256, out=None
) -> dict:
    """``retort bench`` in a fresh process, so that the peak memory it reports is this model's alone.
    Writes and returns ``out`` (default: MODEL/../bench.json)."""
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    out = Path(out) if out else Path(model_dir).parent / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "retort",
        "bench",
        "--model",
        str(model_dir),
        "--task",
        task,
        "--threads",
        str(threads),
        "--samples",
        str(samples),
        "--json",
        str(out),
    ]
    if glue_dir:
        cmd += ["--glue-dir", glue_dir]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())
