"""The PMML backend: pypmml's evaluator (pmml4s) on a Java virtual machine in this process.

The JVM
    is started once per process, on the first PMML model opened, through JPype
    (in-process, so no Java process is left behind and a call costs microseconds,
    not the milliseconds of a socket gateway). It is shared with pypmml when the
    process uses pypmml directly, and it lives until the interpreter exits: a JVM
    cannot be restarted in a process, so :meth:`PmmlBackend.close` only releases
    the model. Java is found as the ``java`` command finds it: ``JAVA_HOME``,
    then ``java`` on ``PATH``.

Batches
    go to Java whole. The rows are built, scored and read back inside the JVM by
    method handles composed once per model from the JDK and pmml4s's own
    methods (``java.lang.invoke``), so a batch of any size costs a dozen crossings
    of the Python-Java boundary. Each cell is converted as pmml4s converts a record
    given as a map (``Series.fromMap``): a missing value (NaN, None) becomes
    pmml4s's missing value, so the document's missing-value treatments apply.

Errors
    of pypmml and Java are translated in :func:`translate` and nowhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._formats.pmml import check_safe
from ..errors import (
    DeviceUnavailableError,
    InputError,
    ModelpackError,
    PackageError,
    RuntimeBackendError,
)
from .pmml_fields import field_columns, number_column, text_column
from .pmml_java import Java, Reader

if TYPE_CHECKING:
    from .._package import Package

__all__ = ["PROVIDER", "PmmlBackend", "find_libjvm", "java_missing", "open", "open_evaluator", "translate"]

PROVIDER = "PMML"
INSTALL = "Install the PMML runtime: pip install 'modelpack[pmml]' (pypmml and JPype1), and Java 8 or newer."
JAVA_FIX = ("Install Java 8 or newer (e.g. `apt-get install default-jre-headless`, `brew install openjdk` "
            "or `conda install -c conda-forge openjdk`), then set JAVA_HOME to it or put its `java` on PATH.")
_LIBJVM = {"win32": "jvm.dll", "darwin": "libjvm.dylib"}.get(sys.platform, "libjvm.so")
_LIBJVM_DIRS = ("lib/server", "lib/*/server", "jre/lib/server", "jre/lib/*/server", "bin/server",
                "jre/bin/server", "lib/client", "jre/lib/*/client", "bin/client", "lib")
_KEEP_ROWS = 10_000
_NO_TEXTS = np.empty((0, 0), dtype=object)
_START = threading.Lock()
_JAVA: Java | None = None


# -- finding and starting Java ----------------------------------------------------------------
def find_libjvm(environ: Mapping[str, str] | None = None) -> Path:
    """The JVM library of ``JAVA_HOME``, else of the ``java`` on ``PATH``.

    Raises :class:`~modelpack.RuntimeBackendError` saying how to install Java when
    there is none.
    """
    env = os.environ if environ is None else environ
    home = env.get("JAVA_HOME", "").strip()
    where = f"JAVA_HOME={home}"
    if not home:
        java = shutil.which("java", path=env.get("PATH", ""))
        if java is None:
            raise RuntimeBackendError("PMML models run on Java, and no Java was found (JAVA_HOME is not "
                                      "set and there is no `java` on PATH)", fix=JAVA_FIX)
        home, where = str(Path(java).resolve().parent.parent), f"`java` on PATH ({java})"
        if sys.platform == "darwin" and _libjvm_in(Path(home)) is None:
            home = _macos_java_home() or home  # /usr/bin/java there is a stub
    found = _libjvm_in(Path(home))
    if found is None:
        raise RuntimeBackendError(f"{where} is not a Java installation: it holds no {_LIBJVM}", fix=JAVA_FIX)
    return found


def java_missing() -> RuntimeBackendError | None:
    """Why no Java virtual machine can be found for PMML (with the fix), or None when one can."""
    try:
        find_libjvm()
    except RuntimeBackendError as exc:
        return exc
    return None


def _libjvm_in(home: Path) -> Path | None:
    return next((hit for pattern in _LIBJVM_DIRS for hit in sorted(home.glob(f"{pattern}/{_LIBJVM}"))), None)


def _macos_java_home() -> str | None:
    try:
        done = subprocess.run(["/usr/libexec/java_home"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return done.stdout.strip() or None


def runtime() -> Java:
    """The process's JVM with pmml4s, started on first use."""
    global _JAVA
    with _START:
        if _JAVA is None:
            _JAVA = Java(_start_jvm())
    return _JAVA


