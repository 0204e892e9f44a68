"""Dataset uploads: a multipart body streamed straight to files in a private temporary folder, with a size
limit enforced while the bytes arrive (and again after gzip decompression), before anything is parsed.

Form fields: ``mapping`` (JSON: the fields of ``ImportSpec`` except file paths and project) and the files
``ratings_file``, ``items_file``, ``annotators_file`` (CSV, TSV, JSONL, JSON or Parquet; text formats may
be gzipped). Each file is saved as ``<field><extension>``, so error messages name the field, not a path."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from accord.api.http.problems import ProblemError, invalid
from accord.models.import_formats import SUPPORTED_EXTENSIONS
from accord.models.yaml_loader import DocumentLimitError, json_loads
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELDS = ("ratings_file", "items_file", "annotators_file")
MAPPING_FIELD = "mapping"
MULTIPART_OVERHEAD = 64 * 1024


def too_large(detail: str, field_name: str | None = None) -> ProblemError:
    errors = [{"field": field_name, "message": detail}] if field_name else []
    return ProblemError(413, detail, slug="too-large", errors=errors)


def extension_of(filename: str) -> str | None:
    """The supported extension a filename ends with (longest match, case-insensitive), else None."""
    lowered = filename.lower()
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if lowered.endswith(ext):
            return ext
    return None


@dataclass
class Upload:
    folder: Path
    mapping: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)         # form field -> saved file
    filenames: dict[str, str] = field(default_factory=dict)      # form field -> the client's file name
    sizes: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)        # the form's text fields as sent

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    disposition: bytes = b""
    data: bytearray = field(default_factory=bytearray)
    handle: IO[bytes] | None = None
    size: int = 0
    skip: bool = False     # a browser's file input left empty: no file name, no content


class _StreamingForm:
    def __init__(self, folder: Path, max_bytes: int, max_field_bytes: int,
                 text_fields: Collection[str] = (MAPPING_FIELD,)) -> None:
        self.folder = folder
        self.text_fields = text_fields
        self.max_bytes = max_bytes
        self.max_field_bytes = max_field_bytes
        self.total = 0
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.fields: dict[str, str] = {}
        self.files: dict[str, Path] = {}
        self.filenames: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.pending: list[tuple[IO[bytes], bytes]] = []
        self.to_close: list[IO[bytes]] = []

    # python-multipart callbacks (synchronous; file writes are queued and done off the event loop)
    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.part.disposition = self.header_value
        self.header_name = b""
        self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        name = options.get(b"name")
        if name is None:
            raise invalid("a multipart part has no name", field="body")
        self.part.name = name.decode("utf-8", "replace")
        if self.part.name in self.fields or self.part.name in self.files:
            raise invalid(f"{self.part.name}: given twice", field=self.part.name)
        if self.part.name in FILE_FIELDS:
            raw_filename = options.get(b"filename")
            filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else ""
            if filename == "":   # a file input left empty (no name, no content)
                self.part.skip = True
                return
            ext = extension_of(filename)
            if ext is None:
                raise invalid(f"{self.part.name}: file name {filename[:100]!r} has no supported extension "
                              f"({', '.join(SUPPORTED_EXTENSIONS)})", field=self.part.name)
            path = self.folder / f"{self.part.name}{ext}"
            self.part.handle = open(path, "wb")  # noqa: SIM115 - closed in on_part_end / on error
            self.to_close.append(self.part.handle)
            self.part.filename = filename
            self.files[self.part.name] = path
            self.filenames[self.part.name] = Path(filename.replace("\\", "/")).name[:200]
        elif self.part.name not in self.text_fields:
            raise invalid(f"{self.part.name[:60]}: unknown form field; expected {', '.join(self.text_fields)} and "
                          f"the files {', '.join(FILE_FIELDS)}", field=self.part.name[:60])

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part.skip:
            if chunk:
                raise invalid(f"{self.part.name}: a file without a name", field=self.part.name)
            return
        if self.part.handle is not None:
            self.total += len(chunk)
            self.part.size += len(chunk)
            if self.total > self.max_bytes:
                raise too_large(f"{self.part.name}: the upload exceeds the limit of {self.max_bytes} bytes",
                                self.part.name)
            self.pending.append((self.part.handle, bytes(chunk)))
        else:
            if len(self.part.data) + len(chunk) > self.max_field_bytes:
                raise too_large(f"{self.part.name}: longer than {self.max_field_bytes} bytes", self.part.name)
            self.part.data.extend(chunk)

    def on_part_end(self) -> None:
        if self.part.skip:
            return
        if self.part.handle is not None:
            self.pending.append((self.part.handle, b""))  # marks the end: close after the writes
            self.sizes[self.part.name] = self.part.size
        else:
            try:
                self.fields[self.part.name] = self.part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise invalid(f"{self.part.name}: not UTF-8 text", field=self.part.name) from None

    def flush(self) -> None:
        for handle, chunk in self.pending:
            if chunk:
                handle.write(chunk)
            else:
                handle.close()
        self.pending.clear()

    def close_all(self) -> None:
        for handle in self.to_close:
            try:
                handle.close()
            except OSError:
                pass


def _check_gzip(path: Path, limit: int, field_name: str) -> None:
    """A gzipped upload must also fit the limit once decompressed (no decompression bombs)."""
    size = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise too_large(f"{field_name}: decompressed, the file exceeds the limit of {limit} bytes",
                                    field_name)
    except (OSError, EOFError, zlib.error):
        raise invalid(f"{field_name}: not a valid gzip file", field=field_name) from None


def mapping_field(fields: dict[str, str]) -> dict[str, Any]:
    """The API's upload: the import fields are one JSON object in the form field ``mapping``."""
    return parse_mapping(fields.get(MAPPING_FIELD))


