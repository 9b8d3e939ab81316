"""Reading small text inputs (tables, genotype files) with one-line errors for binary or damaged files."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import GaeanasError
from ..memory import format_bytes

__all__ = ["binary_kind", "read_text"]

# Leading bytes of common binary formats, and how an error message names them.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"PK\x03\x04", "a zip archive (or a PyTorch checkpoint)"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"%PDF-", "a PDF document"),
    (b"\x93NUMPY", "a NumPy array file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_SNIFF_BYTES = 4096


def binary_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is ("gzip-compressed data", ...), or None if it may be text."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive"
    if b"\x00" in head[:_SNIFF_BYTES]:
        return "binary data (it holds NUL bytes)"
    return None


def read_text(path: Path, what: str, error: type[GaeanasError], max_bytes: int, hint: str = "") -> str:
    """The UTF-8 text of `path` (a leading BOM dropped); `error` naming the path when it cannot be read, is
    binary, or is larger than `max_bytes`. `what` names the expected content ("a CSV table")."""
    tail = f"; {hint}" if hint else ""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            kind = binary_kind(head)
            if kind is not None:
                raise error(f"{path} is not {what}: it looks like {kind}{tail}")
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise error(f"{path} is {format_bytes(size)}, too large to be {what} "
                            f"(at most {format_bytes(max_bytes)}){tail}")
            raw = head + fh.read()
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
    if b"\x00" in raw:
        raise error(f"{path} is not {what}: it looks like binary data (it holds NUL bytes){tail}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path} is not {what}: it is not UTF-8 text (byte {err.start} is "
                    f"{raw[err.start]:#04x}){tail}") from None
