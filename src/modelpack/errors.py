"""The errors modelpack raises, and nothing else.

Every error is a :class:`ModelpackError`. Where an error refines a builtin meaning
it also inherits that builtin, so ``except ValueError`` keeps working for callers
that do not know modelpack::

    ModelpackError
    ├── PackageError                       the package on disk
    │   ├── PackageNotFoundError           (FileNotFoundError) no such file or folder
    │   ├── PackageIntegrityError          a checksum, size or listed file does not match
    │   ├── UnsafePackageError             escapes its folder, links, bombs, DOCTYPE, ...
    │   └── SignatureError                 signature missing, malformed or from an unknown key
    ├── ManifestError                      (ValueError) modelpack.json is malformed
    │   └── SchemaVersionError             written by a newer, incompatible modelpack
    ├── InputError                         (ValueError) data passed to predict/run
    │   ├── MissingColumnError             a column or input is missing (or unexpected)
    │   ├── DTypeError                     (TypeError) a dtype that cannot be cast safely
    │   └── ShapeError                     wrong rank or feature count
    ├── TaskError                          (ValueError) e.g. predict_proba on a regressor
    ├── ConversionError                    export could not produce a faithful model
    │   ├── NoConverterError               (TypeError) no converter for this model class
    │   └── FidelityError                  exported model differs beyond the tolerance
    ├── DeviceError                        a device name or policy problem
    │   └── DeviceUnavailableError         the requested provider does not run here
    └── RuntimeBackendError                (RuntimeError) the runtime is missing or failed

Messages are built from structured fields and always end with what to do about it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "ConversionError",
    "DTypeError",
    "DeviceError",
    "DeviceUnavailableError",
    "FidelityError",
    "InputError",
    "ManifestError",
    "MissingColumnError",
    "ModelpackError",
    "NoConverterError",
    "PackageError",
    "PackageIntegrityError",
    "PackageNotFoundError",
    "RuntimeBackendError",
    "SchemaVersionError",
    "ShapeError",
    "SignatureError",
    "TaskError",
    "UnsafePackageError",
]


class ModelpackError(Exception):
    """Base class of every error raised by modelpack.

    Parameters
    ----------
    message:
        What went wrong, in one sentence.
    fix:
        What the user should do about it.
    package:
        The package (path or name) concerned, when there is one.
    """

    def __init__(self, message: str, *, fix: str | None = None, package: str | None = None) -> None:
        self.message = message
        self.fix = fix
        self.package = package
        super().__init__(self._format())

    def _format(self) -> str:
        text = f"{self.package}: {self.message}" if self.package else self.message
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return text

    def __reduce__(self):
        # Errors cross process boundaries (multiprocessing, Spark); keep the fields.
        return _rebuild, (type(self), self.__dict__)


def _rebuild(cls: type[ModelpackError], state: dict) -> ModelpackError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._format())
    return error


class PackageError(ModelpackError):
    """The package on disk cannot be used."""


class PackageNotFoundError(PackageError, FileNotFoundError):
    """The path given does not exist."""


class PackageIntegrityError(PackageError):
    """A file's checksum or size differs from the manifest, or a listed file is missing."""


class UnsafePackageError(PackageError):
    """The package tries to escape its folder, holds links, is too large, or is hostile."""


class SignatureError(PackageError):
    """A signature was required and is missing, malformed or from an untrusted key."""


class ManifestError(ModelpackError, ValueError):
    """``modelpack.json`` is not a valid manifest."""


class SchemaVersionError(ManifestError):
    """The manifest was written with a newer major schema version than this reader knows."""


class InputError(ModelpackError, ValueError):
    """Data passed to ``predict``, ``predict_proba`` or ``run`` does not fit the model.

    The message names the input, what was expected, what was given and the fix.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        input: str | None = None,
        expected: str | None = None,
        got: str | None = None,
        fix: str | None = None,
        package: str | None = None,
    ) -> None:
        self.input = input
        self.expected = expected
        self.got = got
        text = f"input {input!r}" if input is not None else "input"
        if message:
            text = f"{text}: {message}"
        details = [f"{k} {v}" for k, v in (("expected", expected), ("got", got)) if v is not None]
        if details:
            text = f"{text}; {', '.join(details)}"
        super().__init__(text, fix=fix, package=package)


class MissingColumnError(InputError):
    """A required column or input is missing, or an unknown one was given."""


class DTypeError(InputError, TypeError):
    """The data's dtype cannot be cast safely to the model's input dtype."""


class ShapeError(InputError):
    """The data has the wrong rank or number of features."""


class TaskError(ModelpackError, ValueError):
    """The call does not fit the model's task, e.g. ``predict_proba`` on a regressor."""


class ConversionError(ModelpackError):
    """The model could not be converted to the requested format."""


class NoConverterError(ConversionError, TypeError):
    """No installed converter handles this model's class."""


class FidelityError(ConversionError):
    """The exported model's outputs differ from the source model's beyond the tolerance."""


class DeviceError(ModelpackError):
    """A device name, list or fallback policy cannot be honoured."""


class DeviceUnavailableError(DeviceError):
    """The requested execution provider is not installed or does not run here."""


class RuntimeBackendError(ModelpackError, RuntimeError):
    """The model runtime (ONNX Runtime, the PMML evaluator) is missing or failed."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _unrelated_to_the_caller(func: _F) -> _F:
    """Errors of ``func`` keep no link to the exception its caller was handling.

    Called inside a user's ``except`` block, Python would chain our error to the
    user's exception ("During handling of the above exception, another exception
    occurred"), and the traceback would seem to blame it.
    """
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = sys.exc_info()[1]
        try:
            return func(*args, **kwargs)
        except ModelpackError as exc:
            error: BaseException | None = exc
            while outer is not None and error is not None:
                if error.__context__ is outer:
                    error.__context__ = None
                    break
                error = error.__cause__ or error.__context__
            raise
    return wrapper  # type: ignore[return-value]
