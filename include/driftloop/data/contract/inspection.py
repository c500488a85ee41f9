"""File-level checks that need no contract: format, encoding, header line, truncation, record boundaries.

One streaming pass over the bytes computes the sha256, checks UTF-8, counts lines and finds record boundaries
about every :data:`SEGMENT_BYTES`, so memory stays flat for any file size.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from driftloop.data.contract.schema import BatchRejected

SEGMENT_BYTES = 16 << 20


class FileInfo(TypedDict):
    """What :func:`inspect_file` learnt of a file's bytes, before any row is parsed."""

    sha256: str
    format: str  # csv | parquet
    size_bytes: int
    header: list[str] | None  # the CSV's first record; None for parquet
    lines: int  # CSV lines (0 for parquet)
    rows: int  # CSV data lines, or the parquet footer's row count
    longest_line: NotRequired[int]  # CSV only, in bytes
    segments: NotRequired[list[int]]  # CSV only: byte offsets of record boundaries, first and last included


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (0 if last == b"\n" else 1)


_SPREADSHEET_MAGIC = (
    (b"PK\x03\x04", "a zip container such as an .xlsx spreadsheet"),
    (b"\xd0\xcf\x11\xe0", "an OLE container such as an .xls spreadsheet"),
    (b"PAR1", "a parquet file"),
)


def _inspect_parquet(path: Path, size: int, head: bytes) -> FileInfo:
    if head[:4] != b"PAR1":
        raise BatchRejected("wrong_format", f"{path.name} does not start with the parquet magic bytes")
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 4))
        if handle.read(4) != b"PAR1":
            raise BatchRejected("truncated_file", f"{path.name}: parquet footer missing ({size} bytes)")
    try:
        import pyarrow.parquet as pq

        rows = pq.read_metadata(path).num_rows
    except Exception as exc:  # pyarrow raises several types for corrupt footers
        raise BatchRejected("unreadable_file", f"{path.name}: {str(exc)[:300]}") from None
    return {
        "sha256": sha256_file(path),
        "format": "parquet",
        "size_bytes": size,
        "header": None,
        "lines": 0,
        "rows": rows,
    }


