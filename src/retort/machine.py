"""Facts of the machine a number was measured on: the CPU's name and vector extensions, its cores,
this process's memory, the library versions. ``retort bench``, the evidence page and the experiment
scripts name the CPU with every time they publish, from here."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

# the most CPU threads an option may ask for: a few per core of this machine (more only oversubscribes,
# and tens of thousands abort the process inside OpenMP)
MAX_THREADS = max(8, 4 * (os.cpu_count() or 1))


def memory_bytes() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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


def cpu_info() -> dict:
    """The CPU's name and the vector extensions that decide int8 and bf16 speed."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    name = name or platform.processor()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni")
    return {"cpu": name, "cpu_flags": [f for f in wanted if f in flags]}


def cpu_label() -> str:
    """``AMD EPYC (AVX-512, 2 cores)``: the name every published time carries."""
    info = cpu_info()
    isa = "AVX-512" if "avx512f" in info["cpu_flags"] else "AVX2" if "avx2" in info["cpu_flags"] else "no AVX2"
    return f"{info['cpu']} ({isa}, {os.cpu_count()} cores)"


def environment(threads: int) -> dict:
    """Python, threads, cores, CPU and the versions of the numeric libraries already imported."""
    env = {
        "python": platform.python_version(),
        "threads": threads,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        **cpu_info(),
    }
    if "torch" in sys.modules:
        import torch  # noqa: PLC0415

        env["torch"] = torch.__version__
    if "transformers" in sys.modules:
        env["transformers"] = sys.modules["transformers"].__version__
    if "onnxruntime" in sys.modules:
        env["onnxruntime"] = sys.modules["onnxruntime"].__version__
    return env


def busy(threads: int, seconds: float = 0.5) -> str | None:
    """A warning when other processes hold this machine's cores (over a quarter of their time in the next
    ``seconds``, while this process sleeps: from ``/proc/stat``), else None (and None where there is no
    /proc/stat): timings taken now say little about a quiet machine (a PyTorch model timed on 2 threads
    beside a 2-thread training ran 23x slower, an int8 export 3.5x)."""

    def ticks() -> tuple[int, int] | None:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        values = [int(v) for v in first[1:9]]
        return sum(values) - values[3] - values[4], sum(values)  # (busy, all): idle and iowait are not busy

    before = ticks()
    time.sleep(seconds)
    after = ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    if share <= 0.25:
        return None
    cores = os.cpu_count() or 1
    return (
        f"this machine is busy (other processes used {share:.0%} of its {cores} cores just now) while {threads} "
        "threads are to be timed: the timings, and the plan made from them, hold for a machine this busy only; "
        "plan on a quiet one"
    )