def _start_jvm() -> Any:
    try:
        import jpype
        from pypmml import PMMLContext
    except ImportError as exc:
        raise RuntimeBackendError(f"the PMML runtime is not installed ({exc})", fix=INSTALL) from exc
    if not jpype.isJVMStarted():
        libjvm = find_libjvm()
        try:
            if PMMLContext.gateway() is None:  # share the JVM with pypmml used directly
                PMMLContext.getOrCreate(gateway="jpype", java_path=str(libjvm))
            else:  # pypmml runs its own socket gateway: start ours beside it
                jpype.startJVM(jvmpath=str(libjvm), classpath=[_pypmml_jars()], convertStrings=True)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise RuntimeBackendError(f"the Java virtual machine {libjvm} did not start ({exc})",
                                      fix=f"Java 8 or newer of the same architecture as Python is needed. {JAVA_FIX}") from exc
    try:
        jpype.JClass("org.pmml4s.model.Model")
    except Exception as exc:  # JPype raises Java's NoClassDefFoundError family here
        raise RuntimeBackendError("a Java virtual machine was started in this process without the PMML "
                                  "evaluator's classes", fix="Open PMML models before other code starts JPype, "
                                  "or put pypmml's jars on its classpath.") from exc
    return jpype


def _pypmml_jars() -> str:
    import pypmml

    folder = os.environ.get("PYPMML_JARS_DIR") or str(Path(pypmml.__file__).parent / "jars")
    return str(Path(folder) / "*")


# -- errors --------------------------------------------------------------------------------------
_INPUT_ERRORS = ("NumberFormatException", "IllegalArgumentException", "DateTimeParseException")


def translate(exc: BaseException, package: str, *, loading: bool = False) -> ModelpackError:
    """The modelpack error for a pypmml or Java exception."""
    java_class = exc.getClass().getName() if hasattr(exc, "getClass") else type(exc).__name__
    message = (exc.getMessage() if hasattr(exc, "getMessage") else None) or str(exc) or java_class
    text = f"the PMML evaluator raised {java_class.rpartition('.')[2]}: {str(message).splitlines()[0]}"
    if java_class == "scala.NotImplementedError":
        return RuntimeBackendError(f"{text} (the model uses a PMML feature pmml4s does not implement)",
                                   package=package, fix="Re-export the model without that feature, or "
                                   "use another PMML evaluator.")
    if loading:
        return PackageError(text, package=package,
                            fix="Check the PMML document (PMML 3.0 to 4.4), e.g. against the DMG schema.")
    if java_class.rpartition(".")[2] in _INPUT_ERRORS:
        return InputError(text, package=package, fix="Check the inputs against Model.inputs (types, categories).")
    return RuntimeBackendError(text, package=package, fix="Check the inputs; if they are right, report the "
                               "model and inputs to the pypmml project.")


# -- devices -------------------------------------------------------------------------------------
def _check_device(device: str | Sequence[str], providers: Sequence[Any] | None, fallback: bool,
                  package: str) -> None:
    from .._devices import parse_device, platform_gpu

    names = [device] if isinstance(device, str) else list(device)
    wanted = [n for n in names if n.strip().lower() not in ("cpu", "auto") and parse_device(platform_gpu(n, []))]
    wanted += [p if isinstance(p, str) else p[0] for p in providers or ()
               if (p if isinstance(p, str) else p[0]) not in (PROVIDER, "CPUExecutionProvider")]
    if not wanted:
        return
    message = f"PMML models run on the CPU inside the Java virtual machine, not on {wanted}"
    if not fallback:
        raise DeviceUnavailableError(message, package=package,
                                     fix="Load with device='cpu', or export the model to ONNX to use "
                                         "an accelerator.")
    warnings.warn(f"{package}: {message}; running on the CPU.", RuntimeWarning, stacklevel=4)


