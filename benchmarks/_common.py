"""Shared by the benchmarks: interleaved timing, machine description, result files."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


#: Seconds each timed stretch waits first. ONNX Runtime's worker threads spin for tens of
#: milliseconds after a run, and OpenMP's for a while too: without the pause, a contender
#: timed right after another shares the cores with its spinning threads (measured on a
#: 2-core machine: the tree engine's 10k-row call took 15.4 ms within 20 ms of an ONNX
#: Runtime run, 7.2 ms after 50 ms or more, and ONNX Runtime's own 26 against 32 ms).
PAUSE = 0.1


def interleaved(funcs: dict[str, Callable[[], object]], *, rounds: int = 30, number: int = 200,
                pause: float = PAUSE) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation so drift hits all alike;
    each stretch starts ``pause`` seconds after the previous one ended, so each is timed as it
    runs alone."""
    for f in funcs.values():  # warm up
        for _ in range(max(3, number // 10)):
            f()
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    # As timeit does: no garbage collection inside a timed stretch, so one function's
    # garbage is not collected on another's clock.
    enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            for name, f in funcs.items():
                gc.collect()
                time.sleep(pause)
                gc.disable()
                start = time.perf_counter()
                for _ in range(number):
                    f()
                samples[name].append((time.perf_counter() - start) / number)
                gc.enable()
    finally:
        if enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def versions(packages: Sequence[str]) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, {platform.system()}"


def write_section(topic: str, title: str, body: str, packages: Sequence[str]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{topic}.md"
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    path.write_text(f"## {title}\n\nMeasured {stamp} on {machine()}; {versions(packages)}.\n\n{body.strip()}\n")
    return path


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"
