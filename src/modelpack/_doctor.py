"""``modelpack doctor``: what this machine can run, and whether a package will run here.

Each finding is a problem (with the fix that solves it), a note, or fine. The
package check is the real one: the package is loaded and its stored samples
re-run, as ``verify`` does, after the cheaper checks have said what is missing.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from ._version import __version__
from .errors import ModelpackError

__all__ = ["Finding", "diagnose"]


@dataclass(frozen=True)
class Finding:
    """One line of the diagnosis: ``level`` is ``"ok"``, ``"note"`` or ``"problem"``."""

    topic: str
    level: str
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {"ok": "[ok]", "note": "[--]", "problem": "[!!]"}[self.level]
        return f"{mark} {self.topic}: {self.detail}" + (f". Fix: {self.fix}" if self.fix else "")


def diagnose(package: str | None = None) -> list[Finding]:
    """The findings for this machine, and for ``package`` if given.

    Example
    -------
    >>> print("\\n".join(map(str, diagnose("churn.mpk"))))   # doctest: +SKIP
    [ok] python: 3.11.7 on Linux x86_64, modelpack 0.1.0
    ...
    """
    from ._devices import devices, usable_cpus

    found = [Finding("python", "ok", f"{platform.python_version()} on {platform.system()} {platform.machine()}, "
                                     f"modelpack {__version__}")]
    report = devices(probe=True)
    if report.onnxruntime:
        found.append(Finding("onnxruntime", "ok", f"{report.onnxruntime} ({report.package}); runs on "
                                                  f"{', '.join(report.working) or 'nothing'}"))
    else:
        found.append(Finding("onnxruntime", "problem", "not installed: ONNX packages cannot run here",
                             "pip install 'modelpack[cpu]' (or [gpu], [openvino], [directml])."))
    found += [Finding("devices", "note", line) for line in report.advice if report.onnxruntime]
    found.append(Finding("threads", "ok", f"{usable_cpus()} CPU threads by default"))
    from ._runtime.pmml import java_missing

    java = java_missing()
    found.append(Finding("java", "note", f"{java.message} (needed only for PMML packages)", java.fix or "")
                 if java else Finding("java", "ok", "found: PMML packages can run here"))
    if package is not None:
        found += _package_findings(package, java)
    return found


def _package_findings(package: str, java: ModelpackError | None) -> list[Finding]:
    from ._load import inspect
    from ._package import resolve
    from ._verify import verify

    try:
        local = resolve(package)  # a URL is fetched once, for inspect and verify alike
        manifest = inspect(local)
    except ModelpackError as exc:
        return [_problem("package", exc)]
    info = manifest.model
    versions = (f"IR {info.ir_version}, opsets {info.opsets}" if info.format == "onnx"
                else f"PMML {info.pmml_version}")
    found = [Finding("package", "ok", f"{manifest.name} {manifest.version} ({manifest.task}, {info.format}; "
                                      f"{versions}); needs {', '.join(manifest.runtime.requires) or 'nothing'}")]
    if info.format == "onnx":
        from ._runtime.onnx import check_versions

        try:
            check_versions(info.ir_version, info.opsets, package)
        except ModelpackError as exc:
            return [*found, _problem("versions", exc)]
    elif java:
        return [*found, Finding("java", "problem", f"{java.message.rstrip('.')}: this PMML package cannot run here",
                                java.fix or "")]
    report = verify(local)
    for name, ok, detail in report.checks:
        found.append(Finding(name, "ok" if ok else "problem", detail,
                             "" if ok else "Run `modelpack verify` for the details; re-export the package "
                                           "if it is damaged."))
    if report.providers:
        found.append(Finding("runs on", "ok", ", ".join(report.providers)))
    return found


def _problem(topic: str, exc: ModelpackError) -> Finding:
    where = f"{exc.package}: " if exc.package else ""
    return Finding(topic, "problem", where + exc.message.rstrip("."), exc.fix or "")