def _check_engine(engine: str, package: str, why: str = "") -> None:
    from .trees import ENGINE_NAME, check_engine

    check_engine(engine, package)
    if engine == ENGINE_NAME:
        raise RuntimeBackendError(
            "the tree engine runs ONNX tree ensembles; this PMML model runs on the PMML evaluator (Java)"
            + (f" ({why})" if why else ""), package=package,
            fix="Load it without engine= (engine='auto'); to run its trees on the tree engine, load it with "
                "compile='auto' where it compiles, or export the model to ONNX instead.")


# -- the backend ---------------------------------------------------------------------------------
class PmmlBackend:
    """One PMML model in the JVM; :meth:`run` scores a whole batch in one pass."""

    providers: list[str] = [PROVIDER]
    #: Which engine runs the model, and why (:mod:`.pmml_compiled` chose it).
    engine = "pmml4s"
    engine_reason = ""

    def __init__(self, java: Java, model: Any, output_names: Sequence[str], package: str,
                 matrices: Mapping[str, Sequence[str]] | None = None) -> None:
        self._java, self._package = java, package
        fields = java.used_fields(model)
        self.input_names = [name for name, _ in fields]
        self._numeric = [numeric for _, numeric in fields]
        # 2-D inputs whose columns are fields (a model exported from an array): name -> fields.
        self._matrices = {k: list(v) for k, v in (matrices or {}).items()}
        self._fields = ([n for n, f in fields if f], [n for n, f in fields if not f])  # numbers, texts
        self._kinds = dict(java.output_fields(model))
        unknown = [n for n in output_names if n not in self._kinds]
        if unknown:
            raise RuntimeBackendError(f"the manifest lists outputs the evaluator does not produce: {unknown} "
                                      f"(it produces {list(self._kinds)})", package=package,
                                      fix="Pack the PMML file again with this version of modelpack.")
        self.output_names = list(output_names) or list(self._kinds)
        self._position = {name: i for i, name in enumerate(self._kinds)}
        self._model = model
        self._pipeline = java.pipeline(model, self._numeric)
        self._local = threading.local()
        self._readers: dict[tuple[str, ...], Reader] = {}

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[Any]:
        """Score every row of ``feeds`` (one 1-D or ``[N, 1]`` array per field) in one batch."""
        names = tuple(self.output_names if outputs is None else outputs)
        reader = self._reader(names)
        n, numbers, texts = self._columns(feeds)
        if n == 0:
            return [np.empty(0, dtype=np.float64 if self._kinds[k] == "number" else object) for k in names]
        slot = self._slot()
        function = slot["functions"].get(names)
        if function is None:
            function = slot["functions"][names] = reader.compile(slot["scorer"])
        holder = slot["holder"]
        try:
            self._java.fill(holder, numbers, texts)
            return reader(function, slot["rescore"], n)
        except self._java.JException as exc:
            raise translate(exc, self._package) from exc
        finally:
            if n > _KEEP_ROWS:  # let the JVM free a large batch now, not at the next call
                holder[0] = holder[1] = None

    def _slot(self) -> dict[str, Any]:
        # Per thread: a holder for the batch, and the functions that score what it holds.
        slot = getattr(self._local, "slot", None)
        if slot is None:
            if self._pipeline is None:
                raise RuntimeBackendError("the model was closed", package=self._package,
                                          fix="Load the package again with modelpack.load().")
            holder, scorer = self._java.bind(self._pipeline)
            slot = self._local.slot = {"holder": holder, "scorer": scorer, "functions": {},
                                       "rescore": self._java.function(scorer)}
        return slot

    def _reader(self, names: tuple[str, ...]) -> Reader:
        reader = self._readers.get(names)
        if reader is None:
            unknown = [n for n in names if n not in self._position]
            if unknown:
                raise InputError(f"the model has no output(s) {unknown}", expected=f"one of {list(self._kinds)}",
                                 package=self._package, fix="Ask for outputs listed in Model.outputs.")
            reader = self._readers[names] = Reader(self._java, [(self._position[n], self._kinds[n]) for n in names])
        return reader

    def _columns(self, feeds: Mapping[str, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
        n, columns = field_columns(feeds, self.input_names, self._matrices, self._package)
        number_fields, text_fields = self._fields
        numbers = np.empty((n, len(number_fields)))  # row-major, as the JVM side reads it
        for j, name in enumerate(number_fields):
            numbers[:, j] = number_column(name, columns[name], self._package) if name in columns else np.nan
        texts = np.full((n, len(text_fields)), None, dtype=object) if text_fields else _NO_TEXTS
        for j, name in enumerate(text_fields):
            if name in columns:
                texts[:, j] = text_column(columns[name])
        return n, numbers, texts

    def close(self) -> None:
        """Release the model (the JVM stays up for the rest of the process). Idempotent."""
        self._model = self._pipeline = None
        self._readers.clear()
        self._local = threading.local()

    def __getstate__(self) -> None:
        raise TypeError("a PMML evaluator cannot be pickled; pickle the Model, which re-opens its package")


# -- opening ----------------------------------------------------------------------------------------
_ENCODING = re.compile(rb"""^<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _document_text(data: bytes, package: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        declared = _ENCODING.match(data[:200].lstrip())
        encoding = declared.group(1).decode() if declared else "utf-8-sig"
    try:
        return data.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except (LookupError, UnicodeDecodeError) as exc:
        raise PackageError(f"the PMML document cannot be decoded as {encoding} ({exc})", package=package,
                           fix="Save the PMML file as UTF-8.") from exc


def open(package: Package, *, device: str | Sequence[str] = "cpu", providers: Sequence[Any] | None = None,
         fallback: bool = True, compile: str = "auto", **options: Any) -> Any:
    """The package's PMML model: its ONNX translation where ``compile`` takes it, else the evaluator.

    See :mod:`.pmml_compiled` for ``compile``; the other options are those of the
    ONNX backend, used when the compiled model runs (``engine`` included: the compiled
    trees may run on the tree engine).
    """
    from .pmml_compiled import check_compile, open_compiled

    check_compile(compile, str(package.path))
    reason = "compile='never'"
    if compile != "never":
        compiled, reason = open_compiled(package, compile=compile, device=device, providers=providers,
                                         fallback=fallback, **options)
        if compiled is not None:
            return compiled
    backend = open_evaluator(package, device=device, providers=providers, fallback=fallback,
                             engine=options.get("engine", "auto"), why=reason)
    backend.engine_reason = reason
    return backend


def open_evaluator(package: Package, *, device: str | Sequence[str] = "cpu", providers: Sequence[Any] | None = None,
                   fallback: bool = True, engine: str = "auto", why: str = "") -> PmmlBackend:
    """Load the package's PMML document into the evaluator.

    ``engine``: ``"auto"`` and ``"onnxruntime"`` leave the PMML evaluator in charge;
    ``"modelpack-trees"`` is refused, since the tree engine reads ONNX tree ensembles only
    (``why``: the reason the evaluator runs, for the message).

    Example
    -------
    >>> backend = open(package)                           # doctest: +SKIP
    >>> backend.run({"x": np.array([1.0, 2.0])})          # doctest: +SKIP
    [array([3., 5.])]
    """
    name = str(package.path)
    _check_engine(engine, name, why)
    _check_device(device, providers, fallback, name)
    data = package.read_bytes(package.manifest.model.file)
    check_safe(data, name)  # before Java parses a byte of it
    java = runtime()
    try:
        model = java.load(_document_text(data, name))
    except java.JException as exc:
        raise translate(exc, name, loading=True) from exc
    matrices = {i.name: [c.name for c in i.columns] for i in package.manifest.inputs
                if i.shape is not None and len(i.shape) == 2 and i.columns}
    return PmmlBackend(java, model, [o.name for o in package.manifest.outputs], name, matrices)
