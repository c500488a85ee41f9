"""Validating a whole file in bounded-memory chunks: file checks, then row checks chunk by chunk, then a
report.

Every received row is either accepted or rejected: ``rows_accepted + rows_quarantined == rows_received``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.data.contract.inspection import FileInfo, inspect_file
from driftloop.data.contract.rows import validate_frame
from driftloop.data.contract.schema import ROW_REASONS, BatchRejected, Contract, check_columns, load_contract

DEFAULT_CHUNK_ROWS = 200_000


class ValidationReport(TypedDict):
    """What :func:`validate_file` found in one file (JSON-ready: ``driftloop validate`` prints it)."""

    path: str
    kind: str  # batch | labels
    ok: bool
    reason_code: str | None  # why the whole file is rejected; None when ok
    message: str
    file_level: bool  # True when the whole file is rejected
    rows_received: int
    rows_accepted: int
    rows_quarantined: int
    reason_counts: dict[str, int]  # "<code>:<column>" -> rejected rows
    has_label: bool
    sha256: str | None
    format: str | None  # csv | parquet
    columns: list[str]
    problems: list[str]  # readable lines
    chunks: NotRequired[int]  # frames read; set once the file was read


# Read as null in CSV files; everything else is a value to be checked.
NULL_TOKENS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A"]


def _to_pandas(table: Any) -> Any:
    """Arrow → pandas keeping text as Arrow-backed strings (null checks and string kernels stay in C++)."""
    import pandas as pd
    import pyarrow as pa

    text = pd.StringDtype("pyarrow")
    return table.to_pandas(types_mapper=lambda t: text if t in (pa.string(), pa.large_string()) else None)


_PARQUET_TYPES = (
    "is_integer",
    "is_floating",
    "is_string",
    "is_large_string",
    "is_boolean",
    "is_null",
    "is_dictionary",
)


def _iter_parquet_frames(path: Path, chunk_rows: int) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise BatchRejected("unreadable_file", f"{path.name}: {str(exc)[:300]}") from None
    rows = parquet.metadata.num_rows
    for fld in parquet.schema_arrow:
        if not any(getattr(pa.types, check)(fld.type) for check in _PARQUET_TYPES):
            raise BatchRejected(
                "schema_mismatch",
                f"{path.name}: column {fld.name!r} has parquet type {fld.type}, not a number or text",
                rows_received=rows,
            )
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield _to_pandas(pa.Table.from_batches([batch]))
    except Exception as exc:
        raise BatchRejected("unreadable_file", f"{path.name}: {str(exc)[:300]}", rows_received=rows) from None


def _iter_csv_frames(path: Path, info: FileInfo, chunk_rows: int) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pv

    rows = info.get("rows", 0)
    header = info["header"] or []  # a CSV always has one (inspect_file refuses it otherwise)
    read_options = pv.ReadOptions(
        column_names=header,
        use_threads=True,
        block_size=max(4 << 20, 2 * info.get("longest_line", 0) + (1 << 20)),
    )
    parse_options = pv.ParseOptions(newlines_in_values=True)
    convert_options = pv.ConvertOptions(
        column_types={name: pa.string() for name in header}, null_values=NULL_TOKENS, strings_can_be_null=True
    )
    bounds = info["segments"]
    with open(path, "rb") as handle:
        for start, end in zip(bounds, bounds[1:], strict=False):
            if end <= start:
                continue
            handle.seek(start)
            segment = handle.read(end - start)
            try:
                table = pv.read_csv(
                    pa.py_buffer(segment),
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_options,
                )
            except pa.ArrowInvalid as exc:
                raise BatchRejected(
                    "malformed_csv", f"{path.name}: {str(exc)[:300]}", rows_received=rows
                ) from None
            del segment
            for first in range(0, table.num_rows, chunk_rows):
                yield _to_pandas(table.slice(first, chunk_rows))


def iter_file_frames(path: str | Path, info: FileInfo, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Any:
    """Yield the file's rows as DataFrames of at most ``chunk_rows`` rows (CSV values as text).

    CSV is parsed by pyarrow with every column typed as text, so a bad value never fails the parse. It is read
    one segment at a time (~16 MiB between record boundaries found by :func:`inspect_file`), which bounds
    memory whatever the file size; Arrow's own streaming reader reads ahead without bound when validation is
    slower.

    Raises:
        BatchRejected: malformed_csv, unreadable_file, schema_mismatch.
    """
    path = Path(path)
    if info["format"] == "parquet":
        return _iter_parquet_frames(path, chunk_rows)
    return _iter_csv_frames(path, info, chunk_rows)


@dataclass
class _Tally:
    """What the chunks of one file added up to."""

    received: int = 0
    accepted: int = 0
    chunks: int = 0
    reason_counts: dict[str, int] = field(default_factory=dict)
    null_counts: dict[str, int] = field(default_factory=dict)
    seen_ids: list[Any] = field(default_factory=list)

    def add(self, frame: Any, accepted: Any, rejected: Any, contract: Contract) -> None:
        self.received += len(frame)
        self.accepted += len(accepted)
        self.chunks += 1
        for name in frame.columns:
            if name in contract.columns:
                self.null_counts[name] = self.null_counts.get(name, 0) + int(frame[name].isna().sum())
        for reason in rejected["_reason"]:
            for item in reason.split(";"):
                self.reason_counts[item] = self.reason_counts.get(item, 0) + 1


def _check_totals(contract: Contract, tally: _Tally, name: str) -> None:
    """File-level verdicts that need every row counted first.

    Raises:
        BatchRejected: empty_file, all_null_column, row_count_out_of_bounds, too_many_bad_rows.
    """
    received = tally.received
    if received == 0:
        raise BatchRejected("empty_file", f"{name} has 0 data rows")
    all_null = [c for c, n in tally.null_counts.items() if n == received]
    if all_null:
        raise BatchRejected(
            "all_null_column", f"column(s) {all_null} are null in all {received} rows", rows_received=received
        )
    if received < contract.min_rows or (contract.max_rows is not None and received > contract.max_rows):
        raise BatchRejected(
            "row_count_out_of_bounds",
            f"{received} rows, contract allows [{contract.min_rows}, {contract.max_rows}]",
            rows_received=received,
        )
    bad_rows = received - tally.accepted
    share = bad_rows / received
    if share > contract.max_bad_row_share:
        raise BatchRejected(
            "too_many_bad_rows",
            f"{bad_rows} of {received} rows ({share:.1%}) fail the "
            f"contract; at most {contract.max_bad_row_share:.1%} may",
            rows_received=received,
        )


def validate_file(
    cfg: DatasetConfig,
    path: str | Path,
    kind: str = "batch",
    contract: Contract | None = None,
    chunk_rows: int | None = None,
    on_accepted: Any = None,
    on_rejected: Any = None,
    settings: Settings | None = None,
) -> ValidationReport:
    """Validate a file against the dataset's contract in bounded-memory chunks; writes nothing itself.

    Args:
        cfg: Dataset config.
        path: ``.csv`` or ``.parquet`` file.
        kind: ``"batch"`` or ``"labels"``.
        contract: Defaults to :func:`load_contract`.
        chunk_rows: Rows per chunk; defaults to ``cfg.ingest.chunk_rows``.
        on_accepted: Called with each chunk's accepted rows (e.g. to stream them to parquet).
        on_rejected: Called with each chunk's rejected rows.
        settings: Process settings (the PII salt); defaults to :meth:`Settings.from_env`.

    Returns:
        A report: ``ok``, ``reason_code`` (None when ok), ``message``, ``rows_received``, ``rows_accepted``,
        ``rows_quarantined``, ``reason_counts`` (``code:column`` → rows), ``has_label``, ``sha256``,
        ``format``, ``file_level`` (True when the whole file is rejected), ``chunks`` (frames read) and
        ``problems`` (readable lines). A file whose bad-row share exceeds ``max_bad_row_share`` is not ok
        (``too_many_bad_rows``) and counts every row as quarantined. Always
        ``rows_accepted + rows_quarantined == rows_received``.
    """
    contract = contract or load_contract(cfg)
    settings = settings or Settings.from_env()
    chunk_rows = chunk_rows or cfg.ingest.chunk_rows
    path = Path(path)
    report: ValidationReport = {
        "path": str(path),
        "kind": kind,
        "ok": False,
        "reason_code": None,
        "message": "",
        "file_level": False,
        "rows_received": 0,
        "rows_accepted": 0,
        "rows_quarantined": 0,
        "reason_counts": {},
        "has_label": False,
        "sha256": None,
        "format": None,
        "columns": [],
        "problems": [],
    }
    tally = _Tally()
    counted_rows = 0
    try:
        info = inspect_file(path)
        counted_rows = info["rows"]
        report["sha256"], report["format"] = info["sha256"], info["format"]
        if info["header"] is not None:
            check_columns(contract, info["header"], kind)
        for frame in iter_file_frames(path, info, chunk_rows):
            if tally.chunks == 0:
                report["has_label"] = check_columns(contract, list(frame.columns), kind)["has_label"]
                report["columns"] = [str(c) for c in frame.columns]
            accepted, rejected = validate_frame(
                cfg,
                frame,
                kind,
                contract,
                tally.seen_ids,
                row_offset=tally.received,
                pii_salt=settings.pii_salt,
            )
            tally.add(frame, accepted, rejected, contract)
            if on_accepted is not None and len(accepted):
                on_accepted(accepted)
            if on_rejected is not None and len(rejected):
                on_rejected(rejected)
        _check_totals(contract, tally, path.name)
    except BatchRejected as exc:
        # Unparsed rows still count as received: the file's line count (CSV) or footer row count (parquet).
        rows = max(exc.rows_received, tally.received, counted_rows + (exc.reason_code == "no_header"))
        report["reason_code"], report["message"], report["file_level"] = exc.reason_code, exc.message, True
        report["rows_received"], report["rows_accepted"], report["rows_quarantined"] = rows, 0, rows
    else:
        report["ok"] = True
        report["rows_received"], report["rows_accepted"] = tally.received, tally.accepted
        report["rows_quarantined"] = tally.received - tally.accepted
    report["chunks"] = tally.chunks
    report["reason_counts"] = dict(sorted(tally.reason_counts.items()))
    report["problems"] = _problem_lines(report)
    return report


def _problem_lines(report: ValidationReport) -> list[str]:
    lines = []
    if report["reason_code"]:
        lines.append(f"FILE {report['reason_code']}: {report['message']}")
    for item, rows in report["reason_counts"].items():
        code, _, column = item.partition(":")
        lines.append(f"ROWS {code} in column {column!r}: {rows} row(s) ({ROW_REASONS.get(code, '')})")
    return lines


def format_report(report: ValidationReport) -> str:
    """Operator-readable multi-line text of a :func:`validate_file` report."""
    verdict = (
        "PASS"
        if report["ok"] and not report["rows_quarantined"]
        else ("PASS with rejected rows" if report["ok"] else "FAIL")
    )
    out = io.StringIO()
    out.write(f"{verdict}: {report['path']}\n")
    out.write(
        f"  rows received {report['rows_received']}, accepted {report['rows_accepted']}, "
        f"quarantined {report['rows_quarantined']}\n"
    )
    for line in report["problems"]:
        out.write(f"  - {line}\n")
    return out.getvalue()
