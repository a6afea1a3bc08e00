"""The smallest memory a model needs to run (``retort bench --memory-cap``): a child process is started
under a memory limit, and a binary search finds the smallest limit under which it still succeeds.

The limit is a cgroup's where this machine lets us make one (root; cgroup v2 ``memory.max``, or v1
``memory.limit_in_bytes`` with swap capped alike), else an address-space limit (``RLIMIT_AS``, as
``prlimit --as``), which counts reserved virtual memory too and so reads higher; the result says which.
What runs under the limit is the caller's (``bench.memory_cap`` runs a short ``retort bench``).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path


class MemoryCap:
    """Run a child under a memory limit: a fresh cgroup per trial (v2 memory.max, or v1
    memory.limit_in_bytes with swap capped alike) where we may make one, else RLIMIT_AS (``prlimit --as``)."""

    V1 = Path("/sys/fs/cgroup/memory")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self):
        self.root, self.limit_file, self.method, self.groups = None, None, "rlimit-as (prlimit --as)", []
        for root, limit_file, probe in (
            (self.V2, "memory.max", "cgroup.controllers"),
            (self.V1, "memory.limit_in_bytes", "memory.limit_in_bytes"),
        ):
            if not (root / probe).is_file():
                continue
            test = root / f"retort-bench-{os.getpid()}-probe"
            try:
                test.mkdir(exist_ok=True)
                usable = (test / limit_file).is_file()
                test.rmdir()
            except OSError:
                continue
            if usable:
                self.root, self.limit_file = root, limit_file
                self.method = "cgroup-v2 memory.max" if root == self.V2 else "cgroup-v1 memory.limit_in_bytes"
                break

    def preexec(self, mib: int) -> Callable[[], None]:
        """A ``preexec_fn`` for ``subprocess`` that puts the child under ``mib`` MiB: it joins a new cgroup
        with that limit (made here), or sets its own RLIMIT_AS."""
        limit = mib * 2**20
        if self.root is None:

            def rlimit():
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

            return rlimit
        group = self.root / f"retort-bench-{os.getpid()}-{len(self.groups)}"
        group.mkdir()
        self.groups.append(group)
        (group / self.limit_file).write_text(str(limit))
        swap = group / "memory.memsw.limit_in_bytes"
        if swap.is_file():  # no swapping around the limit (v1; must not be below the memory limit)
            swap.write_text(str(limit))
        procs = group / "cgroup.procs"

        def join():
            procs.write_text(str(os.getpid()))

        return join

    def close(self) -> None:
        """Remove the cgroups this cap made (those still busy are left)."""
        for group in self.groups:
            try:
                group.rmdir()
            except OSError:
                pass


def smallest_cap(
    succeeds: Callable[[Callable[[], None]], bool], low: int = 16, high: int = 4096, step: int = 8
) -> dict:
    """Binary search of the smallest cap (MiB, to within ``step``) under which ``succeeds(preexec_fn)``,
    a trial run started with that ``preexec_fn``, returns True. Returns the method, the cap (None when even
    ``high`` fails), the resolution and every cap tried with its outcome."""
    cap = MemoryCap()
    tried = {}
    try:

        def ok(mib: int) -> bool:
            tried[mib] = succeeds(cap.preexec(mib))
            return tried[mib]

        if not ok(high):
            return {"method": cap.method, "smallest_cap_mb": None, "note": f"fails even at {high} MiB"}
        while high - low > step:
            mid = (low + high) // 2
            if ok(mid):
                high = mid
            else:
                low = mid
    finally:
        cap.close()
    return {"method": cap.method, "smallest_cap_mb": high, "resolution_mb": step, "tried": tried}