async def receive_upload(headers: Any, stream: AsyncIterator[bytes], *, max_bytes: int, max_field_bytes: int,
                         text_fields: Collection[str] = (MAPPING_FIELD,),
                         mapping_of: Callable[[dict[str, str]], dict[str, Any]] = mapping_field) -> Upload:
    """Stream a multipart dataset upload to a temporary folder. The caller must ``cleanup()`` it.
    ``text_fields`` are the form's other fields; ``mapping_of`` turns them into the import fields."""
    content_type = headers.get("content-type", "")
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ProblemError(415, "send the dataset as multipart/form-data (fields: mapping, ratings_file, items_file, "
                                "annotators_file)", errors=[{"field": "body", "message": "expected multipart/form-data"}])
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + max_field_bytes + MULTIPART_OVERHEAD:
        raise too_large(f"the upload ({declared} bytes) exceeds the limit of {max_bytes} bytes", "body")
    folder = Path(tempfile.mkdtemp(prefix="accord-upload-"))
    form = _StreamingForm(folder, max_bytes, max_field_bytes, text_fields)
    callbacks: Any = {
        "on_part_begin": form.on_part_begin, "on_part_data": form.on_part_data, "on_part_end": form.on_part_end,
        "on_header_field": form.on_header_field, "on_header_value": form.on_header_value,
        "on_header_end": form.on_header_end, "on_headers_finished": form.on_headers_finished,
    }
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        received = 0
        ceiling = max_bytes + max_field_bytes + MULTIPART_OVERHEAD
        async for chunk in stream:
            received += len(chunk)
            if received > ceiling:
                raise too_large(f"the upload exceeds the limit of {max_bytes} bytes", "body")
            parser.write(chunk)
            if form.pending:
                await anyio.to_thread.run_sync(form.flush)
        parser.finalize()
        await anyio.to_thread.run_sync(form.flush)
        for name, path in form.files.items():
            if path.name.endswith(".gz"):
                await anyio.to_thread.run_sync(_check_gzip, path, max_bytes, name)
    except MultipartParseError as err:
        form.close_all()
        shutil.rmtree(folder, ignore_errors=True)
        raise invalid(f"malformed multipart body: {err}", field="body") from None
    except BaseException:
        form.close_all()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    form.close_all()
    upload = Upload(folder=folder, mapping={}, files=form.files, filenames=form.filenames, sizes=form.sizes,
                    fields=dict(form.fields))
    try:
        upload.mapping = mapping_of(form.fields)
        if not upload.files:
            raise invalid("give at least one file: ratings_file, items_file or both", field="ratings_file")
    except BaseException:
        upload.cleanup()
        raise
    return upload


FORBIDDEN_MAPPING_KEYS = {"ratings_file", "items_file", "annotators_file", "project_id"}


def parse_mapping(text: str | None) -> dict[str, Any]:
    if text is None:
        raise invalid("mapping: required (a JSON object of import fields: name, item_col, rating_cols, ...)",
                      field="mapping")
    try:
        mapping = json_loads(text)
    except json.JSONDecodeError as err:
        raise invalid(f"mapping: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
                      field="mapping") from None
    except DocumentLimitError as err:
        raise invalid(f"mapping: {err}", field="mapping") from None
    if not isinstance(mapping, dict):
        raise invalid("mapping: expected a JSON object of import fields", field="mapping")
    for key in FORBIDDEN_MAPPING_KEYS:
        if key in mapping:
            what = "is the key's project" if key == "project_id" else "comes from the uploaded file"
            raise invalid(f"mapping.{key}: not accepted here; it {what}", field=f"mapping.{key}")
    return mapping
