"""How many threads a process gives its matrix products: ``--threads`` when given, else ``OMP_NUM_THREADS`` when
set, else every core this process may use (its CPU affinity, capped by a cgroup CPU quota). What that buys is measured
in docs/RESULTS.md ("Threads, processes and the step's share of the peak")."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

from .errors import SeqImputeError, require_whole

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None when there
    is none or it cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: its affinity set, capped by the cgroup's quota (rounded up: a quota of
    1.5 cores still runs two threads part of the time)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def choose(threads: int | None = None) -> int:
    """The thread count: ``threads`` when given, else OMP_NUM_THREADS when it is a positive integer, else
    `usable_cores`."""
    if threads is not None:
        require_whole("threads", threads)
        return int(threads)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise SeqImputeError(f"OMP_NUM_THREADS={env!r} is not a whole number; set it to a thread count such as 2, "
                                 f"or unset it to use every core.") from None
        if n >= 1:
            return n
    return usable_cores()


def use(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `choose` (``threads``); returns the count."""
    n = choose(threads)
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def scoped(threads: int | None):
    """torch's intra-op threads set to ``threads`` for a block (None: left as they are), then restored."""
    old = torch.get_num_threads()
    if threads is not None and threads != old:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
