"""Ed25519 signatures: who wrote a package, on top of what its checksums say.

The manifest holds the SHA-256 and size of every file, and :func:`open_package`
refuses a package whose files do not match it. Signing the exact bytes of the
manifest therefore covers every file. The signature lives in ``modelpack.sig``
beside the manifest, a small JSON document::

    {"format": "modelpack-signature/1",
     "signatures": [{"algorithm": "ed25519", "key_id": "<sha256 of the raw public key>",
                     "signature": "<base64>"}]}

What is signed is ``b"modelpack-signature/1\\n" + manifest bytes``: the prefix
keeps a signature made for a package from being valid for anything else the
same key signs. Several keys may sign one package; signing again with a key
replaces its own signature only.

Needs the ``cryptography`` package: ``pip install 'modelpack[sign]'``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import ModelpackError, SignatureError
from .container import Package, open_package
from .writer import write_signature

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["KeySource", "generate_key", "key_id", "raw_public_key", "short_ids", "sign", "signers",
           "verify_signature"]

SIGNATURE_FORMAT = "modelpack-signature/1"
_CONTEXT = SIGNATURE_FORMAT.encode() + b"\n"
_MAX_KEY_FILE_BYTES = 64 * 2**10

#: A public key: a path to a PEM or OpenSSH ``.pub`` file, the key's text or raw bytes,
#: or a ``cryptography`` Ed25519PublicKey.
KeySource = Union[str, "os.PathLike[str]", bytes, "Ed25519PublicKey"]  # noqa: UP007 - forward refs


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:
        raise ModelpackError("signing and signature checks need the 'cryptography' package",
                             fix="Install it: pip install 'modelpack[sign]'.") from exc
    return serialization


def _ed25519() -> Any:
    _crypto()
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def generate_key(path: str | os.PathLike[str]) -> Path:
    """Write a new Ed25519 key pair: the private key at ``path``, the public at ``path.pub``.

    The private key is PEM (PKCS #8, unencrypted) readable by its owner only;
    keep it secret. Give the ``.pub`` file to whoever loads your packages.
    Existing files are never overwritten.

    Returns
    -------
    Path
        The public key's path.

    Example
    -------
    >>> generate_key("release-key")   # doctest: +SKIP
    PosixPath('release-key.pub')
    """
    serialization, ed25519 = _crypto(), _ed25519()
    private_path = Path(path)
    public_path = Path(f"{private_path}.pub")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _create(private_path, private_pem, 0o600)
    try:
        _create(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return public_path


def _create(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ModelpackError(f"{path} already exists", fix="Choose another path; keys are never "
                                                           "overwritten.") from exc
    except OSError as exc:
        raise ModelpackError(f"{path} cannot be created ({exc.strerror})",
                             fix="Check the folder exists and is writable.") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def key_id(key: KeySource) -> str:
    """The identifier of a public key: the SHA-256 (hex) of its 32 raw bytes.

    Example
    -------
    >>> key_id("release-key.pub")   # doctest: +SKIP
    '3f1c...'
    """
    return hashlib.sha256(raw_public_key(key)).hexdigest()


def short_ids(key_ids: Iterable[str]) -> str:
    """Key ids as messages show them: their first 16 hex digits, comma-separated.

    Example
    -------
    >>> short_ids(["3f1c" * 16])
    '3f1c3f1c3f1c3f1c…'
    """
    return ", ".join(k[:16] + "…" for k in key_ids)


def raw_public_key(key: KeySource) -> bytes:
    """The 32 raw bytes of a public key: a form that travels to other processes and machines.

    Example
    -------
    >>> len(raw_public_key("release-key.pub"))   # doctest: +SKIP
    32
    """
    serialization = _crypto()
    return bytes(_public_key(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _read_key_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise SignatureError(f"the key file {path} cannot be read ({exc.strerror})",
                             fix="Check the path of the key.") from exc
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise SignatureError(f"{path} is too large to be a key file", fix="Check the path of the key.")
    return data


def _public_key(source: KeySource) -> Ed25519PublicKey:
    serialization, ed25519 = _crypto(), _ed25519()
    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    if isinstance(source, str) and source.lstrip().startswith(("-----BEGIN", "ssh-ed25519 ")):
        data = source.encode()
    elif isinstance(source, (str, os.PathLike)):
        data = _read_key_file(Path(source))
    elif isinstance(source, bytes):
        data = source
    else:
        raise SignatureError(f"a trusted key cannot be a {type(source).__name__}",
                             fix="Pass paths to .pub files, their content, or Ed25519PublicKey objects.")
    stripped = data.strip()
    try:
        if stripped.startswith(b"-----BEGIN") and b"PRIVATE KEY" in stripped[:64]:
            raise SignatureError("a private key was given where a public key is needed",
                                 fix="Pass the .pub file made beside it by `modelpack keygen`.")
        if stripped.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(stripped)
        elif stripped.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(stripped)
        elif len(data) == 32:
            key = ed25519.Ed25519PublicKey.from_public_bytes(data)
        else:
            raise ValueError("neither PEM, OpenSSH nor 32 raw bytes")
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{_label(source)} is not a public key ({exc})",
                             fix="Pass the .pub file made by `modelpack keygen`.") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"{_label(source)} is a {type(key).__name__}, not an Ed25519 key",
                             fix="Make an Ed25519 key with `modelpack keygen`.")
    return key


def _label(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) and len(str(source)) < 200 else "the key"


def _private_key(path: str | os.PathLike[str], password: str | bytes | None) -> Ed25519PrivateKey:
    serialization, ed25519 = _crypto(), _ed25519()
    data = _read_key_file(Path(path))
    secret = password.encode() if isinstance(password, str) else password
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key = serialization.load_ssh_private_key(data, secret)
        else:
            key = serialization.load_pem_private_key(data, secret)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not a readable private key ({exc})",
                             fix="Pass the private key made by `modelpack keygen`, and its password "
                                 "if it has one.") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{path} holds a {type(key).__name__}, not an Ed25519 key",
                             fix="Make an Ed25519 key with `modelpack keygen`.")
    return key


def sign(package_path: str | os.PathLike[str], private_key_path: str | os.PathLike[str], *,
         password: str | bytes | None = None) -> str:
    """Sign a package in place with an Ed25519 private key; return the key's id.

    The package is fully verified first (a damaged package is never signed).
    A folder gets ``modelpack.sig``; an archive is rewritten, atomically, with it.
    Do not write the package while it is being signed.

    Example
    -------
    >>> sign("churn.mpk", "release-key")   # doctest: +SKIP
    '3f1c...'
    """
    key = _private_key(private_key_path, password)
    signer = key_id(key.public_key())
    with open_package(package_path) as pkg:
        if not pkg.manifest_bytes:
            raise SignatureError("only packages can be signed", package=str(pkg.path),
                                 fix="Make a package first with modelpack.pack().")
        kept = [s for s in _existing(pkg) if s.get("key_id") != signer]
        mine = {"algorithm": "ed25519", "key_id": signer,
                "signature": base64.b64encode(key.sign(_CONTEXT + pkg.manifest_bytes)).decode()}
        document = {"format": SIGNATURE_FORMAT, "signatures": [*kept, mine]}
        write_signature(pkg, (json.dumps(document, indent=2) + "\n").encode())
    return signer


def _existing(pkg: Package) -> list[dict[str, str]]:
    if pkg.signature is None:
        return []
    try:
        return _parse(pkg.signature, str(pkg.path))
    except SignatureError:
        return []  # a malformed file is replaced, not extended


def _parse(raw: bytes, package: str) -> list[dict[str, str]]:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _malformed(package, f"not UTF-8 JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise _malformed(package, f"its format is not {SIGNATURE_FORMAT!r}")
    entries = document.get("signatures")
    fields = ("algorithm", "key_id", "signature")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in fields) for e in entries):
        raise _malformed(package, "'signatures' must be a list of {algorithm, key_id, signature}")
    return entries


def _malformed(package: str, why: str) -> SignatureError:
    return SignatureError(f"modelpack.sig is malformed: {why}", package=package,
                          fix="Sign the package again with `modelpack sign`.")


def signers(signature: bytes | None, package: str) -> list[str]:
    """The key ids a signature file claims, unchecked (``[]`` when there is none).

    What :func:`modelpack.inspect` can say without the signers' keys; only
    :func:`verify_signature` says a signature is valid. Raises
    :class:`~modelpack.SignatureError` for a malformed file.
    """
    if signature is None:
        return []
    return [s["key_id"] for s in _parse(signature, package)]


def verify_signature(package: Package, trusted_keys: Iterable[KeySource] | KeySource) -> str:
    """Check that an open package is signed by one of ``trusted_keys``; return that key's id.

    Raises :class:`~modelpack.SignatureError` when no key is given, the package
    is unsigned, its signature is malformed, or no trusted key made a valid
    signature over its manifest. Call it on a package from :func:`open_package`,
    whose files have been checked against the manifest.

    Example
    -------
    >>> with open_package("churn.mpk") as pkg:              # doctest: +SKIP
    ...     verify_signature(pkg, ["release-key.pub"])
    '3f1c...'
    """
    if isinstance(trusted_keys, (str, bytes, os.PathLike)) or not isinstance(trusted_keys, Iterable):
        trusted_keys = [trusted_keys]
    keys = {key_id(k): _public_key(k) for k in trusted_keys}
    if not keys:
        raise SignatureError("no trusted keys were given", package=str(package.path),
                             fix="Pass the signers' public keys, e.g. trusted_keys=['release-key.pub'].")
    if package.signature is None or not package.manifest_bytes:
        raise SignatureError("the package is not signed", package=str(package.path),
                             fix="Sign it with `modelpack sign PACKAGE --key KEY`, or load it without "
                                 "trusted_keys.")
    signers = [s for s in _parse(package.signature, str(package.path)) if s["algorithm"] == "ed25519"]
    return _check(signers, keys, package)


def _check(signers: list[dict[str, str]], keys: dict[str, Ed25519PublicKey], package: Package) -> str:
    from cryptography.exceptions import InvalidSignature

    message = _CONTEXT + package.manifest_bytes
    mismatched = []
    for entry in signers:
        key = keys.get(entry["key_id"])
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(entry["signature"], validate=True), message)
            return entry["key_id"]
        except (InvalidSignature, binascii.Error, ValueError):
            mismatched.append(entry["key_id"])
    if mismatched:
        raise SignatureError(f"the signature by trusted key {short_ids(mismatched[:1])} does not match "
                             "the manifest", package=str(package.path),
                             fix="The package was changed after it was signed; do not use it, or "
                                 "ask its author for a new copy.")
    signed_by = short_ids(sorted({s["key_id"] for s in signers})) or "no Ed25519 key"
    raise SignatureError(f"the package is signed by {signed_by}; none of them is trusted "
                         f"(trusted: {short_ids(sorted(keys))})",
                         package=str(package.path),
                         fix="Add the signer's public key to trusted_keys if you trust it, or sign the "
                             "package with your own key.")

