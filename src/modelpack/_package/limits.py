"""The container's names and safety limits, in one place.

A package over any limit is refused before any of its bytes is parsed. The
figures are documented, with the reason for each, in ``docs/security.md``.
"""

from __future__ import annotations

__all__ = [
    "ARCHIVE_SUFFIX", "IN_MEMORY_BYTES", "IN_MEMORY_TOTAL", "MANIFEST_NAME", "MAX_COMPRESSION_RATIO",
    "MAX_FILES", "MAX_FILE_BYTES", "MAX_JSON_DEPTH", "MAX_MANIFEST_BYTES", "MAX_NAME_BYTES", "MAX_PART_BYTES",
    "MAX_SIGNATURE_BYTES", "MAX_TOTAL_BYTES", "RATIO_GRACE_BYTES", "RESERVED_NAMES", "SIGNATURE_NAME",
]

MANIFEST_NAME = "modelpack.json"
SIGNATURE_NAME = "modelpack.sig"
ARCHIVE_SUFFIX = ".mpk"
RESERVED_NAMES = (MANIFEST_NAME, SIGNATURE_NAME)

MAX_FILES = 10_000
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_SIGNATURE_BYTES = 64 * 2**10
MAX_JSON_DEPTH = 64
MAX_FILE_BYTES = 64 * 2**30
MAX_TOTAL_BYTES = 128 * 2**30
MAX_NAME_BYTES = 1_024
MAX_PART_BYTES = 255
# Inflating more than this many bytes per compressed byte is a bomb, once an entry is
# past RATIO_GRACE_BYTES (tiny files compress well and cost nothing). The same cap
# applies to the whole archive against its size on disk.
MAX_COMPRESSION_RATIO = 100
RATIO_GRACE_BYTES = 2**20
IN_MEMORY_BYTES = 256 * 2**20  # larger files stay on disk and are handed over by path
IN_MEMORY_TOTAL = 2**30  # and so do files past this much held in memory in all
