"""Progress a newcomer sees, whether stderr is a terminal or a log file.

On a terminal: a tqdm bar. Otherwise (``make demo 2>&1 | tee log``, a batch job): one line every
``RETORT_PROGRESS_SECONDS`` seconds (default 30) with the count, the rate and the time left, because a
bar drawn with carriage returns shows nothing useful in a file. Training, evaluation, teacher caching,
``dse index`` and ``mine-pairs`` all report through ``progress``.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


def _every() -> float:
    try:
        return max(0.0, float(os.environ.get("RETORT_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class LineProgress:
    """One line every ``every`` seconds (and at the end): ``desc: step 40/360 (11%), 52.1 samples/s,
    loss 0.61, ETA 1m40s``. ``unit`` names what is counted, ``scale`` the samples per unit (a step is a
    batch: ``scale`` = batch size)."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "",
        batch_size: int = 1,
        every: float | None = None,
        stream=None,
        unit: str = "step",
        rate_unit: str = "samples",
    ):
        self.total, self.n, self.desc, self.batch_size = total, initial, desc, batch_size
        self.every = _every() if every is None else every
        self.unit, self.rate_unit = unit, rate_unit
        self.stream = stream or sys.stderr
        self.start_n, self.t0 = initial, time.perf_counter()
        self.last, self.postfix = self.t0, {}

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; print a line if ``every`` seconds have passed or the count is complete."""
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.n == self.total:
            self.last = now
            rate = (self.n - self.start_n) / max(now - self.t0, 1e-9)  # units/s
            left = (self.total - self.n) / rate if rate > 0 else float("nan")
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            print(
                f"{self.desc}: {self.unit} {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%), "
                f"{rate * self.batch_size:.1f} {self.rate_unit}/s{extra}, ETA {minutes(left)}",
                file=self.stream,
                flush=True,
            )

    def set_postfix(self, refresh: bool = False, **values) -> None:
        """Values (``loss=0.61``) to append to the next lines, as tqdm's ``set_postfix``."""
        self.postfix = values

    def close(self) -> None:
        """Nothing to close (tqdm's interface): the last line was printed by ``update``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def minutes(seconds: float) -> str:
    """Seconds as ``1m40s``; ``?`` for NaN (no rate known yet)."""
    if seconds != seconds:
        return "?"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def progress(
    total: int,
    desc: str,
    enabled: bool = True,
    batch_size: int = 1,
    initial: int = 0,
    unit: str = "step",
    rate_unit: str = "samples",
):
    """A tqdm bar on a terminal, a line every 30 s otherwise (``enabled=False``: neither)."""
    if enabled and not sys.stderr.isatty():
        return LineProgress(total, initial, desc, batch_size, unit=unit, rate_unit=rate_unit)
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, mininterval=5.0, unit=unit)


def tracked(batches: list[list[int]], desc: str | None):
    """Yield each batch (a list of row indices) and report the rows done; silent without ``desc``."""
    if not desc:
        yield from batches
        return
    bar = progress(sum(len(b) for b in batches), desc, unit="row", rate_unit="rows")
    try:
        for b in batches:
            yield b
            bar.update(len(b))
    finally:
        bar.close()
