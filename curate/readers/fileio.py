"""Opening input files: plain or gzip-compressed, always as a binary stream."""

from __future__ import annotations

import gzip
from typing import BinaryIO


def open_binary(path: str) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing ``.gz`` transparently."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")
