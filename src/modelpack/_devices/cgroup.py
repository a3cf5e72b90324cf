"""How many CPUs this process may really use: affinity and the container's CPU quota.

``os.cpu_count()`` reports the host's cores. In a container limited to two CPUs
on a 64-core host, a thread pool sized from it runs 64 threads that the kernel
throttles every scheduling period, which shows as latency spikes. The quota is
read from cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``)
along the process's own cgroup path and its parents; the smallest one wins.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cpu_quota", "usable_cpus"]

ROOT = Path("/sys/fs/cgroup")
SELF = Path("/proc/self/cgroup")


def cpu_quota(root: Path | None = None, self_cgroup: Path | None = None) -> float | None:
    """CPUs allowed by the cgroup CPU quota (e.g. 1.5), or None when there is no quota.

    Example
    -------
    >>> cpu_quota() is None or cpu_quota() > 0
    True
    """
    root, self_cgroup = root or ROOT, self_cgroup or SELF
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            quotas += _v2_quotas(root, path)
        elif "cpu" in controllers.split(","):
            quotas += _v1_quotas(root, controllers, path)
    return min(quotas) if quotas else None


def usable_cpus(root: Path | None = None, self_cgroup: Path | None = None) -> int:
    """Whole CPUs this process may keep busy: affinity, then the quota rounded down (at least 1).

    Rounding down follows the quota's purpose: a thread more than the quota
    allows is throttled for the rest of each period, which costs more latency
    than the fraction of a CPU it gains.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(root, self_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/path`` and each parent folder up to ``base``; ``base`` alone when path is "/"."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _v2_quotas(root: Path, path: str) -> list[float]:
    found = []
    for folder in _ancestors(root, path):
        try:
            fields = (folder / "cpu.max").read_text().split()
        except OSError:
            continue
        value = _ratio(*fields) if len(fields) == 2 else None
        if value is not None:
            found.append(value)
    return found


def _v1_quotas(root: Path, controllers: str, path: str) -> list[float]:
    found = []
    mounts = {root / controllers, root / "cpu", root / "cpu,cpuacct"}
    for mount in mounts:
        # Inside a container the mount shows its own cgroup at the top, while
        # /proc/self/cgroup may still name the host's path: look at both.
        for folder in [*_ancestors(mount, path), mount]:
            try:
                quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                period = (folder / "cpu.cfs_period_us").read_text().strip()
            except OSError:
                continue
            value = _ratio(quota, period)
            if value is not None:
                found.append(value)
    return found


def _ratio(quota: str, period: str) -> float | None:
    """quota/period in CPUs; None for "max", -1 or anything unreadable."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None
