"""The code blocks of the documentation pages: found, and run in order (``python run_page.py PAGE``).

A page's fenced ``python`` and ``bash`` blocks run in order in the current
folder: python blocks share one namespace, bash blocks run with ``bash -e``; the
first failing block ends the run with its page line. A block that cannot run in
the tests is preceded by ``<!-- not-run: the reason -->``; a page that needs
optional modules says ``<!-- requires: module another -->`` (``java``: a Java
runtime on the PATH); a page that takes long says ``<!-- slow: the reason -->``.
docs/contributing-docs.md says the same for writers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: Pages whose every block runs (or says why not): the guides, not the reference pages.
GUIDE_PAGES = sorted([DOCS / "index.md", DOCS / "getting-started.md", DOCS / "concepts.md", DOCS / "faq.md",
                      DOCS / "contributing-docs.md", *(DOCS / "guides").glob("*.md")])
RUNNABLE = ("python", "bash")

_FENCE = re.compile(r"^```(\w*)\s*$")
_NOT_RUN = re.compile(r"^<!-- not-run: (.+?) -->$")
_REQUIRES = re.compile(r"^<!-- requires: (.+?) -->$", re.M)
_SLOW = re.compile(r"^<!-- slow: (.+?) -->$", re.M)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int                # 1-based line of the opening fence
    not_run: str | None      # the reason, when marked


def blocks(text: str) -> list[Block]:
    """Top-level fenced blocks, in page order."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        reason = _NOT_RUN.match(before)
        found.append(Block(match.group(1), "\n".join(body) + "\n", start + 1, reason.group(1) if reason else None))
        i += 1
    return found


def requires(text: str) -> list[str]:
    return [name for group in _REQUIRES.findall(text) for name in group.split()]


def slow_reason(text: str) -> str | None:
    match = _SLOW.search(text)
    return match.group(1) if match else None



def main(page: Path) -> int:
    namespace: dict[str, object] = {"__name__": "__main__"}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = 0
    for block in blocks(page.read_text(encoding="utf-8")):
        if block.language not in RUNNABLE or block.not_run:
            continue
        where = f"{page.name}:{block.line}"
        if block.language == "bash":
            done = subprocess.run(["bash", "-e", "-c", block.code], env=env, capture_output=True, text=True)
            sys.stdout.write(done.stdout)
            if done.returncode:
                sys.stderr.write(f"FAILED {where} (bash, exit {done.returncode}):\n{done.stderr}")
                return 1
        else:
            try:
                exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - our own documentation
            except BaseException:
                sys.stderr.write(f"FAILED {where}:\n{traceback.format_exc()}")
                return 1
        ran += 1
    sys.stdout.write(f"ran {ran} block(s) of {page.name}\n")
    return 0


if __name__ == "__main__":
    warnings.simplefilter("default")  # a library's deprecation warning is not the guide's failure
    sys.exit(main(Path(sys.argv[1])))
