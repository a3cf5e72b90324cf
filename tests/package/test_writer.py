"""A write killed at any moment leaves the destination absent, complete-old or complete-new.

A helper process imports modelpack once and forks writers on request, so each
writer starts in a millisecond and the parent can SIGKILL it at a random point
of ``write_package``. After every kill the destination must open and verify as
one whole package: the old one or one of the new ones. Two writers racing for
one path end with one complete package and nothing left beside it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelpack
from modelpack._package import open_package
from modelpack.errors import PackageNotFoundError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the writer helper forks (POSIX only)")

BLOB_BYTES = 2**20  # big enough that a write takes a while, small enough to stay fast

# The helper: reads commands on stdin, forks a writer for each, reports pids and exit codes.
HELPER = r"""
import os, sys, traceback
from modelpack.manifest import Manifest, ModelInfo, TensorSpec
from modelpack._package import write_package

MANIFEST = Manifest(name="crash", task="regression", model=ModelInfo(format="onnx", file="model.onnx"),
                    inputs=(TensorSpec("X", "float32"),), outputs=(TensorSpec("Y", "float32"),))
BLOB = int(sys.argv[1])

def files(version):
    tag = version.encode()
    return {"model.onnx": b"model " + tag, "extra/version.txt": tag,
            "extra/blob.bin": (tag * (BLOB // len(tag) + 1))[:BLOB]}

def writer(dest, version, times):
    try:
        for i in range(times):
            write_package(dest, MANIFEST, files(version if times < 10**9 else f"{version}-{i}"))
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)

print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split("\t")
    args = [a.strip() for a in args]
    if command == "write":
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            writer(args[0], args[1], int(args[2]))
        print("pid", pid, flush=True)
    elif command == "wait":
        _, status = os.waitpid(int(args[0]), 0)
        print("status", status, flush=True)
"""


class Helper:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def _ask(self, *words: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\t".join(words) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()[1]

    def write(self, dest: Path, version: str, times: int = 10**9) -> int:
        """Fork a writer; ``times`` = 10**9 means write "<version>-<i>" until killed."""
        return int(self._ask("write", str(dest), version, str(times)))

    def wait(self, pid: int) -> int:
        return int(self._ask("wait", str(pid)))


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    src = str(Path(modelpack.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # a single-threaded process forks safely
    log = tmp_path_factory.mktemp("helper") / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", HELPER, str(BLOB_BYTES)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n", log.read_text()
    yield Helper(proc)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == 0, log.read_text()


def state(dest: Path) -> str:
    """'absent', or the version of the complete package at ``dest`` (raising if it is not complete)."""
    try:
        pkg = open_package(dest)
    except PackageNotFoundError:
        return "absent"
    with pkg:
        version = pkg.read_bytes("extra/version.txt")
        tag = version
        assert pkg.read_bytes("extra/blob.bin") == (tag * (BLOB_BYTES // len(tag) + 1))[:BLOB_BYTES]
        assert pkg.read_bytes("model.onnx") == b"model " + tag
        return version.decode()


def kill_many(helper: Helper, dest: Path, kills: int, seed: int, mid_writes: int = 1) -> tuple[Counter[str], int]:
    """SIGKILL writers at random moments; (versions seen after each kill, kills that left a sibling).

    After ``kills`` kills it goes on until ``mid_writes`` of them landed in the middle of a
    write: on a fast machine a write is short next to the fork, and a fixed count may miss it.
    """
    rng = random.Random(seed)
    started = time.perf_counter()
    pid = helper.write(dest, "old", times=1)
    assert helper.wait(pid) == 0
    # Kill anywhere from before the first write to the middle of the third or so.
    window = 2.5 * (time.perf_counter() - started)
    seen: Counter[str] = Counter()
    mid_write = 0
    done = 0
    while done < kills or (mid_write < mid_writes and done < kills + 400):
        pid = helper.write(dest, "new")
        time.sleep(rng.uniform(0.0, window))
        os.kill(pid, signal.SIGKILL)
        status = helper.wait(pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        current = state(dest)  # complete, or an exception fails the test
        assert current == "old" or current.startswith("new-"), current
        seen[current] += 1
        mid_write += bool(siblings(dest))  # a sibling left behind: the kill landed mid-write
        done += 1
    return seen, mid_write


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_killed_writers_leave_a_complete_package(helper, tmp_path, form: str) -> None:
    seen, mid_write = kill_many(helper, tmp_path / form, kills=12, seed=1)
    assert sum(seen.values()) >= 12
    assert len(seen) > 1, f"no write ever finished: {seen}"  # the kills were spread over writes
    assert mid_write, "no kill landed in the middle of a write"


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_the_next_write_removes_what_killed_writers_left(helper, tmp_path, form: str) -> None:
    dest = tmp_path / form
    _, mid_write = kill_many(helper, dest, kills=6, seed=3)
    assert mid_write and siblings(dest)
    for leftover in siblings(dest):  # as if the kills were a while ago: a fresh sibling may be a live writer's
        os.utime(leftover, (time.time() - 60, time.time() - 60))
    assert helper.wait(helper.write(dest, "final", times=1)) == 0
    assert state(dest) == "final"
    assert [p.name for p in tmp_path.iterdir()] == [form]


def test_a_live_writers_sibling_is_left_alone(tmp_path) -> None:
    from modelpack._atomic import replacing_file, sweep

    dest = tmp_path / "out.bin"
    with replacing_file(dest) as fh:
        fh.write(b"partial")
        (tmp_sibling,) = siblings(dest)
        os.utime(tmp_sibling, (time.time() - 60, time.time() - 60))
        assert sweep(dest) == []  # its writer holds it
        assert tmp_sibling.exists()
    assert dest.read_bytes() == b"partial" and not siblings(dest)


def siblings(dest: Path) -> list[Path]:
    """The temporary siblings of ``dest`` (writers in progress, or killed)."""
    return [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_killed_writers_leave_a_complete_package_many_times(helper, tmp_path, form: str) -> None:
    seen, mid_write = kill_many(helper, tmp_path / form, kills=300, seed=2, mid_writes=101)
    assert sum(seen.values()) >= 300
    assert len(seen) >= 3, f"the kills did not spread over several writes: {seen}"
    assert mid_write > 100, "too few kills landed in the middle of a write"


@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_two_writers_on_one_path_end_with_one_complete_package(helper, tmp_path, form: str) -> None:
    dest = tmp_path / form
    first, second = helper.write(dest, "A", times=12), helper.write(dest, "B", times=12)
    assert helper.wait(first) == 0 and helper.wait(second) == 0  # neither writer failed
    assert state(dest) in ("A", "B")
    assert [p.name for p in tmp_path.iterdir()] == [form]  # nothing left beside it


@pytest.mark.slow
@pytest.mark.parametrize("form", ["pkg.mpk", "pkg"])
def test_four_writers_on_one_path_many_times(helper, tmp_path, form: str) -> None:
    dest = tmp_path / form
    pids = [helper.write(dest, tag, times=40) for tag in "ABCD"]
    assert [helper.wait(pid) for pid in pids] == [0, 0, 0, 0]
    assert state(dest) in tuple("ABCD")
    assert [p.name for p in tmp_path.iterdir()] == [form]
