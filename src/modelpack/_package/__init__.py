"""The package container: a folder, or the same folder as a ``.mpk`` zip archive.

This part knows files, checksums, limits and signatures, and nothing of models:

* :mod:`.container`: :class:`Package` and reading (:func:`open_package` verifies every
  file before any byte is handed on; :func:`read_manifest` reads the manifest only);
* :mod:`.guards`: the checks against hostile archives and folders, run before parsing;
* :mod:`.limits`: the names and safety limits;
* :mod:`.writer`: :func:`write_package` and :func:`write_signature`, atomic; :func:`checksum`;
* :mod:`.remote`: packages at URLs, copied locally under the same limits;
* :mod:`.signing`: Ed25519 signatures over the manifest.

Other parts import from here, never from the modules inside.
"""

from __future__ import annotations

from .container import FileSource, Package, open_package, read_head, read_manifest
from .limits import ARCHIVE_SUFFIX, MANIFEST_NAME, SIGNATURE_NAME
from .remote import fetch, is_url, resolve
from .signing import generate_key, key_id, raw_public_key, short_ids, sign, signers, verify_signature
from .writer import checksum, write_package, write_signature

__all__ = ["ARCHIVE_SUFFIX", "MANIFEST_NAME", "SIGNATURE_NAME", "FileSource", "Package", "checksum", "fetch",
           "generate_key", "is_url", "key_id", "open_package", "raw_public_key", "read_head", "read_manifest",
           "resolve", "short_ids", "sign", "signers", "verify_signature", "write_package", "write_signature"]
