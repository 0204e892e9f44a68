"""Reading tabular import files (CSV/TSV, JSONL/JSON, Parquet; text formats optionally gzipped) into
column-wise tables that remember, for every data row, where it sits in the file.

Every problem found while reading raises ``DatasetImportError`` whose message is one line naming the file
and the place in it: for CSV and JSONL the line number as an editor shows it (a CSV record spanning several
lines because of quoted newlines is named by its first line), for Parquet the 1-based data row.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.models.limits import Limits, get_limits
from accord.models.yaml_loader import DocumentLimitError, json_loads

TEXT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
BINARY_FORMATS = {".parquet": "parquet", ".pq": "parquet"}
SUPPORTED_EXTENSIONS = sorted([*TEXT_FORMATS, *BINARY_FORMATS, *(f"{ext}.gz" for ext in TEXT_FORMATS)])


class DatasetImportError(ValueError):
    """An import that cannot go ahead. ``str(error)`` is one line naming file, row and column."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def show(value: Any, limit: int = 60) -> str:
    """A value quoted for an error message, on one line and cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text) if isinstance(value, str) else text


def column_list(names: list[str], limit: int = 30) -> str:
    """Column names for an error message: the first ``limit``, each cut to 60 characters."""
    shown = ", ".join(show(n) if len(n) > 60 else n for n in names[:limit]) or "(none)"
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


@dataclass
class Table:
    """A file's data rows, column by column. ``row_numbers[i]`` is how a person finds row ``i``."""

    path: Path
    fmt: str
    columns: dict[str, list[Any]]
    row_numbers: list[int]
    unit: str = "line"  # "line" for CSV/JSONL, "row" for Parquet
    column_order: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.row_numbers)

    @property
    def name(self) -> str:
        return str(self.path)

    def where(self, index: int, column: str | None = None) -> str:
        """``'ratings.csv: line 17, column 'Q_overall''`` for error messages."""
        place = f"{self.name}: {self.unit} {self.row_numbers[index]}"
        return f"{place}, column {column!r}" if column is not None else place

    def header_where(self) -> str:
        return f"{self.name}: line 1 (header)" if self.fmt in ("csv", "tsv") else f"{self.name}"

    def has(self, column: str) -> bool:
        return column in self.columns

    def require(self, column: str, role: str, hint: str = "") -> list[Any]:
        if column not in self.columns:
            raise DatasetImportError(
                f"{self.header_where()}: no column {column!r} ({role}); the columns are: "
                f"{column_list(self.column_order)}{hint}"
            )
        return self.columns[column]


def detect_format(path: Path) -> tuple[str, bool]:
    """The format name and whether the file is gzipped, from the file name."""
    name = path.name.lower()
    gz = name.endswith(".gz")
    stem = name[:-3] if gz else name
    suffix = Path(stem).suffix
    if suffix in TEXT_FORMATS:
        return TEXT_FORMATS[suffix], gz
    if suffix in BINARY_FORMATS and not gz:
        return BINARY_FORMATS[suffix], False
    raise DatasetImportError(
        f"{path}: unsupported file extension {''.join(path.suffixes) or '(none)'!r}; "
        f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
    )


def _read_bounded(path: Path, gz: bool, limit: int) -> bytes:
    """The file's bytes (decompressed if gzipped), refused as soon as they pass ``limit``."""
    too_big = f"{path}: larger than the limit of {limit} bytes{' once decompressed' if gz else ''} " \
              "(ACCORD_LIMIT_MAX_DECODED_BYTES)"
    if not gz:
        if path.stat().st_size > limit:
            raise DatasetImportError(too_big)
        return path.read_bytes()
    chunks, size = [], 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise DatasetImportError(too_big)
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetImportError(f"{path}: not a valid gzip file ({one_line(str(exc))[:120]})") from None
    return b"".join(chunks)


