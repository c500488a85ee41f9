"""Files in the data zones, on a local folder or on S3-compatible object storage, written whole or not at all.

A location is a :class:`pathlib.Path` (local) or a :class:`upath.UPath` over fsspec
(``s3://bucket/prefix``); :func:`location` makes one from a URI and :func:`to_uri` gives the URI back, the
form in which locations travel between stages (manifests, tags, XCom).

Writes never expose half a file. Locally a file is written under a hidden temporary name and renamed into
place. Object stores have no rename, but a PUT is atomic: the object appears whole when the upload completes,
so the content is written to a local temporary file and uploaded in one call. A stage writes its data objects
first and its manifest last; the manifest is the commit, so a reader that finds no manifest ignores the data
and a retry rewrites the same keys with the same content (never a second copy).

Credentials for object storage come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible stores), never from a
config file. A store that cannot be reached or refuses the credentials raises :class:`StorageError` naming
the URI and the store's answer: a fault, retried by the orchestrator.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from driftloop.core.errors import StorageError

if TYPE_CHECKING:
    from upath import UPath

StoragePath: TypeAlias = "Path | UPath"

_LOCAL_PROTOCOLS = ("", "file", "local")


def utc_now() -> str:
    """The current UTC time in ISO 8601 with microseconds (manifests sort by it)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def is_remote_uri(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names object storage (``s3://``, ``memory://`` ...) rather than a local path."""
    text = str(uri)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme not in _LOCAL_PROTOCOLS


def location(uri: str | StoragePath) -> StoragePath:
    """The location a URI names: a local :class:`~pathlib.Path` for a path or ``file://`` URI, else a UPath.

    Args:
        uri: A local path, a ``file://`` URI or an fsspec URI such as ``s3://bucket/prefix`` (a location is
            returned as it is).
    """
    if not isinstance(uri, str):
        return uri
    text = uri
    if text.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(text).path))
    if not is_remote_uri(text):
        return Path(text)
    from upath import UPath

    if text.split("://", 1)[0] in ("s3", "s3a"):
        # Other processes write the same prefixes (workers, the service): never answer a listing from memory.
        return UPath(text, use_listings_cache=False)
    return UPath(text)


def is_local(path: StoragePath) -> bool:
    """Whether ``path`` is on the local file system."""
    return isinstance(path, Path)


def to_uri(path: StoragePath) -> str:
    """The URI of ``path``: ``file://`` for a local path (resolved), else the object URI (``s3://...``)."""
    if isinstance(path, Path):
        return path.resolve().as_uri()
    return str(path)


# A store's words for refused credentials, and HTTP 403 as a status: not the digits inside a port or a number
# (an endpoint on port 40373 is unreachable, not forbidden).
_REFUSED = re.compile(
    r"invalidaccesskeyid|signaturedoesnotmatch|accessdenied|forbidden|(?<![\w.:/])403(?!\d)"
)


def describe_error(uri: str, exc: BaseException) -> str:
    """One line naming the URI and the store's answer, with wrong credentials named as such."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PermissionError) or _REFUSED.search(text.lower()):
        return f"object store refused the credentials for {uri} (check AWS_ACCESS_KEY_ID/SECRET): {text}"
    return f"object store unreachable or failing for {uri}: {text}"


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn a remote store's own exceptions into :class:`StorageError` (a fault) naming ``uri``.

    ``FileNotFoundError`` passes through: a missing object is the caller's to judge.
    """
    try:
        yield
    except (FileNotFoundError, StorageError):
        raise
    except Exception as exc:
        if not is_remote_uri(uri):
            raise
        raise StorageError(describe_error(uri, exc)) from exc