class _CsvScan:
    """One pass over a CSV's bytes: sha256, UTF-8, NUL bytes, line count, longest line and record boundaries.

    Record boundaries (a newline outside quotes) are kept about every :data:`SEGMENT_BYTES`: the reader parses
    one segment at a time, so memory is bounded by the segment, never by the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.lines = self.offset = self.longest = self.quotes = 0
        self.line_start = -1
        self.last = self.first_line = b""
        self.header_end: int | None = None
        self.cuts: list[int] = []
        self.next_mark = SEGMENT_BYTES

    def _reject(self, code: str, message: str) -> BatchRejected:
        return BatchRejected(
            code, f"{self.path.name}{message}", rows_received=max(_count_lines(self.path) - 1, 0)
        )

    def feed(self, block: bytes) -> None:
        import numpy as np

        self.digest.update(block)
        nul = block.find(b"\x00")
        if nul >= 0:
            raise self._reject(
                "wrong_format",
                f" contains NUL bytes at offset {self.offset + nul}: binary data, not CSV text",
            )
        try:
            self.decoder.decode(block)
        except UnicodeDecodeError as exc:
            raise self._reject(
                "not_utf8", f": byte {self.offset + exc.start} is not valid UTF-8 ({exc.reason})"
            ) from None
        if not self.first_line:
            self.first_line = block.split(b"\n", 1)[0]
        newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        if len(newlines):
            ends = newlines + self.offset
            self.longest = max(
                self.longest, int(ends[0] - self.line_start), int(np.diff(ends).max(initial=0))
            )
            self.line_start = int(ends[-1])
            if self.header_end is None or self.offset + len(block) > self.next_mark:
                self._cut_segments(block, newlines)
        self.quotes += block.count(b'"')
        self.lines += len(newlines)
        self.offset += len(block)
        self.last = block[-1:]

    def _cut_segments(self, block: bytes, newlines: Any) -> None:
        import numpy as np

        parity = (np.cumsum(np.frombuffer(block, dtype=np.uint8) == 34) + self.quotes) % 2
        boundaries = newlines[parity[newlines] == 0] + self.offset + 1
        if self.header_end is None and len(boundaries):
            self.header_end = int(boundaries[0])
        while self.offset + len(block) > self.next_mark:
            after = boundaries[boundaries > self.next_mark]
            if not len(after):
                break  # the next record boundary lies in a later block
            self.cuts.append(int(after[0]))
            self.next_mark = self.cuts[-1] + SEGMENT_BYTES

    def finish(self, size: int) -> FileInfo:
        name = self.path.name
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise BatchRejected(
                "not_utf8", f"{name}: file ends inside a UTF-8 sequence", rows_received=max(self.lines, 0)
            ) from None
        ends_with_newline = self.last == b"\n"
        lines = self.lines + (0 if ends_with_newline else 1)
        header_text = self.first_line.decode("utf-8").lstrip("\ufeff").rstrip("\r")
        header = next(csv.reader([header_text]), [])
        if not any(h.strip() for h in header):
            raise BatchRejected("empty_file", f"{name} has no header line", rows_received=max(lines - 1, 0))
        if lines <= 1:
            raise BatchRejected("empty_file", f"{name} has a header but 0 data rows", rows_received=0)
        if not ends_with_newline:
            last_line = _read_last_line(self.path)
            fields = next(csv.reader([last_line.decode("utf-8", "replace")]), [])
            if len(fields) < len(header) or last_line.count(b'"') % 2:
                raise BatchRejected(
                    "truncated_file",
                    f"{name}: last line has {len(fields)} of {len(header)} fields and no "
                    "line ending: the file was cut off",
                    rows_received=lines - 1,
                )
        longest = max(self.longest, self.offset - self.line_start)
        return {
            "sha256": self.digest.hexdigest(),
            "format": "csv",
            "size_bytes": size,
            "header": header,
            "lines": lines,
            "rows": lines - 1,
            "longest_line": longest,
            "segments": [self.header_end or size, *self.cuts, size],
        }


def inspect_file(path: str | Path) -> FileInfo:
    """File-level checks that need no contract: format, encoding, header line, truncation.

    One streaming pass computes the sha256, checks UTF-8 and counts lines, so memory stays flat for any size.

    Args:
        path: A ``.csv`` or ``.parquet`` file.

    Returns:
        ``{"sha256", "format", "size_bytes", "header", "lines", "rows"}`` (``header`` is the CSV's first
        record; ``rows`` the data line count of a CSV or the footer's row count of a parquet file); a CSV also
        has ``longest_line`` and ``segments`` (byte offsets of record boundaries).

    Raises:
        BatchRejected: empty_file, unsupported_file_type, wrong_format, not_utf8, truncated_file,
            unreadable_file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if suffix not in (".csv", ".parquet"):
        raise BatchRejected(
            "unsupported_file_type", f"{path.name}: extension {suffix!r} is not .csv or .parquet"
        )
    if size == 0:
        raise BatchRejected("empty_file", f"{path.name} has 0 bytes")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if suffix == ".parquet":
        return _inspect_parquet(path, size, head)
    for magic, what in _SPREADSHEET_MAGIC:
        if head.startswith(magic):
            lines = _count_lines(path)
            raise BatchRejected(
                "wrong_format", f"{path.name} is {what}, not CSV text", rows_received=max(lines - 1, 0)
            )
    scan = _CsvScan(path)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            scan.feed(block)
    return scan.finish(size)


def _read_last_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        pos, tail = end, b""
        while pos > 0 and b"\n" not in tail:
            step = min(1 << 16, pos)
            pos -= step
            handle.seek(pos)
            tail = handle.read(step) + tail
    return tail.rsplit(b"\n", 1)[-1]
