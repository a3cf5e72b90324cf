"""Run every benchmark (bench_*.py) and assemble docs/benchmarks.md from their sections.

    python benchmarks/run.py            # all of them
    python benchmarks/run.py core pmml  # some, by topic; the others keep their last results
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
DOC = HERE.parent / "docs" / "benchmarks.md"
# Sections in the order the page shows them.
ORDER = ["core", "inputs", "sklearn", "boosting", "trees", "deep", "pmml", "pmml_compiled", "devices", "gpu", "serve",
         "batch"]

HEADER = """# Benchmarks

Performance targets live here, not in timed unit tests. Each benchmark compares side by
side, in one process and one run, modelpack against raw ONNX Runtime and against what a
user would otherwise pick. Regenerate with `make bench` (or `python benchmarks/run.py
TOPIC`); each section names its command, machine and versions. Figures measured on a
shared 2-core machine vary by 10-20 % between runs: read the ratios, not the digits.

Contenders are timed in alternation (rounds, medians), and each timed stretch starts 0.1 s
after the previous one ended (benchmarks/_common.py, since 2026-12-06; sections measured
earlier ran without the pause). ONNX Runtime's worker threads spin for tens of milliseconds
after a run, OpenMP's for a while too: a contender timed right after another shared the
cores with them (on 2 cores, the tree engine's 10k-row call took 15.4 ms within 20 ms of an
ONNX Runtime run and 7.2 ms after 50 ms; ONNX Runtime's own call 32 against 26 ms).
"""


def main(topics: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    chosen = [s for s in scripts if not topics or s.stem.removeprefix("bench_") in topics]
    failed = []
    for script in chosen:
        start = time.perf_counter()
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
        print(f"   {time.perf_counter() - start:.0f} s", flush=True)
    sections = {p.stem: p.read_text().strip() for p in sorted((HERE / "results").glob("*.md"))}
    ordered = [sections.pop(k) for k in ORDER if k in sections] + list(sections.values())
    DOC.write_text(HEADER + "\n" + "\n\n".join(ordered) + "\n")
    print(f"wrote {DOC}" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