def temp_path(path: Path) -> Path:
    """Hidden temporary name beside a local ``path`` (``.<name>.<pid>.tmp``); listings skip it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _upload(local: Path, dest: StoragePath) -> None:
    with store_errors(str(dest)):
        try:
            dest.fs.put_file(str(local), dest.path)  # type: ignore[union-attr]
        except FileNotFoundError as exc:  # nothing but the bucket can be missing for a PUT
            raise StorageError(f"object store has no bucket for {dest}: {exc}") from exc


@contextmanager
def atomic_path(path: StoragePath, fsync: bool = False) -> Iterator[Path]:
    """Yield a local temporary path to write ``path``'s content to; it lands at ``path`` when the block ends.

    Locally the folder is created and the file renamed over ``path``; on object storage the file is uploaded
    in one PUT. If the block raises, the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file under the final name.

    Args:
        path: The final file.
        fsync: Flush the temporary file to disk before the rename (for files another process picks up).
    """
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        try:
            yield tmp
            if fsync:
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="driftloop-upload-") as folder:
        tmp = Path(folder) / path.name
        yield tmp
        _upload(tmp, path)


def create_exclusive(path: StoragePath, content: bytes) -> bool:
    """Create ``path`` with ``content`` unless it exists; False when it existed (another writer won).

    Locally an ``O_EXCL`` create; on object storage a conditional PUT (``If-None-Match: *``, which AWS S3,
    MinIO and moto honour), so two workers on two hosts claiming the same key never both win.
    """
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        return True
    with store_errors(str(path)):
        try:
            path.fs.pipe_file(path.path, content, mode="create")
        except (FileExistsError, OSError) as exc:
            # s3fs maps HTTP 412 (PreconditionFailed) to OSError(EINVAL)
            if isinstance(exc, FileExistsError) or exc.errno == errno.EINVAL:
                return False
            raise
    return True


def write_bytes_atomic(path: StoragePath, content: bytes, fsync: bool = False) -> None:
    """Write ``content`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(content)


def write_json(path: StoragePath, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as JSON atomically (temp file + rename, or one PUT), creating the folder."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode())


def read_json(path: str | StoragePath) -> dict[str, Any]:
    """Parse a JSON file."""
    with store_errors(str(path)):
        payload: dict[str, Any] = json.loads(location(path).read_text())
    return payload


def is_file(path: StoragePath) -> bool:
    """Whether the file ``path`` exists; a store that cannot answer raises :class:`StorageError` (UPath's own
    ``is_file`` answers False to every failure)."""
    if isinstance(path, Path):
        return path.is_file()
    with store_errors(str(path)):
        try:
            return bool(path.fs.info(path.path)["type"] == "file")
        except FileNotFoundError:
            return False


def _require_bucket(path: StoragePath) -> None:
    """Raise :class:`StorageError` naming ``path`` when its bucket does not exist (listings look empty)."""
    if isinstance(path, Path) or not path.drive:
        return
    if not path.fs.exists(path.drive):
        raise StorageError(f"object store has no bucket {path.drive!r} for {path}")


def list_files(folder: StoragePath, pattern: str = "*") -> list[StoragePath]:
    """Visible files in ``folder`` matching ``pattern`` (hidden names skipped), sorted by name."""
    with store_errors(str(folder)):
        if not folder.is_dir():
            _require_bucket(folder)
            return []
        found = [p for p in folder.glob(pattern) if not p.name.startswith(".") and p.is_file()]
    return sorted(found, key=lambda p: p.name)


def list_manifests(folder: StoragePath) -> list[dict[str, Any]]:
    """Manifests (``*.json``) in ``folder``, oldest first (by ``ingested_at`` or ``created_at``)."""
    manifests = [read_json(p) for p in list_files(folder, "*.json")]
    return sorted(
        manifests, key=lambda m: (m.get("ingested_at") or m.get("created_at") or "", m.get("batch_id", ""))
    )


def move_into(src: StoragePath, dest_dir: StoragePath) -> StoragePath:
    """Move ``src`` into ``dest_dir`` (created when missing); returns the new location.

    On object storage the move is a copy then a delete: a crash between the two leaves the file in both
    places, and the next run, which finds the batch's manifest, moves it again.
    """
    dest = dest_dir / src.name
    if isinstance(src, Path) and isinstance(dest_dir, Path):
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
        return dest
    with store_errors(str(src)):
        if isinstance(src, Path):
            _upload(src, dest)
            src.unlink()
        else:
            src.fs.copy(src.path, dest.path)  # type: ignore[union-attr]
            src.fs.rm(src.path)
    return dest


def remove_tree(path: StoragePath) -> None:
    """Delete ``path`` and everything under it; nothing happens when it does not exist."""
    if isinstance(path, Path):
        shutil.rmtree(path, ignore_errors=True)
        return
    with store_errors(str(path)):
        if path.exists():
            path.fs.rm(path.path, recursive=True)


def remove_file(path: StoragePath) -> None:
    """Delete one file; nothing happens when it does not exist."""
    with store_errors(str(path)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def open_input(path: StoragePath) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading bytes (a local file, or a buffered object-store reader)."""
    with store_errors(str(path)), path.open("rb") as handle:
        yield handle


def local_copy(path: StoragePath, folder: Path) -> Path:
    """``path`` itself when local, else a download of it into ``folder`` (for readers that want a file)."""
    if isinstance(path, Path):
        return path
    dest = folder / path.name
    with store_errors(str(path)):
        path.fs.get_file(path.path, str(dest))
    return dest


def read_parquet(path: StoragePath, columns: list[str] | None = None) -> Any:
    """A parquet file's rows as a DataFrame (``columns`` only, when given), local or on object storage."""
    import pyarrow.parquet as pq

    if isinstance(path, Path):
        return pq.read_table(path, columns=columns).to_pandas()
    with open_input(path) as handle:
        return pq.read_table(handle, columns=columns).to_pandas()


def read_parquet_schema(path: StoragePath) -> Any:
    """A parquet file's arrow schema, reading only its footer."""
    import pyarrow.parquet as pq

    if isinstance(path, Path):
        return pq.read_schema(path)
    with open_input(path) as handle:
        return pq.read_schema(handle)


class ParquetSink:
    """Streams DataFrame chunks into one parquet file under a local temporary name; ``commit`` puts it in
    place (a rename, or one upload to object storage)."""

    def __init__(self, path: StoragePath, schema_for: Callable[[Any], Any]) -> None:
        self.path = path
        if isinstance(path, Path):
            self._tmp_dir: tempfile.TemporaryDirectory[str] | None = None
            self.tmp = temp_path(path)
        else:
            self._tmp_dir = tempfile.TemporaryDirectory(prefix="driftloop-sink-")
            self.tmp = Path(self._tmp_dir.name) / path.name
        self.schema_for = schema_for
        self.writer: Any = None
        self.rows = 0

    def __call__(self, frame: Any) -> None:
        """Append ``frame`` (the first frame fixes the schema through ``schema_for``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, self.schema_for(frame))
        self.writer.write_table(pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False))
        self.rows += len(frame)

    def close(self) -> None:
        """Close the writer (the file stays under its temporary name)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self) -> bool:
        """Put the file in place; returns False (and writes nothing) when no row was written."""
        self.close()
        try:
            if self.rows:
                if isinstance(self.path, Path):
                    os.replace(self.tmp, self.path)
                else:
                    _upload(self.tmp, self.path)
            return bool(self.rows)
        finally:
            self._cleanup()

    def discard(self) -> None:
        """Drop what was written."""
        self.close()
        self.tmp.unlink(missing_ok=True)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp_dir is not None:
            self._tmp_dir.cleanup()
            self._tmp_dir = None


def iter_parquet_batches(
    path: StoragePath, batch_size: int, columns: list[str] | None = None
) -> Iterator[Any]:
    """A parquet file as Arrow record batches of ``batch_size`` rows, streamed from the folder or the object
    store (never the whole file in memory); a store's failure while reading is a :class:`StorageError`."""
    import pyarrow.parquet as pq

    if isinstance(path, Path):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
        return
    with open_input(path) as handle:  # a generator: the caller's own exceptions never pass through here
        yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size, columns=columns)