def read_table(path: Path | str, records_key: str | None = None) -> Table:
    """Read one import file by its extension. Raises ``DatasetImportError`` for any problem.

    Bounded before anything is materialised (``accord.models.limits``): decoded bytes, rows, columns,
    cell and line length; Parquet files are checked from their metadata and read in batches.
    ``records_key`` (JSON documents only): the key of the object that holds the list of records, e.g.
    ``data`` for ``{"data": [...]}``; dotted for nested objects (``result.rows``)."""
    path = Path(path)
    fmt, gz = detect_format(path)
    if not path.is_file():
        raise DatasetImportError(f"{path}: file not found")
    raw = _read_bounded(path, gz, get_limits().max_decoded_bytes)
    if not raw.strip():
        raise DatasetImportError(f"{path}: empty file")
    if fmt == "parquet":
        table = _read_parquet(path, raw)
    else:
        text = decode_utf8(path, raw)
        if fmt in ("csv", "tsv"):
            table = _read_delimited(path, fmt, text)
        elif fmt == "jsonl":
            table = _read_jsonl(path, text)
        else:
            table = _read_json_array(path, text, records_key)
    if len(table) == 0:
        raise DatasetImportError(f"{path}: empty file (no data rows)")
    return table


def decode_utf8(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise DatasetImportError(
            f"{path}: line {line}, byte offset {exc.start}: not valid UTF-8 (byte 0x{bad}); "
            "save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _check_header(path: Path, header: list[str]) -> list[str]:
    names = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for pos, name in enumerate(names, start=1):
        if not name:
            raise DatasetImportError(f"{path}: line 1 (header), field {pos}: empty column name")
        if name in seen:
            raise DatasetImportError(
                f"{path}: line 1 (header): column {name!r} appears twice (fields {seen[name]} and {pos})"
            )
        seen[name] = pos
    return names


def _lines(path: Path, text: str, max_chars: int) -> Iterator[str]:
    """The physical lines of ``text`` (with their line ends), each refused past ``max_chars`` characters
    before it is copied."""
    pos, end, number = 0, len(text), 0
    while pos < end:
        number += 1
        nl = text.find("\n", pos, pos + max_chars + 1)
        if nl < 0:
            if end - pos > max_chars:
                raise DatasetImportError(f"{path}: line {number}: longer than {max_chars} characters")
            nl = end - 1
        yield text[pos : nl + 1]
        pos = nl + 1


def _check_rows(path: Path, count: int, limits: Limits) -> None:
    if count > limits.max_rows:
        raise DatasetImportError(f"{path}: more than {limits.max_rows} data rows (ACCORD_LIMIT_MAX_ROWS)")


def _check_columns(path: Path, count: int, limits: Limits) -> None:
    if count > limits.max_columns:
        raise DatasetImportError(f"{path}: {count} columns, more than the limit of {limits.max_columns} "
                                 "(ACCORD_LIMIT_MAX_COLUMNS)")


def _read_delimited(path: Path, fmt: str, text: str) -> Table:
    limits = get_limits()
    csv.field_size_limit(limits.max_cell_chars)
    lines = _lines(path, text, limits.max_cell_chars + 16 * limits.max_columns)
    reader = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetImportError(f"{path}: empty file") from None
    except csv.Error as exc:
        raise DatasetImportError(f"{path}: line 1 (header): malformed CSV ({exc})") from None
    _check_columns(path, len(header), limits)
    names = _check_header(path, header)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    cols = [columns[name] for name in names]
    width = len(names)
    row_numbers: list[int] = []
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetImportError(f"{path}: line {start}: malformed CSV ({exc})") from None
        if len(row_numbers) >= limits.max_rows:
            _check_rows(path, len(row_numbers) + 1, limits)
        if not record or (len(record) == 1 and not record[0].strip() and width > 1):
            start = reader.line_num + 1
            continue
        if len(record) != width:
            raise DatasetImportError(
                f"{path}: line {start}: {len(record)} fields but the header has {width} ({', '.join(names)})"
            )
        for col, value in zip(cols, record):
            col.append(value)
        row_numbers.append(start)
        start = reader.line_num + 1
    return Table(path, fmt, columns, row_numbers, "line", names)


def _add_record(path: Path, where: str, record: Any, rows: list[dict[str, Any]]) -> None:
    if not isinstance(record, dict):
        raise DatasetImportError(f"{path}: {where}: expected a JSON object, got {type(record).__name__}")
    rows.append(record)


def _records_to_table(
    path: Path, fmt: str, rows: list[dict[str, Any]], numbers: list[int], unit: str
) -> Table:
    order: dict[str, None] = {}
    limits = get_limits()
    for row in rows:
        for key in row:
            order.setdefault(str(key), None)
        _check_columns(path, len(order), limits)
    names = list(order)
    columns = {name: [row.get(name) for row in rows] for name in names}
    return Table(path, fmt, columns, numbers, unit, names)


def _read_jsonl(path: Path, text: str) -> Table:
    limits = get_limits()
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    max_line = limits.max_cell_chars + 16 * limits.max_columns
    for number, line in enumerate(_lines(path, text, max_line), start=1):
        if not line.strip():
            continue
        try:
            record = json_loads(line, allow_nan=True)
        except json.JSONDecodeError as exc:
            raise DatasetImportError(
                f"{path}: line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except DocumentLimitError as exc:
            raise DatasetImportError(f"{path}: line {number}: {exc}") from None
        _check_rows(path, len(rows) + 1, limits)
        _add_record(path, f"line {number}", record, rows)
        numbers.append(number)
    return _records_to_table(path, "jsonl", rows, numbers, "line")


def _records_in(path: Path, data: Any, records_key: str | None) -> Any:
    """The list of records of a JSON document: the document itself, or the value at ``records_key``."""
    if records_key:
        node = data
        for part in records_key.split("."):
            if not isinstance(node, dict) or part not in node:
                keys = ", ".join(map(str, node)) if isinstance(node, dict) else type(node).__name__
                raise DatasetImportError(
                    f"{path}: records_key {records_key!r}: no key {part!r} here (keys: {keys or '(none)'})"
                )
            node = node[part]
        if not isinstance(node, list):
            raise DatasetImportError(
                f"{path}: records_key {records_key!r} holds a {type(node).__name__}, not a list of records"
            )
        return node
    if isinstance(data, dict):
        lists = [str(k) for k, v in data.items() if isinstance(v, list)]
        hint = (f"; the records may be under {', '.join(repr(k) for k in lists[:5])}: name the key with "
                "records_key") if lists else ""
        raise DatasetImportError(
            f"{path}: expected a JSON array of records, but the document is an object "
            f"(keys: {', '.join(map(str, list(data)[:10]))}){hint}"
        )
    if not isinstance(data, list):
        raise DatasetImportError(
            f"{path}: expected a JSON array of objects (or use .jsonl, one object a line)"
        )
    return data


def _read_json_array(path: Path, text: str, records_key: str | None = None) -> Table:
    try:
        data = json_loads(text, allow_nan=True)
    except json.JSONDecodeError as exc:
        raise DatasetImportError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except DocumentLimitError as exc:
        raise DatasetImportError(f"{path}: {exc}") from None
    data = _records_in(path, data, records_key)
    _check_rows(path, len(data), get_limits())
    rows: list[dict[str, Any]] = []
    for index, record in enumerate(data, start=1):
        _add_record(path, f"record {index}", record, rows)
    return _records_to_table(path, "json", rows, list(range(1, len(rows) + 1)), "record")


def _read_parquet(path: Path, raw: bytes) -> Table:
    # pyarrow: heavy, and only Parquet files need it
    import pyarrow as pa
    import pyarrow.parquet as pq

    limits = get_limits()

    def unreadable(exc: Exception) -> DatasetImportError:
        return DatasetImportError(f"{path}: not a readable Parquet file ({one_line(str(exc))[:200]})")

    try:
        parquet = pq.ParquetFile(pa.BufferReader(raw))
        meta = parquet.metadata
        names = [str(n) for n in parquet.schema_arrow.names]
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(exc) from None
    # The metadata says how much there is before a single row is decoded.
    _check_columns(path, len(names), limits)
    _check_rows(path, meta.num_rows, limits)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatasetImportError(f"{path}: column {dup!r} appears twice")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    decoded = 0
    budget = limits.max_decoded_bytes
    try:
        for batch in parquet.iter_batches(batch_size=16_384):
            for i, name in enumerate(names):
                values = batch.column(i).to_pylist()
                for value in values:
                    if isinstance(value, (str, bytes)):
                        if len(value) > limits.max_cell_chars:
                            raise DatasetImportError(f"{path}: column {name!r}: a cell is longer than "
                                                     f"{limits.max_cell_chars} characters")
                        decoded += len(value)
                    else:
                        decoded += 8
                if decoded > budget:
                    raise DatasetImportError(f"{path}: more than {budget} bytes once decoded "
                                             "(ACCORD_LIMIT_MAX_DECODED_BYTES)")
                columns[name].extend(values)
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, DatasetImportError):
            raise
        raise unreadable(exc) from None
    n_rows = len(columns[names[0]]) if names else 0
    return Table(path, "parquet", columns, list(range(1, n_rows + 1)), "row", names)


def is_missing_scalar(value: Any) -> bool:
    """None and float NaN: absent in any format."""
    return value is None or (isinstance(value, float) and math.isnan(value))


# --- conversation cells -------------------------------------------------------------------------------

KNOWN_ROLES = {"user", "assistant", "human", "system", "bot", "ai", "model", "chatbot", "agent", "customer"}
_SPEAKER_LINE = re.compile(r"^[ \t]*([A-Za-z][A-Za-z0-9_\- ]{0,39}?)[ \t]*:[ \t]?(.*)$")


def _speaker_of(line: str) -> tuple[str, str] | None:
    match = _SPEAKER_LINE.match(line)
    if not match:
        return None
    speaker = match.group(1).strip()
    if speaker.isupper() or speaker.lower() in KNOWN_ROLES:
        return speaker.upper(), match.group(2)
    return None


def parse_conversation(value: Any) -> tuple[list[dict[str, str]], bool]:
    """Turns ``[{"speaker", "text"}]`` from a conversation cell, and whether text preceded the first
    speaker line (it becomes a USER turn).

    Accepted: a string of lines ``SPEAKER: text`` (a turn goes on over the following lines until the next
    ``SPEAKER:`` line; a speaker is an upper-case name such as ``USER`` or ``LAMDA``, or a common role name
    such as ``User``/``assistant``), or a JSON list (string or already parsed) of objects with
    ``speaker``/``role`` and ``text``/``content``. Speakers are returned upper-case. Raises ``ValueError``.
    """
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json_loads(value, allow_nan=True)
        except (json.JSONDecodeError, DocumentLimitError):
            parsed = None
        if isinstance(parsed, list):
            value = parsed
    if isinstance(value, list):
        return _json_turns(value), False
    if not isinstance(value, str):
        raise ValueError(f"expected text or a JSON list of turns, got {type(value).__name__}")
    turns: list[dict[str, str]] = []
    leading = False
    for line in value.splitlines():
        found = _speaker_of(line)
        if found is not None:
            turns.append({"speaker": found[0], "text": found[1]})
        elif turns:
            turns[-1]["text"] += "\n" + line
        elif line.strip():
            turns.append({"speaker": "USER", "text": line})
            leading = True
    for turn in turns:
        turn["text"] = turn["text"].strip()
    return turns, leading


def _json_turns(items: list[Any]) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for pos, turn in enumerate(items, start=1):
        if not isinstance(turn, dict):
            raise ValueError(f"turn {pos} is not an object with speaker/role and text/content")
        speaker = turn.get("speaker", turn.get("role"))
        text = turn.get("text", turn.get("content"))
        if not isinstance(speaker, str) or not speaker.strip():
            raise ValueError(f"turn {pos} has no 'speaker' or 'role'")
        if not isinstance(text, str):
            raise ValueError(f"turn {pos} has no 'text' or 'content' string")
        turns.append({"speaker": speaker.strip().upper(), "text": text.strip()})
    return turns
